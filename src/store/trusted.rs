//! The trusted records: what the host side of delta-sessions acts on.
//!
//! `.sessions/` is the readable record of a session, and it often lies inside
//! a work dir (the default is `./.sessions`). A jail can never reach its own
//! sessions dir there (it is masked, and pinned as a mount point), but
//! whatever delta-sessions *acts* on — the profile a jail is rebuilt with,
//! which holder to kill, where the holder's socket is, which directory is the
//! session's — must not depend on files that any jail could have written if
//! some layout slipped through. So those live here, in a per-user **state
//! dir** that no jail mounts:
//!
//! ```text
//! STATE/                       0700, owned by the caller
//!   registry.lock              serializes the layout check of `start`
//!   sessions/sess_0123456789ab/
//!     anchor.json              identity of the sessions dir and session dir,
//!                              work dir, the profile given at start, the
//!                              jail's view and the pinned masks
//!     holder.json              the live holder (pid, start time, cgroups)
//!     holder.sock              the holder's socket: no jail can name it
//! ```
//!
//! STATE is `$DELTA_SESSIONS_STATE_DIR`, else `/var/lib/delta-sessions` for
//! root and `/var/tmp/delta-sessions-UID` for other users (outside `$HOME`,
//! which is a common work dir). It must belong to the caller and be closed to
//! everyone else.
//!
//! [`check_layout`] is the rule that keeps every sessions dir out of every
//! jail's view; it is pure and unit-tested on identities.

use super::atomic::write_json_atomic;
use super::lock::FileLock;
use super::records::HolderRecord;
use crate::profile::Profile;
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The environment variable that places the state dir.
pub const STATE_DIR_ENV: &str = "DELTA_SESSIONS_STATE_DIR";

/// Largest trusted record read (a profile is at most 1 MiB of TOML).
const MAX_RECORD_BYTES: u64 = 4 << 20;

/// A file's identity on this host: it survives renames, and a directory put
/// in another's place has another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    fn of(meta: &fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }

    /// Identity of `path`, not following a final symlink.
    pub fn lstat(path: &Path) -> io::Result<FileId> {
        fs::symlink_metadata(path).map(|m| FileId::of(&m))
    }

    /// Identity of `path` when no component of it is a symlink (`lstat` of
    /// the path alone would follow links in its parents): a file reached
    /// through a link that replaced its parent is not "at that path" for a
    /// mount that will refuse the link.
    pub fn no_symlink(path: &Path) -> io::Result<FileId> {
        let mut at = PathBuf::from("/");
        let mut last = None;
        for c in path.components() {
            if let std::path::Component::Normal(n) = c {
                at.push(n);
                let m = fs::symlink_metadata(&at)?;
                if m.file_type().is_symlink() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{} is a symlink", at.display()),
                    ));
                }
                last = Some(FileId::of(&m));
            }
        }
        last.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a path"))
    }

    /// Identity of what `path` leads to.
    pub fn stat(path: &Path) -> io::Result<FileId> {
        fs::metadata(path).map(|m| FileId::of(&m))
    }
}

/// The identities of `path` and of each of its existing ancestors, nearest
/// first. Containment is judged on these, not on spellings, so that a host
/// bind mount (the same directory under two paths) cannot hide a sessions
/// dir from the check.
pub fn ancestry(path: &Path) -> Vec<FileId> {
    path.ancestors()
        .filter_map(|p| FileId::stat(p).ok())
        .collect()
}

/// Where a directory lies on its filesystem: the device and the path from
/// that filesystem's root, read from `/proc/self/mountinfo`. Two host paths
/// that show one directory (a bind mount of a subdirectory: `/mnt/alias` is
/// `W/sub`) have the same location, so containment judged on locations sees
/// through them, where the chain of a path's own ancestors would not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsLoc {
    pub dev: String,
    pub path: PathBuf,
}

impl FsLoc {
    fn contains(&self, other: &FsLoc) -> bool {
        self.dev == other.dev && other.path.starts_with(&self.path)
    }
}

/// The mount table, as far as locating paths needs it.
#[derive(Debug, Clone, Default)]
pub struct Mounts {
    /// (mount point, device, root of the mount in its filesystem), in table order.
    entries: Vec<(PathBuf, String, PathBuf)>,
}

impl Mounts {
    /// This process's mount table (empty if it cannot be read).
    pub fn read() -> Mounts {
        fs::read_to_string("/proc/self/mountinfo")
            .map(|t| Mounts::parse(&t))
            .unwrap_or_default()
    }

    /// Parses `mountinfo` text: `id parent major:minor root mountpoint …`.
    pub fn parse(text: &str) -> Mounts {
        let entries = text
            .lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split(' ').collect();
                if f.len() < 5 {
                    return None;
                }
                Some((
                    PathBuf::from(unescape(f[4])),
                    f[2].to_string(),
                    PathBuf::from(unescape(f[3])),
                ))
            })
            .collect();
        Mounts { entries }
    }

    /// Where the mounts strictly below `path` come from (their device and
    /// the path of their root in its filesystem).
    pub fn below(&self, path: &Path) -> Vec<FsLoc> {
        self.entries
            .iter()
            .filter(|(mp, _, _)| mp.starts_with(path) && mp != path)
            .map(|(_, dev, root)| FsLoc {
                dev: dev.clone(),
                path: root.clone(),
            })
            .collect()
    }

    /// The location of a canonical path: on the mount with the longest
    /// mount point that contains it (the last one listed, if stacked).
    pub fn locate(&self, path: &Path) -> Option<FsLoc> {
        let (mp, dev, root) = self
            .entries
            .iter()
            .filter(|(mp, _, _)| path.starts_with(mp))
            .fold(None::<&(PathBuf, String, PathBuf)>, |best, e| match best {
                Some(b) if b.0.components().count() > e.0.components().count() => Some(b),
                _ => Some(e),
            })?;
        let rest = path.strip_prefix(mp).ok()?;
        Some(FsLoc {
            dev: dev.clone(),
            path: root.join(rest),
        })
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space, …).
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c));
        if b[i] == b'\\' && octal {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A host directory a jail sees (its work dir or an extra bind).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewRoot {
    pub path: PathBuf,
    pub id: FileId,
}

/// A masked path that existed at start: a rebuild masks it only if it is
/// still the same file at the same path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    pub path: PathBuf,
    pub id: FileId,
}

/// `anchor.json`: what a session was at `start`. Written once, never
/// changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anchor {
    pub session_id: String,
    /// The sessions dir, canonical, and its identity.
    pub sessions_dir: PathBuf,
    pub sessions_dir_id: FileId,
    /// The session's own directory in it.
    pub session_dir_id: FileId,
    pub work_dir: PathBuf,
    /// The session's program, found on the default `PATH` at start.
    pub program: PathBuf,
    /// Root-started sessions: the host uid and gid their jail runs as, its
    /// own in the reserved range (see `jail::idmap::ROOT_JAIL_UID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_jail_id: Option<u32>,
    /// The profile given at start: the only one its jail is ever built with.
    pub profile: Profile,
    /// Host directories the jail sees: the work dir first, then the binds.
    pub view: Vec<ViewRoot>,
    /// Masked paths (the profile's) that existed inside the view at start.
    pub pins: Vec<Pin>,
}

impl Anchor {
    /// Refuses a (re)build whose masks would no longer cover what they
    /// covered at start: a masked file moved away (with a renamed parent) or
    /// replaced would be exposed under its new name.
    pub fn check_pins(&self) -> Result<()> {
        for root in &self.view {
            match FileId::no_symlink(&root.path) {
                Ok(id) if id == root.id => {}
                _ => bail!(
                    "{} is no longer the directory session {} was started with (moved or replaced); \
                     refusing to rebuild its jail: end the session and start a new one",
                    root.path.display(),
                    self.session_id
                ),
            }
        }
        for pin in &self.pins {
            match FileId::no_symlink(&pin.path) {
                Ok(id) if id == pin.id => {}
                _ => bail!(
                    "masked path {} was moved or replaced since session {} started, so its mask \
                     could no longer cover it; refusing to rebuild the jail: put it back, or end \
                     the session and start a new one",
                    pin.path.display(),
                    self.session_id
                ),
            }
        }
        Ok(())
    }
}

/// The part of an anchor that the layout check of every `start` reads for
/// every recorded session (the profile is skipped, not parsed).
#[derive(Debug, Clone, Deserialize)]
pub struct AnchorSummary {
    pub session_id: String,
    pub sessions_dir: PathBuf,
    pub sessions_dir_id: FileId,
    pub session_dir_id: FileId,
    pub view: Vec<ViewRoot>,
    #[serde(default)]
    pub root_jail_id: Option<u32>,
    #[serde(default)]
    pub profile: SummaryProfile,
}

/// The part of an anchor's profile that other sessions' checks need.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SummaryProfile {
    #[serde(default)]
    pub isolation: Option<crate::profile::Isolation>,
}

/// The host directories a profile shows a jail, work dir first.
pub fn view_paths(profile: &Profile, work_dir: &Path) -> Vec<PathBuf> {
    let mut v = vec![work_dir.to_path_buf()];
    v.extend(profile.filesystem.read_write.iter().cloned());
    v.extend(profile.filesystem.read_only.iter().cloned());
    v
}

/// The profile's masked paths that exist inside the view, with identities.
pub fn pins_of(profile: &Profile, view: &[PathBuf]) -> Vec<Pin> {
    profile
        .filesystem
        .masked
        .iter()
        .filter(|m| view.iter().any(|v| m.starts_with(v)))
        .filter_map(|m| {
            FileId::lstat(m).ok().map(|id| Pin {
                path: m.clone(),
                id,
            })
        })
        .collect()
}

/// A directory as the layout check sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub path: PathBuf,
    /// Its own identity, when it exists.
    pub id: Option<FileId>,
    /// Its identity and its ancestors', nearest first (see [`ancestry`]).
    pub ancestry: Vec<FileId>,
    /// Where it lies on its filesystem (see [`FsLoc`]).
    pub loc: Option<FsLoc>,
    /// View roots only: where the mounts below it come from. A jail gets a
    /// view root with its submounts, so what they show is in its view too.
    pub inner: Vec<FsLoc>,
}

impl Placed {
    pub fn of(path: &Path, mounts: &Mounts) -> Placed {
        let id = FileId::stat(path).ok();
        Placed {
            path: path.to_path_buf(),
            id,
            ancestry: ancestry(path),
            loc: mounts.locate(path),
            inner: Vec::new(),
        }
    }

    /// A directory a jail sees, with the sources of the mounts below it.
    pub fn view_root(path: &Path, mounts: &Mounts) -> Placed {
        Placed {
            inner: mounts.below(path),
            ..Placed::of(path, mounts)
        }
    }

    /// Whether a jail that sees this view root sees `target`, or part of
    /// it: one lies in the other, or a mount below this root shows it.
    fn sees(&self, target: &Placed) -> bool {
        target.is_within(self)
            || (target.id.is_some() && self.is_within(target))
            || self.shows(target)
    }

    /// Whether a mount below this view root shows `target` or part of it.
    fn shows(&self, target: &Placed) -> bool {
        let Some(t) = &target.loc else { return false };
        self.inner.iter().any(|m| m.contains(t) || t.contains(m))
    }

    /// Whether `root` is this directory or one of its ancestors: by the
    /// chain of identities, or by location on the filesystem.
    fn is_within(&self, root: &Placed) -> bool {
        root.id.is_some_and(|r| self.ancestry.contains(&r))
            || matches!((&root.loc, &self.loc), (Some(r), Some(me)) if r.contains(me))
    }
}

/// Another session known to the state dir, as the layout check needs it.
#[derive(Debug, Clone)]
pub struct Known {
    pub session_id: String,
    /// Its sessions dir, as it is on the host now.
    pub sessions_dir: Placed,
    /// Its jail may run (now or after a rebuild): its view matters.
    pub live: bool,
    pub view: Vec<Placed>,
    /// A Landlock-mode session: nothing in its view is masked, so it sees
    /// its own sessions dir (and every session recorded there) whole.
    pub unmasked: bool,
}

/// A session about to start.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub sessions_dir: Placed,
    pub work_dir: Placed,
    /// Every view root (the work dir first).
    pub view: Vec<Placed>,
    pub state_dir: Placed,
    /// Landlock mode (see [`Known::unmasked`]).
    pub unmasked: bool,
}

/// The rule that keeps the control plane out of every jail's view.
///
/// A sessions dir may lie inside a jail's view only as that jail's *own*
/// sessions dir and only directly in its work dir (`W/.sessions`): there
/// the mask is a mount point that the jail can neither rename nor remove,
/// so it stays covered for the jail's whole life. Deeper, a jail could
/// rename a parent and put a directory of its own making in its place. No
/// other session's sessions dir may lie in any view at all, whether it was
/// there first or comes later; the state dir never does.
pub fn check_layout(c: &Candidate, others: &[Known]) -> Result<(), String> {
    let fix = "choose a work dir and sessions dir that do not contain each other \
               (the default ./.sessions in the work dir is fine), or pass --sessions-dir";
    for root in &c.view {
        if root.id.is_none() {
            continue;
        }
        if root.sees(&c.state_dir) {
            return Err(format!(
                "the jail would see {}, delta-sessions' private state dir ({STATE_DIR_ENV}): \
                 choose another work dir or bind, or set {STATE_DIR_ENV} to a directory outside it",
                c.state_dir.path.display()
            ));
        }
        // Even the own `W/.sessions`: its mask covers that path only, not a
        // mount elsewhere in the view that shows the same directory.
        if root.shows(&c.sessions_dir) {
            return Err(format!(
                "a mount inside {} shows the sessions dir {} to the jail; {fix}",
                root.path.display(),
                c.sessions_dir.path.display()
            ));
        }
        if c.sessions_dir.id.is_some() && root.is_within(&c.sessions_dir) {
            return Err(format!(
                "{} lies inside the sessions dir {}, so the jail would see session files; {fix}",
                root.path.display(),
                c.sessions_dir.path.display()
            ));
        }
    }
    // The own sessions dir: only as a direct child of the work dir, and in no bind.
    let work_id = c.work_dir.id;
    for (i, root) in c.view.iter().enumerate() {
        let Some(root_id) = root.id else { continue };
        if !c.sessions_dir.is_within(root) {
            continue;
        }
        // Its parent's identity: the nearest existing ancestor when it is
        // not made yet (the path check then says that this is the parent).
        let parent_id = if c.sessions_dir.id.is_some() {
            c.sessions_dir.ancestry.get(1)
        } else {
            c.sessions_dir.ancestry.first()
        };
        let own_slot = i == 0
            && Some(root_id) == work_id
            && c.sessions_dir.path.parent() == Some(c.work_dir.path.as_path())
            && parent_id == Some(&root_id);
        if !own_slot {
            return Err(format!(
                "the sessions dir {} lies inside {} below a directory that a jailed command could \
                 rename (then delta-sessions would read files the jail made); put the sessions dir \
                 directly in the work dir ({}/.sessions) or outside it",
                c.sessions_dir.path.display(),
                root.path.display(),
                c.work_dir.path.display()
            ));
        }
    }
    for o in others {
        let Some(theirs) = o.sessions_dir.id else {
            continue;
        };
        let same_dir = c.sessions_dir.id == Some(theirs);
        // Landlock grants the work dir whole, `.sessions/` with it: a
        // Landlock session may share its sessions dir with no live session,
        // whose records (and for `state.json`, what its shell runs) it
        // could otherwise read and change.
        let new_sees = c.unmasked
            && c.view
                .iter()
                .any(|r| r.id.is_some() && r.sees(&c.sessions_dir));
        let old_sees = o.unmasked && o.view.iter().any(|w| w.sees(&o.sessions_dir));
        if same_dir && o.live && (new_sees || old_sees) {
            let who = if new_sees {
                "the new session would run in Landlock mode"
            } else {
                "that session runs in Landlock mode"
            };
            return Err(format!(
                "the sessions dir {} holds the live session {} and {who}, where a session can read \
                 and change every record of its own sessions dir (Landlock cannot hide a directory \
                 inside the work dir); give each Landlock session its own sessions dir \
                 (--sessions-dir DIR outside the work dir), or end that session first",
                c.sessions_dir.path.display(),
                o.session_id
            ));
        }
        if !same_dir {
            for root in &c.view {
                if root.id.is_none() {
                    continue;
                }
                if root.sees(&o.sessions_dir) {
                    return Err(format!(
                        "{} would show the jail the sessions dir {} of session {} (its files and \
                         its holder); {fix}, or end and remove that session first \
                         (delta-sessions end --remove)",
                        root.path.display(),
                        o.sessions_dir.path.display(),
                        o.session_id
                    ));
                }
            }
            if c.sessions_dir.is_within(&o.sessions_dir) || c.state_dir.is_within(&o.sessions_dir) {
                return Err(format!(
                    "{} lies inside the sessions dir {} of session {} (in its private /tmp or \
                     $HOME, which its jail sees); choose a directory outside it",
                    if c.sessions_dir.is_within(&o.sessions_dir) {
                        c.sessions_dir.path.display()
                    } else {
                        c.state_dir.path.display()
                    },
                    o.sessions_dir.path.display(),
                    o.session_id
                ));
            }
            if o.live && o.view.iter().any(|w| w.sees(&c.sessions_dir)) {
                return Err(format!(
                    "the sessions dir {} lies inside what the jail of session {} sees, so that jail \
                     could read and change it; choose a sessions dir outside that session's work \
                     dir and binds, or end that session first",
                    c.sessions_dir.path.display(),
                    o.session_id
                ));
            }
        }
    }
    Ok(())
}

/// The per-user state dir.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Where the state dir is for this caller.
    pub fn location() -> PathBuf {
        match std::env::var_os(STATE_DIR_ENV) {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => {
                let uid = nix::unistd::geteuid().as_raw();
                if uid == 0 {
                    PathBuf::from("/var/lib/delta-sessions")
                } else if Path::new("/var/tmp").is_dir() {
                    PathBuf::from(format!("/var/tmp/delta-sessions-{uid}"))
                } else {
                    PathBuf::from(format!("/tmp/delta-sessions-{uid}"))
                }
            }
        }
    }

    /// Opens the state dir, creating it (`create`) if missing. Refuses one
    /// that is a symlink, belongs to someone else or is open to others: a
    /// directory another user prepared under a well-known name could
    /// capture every session's socket.
    pub fn open(create: bool) -> Result<Option<StateDir>> {
        let path = Self::location();
        if create {
            match fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&path)
                    .with_context(|| {
                        format!(
                            "cannot create delta-sessions' state dir {} (set {STATE_DIR_ENV})",
                            path.display()
                        )
                    })?,
                Err(e) => {
                    return Err(anyhow!(e)).with_context(|| {
                        format!(
                            "cannot create delta-sessions' state dir {} (set {STATE_DIR_ENV})",
                            path.display()
                        )
                    })
                }
            }
        }
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound && !create => return Ok(None),
            Err(e) => bail!(
                "cannot use delta-sessions' state dir {}: {e}",
                path.display()
            ),
        };
        let me = nix::unistd::geteuid().as_raw();
        if !meta.is_dir() {
            bail!(
                "delta-sessions' state dir {} is not a directory (a symlink or file is refused); \
                 remove it or set {STATE_DIR_ENV}",
                path.display()
            );
        }
        if meta.uid() != me || meta.mode() & 0o077 != 0 {
            bail!(
                "delta-sessions' state dir {} must belong to uid {me} and be closed to others \
                 (it is uid {}, mode {:o}); fix it (chown, chmod 700) or set {STATE_DIR_ENV}",
                path.display(),
                meta.uid(),
                meta.mode() & 0o7777
            );
        }
        // The default locations are absolute already; resolve only what
        // the environment gave otherwise (this runs on every exec).
        let root = if path.is_absolute() {
            path.clone()
        } else {
            fs::canonicalize(&path)
                .with_context(|| format!("cannot resolve state dir {}", path.display()))?
        };
        if create {
            fs::DirBuilder::new()
                .mode(0o700)
                .recursive(true)
                .create(root.join("sessions"))
                .with_context(|| format!("cannot create {}/sessions", root.display()))?;
        }
        Ok(Some(StateDir { root }))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Held while a `start` checks the layout and records its anchor, so two
    /// starts cannot each miss the other.
    pub fn lock_registry(&self) -> Result<FileLock> {
        FileLock::exclusive(&self.root.join("registry.lock"))
            .with_context(|| format!("cannot lock {}/registry.lock", self.root.display()))
    }

    fn dir_record(&self, id: FileId) -> PathBuf {
        self.root
            .join("dirs")
            .join(format!("{}-{}", id.dev, id.ino))
    }

    /// The recorded sessions dirs: (record file, recorded path, identity).
    pub fn registered_dirs(&self) -> Vec<(PathBuf, PathBuf, FileId)> {
        let Ok(entries) = fs::read_dir(self.root.join("dirs")) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let (dev, ino) = name.split_once('-')?;
                let id = FileId {
                    dev: dev.parse().ok()?,
                    ino: ino.parse().ok()?,
                };
                let path = read_trusted::<PathBuf>(&e.path()).ok()??;
                Some((e.path(), path, id))
            })
            .collect()
    }

    /// Records `sessions_dir` (canonical) as one that `start` made and
    /// checked: `list` and `cleanup` act only on recorded sessions dirs, at
    /// their recorded path. Called under the registry lock.
    pub fn register_sessions_dir(&self, sessions_dir: &Path) -> Result<()> {
        let id = FileId::stat(sessions_dir)?;
        let dirs = self.root.join("dirs");
        fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(&dirs)
            .with_context(|| format!("cannot create {}", dirs.display()))?;
        let record = self.dir_record(id);
        if self.is_registered(sessions_dir) {
            return Ok(());
        }
        // A directory recorded from now on must hold only what starts
        // record: entries already there were made by nobody this state dir
        // knows (an older delta-sessions, or a jail that could see it while
        // it was not in use), and would be listed and acted on as sessions.
        let unrecorded: Vec<String> = fs::read_dir(sessions_dir)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| n.starts_with("sess_") && !self.knows(n))
                    .collect()
            })
            .unwrap_or_default();
        if !unrecorded.is_empty() {
            bail!(
                "the sessions dir {} holds entries that no start recorded ({}): they may come \
                 from an older delta-sessions or from a jail that could write there; remove them, \
                 or use another --sessions-dir",
                sessions_dir.display(),
                unrecorded.join(", ")
            );
        }
        write_json_atomic(&record, &sessions_dir)
            .with_context(|| format!("cannot write {}", record.display()))
    }

    /// Whether session `id` was recorded here by a `start`.
    pub fn knows(&self, id: &str) -> bool {
        self.session(id).anchor_path().exists()
    }

    /// Whether `sessions_dir` (canonical) is a recorded sessions dir, at the
    /// path it was recorded with. A directory no `start` of this user made,
    /// or one moved since, is not: a jail could have made its contents.
    pub fn is_registered(&self, sessions_dir: &Path) -> bool {
        let Ok(id) = FileId::stat(sessions_dir) else {
            return false;
        };
        read_trusted::<PathBuf>(&self.dir_record(id))
            .ok()
            .flatten()
            .is_some_and(|p| p == sessions_dir)
    }

    /// The trusted dir of one session (it may not exist).
    pub fn session(&self, id: &str) -> ControlDir {
        ControlDir {
            dir: self.root.join("sessions").join(id),
        }
    }

    /// Records a new session. The anchor is written before its jail exists.
    pub fn create(&self, anchor: &Anchor) -> Result<ControlDir> {
        let control = self.session(&anchor.session_id);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&control.dir)
            .with_context(|| format!("cannot create {}", control.dir.display()))?;
        write_json_atomic(&control.anchor_path(), anchor)
            .with_context(|| format!("cannot write {}", control.anchor_path().display()))?;
        Ok(control)
    }

    /// Every session recorded here, summarised (unreadable ones skipped).
    pub fn summaries(&self) -> Vec<(ControlDir, AnchorSummary)> {
        self.recorded()
    }

    /// Every session recorded here, with its anchor (unreadable ones skipped).
    pub fn anchors(&self) -> Vec<(ControlDir, Anchor)> {
        self.recorded()
    }

    /// Every session recorded here, with its `anchor.json` read as `T`.
    fn recorded<T: serde::de::DeserializeOwned>(&self) -> Vec<(ControlDir, T)> {
        let Ok(entries) = fs::read_dir(self.root.join("sessions")) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                if !super::SessionId::is_valid(&name) {
                    return None;
                }
                let control = self.session(&name);
                let record = read_trusted(&control.anchor_path()).ok()??;
                Some((control, record))
            })
            .collect()
    }
}

/// One session's trusted dir.
#[derive(Debug, Clone)]
pub struct ControlDir {
    dir: PathBuf,
}

impl ControlDir {
    pub fn path(&self) -> &Path {
        &self.dir
    }
    fn anchor_path(&self) -> PathBuf {
        self.dir.join("anchor.json")
    }
    fn holder_path(&self) -> PathBuf {
        self.dir.join("holder.json")
    }
    /// The holder's listening socket.
    pub fn socket_path(&self) -> PathBuf {
        self.dir.join("holder.sock")
    }

    pub fn anchor(&self) -> Result<Option<Anchor>> {
        read_trusted(&self.anchor_path())
    }

    /// The holder now serving the session, if one was recorded.
    pub fn holder(&self) -> Result<Option<HolderRecord>> {
        read_trusted(&self.holder_path())
    }

    pub fn write_holder(&self, holder: Option<&HolderRecord>) -> Result<()> {
        match holder {
            Some(h) => write_json_atomic(&self.holder_path(), h)
                .with_context(|| format!("cannot write {}", self.holder_path().display())),
            None => match fs::remove_file(self.holder_path()) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(anyhow!(e))
                    .with_context(|| format!("cannot remove {}", self.holder_path().display())),
            },
        }
    }

    /// Marks the session ended: its jail is gone and is never rebuilt, so
    /// its view no longer matters to the layout check.
    pub fn mark_ended(&self) -> Result<()> {
        let path = self.dir.join("ended");
        fs::write(&path, b"").with_context(|| format!("cannot write {}", path.display()))
    }

    pub fn is_ended(&self) -> bool {
        self.dir.join("ended").exists()
    }

    /// Whether no holder can still own cgroups of this session: it ended,
    /// or its `start` wrote the record more than `min_age` ago and never
    /// recorded a holder (that start died). A session not recorded here
    /// may be another state dir's, starting right now: not ours to judge.
    pub fn owns_no_cgroup(&self, min_age: std::time::Duration) -> bool {
        if self.is_ended() {
            return true;
        }
        if self.holder_path().exists() {
            return false;
        }
        match fs::symlink_metadata(self.anchor_path()) {
            Err(_) => false,
            Ok(m) => m
                .modified()
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= min_age),
        }
    }

    /// Forgets the session (after its directory is gone).
    pub fn remove(&self) -> Result<()> {
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => {
                Err(anyhow!(e)).with_context(|| format!("cannot remove {}", self.dir.display()))
            }
        }
    }
}

/// Reads a trusted JSON record: `None` when missing.
fn read_trusted<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let bytes = match read_regular(path, MAX_RECORD_BYTES) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => bail!("cannot read {}: {e}", path.display()),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| anyhow!("{} is not valid: {e}", path.display()))
}

/// Reads at most `max` bytes of a regular file, refusing symlinks, FIFOs and
/// devices without blocking on them (a FIFO planted as a record must not
/// hang the reader).
pub fn read_regular(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                io::Error::new(io::ErrorKind::InvalidData, "is a symlink")
            } else {
                e
            }
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "is not a regular file",
        ));
    }
    // Sized up front: one read, not a series of small ones.
    let mut bytes = Vec::with_capacity((meta.len().min(max) + 1) as usize);
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "is too large"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> FileId {
        FileId { dev: 1, ino: n }
    }

    /// A directory at `path` whose identity chain is `chain` (own id first).
    fn placed(path: &str, chain: &[u64]) -> Placed {
        Placed {
            path: PathBuf::from(path),
            id: chain.first().map(|&n| id(n)),
            ancestry: chain.iter().map(|&n| id(n)).collect(),
            loc: None,
            inner: Vec::new(),
        }
    }

    fn located(mut p: Placed, dev: &str, path: &str) -> Placed {
        p.loc = Some(FsLoc {
            dev: dev.into(),
            path: path.into(),
        });
        p
    }

    #[test]
    fn mountinfo_locates_paths_through_bind_mounts() {
        let m = Mounts::parse(
            "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n\
             30 22 8:1 /srv/w/sub /mnt/alias rw - ext4 /dev/sda1 rw\n\
             31 22 0:40 / /tmp rw - tmpfs tmpfs rw\n\
             32 22 8:1 /srv/a\\040b /mnt/sp\\040ace rw - ext4 /dev/sda1 rw\n",
        );
        let loc = |p: &str| m.locate(Path::new(p)).unwrap();
        assert_eq!(
            loc("/mnt/alias/.sessions").path,
            PathBuf::from("/srv/w/sub/.sessions")
        );
        assert_eq!(loc("/srv/w").path, PathBuf::from("/srv/w"));
        assert!(loc("/srv/w").contains(&loc("/mnt/alias/.sessions")));
        assert_eq!(loc("/tmp/x").dev, "0:40");
        assert!(!loc("/srv/w").contains(&loc("/tmp/srv/w/x")));
        assert_eq!(loc("/mnt/sp ace/z").path, PathBuf::from("/srv/a b/z"));
    }

    #[test]
    fn a_sessions_dir_shown_by_a_mount_inside_a_view_is_found() {
        // /w/data is a bind of /shared: a jail seeing /w sees /shared/.sessions.
        let other = Known {
            unmasked: false,
            session_id: "sess_ffffffffffff".into(),
            sessions_dir: located(
                placed("/shared/.sessions", &[21, 20, 1]),
                "8:1",
                "/shared/.sessions",
            ),
            live: false,
            view: vec![],
        };
        let mut work = located(placed("/w", &[2, 1]), "8:1", "/w");
        work.inner = vec![FsLoc {
            dev: "8:1".into(),
            path: "/shared".into(),
        }];
        let mut c = candidate(
            located(placed("/w/.sessions", &[3, 2, 1]), "8:1", "/w/.sessions"),
            work,
        );
        c.view = vec![c.work_dir.clone()];
        let e = check_layout(&c, std::slice::from_ref(&other)).unwrap_err();
        assert!(e.contains("sess_ffffffffffff"), "{e}");
        // And its own sessions dir behind such a mount is refused too.
        let mut c2 = c.clone();
        c2.sessions_dir = other.sessions_dir.clone();
        assert!(check_layout(&c2, &[]).is_err());
        // The other way: a live jail whose work dir has that mount.
        let live = Known {
            unmasked: false,
            session_id: "sess_999999999999".into(),
            sessions_dir: located(placed("/w/.sessions", &[3, 2, 1]), "8:1", "/w/.sessions"),
            live: true,
            view: vec![c.work_dir.clone()],
        };
        let c3 = candidate(
            other.sessions_dir.clone(),
            located(placed("/wb", &[13, 1]), "8:1", "/wb"),
        );
        let e = check_layout(&c3, &[live]).unwrap_err();
        assert!(e.contains("sess_999999999999"), "{e}");
    }

    #[test]
    fn a_landlock_session_shares_a_sessions_dir_in_its_view_with_no_live_session() {
        let w = || placed("/w", &[2, 1]);
        let own = || placed("/w/.sessions", &[3, 2, 1]);
        let other = |unmasked, live| Known {
            unmasked,
            session_id: "sess_aaaaaaaaaaaa".into(),
            sessions_dir: own(),
            live,
            view: vec![w()],
        };
        // A jail next to a jail: fine (each masks W/.sessions).
        let mut c = candidate(own(), w());
        assert_eq!(check_layout(&c, &[other(false, true)]), Ok(()));
        // A Landlock session would see the live jail's records, and back.
        c.unmasked = true;
        let e = check_layout(&c, &[other(false, true)]).unwrap_err();
        assert!(
            e.contains("sess_aaaaaaaaaaaa") && e.contains("Landlock"),
            "{e}"
        );
        c.unmasked = false;
        let e = check_layout(&c, &[other(true, true)]).unwrap_err();
        assert!(e.contains("that session runs in Landlock mode"), "{e}");
        // Ended sessions run nothing that could read.
        c.unmasked = true;
        assert_eq!(check_layout(&c, &[other(true, false)]), Ok(()));
        // A sessions dir outside the view may be shared: each Landlock
        // session is granted only its own session's tmp and home there.
        let outside = || placed("/elsewhere/s", &[7, 6, 1]);
        let c = Candidate {
            unmasked: true,
            ..candidate(outside(), w())
        };
        let theirs = Known {
            sessions_dir: outside(),
            ..other(true, true)
        };
        assert_eq!(check_layout(&c, &[theirs]), Ok(()));
    }

    #[test]
    fn a_sessions_dir_behind_a_bind_mount_of_a_subdirectory_is_found() {
        // /mnt/alias is a bind of /w/sub: the sessions dir /mnt/alias/.sessions
        // has no identity of /w among its path's ancestors.
        let other = Known {
            unmasked: false,
            session_id: "sess_eeeeeeeeeeee".into(),
            sessions_dir: located(placed("/w/.sessions", &[3, 2, 1]), "8:1", "/w/.sessions"),
            live: true,
            view: vec![located(placed("/w", &[2, 1]), "8:1", "/w")],
        };
        let mut c = candidate(
            located(
                placed("/mnt/alias/.sessions", &[5, 4, 12, 1]),
                "8:1",
                "/w/sub/.sessions",
            ),
            located(placed("/wb", &[13, 1]), "8:1", "/wb"),
        );
        c.view = vec![c.work_dir.clone()];
        let e = check_layout(&c, &[other]).unwrap_err();
        assert!(e.contains("sess_eeeeeeeeeeee"), "{e}");
    }

    // Host: / = 1, /w = 2, /w/.sessions = 3, /w/sub = 4, /w/sub/.sessions = 5,
    // /elsewhere = 6, /elsewhere/s = 7, /state = 8, /p = 9 (a bind mount of /w: same id 2).
    fn candidate(sessions: Placed, work: Placed) -> Candidate {
        Candidate {
            unmasked: false,
            view: vec![work.clone()],
            sessions_dir: sessions,
            work_dir: work,
            state_dir: placed("/state", &[8, 1]),
        }
    }

    #[test]
    fn own_sessions_dir_directly_in_the_work_dir_is_allowed() {
        let c = candidate(placed("/w/.sessions", &[3, 2, 1]), placed("/w", &[2, 1]));
        assert_eq!(check_layout(&c, &[]), Ok(()));
        // Not yet created: judged from its parent.
        let c = candidate(placed("/w/.sessions", &[]), placed("/w", &[2, 1]));
        let c = Candidate {
            unmasked: false,
            sessions_dir: Placed {
                ancestry: vec![id(2), id(1)],
                ..c.sessions_dir.clone()
            },
            ..c
        };
        assert_eq!(check_layout(&c, &[]), Ok(()));
    }

    #[test]
    fn own_sessions_dir_outside_the_view_is_allowed() {
        let c = candidate(placed("/elsewhere/s", &[7, 6, 1]), placed("/w", &[2, 1]));
        assert_eq!(check_layout(&c, &[]), Ok(()));
    }

    #[test]
    fn own_sessions_dir_deeper_in_the_work_dir_is_refused() {
        let c = candidate(
            placed("/w/sub/.sessions", &[5, 4, 2, 1]),
            placed("/w", &[2, 1]),
        );
        let e = check_layout(&c, &[]).unwrap_err();
        assert!(e.contains("rename"), "{e}");
    }

    #[test]
    fn own_sessions_dir_in_a_bind_is_refused() {
        let mut c = candidate(placed("/elsewhere/s", &[7, 6, 1]), placed("/w", &[2, 1]));
        c.view.push(placed("/elsewhere", &[6, 1]));
        assert!(check_layout(&c, &[]).is_err());
    }

    #[test]
    fn a_work_dir_inside_the_sessions_dir_is_refused() {
        let c = candidate(
            placed("/elsewhere", &[6, 1]),
            placed("/elsewhere/s", &[7, 6, 1]),
        );
        assert!(check_layout(&c, &[])
            .unwrap_err()
            .contains("inside the sessions dir"));
    }

    #[test]
    fn the_state_dir_never_lies_in_a_view() {
        let mut c = candidate(placed("/w/.sessions", &[3, 2, 1]), placed("/w", &[2, 1]));
        c.state_dir = placed("/w/state", &[10, 2, 1]);
        assert!(check_layout(&c, &[]).unwrap_err().contains("state dir"));
    }

    #[test]
    fn another_sessions_dir_inside_the_view_is_refused_even_through_a_bind_mount_alias() {
        let other = Known {
            unmasked: false,
            session_id: "sess_aaaaaaaaaaaa".into(),
            sessions_dir: placed("/w/sub/.sessions", &[5, 4, 2, 1]),
            live: false,
            view: vec![placed("/w/sub", &[4, 2, 1])],
        };
        let c = candidate(placed("/elsewhere/s", &[7, 6, 1]), placed("/w", &[2, 1]));
        let e = check_layout(&c, std::slice::from_ref(&other)).unwrap_err();
        assert!(e.contains("sess_aaaaaaaaaaaa"), "{e}");
        // /p is the same directory as /w under another name.
        let c = candidate(placed("/elsewhere/s", &[7, 6, 1]), placed("/p", &[2, 9]));
        assert!(check_layout(&c, &[other]).is_err());
    }

    #[test]
    fn a_sessions_dir_inside_a_live_jails_view_is_refused() {
        let other = Known {
            unmasked: false,
            session_id: "sess_bbbbbbbbbbbb".into(),
            sessions_dir: placed("/elsewhere/s", &[7, 6, 1]),
            live: true,
            view: vec![placed("/w", &[2, 1])],
        };
        let c = candidate(
            placed("/w/sub/x", &[]),
            placed("/elsewhere/work", &[11, 6, 1]),
        );
        let c = Candidate {
            unmasked: false,
            sessions_dir: Placed {
                ancestry: vec![id(4), id(2), id(1)],
                ..c.sessions_dir.clone()
            },
            ..c
        };
        let e = check_layout(&c, std::slice::from_ref(&other)).unwrap_err();
        assert!(e.contains("sess_bbbbbbbbbbbb"), "{e}");
        // An ended session's jail never runs again: only its files matter.
        let ended = Known {
            unmasked: false,
            live: false,
            ..other
        };
        assert_eq!(check_layout(&c, &[ended]), Ok(()));
    }

    #[test]
    fn sessions_sharing_a_sessions_dir_and_work_dir_are_allowed() {
        let other = Known {
            unmasked: false,
            session_id: "sess_cccccccccccc".into(),
            sessions_dir: placed("/w/.sessions", &[3, 2, 1]),
            live: true,
            view: vec![placed("/w", &[2, 1])],
        };
        let c = candidate(placed("/w/.sessions", &[3, 2, 1]), placed("/w", &[2, 1]));
        assert_eq!(check_layout(&c, &[other]), Ok(()));
    }

    #[test]
    fn pins_refuse_a_moved_mask() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secrets");
        fs::create_dir(&secret).unwrap();
        let mut profile = Profile::load("default").unwrap();
        profile.filesystem.masked = vec![secret.clone(), dir.path().join("missing")];
        let view = vec![dir.path().to_path_buf()];
        let pins = pins_of(&profile, &view);
        assert_eq!(pins.len(), 1, "only existing masked paths are pinned");
        let anchor = Anchor {
            session_id: "sess_dddddddddddd".into(),
            sessions_dir: dir.path().join(".sessions"),
            sessions_dir_id: id(1),
            session_dir_id: id(2),
            work_dir: dir.path().to_path_buf(),
            program: PathBuf::from("/bin/bash"),
            root_jail_id: None,
            profile,
            view: vec![ViewRoot {
                path: dir.path().to_path_buf(),
                id: FileId::stat(dir.path()).unwrap(),
            }],
            pins,
        };
        anchor.check_pins().unwrap();
        // The parent swapped for a link to where it went: same file, but
        // reached through a symlink.
        let parent = dir.path().join("p");
        fs::create_dir(&parent).unwrap();
        let nested = parent.join("secret");
        fs::create_dir(&nested).unwrap();
        let mut with_nested = anchor.clone();
        with_nested.pins = vec![Pin {
            path: nested.clone(),
            id: FileId::lstat(&nested).unwrap(),
        }];
        with_nested.check_pins().unwrap();
        fs::rename(&parent, dir.path().join("p2")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("p2"), &parent).unwrap();
        assert_eq!(FileId::lstat(&nested).ok(), Some(with_nested.pins[0].id));
        let e = with_nested.check_pins().unwrap_err().to_string();
        assert!(e.contains("moved or replaced"), "{e}");
        fs::rename(&secret, dir.path().join("moved")).unwrap();
        fs::create_dir(&secret).unwrap();
        let e = anchor.check_pins().unwrap_err().to_string();
        assert!(e.contains("moved or replaced"), "{e}");
    }

    #[test]
    fn read_regular_refuses_fifos_and_symlinks_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(read_regular(&fifo, 10).is_err());
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("/etc/hostname", &link).unwrap();
        assert!(read_regular(&link, 100).is_err());
        let file = dir.path().join("f");
        fs::write(&file, b"12345").unwrap();
        assert_eq!(read_regular(&file, 5).unwrap(), b"12345");
        assert!(read_regular(&file, 4).is_err());
    }
}
