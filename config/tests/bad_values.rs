//! Bad values fail the load with an error that names the key and where the
//! value came from.

mod common;

use common::{temp_file, NO_ENV};
use config::{load_broker_with_env, load_namesrv_with_env, Error};

fn toml_error(toml: &str) -> (String, String) {
    let (_dir, path) = temp_file("broker.toml", toml);
    let err = load_broker_with_env(Some(&path), NO_ENV).unwrap_err();
    (err.to_string(), path.display().to_string())
}

#[test]
fn wrong_type_in_toml_names_the_key_and_file() {
    let (err, path) = toml_error("[broker]\nlisten_port = \"abc\"\n");
    assert!(err.starts_with("broker.listen_port: "), "{err}");
    assert!(err.ends_with(&format!(" in {path}")), "{err}");

    let (err, _) = toml_error("[broker]\nlisten_port = 70000\n");
    assert!(err.starts_with("broker.listen_port: "), "{err}");

    let (err, _) = toml_error("[broker.store]\nflush_interval_commit_log = \"5 parsecs\"\n");
    assert!(err.starts_with("broker.store.flush_interval_commit_log: "), "{err}");

    let (err, _) = toml_error("[broker.store]\nflush_disk_type = \"FAST\"\n");
    assert!(err.starts_with("broker.store.flush_disk_type: unknown variant"), "{err}");

    let (err, _) = toml_error("[broker.store]\nmax_message_size = \"lots\"\n");
    assert!(err.starts_with("broker.store.max_message_size: "), "{err}");
}

#[test]
fn wrong_type_in_env_names_the_variable() {
    let err = load_broker_with_env(None, [("FERROMQ_BROKER_STORE__FLUSH_DISK_TYPE", "FAST")]).unwrap_err().to_string();
    assert!(err.starts_with("FERROMQ_BROKER_STORE__FLUSH_DISK_TYPE: unknown variant"), "{err}");
    assert!(err.ends_with(" in environment"), "{err}");

    let err = load_namesrv_with_env(None, [("FERROMQ_NAMESRV_LISTEN_PORT", "abc")]).unwrap_err().to_string();
    assert!(err.starts_with("FERROMQ_NAMESRV_LISTEN_PORT: "), "{err}");
}

#[test]
fn validation_errors_use_the_full_dotted_key() {
    for (toml, expected) in [
        ("[broker.store]\ndelete_when = \"25\"", "broker.store.delete_when: `25` is not an hour between 00 and 23"),
        ("[broker]\nmessage_delay_level = \"1s 5x\"", "broker.message_delay_level: `5x` is not a number followed by s, m, h or d"),
        ("[broker]\nbroker_id = 3", "broker.broker_id: conflicts with `broker_role`: a master must have broker_id 0"),
        ("[broker]\nnamesrv_addr = \"a:9876;nope\"", "broker.namesrv_addr: `nope` is not a host:port address"),
        ("[broker.store]\nmapped_file_size_consume_queue = 61", "broker.store.mapped_file_size_consume_queue: 61 is out of range: expected a multiple of the 20-byte consume-queue entry"),
        ("[broker.store]\nflush_interval_commit_log = \"0s\"", "broker.store.flush_interval_commit_log: must be greater than zero"),
        ("[broker.store]\ndisk_max_used_space_ratio = 99", "broker.store.disk_max_used_space_ratio: 99 is out of range: expected a percentage between 10 and 95"),
        ("[broker.store]\nmax_message_size = \"2GiB\"", "broker.store.mapped_file_size_commit_log: conflicts with `max_message_size`: a segment must be able to hold the largest message"),
        ("[broker]\ngrpc_server_port = -2", "broker.grpc_server_port: -2 is out of range: expected a port (0 picks a free one), or -1 to turn the gRPC endpoint off"),
        ("[broker]\ngrpc_server_port = 10911", "broker.grpc_server_port: conflicts with `listen_port`: two listeners cannot share a port"),
        ("[telemetry]\nlog_level = \"store=loud\"", "telemetry.log_level: `store=loud` is not a tracing filter directive such as `info` or `info,store=debug`"),
    ] {
        let (err, _) = toml_error(toml);
        assert_eq!(err, expected);
    }
    let (_dir, path) = temp_file("namesrv.toml", "[namesrv]\nlisten_port = 8080\nhttp_listen_port = 8080\n");
    let err = load_namesrv_with_env(Some(&path), NO_ENV).unwrap_err().to_string();
    assert_eq!(err, "namesrv.http_listen_port: conflicts with `listen_port`: two listeners cannot share a port");
}

#[test]
fn file_level_errors() {
    let (_dir, path) = temp_file("broker.toml", "[broker\n");
    let err = load_broker_with_env(Some(&path), NO_ENV).unwrap_err();
    assert!(matches!(err, Error::Toml { .. }), "{err:?}");

    let (_dir, path) = temp_file("broker.yaml", "broker: {}\n");
    let err = load_broker_with_env(Some(&path), NO_ENV).unwrap_err();
    assert!(matches!(err, Error::UnknownFormat { .. }), "{err:?}");

    let dir = tempfile::tempdir().unwrap();
    let err = load_broker_with_env(Some(&dir.path().join("missing.toml")), NO_ENV).unwrap_err();
    assert!(matches!(err, Error::Read { .. }), "{err:?}");
}

#[test]
fn plugin_bindings_must_name_a_declared_plugin_of_a_broker_kind() {
    const DECLS: &str = "[[plugins.plugin]]\nname = \"f\"\nkind = \"filter\"\nruntime = \"lua\"\npath = \"f.lua\"\n\
                         [[plugins.plugin]]\nname = \"a\"\nkind = \"allocation\"\nruntime = \"lua\"\npath = \"a.lua\"\n";
    for (binding, expected) in [
        ("plugin = \"nope\"\ntopic = \"T\"", "plugin `nope` is not declared in [[plugins.plugin]]"),
        ("plugin = \"f\"\ntopic = \"T\"", "filter `f` needs a `group` (or \"*\")"),
        ("plugin = \"f\"\ntopic = \" \"\ngroup = \"G\"", "binding of `f` has an empty topic (use \"*\" for all)"),
        ("plugin = \"a\"\ntopic = \"T\"", "`a` is of kind allocation, which runs in clients, not in the broker"),
    ] {
        let (err, _) = toml_error(&format!("[[broker.plugin_binding]]\n{binding}\n{DECLS}"));
        assert_eq!(err, format!("broker.plugin_binding: {expected}"));
    }
    let (err, _) =
        toml_error("[[plugins.plugin]]\nname = \"Bad Name\"\nkind = \"filter\"\nruntime = \"lua\"\npath = \"x\"\n");
    assert!(err.starts_with("plugins: "), "{err}");
    assert!(err.contains("plugins.plugin[Bad Name].name"), "{err}");
}
