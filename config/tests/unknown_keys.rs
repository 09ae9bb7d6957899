//! Unknown TOML keys are never ignored silently: each becomes a warning with
//! its full dotted path and, when possible, what was probably meant.

mod common;

use common::{temp_file, NO_ENV};
use config::{load_broker_with_env, load_namesrv_with_env, Origin, WarningKind};

/// Loads `toml` as a broker file and returns `(key, suggestion)` per warning.
fn warnings(toml: &str) -> Vec<(String, Option<String>)> {
    let (_dir, path) = temp_file("broker.toml", toml);
    load_broker_with_env(Some(&path), NO_ENV)
        .unwrap()
        .warnings
        .into_iter()
        .map(|w| {
            assert_eq!(w.origin, Origin::File(path.clone()));
            match w.kind {
                WarningKind::UnknownKey { suggestion } => (w.key, suggestion),
                other => panic!("unexpected {other:?}"),
            }
        })
        .collect()
}

fn check(toml: &str, expected: &[(&str, Option<&str>)]) {
    let expected: Vec<(String, Option<String>)> =
        expected.iter().map(|(k, s)| (k.to_string(), s.map(str::to_owned))).collect();
    assert_eq!(warnings(toml), expected, "{toml}");
}

#[test]
fn typo_gets_a_suggestion_from_the_same_table() {
    check(
        "[broker.store]\nflush_intervall = \"1s\"\n",
        &[("broker.store.flush_intervall", Some("flush_interval_commit_log"))],
    );
    check("[broker]\nlisten_prot = 1\n", &[("broker.listen_prot", Some("listen_port"))]);
}

#[test]
fn key_in_the_wrong_section_gets_its_full_path() {
    check(
        "[broker]\nflush_disk_type = \"SYNC_FLUSH\"\n",
        &[("broker.flush_disk_type", Some("broker.store.flush_disk_type"))],
    );
    check("[store]\nmax_message_size = 1\n", &[("store", Some("broker.store"))]);
    check("log_level = \"debug\"\n", &[("log_level", Some("telemetry.log_level"))]);
    check("[broker.plugins]\nallow_native = true\n", &[("broker.plugins", Some("plugins"))]);
}

#[test]
fn unrelated_keys_get_no_suggestion_and_unknown_tables_are_reported_once() {
    check("[broker]\nzzz = 1\n[broker.extras]\na = 1\nb = 2\n", &[("broker.extras", None), ("broker.zzz", None)]);
}

#[test]
fn the_warning_reads_well() {
    let (_dir, path) = temp_file("broker.toml", "[broker.store]\nflush_intervall = \"1s\"\n");
    let loaded = load_broker_with_env(Some(&path), NO_ENV).unwrap();
    assert_eq!(
        loaded.warnings[0].to_string(),
        format!(
            "unknown key `broker.store.flush_intervall` in {}; ignored; \
             did you mean `flush_interval_commit_log`?",
            path.display()
        )
    );
    // The known keys still apply.
    assert_eq!(loaded.config, config::BrokerFile::default());
}

#[test]
fn namesrv_file_with_broker_section() {
    let (_dir, path) = temp_file("namesrv.toml", "[broker]\nlisten_port = 1\n");
    let loaded = load_namesrv_with_env(Some(&path), NO_ENV).unwrap();
    assert_eq!(loaded.warnings.len(), 1);
    assert_eq!(loaded.warnings[0].key, "broker");
}
