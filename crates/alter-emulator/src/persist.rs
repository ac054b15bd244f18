//! Optional persistence: the whole state (hashes only) as one JSON file, replaced atomically
//! (a temporary file in the same directory, `fsync`, `rename`, `fsync` of the directory).

use std::io::Write;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::error::Error;
use crate::state::{PersistedState, State};

pub(crate) struct Persister {
    path: PathBuf,
    /// Generation last written; held while writing, so two writes never interleave.
    written: Mutex<Option<u64>>,
    pub notify: tokio::sync::Notify,
}

/// Reads the state file; `Ok(None)` when there is none yet.
pub(crate) fn load(path: &Path, key_limit: usize) -> Result<Option<State>, Error> {
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
    let format_error = |reason: String| Error::StateFormat {
        path: path.to_owned(),
        reason,
    };
    let persisted: PersistedState = serde_json::from_slice(&bytes)
        .map_err(|e| format_error(format!("not a state file: {e}")))?;
    State::from_persisted(persisted, key_limit)
        .map(Some)
        .map_err(format_error)
}

impl Persister {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            written: Mutex::new(None),
            notify: tokio::sync::Notify::new(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the state if it changed since the last write (blocking; the state lock is held only
    /// to copy the state).
    pub fn save(&self, state: &Mutex<State>) -> Result<bool, Error> {
        let mut written = self.written.lock();
        let (generation, data) = {
            let s = state.lock();
            if *written == Some(s.generation()) {
                return Ok(false);
            }
            (s.generation(), s.to_persisted())
        };
        let io = |source| Error::StateIo {
            path: self.path.clone(),
            source,
        };
        let bytes = serde_json::to_vec_pretty(&data).map_err(|e| io(std::io::Error::other(e)))?;
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_owned);
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            self.path
                .file_name()
                .map_or("state".into(), |n| n.to_string_lossy()),
            std::process::id()
        ));
        let write = || -> std::io::Result<()> {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut f = options.open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            // Make the rename durable (best effort: not every platform opens directories).
            if let Ok(d) = std::fs::File::open(&dir) {
                let _ = d.sync_all();
            }
            Ok(())
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(e));
        }
        *written = Some(generation);
        Ok(true)
    }
}
