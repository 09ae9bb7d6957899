//! Loading a component's configuration: built-in defaults, then the file,
//! then the environment, then `validate()`.
//!
//! The file's name decides its syntax: `*.toml` is FerroMQ's own format,
//! `*.properties` and `*.conf` are RocketMQ properties files with RocketMQ's
//! key names (see [`crate::rocketmq`]).
//!
//! The environment is read in two parts, lowest precedence first:
//! 1. RocketMQ's `NAMESRV_ADDR` (broker only), `;`-separated as in RocketMQ;
//! 2. `FERROMQ_NAMESRV_*` / `FERROMQ_BROKER_*`: the rest of the name is the
//!    key within the component's section, with `__` between nesting levels
//!    (`FERROMQ_BROKER_STORE__FLUSH_DISK_TYPE=SYNC_FLUSH` sets
//!    `broker.store.flush_disk_type`), except that a first level of
//!    `TELEMETRY` addresses the `[telemetry]` section
//!    (`FERROMQ_BROKER_TELEMETRY__LOG_LEVEL=debug`).
//!
//! Environment values are strings; figment's lossy extraction turns `0`,
//! `true` and the like into numbers and booleans where the field wants one,
//! so `FERROMQ_BROKER_BROKER_NAME=123` still gives the string `"123"`.
//!
//! Every key from the file or from a `FERROMQ_` variable that matches no
//! field becomes a [`ConfigWarning`]; loading itself succeeds.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::Path;

use figment::providers::Serialized;
use figment::value::{Dict, Value};
use figment::Figment;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::file::{BrokerFile, ClientFile, ControllerFile, NamesrvFile};
use crate::layer::{self, Layer};
use crate::rocketmq::{self, Table};
use crate::warning::{closest, ConfigWarning, Origin, WarningKind};

/// RocketMQ's variable for the name-server list (`MixAll.NAMESRV_ADDR_ENV`).
pub const NAMESRV_ADDR_ENV: &str = "NAMESRV_ADDR";

/// A loaded, validated configuration and the settings that had no effect.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded<T> {
    /// The validated configuration.
    pub config: T,
    /// Unknown or unimplemented keys, in the order of the layers (file
    /// first), for the binary to log once telemetry is up.
    pub warnings: Vec<ConfigWarning>,
}

/// Loads the name server's configuration from `path` (if any) and the
/// process environment.
///
/// # Errors
///
/// See [`load_namesrv_with_env`].
pub fn load_namesrv(path: Option<&Path>) -> Result<Loaded<NamesrvFile>> {
    load_namesrv_with_env(path, std::env::vars_os())
}

/// [`load_namesrv`] with the environment given as `(name, value)` pairs, so
/// tests need not touch the process environment.
///
/// # Errors
///
/// [`Error::Read`], [`Error::UnknownFormat`], [`Error::Toml`],
/// [`Error::PropertiesSyntax`] or [`Error::Property`] for the file;
/// [`Error::EnvNotUnicode`] for a `FERROMQ_NAMESRV_` variable;
/// [`Error::Value`] for a value of the wrong type; [`Error::Invalid`] when
/// validation fails.
pub fn load_namesrv_with_env<I, K, V>(path: Option<&Path>, env: I) -> Result<Loaded<NamesrvFile>>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    load(path, env)
}

/// Loads the broker's configuration from `path` (if any) and the process
/// environment, including RocketMQ's `NAMESRV_ADDR`.
///
/// # Errors
///
/// See [`load_broker_with_env`].
pub fn load_broker(path: Option<&Path>) -> Result<Loaded<BrokerFile>> {
    load_broker_with_env(path, std::env::vars_os())
}

/// [`load_broker`] with the environment given as `(name, value)` pairs, so
/// tests need not touch the process environment.
///
/// # Errors
///
/// As [`load_namesrv_with_env`], for `FERROMQ_BROKER_` variables and
/// `NAMESRV_ADDR`.
pub fn load_broker_with_env<I, K, V>(path: Option<&Path>, env: I) -> Result<Loaded<BrokerFile>>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    load(path, env)
}

/// Loads a controller's configuration from `path` (if any) and the process
/// environment (`FERROMQ_CONTROLLER_*`).
///
/// # Errors
///
/// See [`load_controller_with_env`].
pub fn load_controller(path: Option<&Path>) -> Result<Loaded<ControllerFile>> {
    load_controller_with_env(path, std::env::vars_os())
}

/// [`load_controller`] with the environment given as `(name, value)` pairs.
///
/// # Errors
///
/// As [`load_namesrv_with_env`], for `FERROMQ_CONTROLLER_` variables.
pub fn load_controller_with_env<I, K, V>(path: Option<&Path>, env: I) -> Result<Loaded<ControllerFile>>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    load(path, env)
}

/// Loads a client's configuration from `path` (if any) and the process
/// environment (`FERROMQ_CLIENT_*` and RocketMQ's `NAMESRV_ADDR`).
///
/// # Errors
///
/// See [`load_client_with_env`].
pub fn load_client(path: Option<&Path>) -> Result<Loaded<ClientFile>> {
    load_client_with_env(path, std::env::vars_os())
}

/// [`load_client`] with the environment given as `(name, value)` pairs.
///
/// # Errors
///
/// As [`load_namesrv_with_env`], for `FERROMQ_CLIENT_` variables and
/// `NAMESRV_ADDR`.
pub fn load_client_with_env<I, K, V>(path: Option<&Path>, env: I) -> Result<Loaded<ClientFile>>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    load(path, env)
}

/// What the loader needs to know about a file-level struct.
trait Component: Default + Serialize + DeserializeOwned {
    /// The component's own section, which unprefixed environment keys address.
    const SECTION: &'static str;
    const ENV_PREFIX: &'static str;
    /// The dotted key RocketMQ's `NAMESRV_ADDR` sets, if the component reads it.
    const NAMESRV_ADDR_KEY: Option<&'static str>;
    const ROCKETMQ: &'static Table;

    fn validate(&self) -> Result<()>;
}

impl Component for NamesrvFile {
    const SECTION: &'static str = "namesrv";
    const ENV_PREFIX: &'static str = "FERROMQ_NAMESRV_";
    const NAMESRV_ADDR_KEY: Option<&'static str> = None;
    const ROCKETMQ: &'static Table = &rocketmq::NAMESRV;

    fn validate(&self) -> Result<()> {
        NamesrvFile::validate(self)
    }
}

impl Component for BrokerFile {
    const SECTION: &'static str = "broker";
    const ENV_PREFIX: &'static str = "FERROMQ_BROKER_";
    const NAMESRV_ADDR_KEY: Option<&'static str> = Some("broker.namesrv_addr");
    const ROCKETMQ: &'static Table = &rocketmq::BROKER;

    fn validate(&self) -> Result<()> {
        BrokerFile::validate(self)
    }
}

impl Component for ControllerFile {
    const SECTION: &'static str = "controller";
    const ENV_PREFIX: &'static str = "FERROMQ_CONTROLLER_";
    const NAMESRV_ADDR_KEY: Option<&'static str> = None;
    const ROCKETMQ: &'static Table = &rocketmq::CONTROLLER;

    fn validate(&self) -> Result<()> {
        ControllerFile::validate(self)
    }
}

impl Component for ClientFile {
    const SECTION: &'static str = "client";
    const ENV_PREFIX: &'static str = "FERROMQ_CLIENT_";
    const NAMESRV_ADDR_KEY: Option<&'static str> = Some("client.namesrv_addr");
    const ROCKETMQ: &'static Table = &rocketmq::CLIENT;

    fn validate(&self) -> Result<()> {
        ClientFile::validate(self)
    }
}

/// The section every `FERROMQ_<COMPONENT>_TELEMETRY__*` variable addresses.
const TELEMETRY: &str = "telemetry";

fn load<T, I, K, V>(path: Option<&Path>, env: I) -> Result<Loaded<T>>
where
    T: Component,
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let schema = schema::<T>()?;
    let mut warnings = Vec::new();
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    if let Some(path) = path {
        let (dict, file_warnings) = read_file::<T>(path, &schema)?;
        warnings.extend(file_warnings);
        figment = figment.merge(Layer::file(path, dict));
    }
    let env = read_env::<T, _, _, _>(env, &schema)?;
    warnings.extend(env.warnings);
    for layer in env.layers {
        figment = figment.merge(layer);
    }
    let config: T = figment.extract_lossy().map_err(Error::from_figment)?;
    config.validate()?;
    Ok(Loaded { config, warnings })
}

/// Every known key: the defaults serialised to a dictionary. Option fields
/// serialise as empty values, so they are present too.
fn schema<T: Component>() -> Result<Dict> {
    let value = Value::serialize(T::default()).map_err(Error::from_figment)?;
    Ok(value.into_dict().unwrap_or_default())
}

fn read_file<T: Component>(path: &Path, schema: &Dict) -> Result<(Dict, Vec<ConfigWarning>)> {
    let read_error = |source| Error::Read { path: path.to_owned(), source };
    let extension = path.extension().and_then(OsStr::to_str).map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("toml") => {
            let text = std::fs::read_to_string(path).map_err(read_error)?;
            let dict: Dict = toml::from_str(&text).map_err(|source| Error::Toml { path: path.to_owned(), source })?;
            let mut warnings = Vec::new();
            unknown_in_file(schema, &dict, &mut Vec::new(), path, &mut warnings);
            Ok((dict, warnings))
        }
        Some("properties" | "conf") => {
            let bytes = std::fs::read(path).map_err(read_error)?;
            // Java's Properties.load(InputStream), which RocketMQ uses, reads
            // ISO-8859-1. Modern files are UTF-8, so try that first.
            let text =
                String::from_utf8(bytes).unwrap_or_else(|e| e.into_bytes().iter().map(|&b| char::from(b)).collect());
            rocketmq::to_dict(path, &text, T::ROCKETMQ)
        }
        _ => Err(Error::UnknownFormat { path: path.to_owned() }),
    }
}

/// Walks a file's dictionary against the schema, warning about each key
/// that has no field. An unknown table is reported once, not per key inside.
fn unknown_in_file<'a>(
    schema: &Dict,
    dict: &'a Dict,
    parent: &mut Vec<&'a str>,
    path: &Path,
    warnings: &mut Vec<ConfigWarning>,
) {
    let Some(level) = lookup(schema, parent) else {
        return;
    };
    for (key, value) in dict {
        match level.get(key) {
            None => {
                let suggestion = suggest(schema, parent, key).map(|found| {
                    // A sibling is named as is; a key in another section by
                    // its full path, since the section is what is wrong.
                    match found.split_last() {
                        Some((name, found_parent)) if found_parent == &parent[..] => name.clone(),
                        _ => found.join("."),
                    }
                });
                let mut dotted = parent.join(".");
                if !dotted.is_empty() {
                    dotted.push('.');
                }
                dotted.push_str(key);
                warnings.push(ConfigWarning {
                    key: dotted,
                    origin: Origin::File(path.to_owned()),
                    kind: WarningKind::UnknownKey { suggestion },
                });
            }
            Some(Value::Dict(..)) => {
                // A scalar where a table belongs is a type error, which
                // extraction reports.
                if let Some(inner) = value.as_dict() {
                    parent.push(key);
                    unknown_in_file(schema, inner, parent, path, warnings);
                    parent.pop();
                }
            }
            // A known leaf: anything below it is the value's business.
            Some(_) => {}
        }
    }
}

/// The table at `keys` in the schema.
fn lookup<'s>(schema: &'s Dict, keys: &[&str]) -> Option<&'s Dict> {
    keys.iter().try_fold(schema, |table, key| table.get(*key)?.as_dict())
}

/// The full path of what an unknown `key` in the table at `parent` probably
/// meant.
fn suggest(schema: &Dict, parent: &[&str], key: &str) -> Option<Vec<String>> {
    // The exact name elsewhere means the key was put in the wrong section.
    if let Some(found) = find_key(schema, key) {
        return Some(found);
    }
    let level = lookup(schema, parent)?;
    let name = closest(key, level.keys().map(String::as_str))?;
    Some(parent.iter().copied().chain([name]).map(str::to_owned).collect())
}

/// The path of the first key named `key`, depth first.
fn find_key(table: &Dict, key: &str) -> Option<Vec<String>> {
    if table.contains_key(key) {
        return Some(vec![key.to_owned()]);
    }
    table.iter().find_map(|(name, value)| {
        let mut path = find_key(value.as_dict()?, key)?;
        path.insert(0, name.clone());
        Some(path)
    })
}

/// The environment's layers (lowest precedence first) and warnings.
struct EnvLayers {
    layers: Vec<Layer>,
    warnings: Vec<ConfigWarning>,
}

fn read_env<T, I, K, V>(env: I, schema: &Dict) -> Result<EnvLayers>
where
    T: Component,
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let mut namesrv_addr = None;
    let mut ours = Vec::new();
    for (name, value) in env {
        // A name that is not UTF-8 cannot be one of ours.
        let Some(name) = name.as_ref().to_str() else {
            continue;
        };
        let is_namesrv_addr = T::NAMESRV_ADDR_KEY.is_some() && name == NAMESRV_ADDR_ENV;
        if !is_namesrv_addr && !name.starts_with(T::ENV_PREFIX) {
            continue;
        }
        let value = value.as_ref().to_str().ok_or_else(|| Error::EnvNotUnicode { var: name.to_owned() })?.to_owned();
        if is_namesrv_addr {
            namesrv_addr = Some(value);
        } else {
            ours.push((name.to_owned(), value));
        }
    }
    // Deterministic layering and warning order, whatever order the OS uses.
    ours.sort();

    let mut layers = Vec::new();
    if let (Some(key), Some(value)) = (T::NAMESRV_ADDR_KEY, namesrv_addr) {
        let mut dict = Dict::new();
        layer::insert(&mut dict, key, Value::from(value));
        let vars = BTreeMap::from([(key.to_owned(), NAMESRV_ADDR_ENV.to_owned())]);
        layers.push(Layer::env(dict, vars));
    }

    let mut dict = Dict::new();
    let mut vars = BTreeMap::new();
    let mut warnings = Vec::new();
    for (name, value) in ours {
        let keys = env_keys::<T>(&name, schema);
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        if let Some(suggestion) = unknown_env_key(schema, &keys) {
            warnings.push(ConfigWarning {
                key: keys.join("."),
                origin: Origin::Env(name.clone()),
                kind: WarningKind::UnknownKey { suggestion: suggestion.map(|path| env_var::<T>(&path)) },
            });
        }
        layer::insert_path(&mut dict, &keys, Value::from(value));
        vars.insert(keys.join("."), name);
    }
    layers.push(Layer::env(dict, vars));
    Ok(EnvLayers { layers, warnings })
}

/// `FERROMQ_BROKER_STORE__FLUSH_DISK_TYPE` -> `[broker, store, flush_disk_type]`.
fn env_keys<T: Component>(name: &str, schema: &Dict) -> Vec<String> {
    let rest = &name[T::ENV_PREFIX.len()..];
    let mut keys: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
    // `FERROMQ_<COMPONENT>_TELEMETRY__…` (and any other top-level section, such as a
    // name server's `controller`) addresses that section; the rest the component's.
    let own = schema.get(T::SECTION).and_then(Value::as_dict);
    let first = keys.first().map(String::as_str).unwrap_or_default();
    let top_level = first == TELEMETRY
        || (first != T::SECTION
            && schema.get(first).is_some_and(|v| v.as_dict().is_some())
            && own.is_none_or(|d| !d.contains_key(first)));
    if !top_level {
        keys.insert(0, T::SECTION.to_owned());
    }
    keys
}

/// The inverse of [`env_keys`], to suggest a variable name.
fn env_var<T: Component>(keys: &[String]) -> String {
    let within = match keys.split_first() {
        Some((first, rest)) if first == T::SECTION => rest,
        _ => keys,
    };
    format!("{}{}", T::ENV_PREFIX, within.join("__").to_ascii_uppercase())
}

/// `None` if `keys` names a known field (or lies below one); otherwise the
/// suggestion, if any, for the first unknown level.
fn unknown_env_key(schema: &Dict, keys: &[&str]) -> Option<Option<Vec<String>>> {
    let mut level = schema;
    for (depth, key) in keys.iter().enumerate() {
        match level.get(*key) {
            None => return Some(suggest(schema, &keys[..depth], key)),
            Some(Value::Dict(_, inner)) => level = inner,
            Some(_) => return None,
        }
    }
    // The variable names a whole table (`FERROMQ_BROKER_STORE=...`); the
    // type error from extraction explains that better than a warning.
    None
}
