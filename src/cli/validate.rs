//! `brygga validate FILE...`: each message checked as the gateway would check it.

use std::path::PathBuf;
use std::process::ExitCode;

/// Prints a verdict per file; fails when any is invalid.
pub fn command(files: Vec<PathBuf>) -> ExitCode {
    let mut all_valid = true;
    for f in files {
        let verdict = match std::fs::read(&f) {
            Ok(bytes) => crate::contract::validate::validate(&bytes),
            Err(e) => crate::contract::validate::Verdict {
                message_type: "file".into(),
                problems: vec![format!("(file): cannot read: {e}")],
            },
        };
        if verdict.is_valid() {
            println!("{}: valid {}", f.display(), verdict.message_type);
        }
        for p in &verdict.problems {
            println!("{}: {} {p}", f.display(), verdict.message_type);
        }
        all_valid &= verdict.is_valid();
    }
    if !all_valid {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
