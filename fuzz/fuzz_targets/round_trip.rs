#![no_main]
// What this target checks: `brygga::fuzzing::round_trip`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| brygga::fuzzing::round_trip(data));
