//! Session storage: the `.sessions/` directory layout, atomic JSON records and
//! locks. Nothing else in the program builds paths inside a session directory.
//!
//! ```text
//! .sessions/sess_0123456789ab/
//!   metadata.json  state.json  profile.json  history.log
//!   tmp/ home/     the session's private /tmp and $HOME
//!   holder.sock    the holder's control socket (never visible in the jail)
//!   exec.lock      serializes execs;  meta.lock  guards metadata updates
//! ```

pub mod atomic;
pub mod id;
pub mod lock;
pub mod records;

pub use atomic::{write_atomic, write_json_atomic};
pub use id::SessionId;
pub use lock::FileLock;
pub use records::{HistoryEntry, HolderRecord, Metadata, ShellState, State, Status};

use anyhow::{anyhow, bail, Context, Result};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The sessions directory (`--sessions-dir`, default `./.sessions`).
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens an existing sessions directory; `create` makes it first (for `start`).
    pub fn open(dir: &Path, create: bool) -> Result<Store> {
        if create {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("cannot create sessions directory {}", dir.display()))?;
        }
        let meta = match fs::metadata(dir) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => bail!(
                "Sessions directory {} does not exist (start a session first, or pass --sessions-dir)",
                dir.display()
            ),
            Err(e) => bail!("Cannot access sessions directory {}: {e}", dir.display()),
        };
        if !meta.is_dir() {
            bail!("Sessions directory {} is not a directory", dir.display());
        }
        let root = fs::canonicalize(dir)
            .with_context(|| format!("cannot resolve sessions directory {}", dir.display()))?;
        Ok(Store { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of `id`, whether or not it exists.
    pub fn session(&self, id: &SessionId) -> SessionDir {
        SessionDir {
            id: id.clone(),
            dir: self.root.join(id.as_str()),
        }
    }

    /// The directory of an existing session, or the error users see for unknown ids.
    pub fn existing(&self, id: &SessionId) -> Result<SessionDir> {
        let session = self.session(id);
        match fs::symlink_metadata(&session.dir) {
            Ok(m) if m.is_dir() => Ok(session),
            Ok(_) => bail!(
                "Session {id} not found ({} is not a directory)",
                session.dir.display()
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => bail!("Session {id} not found"),
            // Say what is wrong (usually a permission problem) rather than
            // pretending the session does not exist.
            Err(e) => bail!("Cannot access session {id} in {}: {e}", self.root.display()),
        }
    }

    /// Creates the directory of a brand-new session with a fresh id.
    pub fn create_session(&self) -> Result<SessionDir> {
        for _ in 0..16 {
            let id = SessionId::generate().context("cannot read random bytes for a session id")?;
            let session = self.session(&id);
            match fs::DirBuilder::new().mode(0o700).create(&session.dir) {
                Ok(()) => {
                    for sub in ["tmp", "home"] {
                        fs::DirBuilder::new()
                            .mode(0o700)
                            .create(session.dir.join(sub))
                            .with_context(|| {
                                format!("cannot create {}/{sub}", session.dir.display())
                            })?;
                    }
                    return Ok(session);
                }
                // An id is never reused: on the (astronomically rare) clash, draw again.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(anyhow!(e)).with_context(|| {
                        format!("cannot create a session in {}", self.root.display())
                    })
                }
            }
        }
        bail!("could not find an unused session id")
    }

    /// Every entry of the sessions directory that has the shape of a session id, sorted.
    pub fn list_ids(&self) -> Result<Vec<SessionId>> {
        let mut ids = Vec::new();
        let entries = fs::read_dir(&self.root)
            .with_context(|| format!("cannot read sessions directory {}", self.root.display()))?;
        for entry in entries {
            let entry = entry?;
            if let Some(name) = entry.file_name().to_str() {
                if SessionId::is_valid(name) {
                    ids.push(SessionId::parse(name).map_err(|e| anyhow!(e))?);
                }
            }
        }
        ids.sort();
        Ok(ids)
    }
}

/// Paths of one session's files.
#[derive(Debug, Clone)]
pub struct SessionDir {
    pub id: SessionId,
    pub dir: PathBuf,
}

impl SessionDir {
    pub fn metadata_path(&self) -> PathBuf {
        self.dir.join("metadata.json")
    }
    pub fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    pub fn profile_path(&self) -> PathBuf {
        self.dir.join("profile.json")
    }
    pub fn history_path(&self) -> PathBuf {
        self.dir.join("history.log")
    }
    pub fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }
    pub fn home_dir(&self) -> PathBuf {
        self.dir.join("home")
    }
    pub fn root_mount_point(&self) -> PathBuf {
        self.dir.join("root")
    }
    pub fn socket_name(&self) -> &'static str {
        "holder.sock"
    }
    pub fn holder_log_path(&self) -> PathBuf {
        self.dir.join("holder.log")
    }

    /// Serializes execs of this session; held for the whole run.
    pub fn lock_exec(&self) -> Result<FileLock> {
        FileLock::exclusive(&self.dir.join("exec.lock"))
            .with_context(|| format!("cannot lock session {}", self.id))
    }

    /// Guards read-modify-write of metadata.json; held briefly.
    pub fn lock_metadata(&self) -> Result<FileLock> {
        FileLock::exclusive(&self.dir.join("meta.lock"))
            .with_context(|| format!("cannot lock metadata of session {}", self.id))
    }

    pub fn read_metadata(&self) -> Result<Metadata> {
        read_json(&self.metadata_path(), &self.id)
    }
    pub fn write_metadata(&self, meta: &Metadata) -> Result<()> {
        write_json_atomic(&self.metadata_path(), meta)
            .with_context(|| format!("cannot write {}", self.metadata_path().display()))
    }
    pub fn read_state(&self) -> Result<State> {
        read_json(&self.state_path(), &self.id)
    }
    pub fn write_state(&self, state: &State) -> Result<()> {
        write_json_atomic(&self.state_path(), state)
            .with_context(|| format!("cannot write {}", self.state_path().display()))
    }

    /// Appends one line to history.log. `O_APPEND` writes of one buffer are
    /// not interleaved with other appends, and the log is never rewritten.
    pub fn append_history(&self, entry: &HistoryEntry) -> Result<()> {
        let mut line = serde_json::to_vec(entry)?;
        line.push(b'\n');
        let mut file = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(self.history_path())
            .with_context(|| format!("cannot open {}", self.history_path().display()))?;
        file.write_all(&line)
            .with_context(|| format!("cannot append to {}", self.history_path().display()))
    }
}

/// Reads a session JSON file, turning every failure into a sentence that names the file.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path, id: &SessionId) -> Result<T> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            bail!("Session {id} is damaged: {} is missing", path.display())
        }
        Err(e) => bail!("Cannot read {}: {e}", path.display()),
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        anyhow!(
            "Session {id} is corrupt: {} is not valid: {e}",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_distinct_sessions_with_private_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s"), true).unwrap();
        let a = store.create_session().unwrap();
        let b = store.create_session().unwrap();
        assert_ne!(a.id, b.id);
        assert!(a.tmp_dir().is_dir() && a.home_dir().is_dir());
        assert_eq!(store.list_ids().unwrap().len(), 2);
    }

    #[test]
    fn missing_sessions_dir_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = Store::open(&dir.path().join("nope"), false).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    #[test]
    fn corrupt_json_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let s = store.create_session().unwrap();
        fs::write(s.metadata_path(), b"{not json").unwrap();
        let err = s.read_metadata().unwrap_err().to_string();
        assert!(
            err.contains("corrupt") && err.contains("metadata.json"),
            "{err}"
        );
    }

    #[test]
    fn list_ignores_foreign_entries() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        fs::create_dir(dir.path().join("not-a-session")).unwrap();
        fs::write(dir.path().join("sess_zz"), b"").unwrap();
        assert!(store.list_ids().unwrap().is_empty());
    }
}
