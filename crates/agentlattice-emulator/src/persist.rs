//! Optional persistence: the whole state (hashes only) as one JSON file, replaced atomically
//! (temporary file in the same directory, `fsync`, `rename`, `fsync` of the directory).

use std::io::Write;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::error::Error;
use crate::state::{PersistedState, State};

pub(crate) struct Persister {
    path: PathBuf,
    /// Generation of the state last written; held while writing, so writes never interleave.
    written: Mutex<Option<u64>>,
    pub notify: tokio::sync::Notify,
}

/// Reads the state file; `Ok(None)` when it does not exist yet.
pub(crate) fn load(path: &Path) -> Result<Option<State>, Error> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(Error::StateIo {
                path: path.to_owned(),
                source,
            });
        }
    };
    let persisted: PersistedState =
        serde_json::from_slice(&bytes).map_err(|e| Error::StateFormat {
            path: path.to_owned(),
            reason: format!("not a state file: {e}"),
        })?;
    State::from_persisted(persisted)
        .map(Some)
        .map_err(|reason| Error::StateFormat {
            path: path.to_owned(),
            reason,
        })
}

impl Persister {
    pub fn new(path: PathBuf) -> Self {
        Persister {
            path,
            written: Mutex::new(None),
            notify: tokio::sync::Notify::new(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the state if it changed since the last write. Blocking: call from
    /// `spawn_blocking` or at shutdown. The state lock is held only to clone the state.
    pub fn save(&self, state: &Mutex<State>) -> Result<bool, Error> {
        let mut written = self.written.lock();
        let (generation, data) = {
            let s = state.lock();
            if *written == Some(s.generation()) {
                return Ok(false);
            }
            (s.generation(), s.to_persisted())
        };
        let bytes = serde_json::to_vec_pretty(&data).map_err(|e| Error::StateFormat {
            path: self.path.clone(),
            reason: format!("cannot serialize: {e}"),
        })?;
        write_atomic(&self.path, &bytes).map_err(|source| Error::StateIo {
            path: self.path.clone(),
            source,
        })?;
        *written = Some(generation);
        Ok(true)
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state.json".to_owned());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // Make the rename itself durable (best effort: not every platform can open a directory).
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
