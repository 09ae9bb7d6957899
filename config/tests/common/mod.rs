//! Helpers shared by the integration tests.

#![allow(dead_code)] // each test crate uses a different subset

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::value::Value;
use serde::Serialize;

/// No environment at all, for tests about files and defaults.
pub const NO_ENV: [(&str, &str); 0] = [];

/// A file under `tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A sample shipped in the crate folder (`config/broker.toml`, ...).
pub fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// Writes `content` to `name` in a fresh temporary directory. Keep the
/// returned guard alive while the file is used.
pub fn temp_file(name: &str, content: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, content).unwrap();
    (dir, path)
}

/// Every leaf of `value` by dotted path, so two configs can be compared field
/// by field with the key in the failure message.
pub fn leaves<T: Serialize>(value: &T) -> BTreeMap<String, Value> {
    fn walk(prefix: &str, value: Value, out: &mut BTreeMap<String, Value>) {
        match value {
            Value::Dict(_, dict) => {
                for (key, value) in dict {
                    let path = if prefix.is_empty() { key } else { format!("{prefix}.{key}") };
                    walk(&path, value, out);
                }
            }
            leaf => {
                out.insert(prefix.to_owned(), leaf);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", Value::serialize(value).unwrap(), &mut out);
    out
}
