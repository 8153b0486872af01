#![no_main]
// What this target checks: `brygga::fuzzing::audit_export`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| brygga::fuzzing::audit_export(data));
