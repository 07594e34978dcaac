//! Session storage: the `.sessions/` directory layout, atomic JSON records and
//! locks. Nothing else in the program builds paths inside a session directory.
//!
//! ```text
//! .sessions/sess_0123456789ab/
//!   metadata.json  state.json  profile.json  history.log
//!   tmp/ home/     the session's private /tmp and $HOME
//!   exec.lock      serializes execs;  meta.lock  guards metadata updates
//! ```
//!
//! What delta-sessions acts on (the profile given at start, the holder, its
//! socket, the identities of these directories) is kept apart, in the
//! per-user state dir of [`trusted`]; [`open_session`] checks a session
//! against it before anything else touches the session.

pub mod atomic;
pub mod id;
pub mod lock;
pub mod records;
pub mod trusted;

pub use atomic::{write_atomic, write_json_atomic};
pub use id::SessionId;
pub use lock::FileLock;
pub use records::{HistoryEntry, HolderRecord, Metadata, ShellState, State, Status};
pub use trusted::{Anchor, ControlDir, StateDir};

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

/// A session checked against its trusted record, ready to be acted on.
#[derive(Debug)]
pub struct Opened {
    pub store: Store,
    pub session: SessionDir,
    pub control: ControlDir,
    pub anchor: Anchor,
}

/// Opens session `id` of `sessions_dir` for a command that acts on it.
///
/// The session must be recorded in the state dir, and the sessions dir and
/// session dir found at these paths now must be the very directories made at
/// `start` (same identity): a directory put in their place (by renaming a
/// parent, or by changing a symlink on the way) is refused, whatever files
/// it holds.
pub fn open_session(sessions_dir: &Path, id: &SessionId) -> Result<Opened> {
    let store = Store::open(sessions_dir, false)?;
    let session = store.existing(id)?;
    let state = StateDir::open(false)?;
    let found = match &state {
        Some(s) => {
            let control = s.session(id.as_str());
            control.anchor()?.map(|a| (control, a))
        }
        None => None,
    };
    let Some((control, anchor)) = found else {
        bail!(
            "Session {id} is not recorded in delta-sessions' state dir {} (it was started by \
             another user, with another {}, or by an older delta-sessions); it cannot be used: \
             remove {} by hand",
            StateDir::location().display(),
            trusted::STATE_DIR_ENV,
            session.dir.display()
        );
    };
    let sessions_ok = trusted::FileId::stat(&store.root).ok() == Some(anchor.sessions_dir_id);
    let session_ok = trusted::FileId::lstat(&session.dir).ok() == Some(anchor.session_dir_id);
    if anchor.session_id != id.as_str() || !sessions_ok || !session_ok {
        bail!(
            "Session {id}: {} is not the directory the session was started in ({}): it was moved \
             or replaced, or a symlink on the way now points elsewhere; refusing to act on it",
            session.dir.display(),
            anchor.sessions_dir.join(id.as_str()).display()
        );
    }
    Ok(Opened {
        store,
        session,
        control,
        anchor,
    })
}

/// The absolute, symlink-free path that `path` names or would name once
/// created: its deepest existing ancestor resolved, the rest appended.
pub fn resolve_would_be(path: &Path) -> Result<PathBuf> {
    use std::path::Component;
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .context("cannot read the current directory")?
            .join(path)
    };
    let mut rest = Vec::new();
    let mut base = abs.as_path();
    loop {
        match fs::canonicalize(base) {
            Ok(real) => {
                let mut out = real;
                for c in rest.iter().rev() {
                    out.push(c);
                }
                return Ok(out);
            }
            Err(_) => {
                let (Some(parent), Some(name)) = (base.parent(), base.file_name()) else {
                    bail!("cannot resolve {}", path.display());
                };
                if matches!(
                    Path::new(name).components().next(),
                    Some(Component::ParentDir | Component::CurDir)
                ) {
                    bail!("cannot resolve {}", path.display());
                }
                rest.push(name.to_os_string());
                base = parent;
            }
        }
    }
}

/// Removes a directory tree that a jail wrote into, whatever modes it left:
/// a directory it made unreadable (mode 000) is opened up first. Symlinks are
/// removed, never followed.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    open_up(path);
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Gives the owner rwx on every directory below `dir` (not through symlinks).
fn open_up(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    // Through a descriptor opened without following a symlink, so a link
    // swapped in cannot make us change the mode of something else.
    // (An O_PATH descriptor needs no permission on the directory itself;
    // chmod through its /proc/self/fd link acts on exactly that directory.)
    if let Ok(f) = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)
    {
        use std::os::fd::AsRawFd;
        let link = format!("/proc/self/fd/{}", f.as_raw_fd());
        let _ = fs::set_permissions(link, fs::Permissions::from_mode(0o700));
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                open_up(&e.path());
            }
        }
    }
}

/// Reads a session JSON file, turning every failure into a sentence that names the file.
/// A record that is not a regular file (a FIFO, a device, a symlink) is
/// refused without blocking on it.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path, id: &SessionId) -> Result<T> {
    const MAX_JSON: u64 = 256 << 20;
    let bytes = match trusted::read_regular(path, MAX_JSON) {
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
