#![no_main]
// What this target checks: `brygga::fuzzing::config`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| brygga::fuzzing::config(data));
