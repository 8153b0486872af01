#![no_main]
// What this target checks: `brygga::fuzzing::identifiers`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| brygga::fuzzing::identifiers(data));
