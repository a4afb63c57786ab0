//! The fuzz targets' stored inputs, replayed on stable in the ordinary suite: every file of
//! `fuzz/regressions/TARGET/` (inputs that once crashed a target, kept after the fix) and of
//! `fuzz/seeds/TARGET/` (the hand-made starting corpus) goes through the same function the
//! target calls (`netyard::fuzzing::TARGET`). Needs no privilege and no nightly.

use std::path::{Path, PathBuf};

fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target);
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_target_has_a_fuzz_target_file_and_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (name, _) in netyard::fuzzing::TARGETS {
        let file = root.join("fuzz_targets").join(format!("{name}.rs"));
        assert!(file.is_file(), "{} is missing", file.display());
        assert!(
            !inputs("seeds", name).is_empty(),
            "fuzz/seeds/{name}/ has no input"
        );
    }
}

#[test]
fn stored_inputs_replay_without_a_panic() {
    let mut replayed = 0;
    for (name, run) in netyard::fuzzing::TARGETS {
        for kind in ["regressions", "seeds"] {
            for path in inputs(kind, name) {
                let data = std::fs::read(&path)
                    .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
                let r = std::panic::catch_unwind(|| run(&data));
                assert!(r.is_ok(), "{name} panicked on {}", path.display());
                replayed += 1;
            }
        }
    }
    assert!(replayed > 0);
}
