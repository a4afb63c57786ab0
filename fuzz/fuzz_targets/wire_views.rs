#![no_main]
// The target's code is netyard::fuzzing::wire_views, so tests/fuzz_regressions.rs replays it on stable.
libfuzzer_sys::fuzz_target!(|data: &[u8]| netyard::fuzzing::wire_views(data));
