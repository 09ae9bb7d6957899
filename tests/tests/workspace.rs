//! Facts about the repository a new user depends on: the pinned toolchain is the
//! version the manifests require, and the README names every prerequisite.

use std::path::Path;

fn repo_file(path: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

/// The value of `key = "..."` in a TOML text (the first such line).
fn toml_string(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
    })
}

#[test]
fn the_pinned_toolchain_is_the_version_the_workspace_requires() {
    let channel = toml_string(&repo_file("rust-toolchain.toml"), "channel").expect("rust-toolchain.toml has a channel");
    let required = toml_string(&repo_file("Cargo.toml"), "rust-version").expect("Cargo.toml has a rust-version");
    assert!(
        channel == required || channel.starts_with(&format!("{required}.")),
        "rust-toolchain.toml pins {channel} but Cargo.toml requires {required}"
    );
    // Every member inherits the workspace's requirement, so none can ask for more.
    let members = ["plugins/host/Cargo.toml", "broker/Cargo.toml", "store/Cargo.toml", "client/Cargo.toml"];
    for m in members {
        let text = repo_file(m);
        assert!(text.contains("rust-version.workspace = true"), "{m} sets its own rust-version");
    }
}

#[test]
fn the_readme_names_every_prerequisite() {
    let readme = repo_file("README.md");
    for needed in ["rust-toolchain.toml", "C compiler", "python3-venv", "node", "npm", "prometheus", "openssl"] {
        assert!(readme.contains(needed), "README.md does not mention {needed}");
    }
}
