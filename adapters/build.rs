//! Builds the provider plugins under `plugins/` for `wasm32-unknown-unknown`, wraps each core module
//! into a component (no WASI) and leaves `$OUT_DIR/<name>.wasm` for `include_bytes!`.
//!
//! The plugins are separate Cargo projects (each has its own `[workspace]`), built by a nested
//! `cargo` with its own target directory: the outer build holds the lock on the main one.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

const PLUGINS: &[&str] = &["mock", "evil"];
const WASM_TARGET: &str = "wasm32-unknown-unknown";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=wit");
    println!("cargo:rerun-if-env-changed=HERMES_PLUGINS_TARGET_DIR");

    check_wasm_target();
    let target_dir = plugins_target_dir(&out_dir);
    for name in PLUGINS {
        let dir = manifest_dir.join("plugins").join(name);
        for watched in ["src", "Cargo.toml", "Cargo.lock"] {
            println!("cargo:rerun-if-changed={}", dir.join(watched).display());
        }
        let core = build_plugin(&dir, &target_dir);
        let component = wit_component::ComponentEncoder::default()
            .module(&core)
            .and_then(|encoder| encoder.validate(true).encode())
            .unwrap_or_else(|err| panic!("wrapping plugin {name} as a component: {err:#}"));
        let dest = out_dir.join(format!("{name}.wasm"));
        fs::write(&dest, component)
            .unwrap_or_else(|err| panic!("writing {}: {err}", dest.display()));
    }
}

/// `target/plugins` next to the profile directories (`OUT_DIR` is
/// `target/<profile>/build/<pkg>-<hash>/out`), or `HERMES_PLUGINS_TARGET_DIR`.
fn plugins_target_dir(out_dir: &Path) -> PathBuf {
    if let Some(dir) = env::var_os("HERMES_PLUGINS_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    out_dir
        .ancestors()
        .nth(4)
        .map_or_else(|| out_dir.join("plugins-target"), |t| t.join("plugins"))
}

fn check_wasm_target() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let libdir = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", WASM_TARGET])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    if !libdir.is_some_and(|dir| dir.is_dir()) {
        panic!(
            "\n\nThe provider plugins need the Rust target {WASM_TARGET}, which is not installed.\n\
             Install it with:\n\n    rustup target add {WASM_TARGET}\n\n"
        );
    }
}

/// Builds one plugin in release mode and returns its core module.
fn build_plugin(dir: &Path, target_dir: &Path) -> Vec<u8> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(dir)
        .args([
            "build",
            "--release",
            "--target",
            WASM_TARGET,
            "--target-dir",
        ])
        .arg(target_dir);
    if dir.join("Cargo.lock").exists() {
        command.arg("--locked");
    }
    // What the outer build set for its own crates must not leak into the guest build (flags for the
    // host target, clippy as the compiler wrapper, another target directory).
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
    ] {
        command.env_remove(var);
    }
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("running cargo for {}: {err}", dir.display()));
    if !output.status.success() {
        panic!(
            "building the plugin in {} failed:\n{}",
            dir.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let crate_name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| format!("hermes_plugin_{n}.wasm"))
        .expect("plugin directories have UTF-8 names");
    let module = target_dir
        .join(WASM_TARGET)
        .join("release")
        .join(crate_name);
    fs::read(&module).unwrap_or_else(|err| panic!("reading {}: {err}", module.display()))
}
