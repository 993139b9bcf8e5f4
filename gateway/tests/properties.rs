//! Stable property tests of the parsers and encoders the fuzz targets cover. The invariants are
//! the fuzz targets' own (fuzz/src/checks/, included here by path): proptest drives them with
//! random bytes on the stable toolchain in every test run, and every committed seed and past
//! crash input in fuzz/corpus/ is replayed as a regression test.

#[allow(dead_code)] // each check uses the parts of Input it needs
#[path = "../../fuzz/src/checks/mod.rs"]
mod checks;

use std::path::Path;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::Config;

/// Enough cases to reach every mode of every check, few enough to stay within a couple of
/// seconds for the whole file in a debug build.
fn config() -> Config {
    Config {
        cases: 1500,
        failure_persistence: None,
        ..Config::default()
    }
}

/// A fuzz target's invariants: panics when one breaks.
type Check = fn(&[u8]);

/// The check for each fuzz target, by target name.
const TARGETS: &[(&str, Check)] = &[
    ("config", checks::config::check),
    ("control", checks::control::check),
    ("envelope", checks::envelope::check),
    ("frame", checks::frame::check),
    ("handshake", checks::handshake::check),
    ("jwt", checks::jwt::check),
    ("ops", checks::ops::check),
    ("topic", checks::topic::check),
];

proptest! {
    #![proptest_config(config())]

    #[test]
    fn handshake(data in vec(any::<u8>(), 0..600)) {
        checks::handshake::check(&data);
    }

    #[test]
    fn frame(data in vec(any::<u8>(), 0..600)) {
        checks::frame::check(&data);
    }

    #[test]
    fn ops(data in vec(any::<u8>(), 0..300)) {
        checks::ops::check(&data);
    }

    #[test]
    fn envelope(data in vec(any::<u8>(), 0..300)) {
        checks::envelope::check(&data);
    }

    #[test]
    fn topic(data in vec(any::<u8>(), 0..300)) {
        checks::topic::check(&data);
    }

    #[test]
    fn config_yaml(data in vec(any::<u8>(), 0..300)) {
        checks::config::check(&data);
    }

    #[test]
    fn jwt(data in vec(any::<u8>(), 0..300)) {
        checks::jwt::check(&data);
    }

    #[test]
    fn control(data in vec(any::<u8>(), 0..200)) {
        checks::control::check(&data);
    }
}

/// Every file of fuzz/corpus/<target>/ (seeds, and inputs that once crashed a target) still
/// passes its check.
#[test]
fn committed_corpora_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    for (target, check) in TARGETS {
        let dir = root.join(target);
        let mut files = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("dir entry").path();
            let data = std::fs::read(&path).expect("read corpus file");
            let result = std::panic::catch_unwind(|| check(&data));
            assert!(result.is_ok(), "{} fails its check", path.display());
            files += 1;
        }
        assert!(files > 0, "{target} has no committed corpus");
    }
}

/// The targets listed here are exactly the fuzz targets, so neither side can drop one.
#[test]
fn every_fuzz_target_has_a_property() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/fuzz_targets");
    let mut on_disk: Vec<String> = std::fs::read_dir(dir)
        .expect("fuzz_targets")
        .map(|e| {
            let path = e.expect("entry").path();
            path.file_stem()
                .expect("stem")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    on_disk.sort();
    let listed: Vec<&str> = TARGETS.iter().map(|(t, _)| *t).collect();
    assert_eq!(on_disk, listed);
}
