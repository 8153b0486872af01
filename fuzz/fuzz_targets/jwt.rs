#![no_main]
// What this target checks: `brygga::fuzzing::jwt`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| brygga::fuzzing::jwt(data));
