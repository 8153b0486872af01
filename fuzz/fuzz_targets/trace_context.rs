#![no_main]
// What this target checks: `brygga::fuzzing::trace_context`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| brygga::fuzzing::trace_context(data));
