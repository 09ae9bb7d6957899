//! [`Layer`]: one source of settings (a file or the environment) as a figment
//! provider, plus the dictionary helpers that build one.
//!
//! We build the dictionaries ourselves instead of using figment's `Toml` and
//! `Env` providers because we need them twice: once to look for unknown keys
//! (figment's extraction skips them silently) and once to merge. A layer also
//! carries a key interpolator so that figment's errors name the key the way
//! the operator wrote it: `broker.listen_port` for a file,
//! `FERROMQ_BROKER_LISTEN_PORT` for the environment.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider, Source};

/// A dictionary of settings and where it came from.
pub(crate) struct Layer {
    pub dict: Dict,
    metadata: Metadata,
}

impl Layer {
    /// Settings read from `path`; errors show dotted keys and the path.
    pub(crate) fn file(path: &Path, dict: Dict) -> Self {
        let metadata = Metadata::from(path.display().to_string(), Source::File(path.to_owned()))
            .interpolater(|_: &Profile, keys: &[&str]| keys.join("."));
        Self { dict, metadata }
    }

    /// Settings read from environment variables; `vars` maps each dotted key
    /// to the variable that set it, so errors name the variable.
    pub(crate) fn env(dict: Dict, vars: BTreeMap<String, String>) -> Self {
        let vars = Arc::new(vars);
        let metadata = Metadata::named("environment").interpolater(move |_: &Profile, keys: &[&str]| {
            let dotted = keys.join(".");
            vars.get(&dotted).cloned().unwrap_or(dotted)
        });
        Self { dict, metadata }
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> figment::Result<Map<Profile, Dict>> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

/// Sets `dotted` (e.g. `broker.store.max_message_size`) to `value`, creating
/// intermediate tables. A non-table in the way is replaced: the later setting
/// wins, as it would in a file.
pub(crate) fn insert(dict: &mut Dict, dotted: &str, value: Value) {
    let keys: Vec<&str> = dotted.split('.').collect();
    insert_path(dict, &keys, value);
}

/// [`insert`] with the path already split (environment keys may contain
/// anything, including dots).
pub(crate) fn insert_path(dict: &mut Dict, keys: &[&str], value: Value) {
    let Some((last, parents)) = keys.split_last() else {
        return;
    };
    let mut table = dict;
    for key in parents {
        let slot = table.entry((*key).to_owned()).or_insert_with(|| Value::from(Dict::new()));
        if slot.as_dict().is_none() {
            *slot = Value::from(Dict::new());
        }
        let Value::Dict(_, inner) = slot else {
            return; // unreachable: replaced by a table just above
        };
        table = inner;
    }
    table.insert((*last).to_owned(), value);
}

/// The value at `dotted`, if every table on the way exists.
pub(crate) fn get<'a>(dict: &'a Dict, dotted: &str) -> Option<&'a Value> {
    let mut keys = dotted.split('.');
    let mut value = dict.get(keys.next()?)?;
    for key in keys {
        value = value.as_dict()?.get(key)?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_and_get() {
        let mut dict = Dict::new();
        insert(&mut dict, "a.b.c", Value::from(1u64));
        insert(&mut dict, "a.d", Value::from("x"));
        assert_eq!(get(&dict, "a.b.c"), Some(&Value::from(1u64)));
        assert_eq!(get(&dict, "a.d").and_then(Value::as_str), Some("x"));
        assert_eq!(get(&dict, "a.b.missing"), None);
        // A later, deeper setting replaces a scalar in its way.
        insert(&mut dict, "a.d.e", Value::from(true));
        assert_eq!(get(&dict, "a.d.e"), Some(&Value::from(true)));
    }
}
