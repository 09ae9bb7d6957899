//! The example plugins in `plugins/examples/`, loaded through the registry as a broker
//! would: the committed WASM module (and a check that it matches a rebuild from source
//! when the wasm32 target is installed), and the native example built on the spot.
#![cfg(all(feature = "wasm", feature = "native"))]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::*;
use plugin_api::types::encode_properties;
use plugin_api::{CqUnit, FilterContext, MessageFilter, MessageView, PluginKind, Runtime, Verdict};
use plugin_host::{PluginRegistry, PluginsConfig};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn committed_wasm() -> PathBuf {
    workspace().join("plugins/examples/wasm/price_range_filter.wasm")
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(workspace());
    c
}

#[test]
fn committed_wasm_filter_runs_in_the_registry() {
    let dir = fixtures_dir();
    let mut d = decl("price", PluginKind::Filter, Runtime::Wasm, &committed_wasm());
    for (k, v) in [("min", "100"), ("max", "500"), ("tag", "order")] {
        d.config.insert(k.into(), v.into());
    }
    let cfg = || PluginsConfig {
        plugins: vec![d.clone()],
        cache_dir: Some(dir.path().to_path_buf()),
        watch: false,
        ..Default::default()
    };
    let reg = PluginRegistry::new(cfg()).unwrap();
    let f = reg.filter("price").unwrap();
    assert_eq!(f.status().manifest.name, "price-range");
    assert!(f.has_prefilter());

    let props: Vec<Vec<u8>> =
        ["50", "120", "480.5", "900", "abc"].iter().map(|p| encode_properties([("price", *p)])).collect();
    let mut msgs: Vec<MessageView<'_>> = props.iter().map(|p| MessageView { properties: p, ..msg("order") }).collect();
    msgs.push(MessageView { properties: &props[1], ..msg("refund") });
    let mut v = vec![Verdict::Error; msgs.len()];
    f.filter(&FilterContext::default(), &msgs, &mut v).unwrap();
    use Verdict::{Accept as A, Reject as R};
    assert_eq!(v, [R, A, A, R, R, R]);

    let units =
        [CqUnit { tags_code: plugin_api::builtin::tags_code("order"), ..Default::default() }, CqUnit::default()];
    let mut v = [Verdict::Error; 2];
    assert!(f.prefilter_with_policy(&FilterContext::default(), &units, &mut v).is_none());
    assert_eq!(v, [A, R]);

    // A second process (registry) loads it from the precompiled cache.
    let start = Instant::now();
    let again = PluginRegistry::new(cfg()).unwrap();
    let cold = start.elapsed();
    assert_eq!(again.wasm_cache_hits(), 1);
    eprintln!("cold load of price_range_filter.wasm from the cache: {cold:?}");
}

fn wasm_target_installed() -> bool {
    let Ok(out) = Command::new("rustc").args(["--print", "sysroot"]).output() else { return false };
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Path::new(&sysroot).join("lib/rustlib/wasm32-unknown-unknown/lib").is_dir()
}

#[test]
fn committed_wasm_matches_a_rebuild_from_source() {
    if !wasm_target_installed() {
        eprintln!("skipping: wasm32-unknown-unknown is not installed (rustup target add wasm32-unknown-unknown)");
        return;
    }
    // Same settings as plugins/examples/build-wasm.sh, in a separate target dir.
    let target_dir = workspace().join("target/wasm-examples");
    let status = cargo()
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-unknown-unknown",
            "-p",
            "price-range-filter",
            "-p",
            "native-tag-filter",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .envs(plugin_host::REPRODUCIBLE_RELEASE_PROFILE)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .expect("run cargo");
    assert!(status.success(), "building the example failed");
    for (built, committed) in
        [("price_range_filter.wasm", "price_range_filter.wasm"), ("native_tag_filter.wasm", "tag_set_filter.wasm")]
    {
        let rebuilt = std::fs::read(target_dir.join("wasm32-unknown-unknown/release").join(built)).unwrap();
        let kept = std::fs::read(workspace().join("plugins/examples/wasm").join(committed)).unwrap();
        assert!(
            rebuilt == kept,
            "plugins/examples/wasm/{committed} is stale (or built by another rustc): run plugins/examples/build-wasm.sh and commit the result"
        );
    }
}

#[test]
fn the_tag_set_example_also_runs_as_wasm() {
    let path = workspace().join("plugins/examples/wasm/tag_set_filter.wasm");
    let mut d = decl("tags", PluginKind::Filter, Runtime::Wasm, &path);
    d.config.insert("tags".into(), "TagA || TagB".into());
    let reg = registry(vec![d]);
    let f = reg.filter("tags").unwrap();
    let mut v = [Verdict::Error; 3];
    f.filter(&FilterContext::default(), &[msg("TagA"), msg("TagC"), msg("TagB")], &mut v).unwrap();
    assert_eq!(v, [Verdict::Accept, Verdict::Reject, Verdict::Accept]);
}

#[test]
fn native_example_builds_and_runs() {
    let target_dir = workspace().join("target/plugin-examples");
    let status = cargo()
        .args(["build", "-p", "native-tag-filter", "--target-dir"])
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .expect("run cargo");
    assert!(status.success(), "building the native example failed");
    let lib = target_dir.join(format!(
        "debug/{}native_tag_filter{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    let dir = fixtures_dir();
    let mut d = decl("tags", PluginKind::Filter, Runtime::Native, &lib);
    d.config.insert("tags".into(), "TagA || TagB".into());
    let reg = PluginRegistry::new(PluginsConfig {
        plugins: vec![d.clone()],
        allow_native: true,
        watch: false,
        cache_dir: Some(dir.path().into()),
        ..Default::default()
    })
    .unwrap();
    let f = reg.filter("tags").unwrap();
    let mut v = [Verdict::Error; 3];
    f.filter(&FilterContext::default(), &[msg("TagA"), msg("TagC"), msg("TagB")], &mut v).unwrap();
    assert_eq!(v, [Verdict::Accept, Verdict::Reject, Verdict::Accept]);
    assert_eq!(f.status().manifest.name, "tag-set");

    // A config the plugin refuses is a clear init error.
    d.config.clear();
    let e = PluginRegistry::new(PluginsConfig {
        plugins: vec![d],
        allow_native: true,
        watch: false,
        cache_dir: Some(dir.path().into()),
        ..Default::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("missing config key \"tags\""), "{e}");
}
