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
            pinned: None,
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

    /// Whether a removal killed halfway left something behind.
    pub fn has_removals(&self) -> bool {
        fs::read_dir(&self.root).is_ok_and(|rd| {
            rd.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(REMOVING_PREFIX))
        })
    }

    /// Removes what removals killed halfway left behind.
    pub fn finish_removals(&self) -> Vec<String> {
        let mut failures = Vec::new();
        let Ok(entries) = fs::read_dir(&self.root) else {
            return failures;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            if name.to_string_lossy().starts_with(REMOVING_PREFIX) {
                if let Err(err) = remove_tree(&e.path()) {
                    failures.push(format!("{}: {err}", e.path().display()));
                }
            }
        }
        failures
    }

    /// Every entry of the sessions directory that has the shape of a session id, sorted.
    pub fn list_ids(&self) -> Result<Vec<SessionId>> {
        let mut ids = Vec::new();
        let entries = fs::read_dir(&self.root)
            .with_context(|| format!("cannot read sessions directory {}", self.root.display()))?;
        for entry in entries {
            let entry = entry?;
            // A session is a real directory: a symlink with a session's name
            // is nobody's session, and is never followed.
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
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

/// Longest wait for a session's `meta.lock`, which our processes hold for
/// milliseconds.
pub const META_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Paths of one session's files.
#[derive(Debug, Clone)]
pub struct SessionDir {
    pub id: SessionId,
    /// Where the directory is (for messages, and for the holder, which opens
    /// what it needs there refusing every symlink).
    pub dir: PathBuf,
    /// The directory itself, once [`pin`](Self::pin)ned: the records are
    /// then read and written through it, never through a path that the
    /// session could re-point between two of our steps.
    pinned: Option<std::sync::Arc<std::os::fd::OwnedFd>>,
}

impl SessionDir {
    /// Where the records are reached: through the pinned directory, else
    /// by its path.
    fn base(&self) -> PathBuf {
        match &self.pinned {
            Some(fd) => PathBuf::from(format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(fd.as_ref())
            )),
            None => self.dir.clone(),
        }
    }

    /// Holds on to the directory at `dir`, reached without any symlink and
    /// checked to be `expected`: every later record operation goes through
    /// it, so a session that renames its directory or swaps a symlink into
    /// the path (a Landlock session can write its sessions dir) cannot make
    /// the host write its records anywhere else.
    pub fn pin(&mut self, expected: trusted::FileId) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let fd = crate::jail::mounts::open_path(&self.dir, false)
            .with_context(|| format!("Session {}: cannot open its directory", self.id))?;
        let file = fs::File::from(fd);
        let m = file.metadata()?;
        if m.dev() != expected.dev || m.ino() != expected.ino || !m.is_dir() {
            bail!(
                "Session {}: {} is not the directory the session was started in; refusing to act on it",
                self.id,
                self.dir.display()
            );
        }
        self.pinned = Some(std::sync::Arc::new(file.into()));
        Ok(())
    }

    pub fn metadata_path(&self) -> PathBuf {
        self.base().join("metadata.json")
    }
    pub fn state_path(&self) -> PathBuf {
        self.base().join("state.json")
    }
    pub fn profile_path(&self) -> PathBuf {
        self.base().join("profile.json")
    }
    pub fn history_path(&self) -> PathBuf {
        self.base().join("history.log")
    }
    pub fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }
    pub fn home_dir(&self) -> PathBuf {
        self.dir.join("home")
    }
    pub fn holder_log_path(&self) -> PathBuf {
        self.base().join("holder.log")
    }

    /// Serializes execs of this session; held for the whole run.
    pub fn lock_exec(&self) -> Result<FileLock> {
        self.lock("exec.lock")
    }

    /// Guards read-modify-write of metadata.json; held briefly, so a wait
    /// past [`META_LOCK_WAIT`] means a process that is not ours holds it.
    pub fn lock_metadata(&self) -> Result<FileLock> {
        self.lock_within("meta.lock", Some(META_LOCK_WAIT))
    }

    /// Takes a lock in the session dir. A session removed while we waited
    /// for it (its lock file unlinked, or its directory gone) is "not found",
    /// never a lock on a file nobody else will ever see.
    fn lock(&self, name: &str) -> Result<FileLock> {
        self.lock_within(name, None)
    }

    fn lock_within(&self, name: &str, limit: Option<std::time::Duration>) -> Result<FileLock> {
        let gone = || anyhow!("Session {} not found (it was removed meanwhile)", self.id);
        let path = self.base().join(name);
        let taken = match limit {
            Some(limit) => FileLock::exclusive_within(&path, limit),
            None => FileLock::exclusive(&path),
        };
        match taken {
            Ok(lock) if lock.is_linked() => Ok(lock),
            Ok(_) => Err(gone()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(gone()),
            Err(e) => Err(anyhow!(e)).with_context(|| format!("cannot lock session {}", self.id)),
        }
    }

    /// Removes the session directory: first renamed out of the way in one
    /// step (so no concurrent command can create a file in it, and a crash
    /// leaves a `.removing-…` entry that `cleanup` finishes), then deleted.
    pub fn remove(&self) -> Result<()> {
        let parent = self.dir.parent().unwrap_or(Path::new("/"));
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let tomb = parent.join(format!(
            "{REMOVING_PREFIX}{}-{}-{nanos}",
            self.id,
            std::process::id()
        ));
        match fs::rename(&self.dir, &tomb) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(anyhow!(e))
                    .with_context(|| format!("cannot remove {}", self.dir.display()))
            }
        }
        remove_tree(&tomb).with_context(|| format!("cannot remove {}", tomb.display()))
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

    /// Counts an exec as it starts (so that this write overlaps with the
    /// command), first settling the count of the execs before it. Returns
    /// the size of history.log, where this exec's line will go.
    ///
    /// `execution_count` and history.log agree after any kill: the count of
    /// an exec is *pending* until its line is written ([`append_history`]);
    /// settling (here, under the exec lock, so no exec of the session is
    /// running) counts the whole lines written since the last settle, drops
    /// a pending exec that never wrote its line (killed, or a full disk), and
    /// cuts off a torn line. `list` reads the same way ([`counted`]).
    ///
    /// [`append_history`]: Self::append_history
    /// [`counted`]: Self::counted
    pub fn count_exec(&self, now: &str) -> Result<u64> {
        let _lock = self.lock_metadata()?;
        let mut meta = self.read_metadata()?;
        let (lines, whole) = self.lines_past(&meta, true)?;
        meta.execution_count = settled(&meta, lines);
        meta.execution_count += 1;
        meta.pending = true;
        meta.history_bytes = Some(whole);
        meta.last_executed_at = Some(now.to_string());
        self.write_metadata(&meta)?;
        Ok(whole)
    }

    /// Opens `holder.log` for appending, never through a symlink and never
    /// blocking on a FIFO. Anything else in its place (a jail that can write
    /// the session dir put it there) is moved aside and a new log begun: a
    /// log is not worth a session that cannot be rebuilt.
    pub fn open_holder_log(&self) -> Result<fs::File> {
        let path = self.holder_log_path();
        let open = || {
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(&path)
        };
        match open() {
            Ok(f) if f.metadata().is_ok_and(|m| m.is_file()) => return Ok(f),
            Ok(_) => {}
            Err(e) if fs::symlink_metadata(&path).is_err() => {
                return Err(anyhow!(e)).context("cannot open holder.log")
            }
            Err(_) => {}
        }
        crate::jail::mounts::move_aside(&path).context("cannot move holder.log aside")?;
        open().context("cannot open holder.log")
    }

    /// Appends the line of the exec counted by [`count_exec`](Self::count_exec)
    /// (`at`: the size it returned) with one `write`; on failure (a full
    /// disk) the file is cut back to `at`, so no torn line stays, and the
    /// next settle drops the count.
    pub fn append_history(&self, at: u64, entry: &HistoryEntry) -> Result<()> {
        let _lock = self.lock_metadata()?;
        let path = self.history_path();
        let mut file = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        if !file.metadata()?.is_file() {
            bail!("{} is not a regular file", path.display());
        }
        let mut line = serde_json::to_vec(entry)?;
        line.push(b'\n');
        crate::fault::point("exec:before-append");
        if let Err(e) = file.write_all(&line) {
            let _ = file.set_len(at);
            return Err(anyhow!(e)).with_context(|| format!("cannot append to {}", path.display()));
        }
        crate::fault::point("exec:after-append");
        Ok(())
    }

    /// The whole lines of history.log past the last settle, and the size up
    /// to the last whole line; `repair` cuts a torn tail off.
    fn lines_past(&self, meta: &Metadata, repair: bool) -> Result<(u64, u64)> {
        use std::io::{Read, Seek, SeekFrom};
        let path = self.history_path();
        let mut file = match fs::OpenOptions::new()
            .read(true)
            .write(repair)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((0, 0)),
            Err(e) => {
                return Err(anyhow!(e)).with_context(|| format!("cannot open {}", path.display()))
            }
        };
        let m = file.metadata()?;
        if !m.is_file() {
            bail!("{} is not a regular file", path.display());
        }
        let size = m.len();
        let from = meta.history_bytes.unwrap_or(size).min(size);
        let mut tail = Vec::new();
        file.seek(SeekFrom::Start(from))?;
        (&mut file)
            .take((size - from).min(64 << 20))
            .read_to_end(&mut tail)?;
        let whole = tail.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let lines = tail[..whole].iter().filter(|&&b| b == b'\n').count() as u64;
        let end = from + whole as u64;
        if repair && end < size {
            file.set_len(end)
                .with_context(|| format!("cannot repair {}", path.display()))?;
        }
        Ok((lines, end))
    }

    /// `execution_count` as the next settle will make it (for `list`): the
    /// execs whose lines are in history.log.
    pub fn counted(&self, meta: &Metadata) -> u64 {
        if meta.history_bytes.is_none() {
            return meta.execution_count;
        }
        match self.lines_past(meta, false) {
            Ok((lines, _)) => settled(meta, lines),
            Err(_) => meta.execution_count,
        }
    }
}

/// The count once `lines` whole lines past the last settle are taken in: a
/// pending exec is already counted, and is dropped if it wrote none.
fn settled(meta: &Metadata, lines: u64) -> u64 {
    if meta.pending {
        (meta.execution_count + lines).saturating_sub(1)
    } else {
        meta.execution_count + lines
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
    // Same directory, at the same path: a moved sessions dir no longer lies
    // where the layout check of later starts looks for it.
    let sessions_ok = trusted::FileId::stat(&store.root).ok() == Some(anchor.sessions_dir_id)
        && store.root == anchor.sessions_dir;
    let session_ok = trusted::FileId::lstat(&session.dir).ok() == Some(anchor.session_dir_id);
    if anchor.session_id != id.as_str() || !sessions_ok || !session_ok {
        bail!(
            "Session {id}: {} is not the directory the session was started in ({}): it was moved \
             or replaced, or a symlink on the way now points elsewhere; refusing to act on it",
            session.dir.display(),
            anchor.sessions_dir.join(id.as_str()).display()
        );
    }
    let mut session = session;
    session.pin(anchor.session_dir_id)?;
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

/// Names of session dirs being removed (see [`SessionDir::remove`]).
pub const REMOVING_PREFIX: &str = ".removing-";

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

/// Gives the owner rwx on every directory below `dir`, walking by
/// descriptors (`openat` relative to the parent, never following a symlink)
/// so that a directory swapped for a link mid-walk cannot turn the walk, or
/// the chmod, onto another tree. Stops at [`MAX_OPEN_UP_DEPTH`]: deeper than
/// that, the removal fails and says so.
fn open_up(dir: &Path) {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return;
    };
    raise_open_files_limit();
    let Ok(parent) = open_dir_at(None, parent, libc::O_PATH) else {
        return;
    };
    let name = PathBuf::from(name);
    // On a thread of its own with a stack for the deepest walk: the main
    // thread's would overflow thousands of levels down.
    let walk = std::thread::Builder::new()
        .stack_size(OPEN_UP_STACK)
        .spawn(move || open_up_at(&parent, &name, 0));
    if let Ok(handle) = walk {
        let _ = handle.join();
    }
}

/// Deep enough for any tree a person makes; each level holds one
/// descriptor while below it (the soft open-files limit is raised for it)
/// and a frame of the walk's own thread, whose stack is sized for it.
const MAX_OPEN_UP_DEPTH: usize = 16_384;
const OPEN_UP_STACK: usize = 256 << 20;

/// Raises the soft limit of open files to the hard one (at most 65536), so
/// that a deep tree can be walked one descriptor per level.
fn raise_open_files_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let want = hard.min(65_536);
        if soft < want {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, want, hard);
        }
    }
}

/// Opens directory `name` relative to the directory `parent` is open on (or
/// a plain path when `None`) without following a symlink in `name`: the
/// parent is reached through its descriptor's `/proc/self/fd` link, which
/// names exactly that directory whatever has been renamed since.
fn open_dir_at(parent: Option<&fs::File>, name: &Path, flags: i32) -> io::Result<fs::File> {
    use std::os::fd::AsRawFd;
    let path = match parent {
        Some(p) => PathBuf::from(format!("/proc/self/fd/{}", p.as_raw_fd())).join(name),
        None => name.to_path_buf(),
    };
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

fn open_up_at(parent: &fs::File, name: &Path, depth: usize) {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if depth > MAX_OPEN_UP_DEPTH || name.components().count() != 1 {
        return;
    }
    // O_PATH needs no permission on the directory itself.
    let Ok(pinned) = open_dir_at(Some(parent), name, libc::O_PATH) else {
        return;
    };
    // chmod through the descriptor's /proc link acts on exactly that directory.
    let link = format!("/proc/self/fd/{}", pinned.as_raw_fd());
    let _ = fs::set_permissions(&link, fs::Permissions::from_mode(0o700));
    let Ok(readable) = open_dir_at(Some(parent), name, 0) else {
        return;
    };
    // The same directory both times, or it was swapped in between.
    match (pinned.metadata(), readable.metadata()) {
        (Ok(a), Ok(b)) if a.dev() == b.dev() && a.ino() == b.ino() => {}
        _ => return,
    }
    drop(pinned);
    let Ok(entries) = fs::read_dir(format!("/proc/self/fd/{}", readable.as_raw_fd())) else {
        return;
    };
    let names: Vec<std::ffi::OsString> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name())
        .collect();
    for n in names {
        open_up_at(&readable, Path::new(&n), depth + 1);
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

    fn entry(n: u64) -> HistoryEntry {
        HistoryEntry {
            timestamp: format!("t{n}"),
            command: "true".into(),
            command_truncated: false,
            exit_code: 0,
            duration_ms: n,
            cwd: "/".into(),
            timed_out: false,
        }
    }

    fn with_metadata(s: &SessionDir) {
        s.write_metadata(&Metadata {
            session_id: s.id.to_string(),
            command: "bash".into(),
            args: vec![],
            created_at: "t0".into(),
            last_executed_at: None,
            status: Status::Active,
            work_dir: "/".into(),
            execution_count: 0,
            profile: "default".into(),
            isolation: None,
            holder: None,
            history_bytes: Some(0),
            pending: false,
            jail_restarts: 0,
            ended_at: None,
        })
        .unwrap();
    }

    fn lines(s: &SessionDir) -> Vec<String> {
        fs::read_to_string(s.history_path())
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn count_and_history_agree_after_any_kill_and_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let s = store.create_session().unwrap();
        with_metadata(&s);
        // A whole exec.
        let at = s.count_exec("t1").unwrap();
        s.append_history(at, &entry(1)).unwrap();
        let meta = s.read_metadata().unwrap();
        assert_eq!((meta.execution_count, s.counted(&meta)), (1, 1));
        // Counted, then killed before its line: list does not count it.
        s.count_exec("t2").unwrap();
        let meta = s.read_metadata().unwrap();
        assert_eq!(s.counted(&meta), 1, "a pending exec without a line");
        // The next settles it away, and a torn line (a full disk) goes too.
        fs::OpenOptions::new()
            .append(true)
            .open(s.history_path())
            .unwrap()
            .write_all(b"{\"timestamp\":\"t2\",\"comm")
            .unwrap();
        let at = s.count_exec("t3").unwrap();
        s.append_history(at, &entry(3)).unwrap();
        let meta = s.read_metadata().unwrap();
        assert_eq!(lines(&s).len(), 2, "{:?}", lines(&s));
        assert_eq!((meta.execution_count, s.counted(&meta)), (2, 2));
        for l in lines(&s) {
            serde_json::from_str::<HistoryEntry>(&l).unwrap();
        }
        // Killed after its line: already in step.
        let at = s.count_exec("t4").unwrap();
        s.append_history(at, &entry(4)).unwrap();
        let meta = s.read_metadata().unwrap();
        assert_eq!(
            (meta.execution_count, s.counted(&meta), lines(&s).len()),
            (3, 3, 3)
        );
        let at = s.count_exec("t5").unwrap();
        assert_eq!(at, fs::metadata(s.history_path()).unwrap().len());
        s.append_history(at, &entry(5)).unwrap();
        let meta = s.read_metadata().unwrap();
        assert_eq!(
            (meta.execution_count, s.counted(&meta), lines(&s).len()),
            (4, 4, 4)
        );
    }

    #[test]
    fn history_is_never_written_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let s = store.create_session().unwrap();
        with_metadata(&s);
        let victim = dir.path().join("victim");
        fs::write(&victim, b"keep").unwrap();
        std::os::unix::fs::symlink(&victim, s.history_path()).unwrap();
        assert!(s.count_exec("t1").is_err());
        assert!(s.append_history(0, &entry(1)).is_err());
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
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
