//! What the store builds: `cargo tree` over its normal dependencies must not list the
//! packages below. A new `[dependencies]` line anywhere under the store (in `config`,
//! say) would otherwise pull them in without anyone noticing: `config` once depended on
//! `plugin-host` for the `[plugins]` section's types, so every store build compiled the
//! plugin engine.
//!
//! `cargo tree` runs with `--offline --locked`: it reads the committed `Cargo.lock` and
//! the packages the build of this test has already fetched, never the network, and it
//! fails rather than update a stale lock file. Run alone with
//! `cargo test -p store --test dependencies`.

use std::collections::BTreeSet;
use std::process::Command;

/// Packages the store must not depend on, directly or not, and why.
const FORBIDDEN: &[(&str, &str)] = &[
    ("remoting", "the store never imports remoting (the record codec shared with the wire lives in common)"),
    ("plugin-host", "the store reads its settings from config, which must not pull in the plugin engine"),
    ("wasmtime", "a plugin runtime"),
    ("mlua", "a plugin runtime"),
    ("libloading", "a plugin runtime"),
    // These came in only through plugin-host. If the store itself ever needs one, take
    // it off this list in the same change.
    ("notify", "plugin-host's file watcher"),
    ("quanta", "plugin-host's call clock"),
    ("sha2", "plugin-host's artifact digests"),
    ("arc-swap", "plugin-host's hot reload"),
];

/// The names of the packages `cargo tree -p store -e normal` lists (the store included).
fn store_dependencies() -> BTreeSet<String> {
    let out = Command::new(env!("CARGO"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["tree", "-p", "store", "-e", "normal", "--prefix", "none", "--offline", "--locked"])
        .output()
        .expect("run cargo tree");
    assert!(out.status.success(), "cargo tree failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).expect("cargo tree prints UTF-8");
    // Lines read `name vX.Y.Z [(path)] [(*)]`.
    stdout.lines().filter_map(|line| line.split_whitespace().next()).map(str::to_owned).collect()
}

#[test]
fn the_store_builds_neither_the_plugin_engine_nor_remoting() {
    let deps = store_dependencies();
    // Guard against a vacuous pass (an empty or reformatted listing).
    assert!(deps.contains("store") && deps.contains("common"), "unexpected cargo tree output: {deps:?}");
    let found: Vec<String> = FORBIDDEN
        .iter()
        .filter(|(name, _)| deps.contains(*name))
        .map(|(name, why)| format!("{name} ({why})"))
        .collect();
    assert!(
        found.is_empty(),
        "the store depends on {}; `cargo tree -p store -e normal -i <name>` shows the path",
        found.join(", ")
    );
}
