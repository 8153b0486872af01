#![no_main]
// What this target checks: `brygga::fuzzing::soap_request`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| brygga::fuzzing::soap_request(data));
