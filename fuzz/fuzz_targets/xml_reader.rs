#![no_main]
// What this target checks: `brygga::fuzzing::xml_reader`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| brygga::fuzzing::xml_reader(data));
