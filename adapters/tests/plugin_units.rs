//! The plugins' own unit tests (request building, error classification, signature checks, SigV4
//! and JWT signing against published vectors), which live in the separate plugins workspace
//! (`adapters/plugins`): run natively by a nested cargo, so that `cargo test --workspace` covers
//! them too.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn every_plugins_unit_tests_pass() {
    let plugins = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("plugins");
    let mut command = Command::new(env!("CARGO"));
    command
        .current_dir(&plugins)
        .args(["test", "--workspace", "--target-dir"])
        .arg(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugins-native"));
    if std::env::var_os("CI").is_some() {
        command.arg("--locked");
    }
    // The outer cargo's settings are for the main workspace, not this one.
    for var in ["CARGO_TARGET_DIR", "CARGO_BUILD_TARGET_DIR", "RUSTFLAGS"] {
        command.env_remove(var);
    }
    let output = command
        .output()
        .expect("running cargo test in adapters/plugins");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the plugins' unit tests failed:\n{stdout}\n{stderr}"
    );
    // Each plugin with tests reports its count; make sure they ran, not just compiled.
    let passed: usize = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("test result: ok. "))
        .filter_map(|l| l.split(' ').next()?.parse::<usize>().ok())
        .sum();
    assert!(
        passed >= 100,
        "only {passed} plugin unit tests ran:\n{stdout}"
    );
    println!("{passed} plugin unit tests passed");
}
