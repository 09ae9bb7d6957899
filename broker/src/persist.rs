//! Loading and saving the broker's JSON state files under `<store>/config/`.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

/// Reads `path` (or its `.bak`); `None` when neither exists. Java-written files with
/// fastjson's bare numeric keys are accepted.
///
/// # Errors
/// The file cannot be read or parsed.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let bytes = config::persist::read_with_backup(path).map_err(|source| Error::Read { path: path.into(), source })?;
    match bytes {
        None => Ok(None),
        Some(b) => {
            remoting::json::from_slice(&b).map(Some).map_err(|source| Error::Parse { path: path.into(), source })
        }
    }
}

/// Serialises saves: two writers of one file (say, two groups auto-created at once)
/// would share its temporary file, and an older snapshot could land last. Saves are
/// rare, so one lock for every state file is enough.
static SAVING: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

/// Writes what `snapshot` returns as pretty JSON, atomically. The snapshot is taken
/// under the save lock, so the file always ends with the newest state.
///
/// # Errors
/// Serialisation or I/O failure.
pub fn save<T: Serialize>(path: &Path, snapshot: impl FnOnce() -> T) -> Result<()> {
    let _one_at_a_time = SAVING.lock();
    let json = serde_json::to_vec_pretty(&snapshot()).map_err(|source| Error::Parse { path: path.into(), source })?;
    config::persist::write_atomic(path, &json).map_err(|source| Error::Write { path: path.into(), source })
}
