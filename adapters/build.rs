//! Builds the provider plugins under `plugins/` for `wasm32-unknown-unknown`, wraps each core module
//! into a component (no WASI), leaves `$OUT_DIR/<name>.wasm` and writes `$OUT_DIR/builtin.rs`, which
//! `plugin::builtin` includes.
//!
//! The plugins are one Cargo workspace of their own (`plugins/Cargo.toml`), built by a nested
//! `cargo` with its own target directory: the outer build holds the lock on the main one. A
//! subdirectory whose `Cargo.toml` says `crate-type = ["cdylib"]` is a plugin; any other member
//! (`kit`, the library the plugins share) is only built as their dependency.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

const WASM_TARGET: &str = "wasm32-unknown-unknown";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let plugins_dir = manifest_dir.join("plugins");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=wit");
    println!("cargo:rerun-if-changed={}", plugins_dir.display());
    println!("cargo:rerun-if-env-changed=HERMES_PLUGINS_TARGET_DIR");
    for watched in ["Cargo.toml", "Cargo.lock"] {
        println!(
            "cargo:rerun-if-changed={}",
            plugins_dir.join(watched).display()
        );
    }

    check_wasm_target();
    let names = plugin_names(&plugins_dir);
    for name in &names {
        let dir = plugins_dir.join(name);
        for watched in ["src", "Cargo.toml"] {
            println!("cargo:rerun-if-changed={}", dir.join(watched).display());
        }
    }
    let target_dir = plugins_target_dir(&out_dir);
    build_workspace(&plugins_dir, &target_dir);

    // `builtin.rs`: one `pub const NAME: &[u8]` per plugin, and `ALL` with every (name, bytes).
    let mut builtin = String::new();
    for name in &names {
        let core = read_core_module(&target_dir, name);
        let component = wit_component::ComponentEncoder::default()
            .module(&core)
            .and_then(|encoder| encoder.validate(true).encode())
            .unwrap_or_else(|err| panic!("wrapping plugin {name} as a component: {err:#}"));
        let dest = out_dir.join(format!("{name}.wasm"));
        fs::write(&dest, component)
            .unwrap_or_else(|err| panic!("writing {}: {err}", dest.display()));
        builtin.push_str(&format!(
            "/// The `{name}` plugin (`adapters/plugins/{name}`), as a component.\n\
             pub const {}: &[u8] = include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{name}.wasm\"));\n",
            name.to_uppercase()
        ));
    }
    builtin.push_str(
        "/// Every built-in plugin, by directory name.\npub const ALL: &[(&str, &[u8])] = &[\n",
    );
    for name in &names {
        builtin.push_str(&format!("    (\"{name}\", {}),\n", name.to_uppercase()));
    }
    builtin.push_str("];\n");
    fs::write(out_dir.join("builtin.rs"), builtin).expect("writing builtin.rs");
}

/// Every directory under `plugins/` whose `Cargo.toml` declares a cdylib, sorted.
fn plugin_names(plugins_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(plugins_dir)
        .unwrap_or_else(|err| panic!("reading {}: {err}", plugins_dir.display()))
        .filter_map(Result::ok)
        .filter(|entry| {
            fs::read_to_string(entry.path().join("Cargo.toml")).is_ok_and(|m| is_cdylib(&m))
        })
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

/// Whether a manifest has the line `crate-type = ["cdylib"]` (spacing and comments aside).
fn is_cdylib(manifest: &str) -> bool {
    manifest.lines().any(|line| {
        let line = line.split('#').next().unwrap_or_default();
        line.split_whitespace().collect::<String>() == r#"crate-type=["cdylib"]"#
    })
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

/// Builds every plugin of the workspace in `plugins_dir` in release mode.
fn build_workspace(plugins_dir: &Path, target_dir: &Path) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(plugins_dir)
        .args([
            "build",
            "--workspace",
            "--release",
            "--target",
            WASM_TARGET,
            "--target-dir",
        ])
        .arg(target_dir);
    // CI builds with --locked: the plugins' lock file must be committed and current too.
    if env::var_os("CI").is_some() {
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
        .unwrap_or_else(|err| panic!("running cargo in {}: {err}", plugins_dir.display()));
    if !output.status.success() {
        panic!(
            "building the plugins in {} failed:\n{}",
            plugins_dir.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

fn read_core_module(target_dir: &Path, name: &str) -> Vec<u8> {
    let module = target_dir
        .join(WASM_TARGET)
        .join("release")
        .join(format!("hermes_plugin_{name}.wasm"));
    fs::read(&module).unwrap_or_else(|err| panic!("reading {}: {err}", module.display()))
}
