//! The session commands other than exec: start, end, list, cleanup, profiles.
//! Each returns the JSON value to print; errors become `Error: …`.

use crate::exec::shell::valid_name;
use crate::jail;
use crate::profile::Profile;
use crate::store::trusted::{self, FileId};
use crate::store::{Metadata, SessionId, State, StateDir, Status, Store};
use crate::timefmt;
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Options of `start`.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    pub profile: Option<String>,
    pub work_dir: Option<PathBuf>,
    pub env: Vec<String>,
    pub command: Vec<String>,
}

/// The PATH a session starts with.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub fn start(sessions_dir: &Path, opts: StartOptions) -> Result<Value> {
    // Everything the user gave is checked before anything is created.
    let mut profile =
        Profile::load(opts.profile.as_deref().unwrap_or("default")).map_err(|e| anyhow!("{e}"))?;
    profile.check_binds().map_err(|e| anyhow!("{e}"))?;
    // `auto` becomes what this host can do; what is recorded says which.
    profile.isolation = jail::resolve_isolation(profile.isolation)?.0;
    if profile.isolation == crate::profile::Isolation::Landlock {
        crate::profile::check_landlock(&profile).map_err(|e| {
            anyhow!(
                "Cannot start a session in Landlock mode: profile {}: {e}",
                profile.name
            )
        })?;
    }
    let work_dir = resolve_work_dir(opts.work_dir.as_deref())?;
    let overrides = parse_env_args(&opts.env)?;
    let mut command = opts.command;
    if command.is_empty() {
        command.push("bash".into());
    }
    if command[0].is_empty() {
        bail!("Empty command name");
    }
    let program = check_program(&command[0])?;

    let state_dir = StateDir::open(true)?.context("the state dir vanished")?;
    let view = trusted::view_paths(&profile, &work_dir);
    let (session, control, anchor) = {
        // Checked and recorded under one lock, so that two starts cannot each
        // miss the other's sessions dir.
        let _registry = state_dir.lock_registry()?;
        let sessions_real = crate::store::resolve_would_be(sessions_dir)?;
        // What is checked below; the directory made or opened after must be
        // this one (a path through a symlink could be re-pointed meanwhile).
        let checked_id = trusted::FileId::stat(&sessions_real).ok();
        let mounts = trusted::Mounts::read();
        let registry = scan_registry(&state_dir, &mounts);
        check_layout(
            &registry,
            &mounts,
            &state_dir,
            &sessions_real,
            &work_dir,
            &view,
            profile.isolation == crate::profile::Isolation::Landlock,
        )
        .map_err(|e| anyhow!("Cannot start a session here: {e}"))?;
        let store = Store::open(sessions_dir, true)?;
        if store.root() != sessions_real
            || checked_id.is_some_and(|id| FileId::stat(store.root()).ok() != Some(id))
        {
            bail!(
                "Cannot start a session here: the sessions dir {} changed while it was being \
                 checked (now {}): a symlink on its path was re-pointed; use a real directory",
                sessions_real.display(),
                store.root().display()
            );
        }
        state_dir.register_sessions_dir(store.root())?;
        let session = store.create_session()?;
        let root_jail_id = match free_root_jail_id(&registry, &session.id) {
            Ok(id) => id,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&session.dir);
                return Err(e);
            }
        };
        let ids = (|| -> Result<_> {
            Ok((
                FileId::stat(store.root())?,
                FileId::lstat(&session.dir)?,
                view.iter()
                    .map(|p| {
                        Ok(trusted::ViewRoot {
                            path: p.clone(),
                            id: FileId::stat(p)?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?,
            ))
        })();
        let (sessions_dir_id, session_dir_id, view_roots) = match ids {
            Ok(v) => v,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&session.dir);
                return Err(e);
            }
        };
        let anchor = trusted::Anchor {
            session_id: session.id.to_string(),
            sessions_dir: store.root().to_path_buf(),
            sessions_dir_id,
            session_dir_id,
            work_dir: work_dir.clone(),
            program,
            root_jail_id,
            pins: trusted::pins_of(&profile, &view),
            profile: profile.clone(),
            view: view_roots,
        };
        match state_dir.create(&anchor) {
            Ok(control) => (session, control, anchor),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&session.dir);
                let _ = state_dir.session(session.id.as_str()).remove();
                return Err(e);
            }
        }
    };
    let created = (|| -> Result<Value> {
        let _meta_lock = session.lock_metadata()?;
        let env = initial_env(&profile, &session, &overrides);
        crate::store::write_json_atomic(&session.profile_path(), &profile)?;
        let state = State {
            cwd: work_dir.clone(),
            env,
            shell: None,
        };
        session.write_state(&state)?;
        std::fs::write(session.history_path(), b"")?;
        let (holder, pending) = jail::start(&session, &control, &anchor)?;
        let meta = Metadata {
            session_id: session.id.to_string(),
            command: command[0].clone(),
            args: command[1..].to_vec(),
            created_at: timefmt::now_rfc3339(),
            last_executed_at: None,
            status: Status::Active,
            work_dir: work_dir.clone(),
            execution_count: 0,
            profile: profile.name.clone(),
            isolation: Some(profile.isolation),
            holder: Some(holder.clone()),
            history_bytes: Some(0),
            pending: false,
            jail_restarts: 0,
            ended_at: None,
        };
        let recorded = control
            .write_holder(Some(&holder))
            .and_then(|()| session.write_metadata(&meta));
        if let Err(e) = recorded {
            let _ = jail::stop(&control, &holder);
            return Err(e);
        }
        crate::fault::point("start:before-commit");
        // Only now may the holder outlive us: until this, our death ends it.
        pending.commit()?;
        // Last, so that the holder's work on it does not slow `start` down;
        // without it the first exec only starts its own shell.
        if let Some(first) = crate::exec::first_prestart(&command, &state, &anchor) {
            let _ = jail::queue_prestart(&control, &first);
        }
        Ok(json!({
            "session_id": session.id.as_str(),
            "command": meta.command,
            "work_dir": work_dir,
            "status": "active",
            "profile": profile.name,
            "isolation": profile.isolation.as_str(),
        }))
    })();
    if created.is_err() {
        // A session that could not be built leaves nothing behind.
        let _ = std::fs::remove_dir_all(&session.dir);
        let _ = control.remove();
    }
    created
}

/// Checks the layout again before a session's jail is rebuilt: mounts and
/// sessions made since its `start` must not have put a sessions dir or the
/// state dir in its view (a rebuilt jail sees what is mounted now).
pub fn recheck_layout(anchor: &trusted::Anchor) -> Result<()> {
    let state_dir = StateDir::open(false)?.context("the state dir vanished")?;
    let _registry = state_dir.lock_registry()?;
    let mounts = trusted::Mounts::read();
    let mut registry = scan_registry(&state_dir, &mounts);
    registry.known.retain(|k| k.session_id != anchor.session_id);
    let view: Vec<PathBuf> = anchor.view.iter().map(|v| v.path.clone()).collect();
    check_layout(
        &registry,
        &mounts,
        &state_dir,
        &anchor.sessions_dir,
        &anchor.work_dir,
        &view,
        anchor.profile.isolation == crate::profile::Isolation::Landlock,
    )
    .map_err(|e| {
        anyhow!(
            "refusing to rebuild the jail of session {}: {e}",
            anchor.session_id
        )
    })
}

/// What `start` learns from the state dir, under the registry lock.
struct Registry {
    known: Vec<trusted::Known>,
    /// Host ids of root's jails in use by sessions that have not ended.
    taken_ids: std::collections::HashSet<u32>,
}

/// Reads every recorded session once. A record whose sessions dir or
/// session dir is gone (deleted by hand, or the sessions dir moved) is
/// forgotten on the way, its holder stopped if it still runs: nothing could
/// use or end that session any more.
fn scan_registry(state_dir: &StateDir, mounts: &trusted::Mounts) -> Registry {
    let mut placed: std::collections::HashMap<PathBuf, trusted::Placed> = Default::default();
    let mut reg = Registry {
        known: Vec::new(),
        taken_ids: Default::default(),
    };
    let summaries = state_dir.summaries();
    let referenced: std::collections::HashSet<FileId> =
        summaries.iter().map(|(_, s)| s.sessions_dir_id).collect();
    for (control, summary) in summaries {
        let sessions = placed
            .entry(summary.sessions_dir.clone())
            .or_insert_with(|| trusted::Placed::of(&summary.sessions_dir, mounts))
            .clone();
        let session_dir = summary.sessions_dir.join(&summary.session_id);
        if sessions.id != Some(summary.sessions_dir_id)
            || FileId::lstat(&session_dir).ok() != Some(summary.session_dir_id)
        {
            // Its files are no longer where the layout check can see them
            // (moved, or deleted by hand), so its jail may now see, or be
            // seen by, sessions dirs that nobody checks: it is ended here.
            // A record with nothing left running is forgotten.
            match control.holder() {
                Ok(Some(h)) => {
                    let _ = jail::stop(&control, &h);
                    let _ = control.write_holder(None);
                    let _ = control.mark_ended();
                }
                _ => {
                    let _ = control.remove();
                }
            }
            continue;
        }
        let live = !control.is_ended();
        if live {
            reg.taken_ids.extend(summary.root_jail_id);
        }
        // Each view root where it is now, if it is still that directory;
        // else only the identity recorded at start.
        let view = summary
            .view
            .iter()
            .map(|v| {
                let now = trusted::Placed::view_root(&v.path, mounts);
                if now.id == Some(v.id) {
                    now
                } else {
                    trusted::Placed {
                        path: v.path.clone(),
                        id: Some(v.id),
                        ancestry: vec![v.id],
                        loc: None,
                        inner: Vec::new(),
                    }
                }
            })
            .collect();
        reg.known.push(trusted::Known {
            live,
            session_id: summary.session_id,
            sessions_dir: sessions,
            view,
            unmasked: summary.profile.isolation == Some(crate::profile::Isolation::Landlock),
        });
    }
    // Sessions dirs recorded by earlier starts count too, while they hold
    // anything: `list` and `cleanup` trust what is in them. An empty one is
    // forgotten (then they refuse it), as is one no longer at its path.
    for (record, path, id) in state_dir.registered_dirs() {
        // Kept while any record names it (a session ended because its dir
        // had moved must still be removable once it is back).
        if reg.known.iter().any(|k| k.sessions_dir.id == Some(id)) || referenced.contains(&id) {
            continue;
        }
        let here = FileId::stat(&path).ok() == Some(id);
        let holds_entries = here
            && std::fs::read_dir(&path).is_ok_and(|rd| {
                rd.flatten().any(|e| {
                    let n = e.file_name();
                    let n = n.to_string_lossy();
                    n.starts_with("sess_") || n.starts_with(crate::store::REMOVING_PREFIX)
                })
            });
        if !holds_entries {
            let _ = std::fs::remove_file(&record);
            continue;
        }
        reg.known.push(trusted::Known {
            live: false,
            session_id: format!("(recorded sessions dir {})", path.display()),
            sessions_dir: trusted::Placed::of(&path, mounts),
            view: Vec::new(),
            unmasked: false,
        });
    }
    reg
}

/// For root: a host id for the new session's jail that no other live
/// session of this state dir uses.
fn free_root_jail_id(reg: &Registry, id: &SessionId) -> Result<Option<u32>> {
    use jail::idmap::{ROOT_JAIL_SLOTS, ROOT_JAIL_UID};
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    // The id is random already: its first hex digits pick where to look first.
    let hex = id.as_str().trim_start_matches("sess_");
    let start = u32::from_str_radix(&hex[..8], 16).unwrap_or(0) % ROOT_JAIL_SLOTS;
    (0..ROOT_JAIL_SLOTS)
        .map(|i| ROOT_JAIL_UID + 1 + (start + i) % ROOT_JAIL_SLOTS)
        .find(|id| !reg.taken_ids.contains(id))
        .map(Some)
        .ok_or_else(|| {
            anyhow!("all {ROOT_JAIL_SLOTS} host ids for root's jails are in use; end some sessions")
        })
}

/// Checks that the new session's sessions dir and view keep every session's
/// files out of every jail (see [`trusted::check_layout`]).
fn check_layout(
    reg: &Registry,
    mounts: &trusted::Mounts,
    state_dir: &StateDir,
    sessions_dir: &Path,
    work_dir: &Path,
    view: &[PathBuf],
    unmasked: bool,
) -> std::result::Result<(), String> {
    // The jail sees the system directories too (read-only: enough to read
    // a session's files or connect to a holder's socket).
    let system = jail::mounts::SYSTEM_PATHS
        .iter()
        .map(Path::new)
        .filter(|p| p.is_dir() && !p.is_symlink());
    let candidate = trusted::Candidate {
        sessions_dir: trusted::Placed::of(sessions_dir, mounts),
        work_dir: trusted::Placed::of(work_dir, mounts),
        view: view
            .iter()
            .map(PathBuf::as_path)
            .chain(system)
            .map(|p| trusted::Placed::view_root(p, mounts))
            .collect(),
        state_dir: trusted::Placed::of(state_dir.root(), mounts),
        unmasked,
    };
    trusted::check_layout(&candidate, &reg.known)
}

fn resolve_work_dir(dir: Option<&Path>) -> Result<PathBuf> {
    let given = match dir {
        Some(d) => d.to_path_buf(),
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    let abs = std::fs::canonicalize(&given).map_err(|e| {
        anyhow!(
            "Work directory {} does not exist or cannot be reached: {e}",
            given.display()
        )
    })?;
    if !abs.is_dir() {
        bail!("Work directory {} is not a directory", given.display());
    }
    if abs == Path::new("/") {
        bail!("The work directory cannot be / (the jail would expose the whole host); choose a project directory");
    }
    Ok(abs)
}

fn parse_env_args(args: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for a in args {
        let Some((k, v)) = a.split_once('=') else {
            bail!("Invalid --env {a:?}: expected KEY=VALUE");
        };
        if !valid_name(k) {
            bail!("Invalid --env {a:?}: {k:?} is not a valid variable name");
        }
        if v.contains('\0') {
            bail!("Invalid --env {a:?}: value contains a NUL byte");
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// Finds the session command (the jail sees the same /usr), or fails early.
fn check_program(name: &str) -> Result<PathBuf> {
    if name.contains('/') {
        let path = Path::new(name);
        if path.is_file() {
            return Ok(std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()));
        }
        bail!("Command not found: {name}");
    }
    DEFAULT_PATH
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow!("Command not found: {name} (looked in {DEFAULT_PATH})"))
}

/// The environment of the first exec: a clean base, the profile's settings,
/// the variables the profile passes through, then `--env`. Nothing else of
/// the caller's environment is copied (it may hold secrets).
fn initial_env(
    profile: &Profile,
    session: &crate::store::SessionDir,
    overrides: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("PATH".to_string(), DEFAULT_PATH.to_string());
    env.insert(
        "HOME".to_string(),
        jail::home_for(session, profile).display().to_string(),
    );
    env.insert(
        "TMPDIR".to_string(),
        jail::tmp_for(session, profile).display().to_string(),
    );
    env.insert("LANG".to_string(), "C.UTF-8".to_string());
    env.insert("TERM".to_string(), "dumb".to_string());
    env.insert("DELTA_SESSION_ID".to_string(), session.id.to_string());
    for (k, v) in &profile.env.set {
        env.insert(k.clone(), v.clone());
    }
    for name in &profile.env.pass {
        if let Ok(v) = std::env::var(name) {
            env.insert(name.clone(), v);
        }
    }
    for (k, v) in overrides {
        env.insert(k.clone(), v.clone());
    }
    env
}

pub fn end(sessions_dir: &Path, id: &str, remove: bool) -> Result<Value> {
    let id = SessionId::parse(id).map_err(|e| anyhow!(e))?;
    let opened = match crate::store::open_session(sessions_dir, &id) {
        Ok(opened) => opened,
        Err(e) => return end_displaced(sessions_dir, &id, remove).ok_or(e)?,
    };
    let (session, control) = (&opened.session, &opened.control);
    // Stopped before any lock in the session dir is taken: a session that
    // can write its records (Landlock mode) could hold a lock there for
    // ever. The holder comes from the trusted record, so that a damaged
    // metadata.json cannot keep a jail alive, nor name a process to kill.
    if let Some(h) = control.holder()? {
        jail::stop(control, &h)?;
    }
    let meta_lock = match session.lock_metadata() {
        Ok(lock) => lock,
        // The records cannot be updated (a lock held for ever, or made
        // unusable): the session still ends, from the trusted record.
        Err(e) => return end_unrecorded(control, Some(session), &id, remove, &format!("{e:#}")),
    };
    {
        let _meta_lock = meta_lock;
        // Again under the lock: a rebuild that raced the stop above. Killed
        // first and recorded after: an `end` killed in between leaves the
        // session active, and the next `end` finishes the job.
        if let Some(h) = control.holder()? {
            jail::stop(control, &h)?;
        }
        crate::fault::point("end:after-stop");
        control.write_holder(None)?;
        let meta = session.read_metadata();
        let already = matches!(&meta, Ok(m) if m.status == Status::Terminated);
        control.mark_ended()?;
        match meta {
            Ok(mut meta) if !already => {
                meta.status = Status::Terminated;
                meta.ended_at = Some(timefmt::now_rfc3339());
                meta.holder = None;
                session.write_metadata(&meta)?;
            }
            Ok(_) => {
                bail!("Session {id} has already ended (use `delta-sessions cleanup` to remove ended sessions)")
            }
            Err(e) if !remove => {
                return Err(e.context(format!(
                    "its processes are stopped; remove it with `delta-sessions end --remove {id}` or `delta-sessions cleanup`"
                )))
            }
            Err(_) => {}
        }
    }
    if remove {
        session.remove()?;
        control.remove()?;
    }
    sweep_orphaned_cgroups();
    Ok(json!({"status": "terminated", "session_id": id.as_str()}))
}

/// `end` of a session whose directory is not where it was recorded (moved,
/// replaced by a symlink, or deleted: a session that can write its sessions
/// dir could keep moving it): its processes are stopped from the trusted
/// record alone, which names the holder and its cgroups, and the session is
/// marked ended there. `None` when the state dir has no such session for
/// this sessions dir (then the caller's own error stands).
fn end_displaced(sessions_dir: &Path, id: &SessionId, remove: bool) -> Option<Result<Value>> {
    let state_dir = StateDir::open(false).ok()??;
    let control = state_dir.session(id.as_str());
    let anchor = control.anchor().ok()??;
    // The sessions dir named as given (a symlink put in its place resolves
    // elsewhere) or as it resolves now: either names the recorded one.
    let lexical = lexical_absolute(sessions_dir).ok()?;
    let resolved = crate::store::resolve_would_be(sessions_dir).ok();
    let named = anchor.sessions_dir == lexical || resolved.as_ref() == Some(&anchor.sessions_dir);
    if !named || anchor.session_id != id.as_str() {
        return None;
    }
    // Only a session whose directory is really elsewhere (another inode at
    // its path, none, or a symlink on the way): an unreadable sessions dir
    // is the caller's error to fix, and changes nothing.
    match FileId::no_symlink(&anchor.sessions_dir.join(id.as_str())) {
        Ok(at) if at == anchor.session_dir_id => return None,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return None,
        _ => {}
    }
    let why = format!(
        "its directory {} was moved or replaced",
        anchor.sessions_dir.join(id.as_str()).display()
    );
    Some(end_unrecorded(&control, None, id, remove, &why))
}

/// Ends a session from the state dir's record alone, when its records in
/// the sessions dir cannot be reached or updated (`why`): its processes
/// are stopped, it is marked ended there, and the JSON says what was not
/// updated.
/// `session`: its directory, when it is where it was recorded (then
/// `--remove` removes it too; a displaced one is not ours to touch).
fn end_unrecorded(
    control: &trusted::ControlDir,
    session: Option<&crate::store::SessionDir>,
    id: &SessionId,
    remove: bool,
    why: &str,
) -> Result<Value> {
    // Marked first, then the recorded holder stopped: a rebuild racing us
    // records its holder first and then looks for the mark, so one of the
    // two always sees the other (see `exec::connect_or_restart`).
    control.mark_ended()?;
    if let Some(h) = control.holder()? {
        jail::stop(control, &h)?;
        control.write_holder(None)?;
    }
    if remove {
        if let Some(session) = session {
            session.remove()?;
        }
        control.remove()?;
    }
    sweep_orphaned_cgroups();
    Ok(json!({
        "status": "terminated",
        "session_id": id.as_str(),
        "warning": format!(
            "its processes are stopped, but its records were not updated: {why}"
        ),
    }))
}

/// `path` made absolute against the current directory, `.` and `..`
/// removed by name only: no symlink on the way is followed.
fn lexical_absolute(path: &Path) -> Result<PathBuf> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    Ok(jail::mounts::plan::normalize(&abs))
}

/// Removes the empty cgroups of holders that died unrecorded (see
/// [`jail::cgroup::sweep_orphans`]); `end` and `cleanup` do it on the way.
fn sweep_orphaned_cgroups() {
    let Ok(Some(state_dir)) = StateDir::open(false) else {
        return;
    };
    jail::cgroup::sweep_orphans(&jail::cgroup::Hierarchies::of_self(), &|id| {
        state_dir.session(id).owns_no_cgroup(UNRECORDED_START_AGE)
    });
}

/// A session record this old without a holder belongs to a `start` that
/// died: a live one records its holder within the holder's start timeout.
const UNRECORDED_START_AGE: std::time::Duration =
    jail::HOLDER_START_TIMEOUT.saturating_add(std::time::Duration::from_secs(10));

/// What a recorded session runs in (older records only say whether it was jailed).
fn isolation_of(meta: &Metadata) -> Option<&'static str> {
    match (meta.isolation, &meta.holder) {
        (Some(i), _) => Some(i.as_str()),
        (None, Some(h)) => Some(if h.jailed { "jail" } else { "none" }),
        (None, None) => None,
    }
}

/// One entry of `list`.
fn list_entry(meta: &Metadata, execution_count: u64) -> Value {
    json!({
        "session_id": meta.session_id,
        "command": meta.command,
        "work_dir": meta.work_dir,
        "status": meta.status.as_str(),
        "profile": meta.profile,
        "isolation": isolation_of(meta),
        "created_at": meta.created_at,
        "last_executed_at": meta.last_executed_at,
        "execution_count": execution_count,
    })
}

pub fn list(sessions_dir: &Path, all: bool) -> Result<Value> {
    let store = match Store::open(sessions_dir, false) {
        Ok(s) => s,
        // No sessions directory yet means no sessions.
        Err(_) if !sessions_dir.exists() => return Ok(Value::Array(Vec::new())),
        Err(e) => return Err(e),
    };
    let ids = store.list_ids()?;
    if ids.is_empty() {
        return Ok(Value::Array(Vec::new()));
    }
    ensure_registered(&store, "list")?;
    let state = StateDir::open(false)?;
    let mut out = Vec::new();
    for id in ids {
        let session = store.session(&id);
        // Only sessions a start recorded: an entry nobody recorded (from an
        // older delta-sessions, or made while the dir was not trusted) is
        // not reported as a session.
        if !state.as_ref().is_some_and(|s| s.knows(id.as_str())) {
            // In a recorded sessions dir only a start killed before it
            // recorded its session leaves one: corrupt, for cleanup.
            out.push(json!({"session_id": id.as_str(), "status": "corrupt"}));
            continue;
        }
        match session.read_metadata() {
            Ok(mut meta) if meta.session_id == id.as_str() => {
                // Ended in the state dir (its files had left their place):
                // terminated, whatever its metadata says.
                if state
                    .as_ref()
                    .is_some_and(|s| s.session(id.as_str()).is_ended())
                {
                    meta.status = Status::Terminated;
                }
                if all || meta.status == Status::Active {
                    out.push(list_entry(&meta, session.counted(&meta)));
                }
            }
            _ => out.push(json!({"session_id": id.as_str(), "status": "corrupt"})),
        }
    }
    Ok(Value::Array(out))
}

/// Refuses to read or act on a sessions dir that no `start` of this user
/// recorded (at this path): its entries may have been made by a jail that
/// sees it, and would be reported, or acted on, as sessions.
fn ensure_registered(store: &Store, what: &str) -> Result<()> {
    let known = StateDir::open(false)?.is_some_and(|s| s.is_registered(store.root()));
    if !known {
        bail!(
            "{} is not a sessions dir that delta-sessions made for this user (or it was moved \
             since): {what} reads only sessions dirs recorded in {} ({})",
            store.root().display(),
            StateDir::location().display(),
            trusted::STATE_DIR_ENV
        );
    }
    Ok(())
}

/// `cleanup`: removes ended (and corrupt) sessions. It goes on past a
/// session it cannot remove and reports each failure at the end.
pub fn cleanup(sessions_dir: &Path) -> Result<(Value, Vec<String>)> {
    let store = Store::open(sessions_dir, false)?;
    if store.list_ids()?.is_empty() && !store.has_removals() {
        return Ok((Value::Array(Vec::new()), Vec::new()));
    }
    ensure_registered(&store, "cleanup")?;
    let state = StateDir::open(false)?;
    let store_id = FileId::stat(store.root()).ok();
    let mut removed = Vec::new();
    let mut failures = store.finish_removals();
    for id in store.list_ids()? {
        match cleanup_one(&store, state.as_ref(), store_id, &id) {
            Ok(true) => removed.push(Value::String(id.to_string())),
            Ok(false) => {}
            // Removed by a concurrent end --remove or cleanup: not a failure.
            Err(_) if !store.session(&id).dir.exists() => {}
            Err(e) => failures.push(format!("{id}: {e:#}")),
        }
    }
    // Records of this sessions dir's sessions whose directory is gone.
    if let Some(state) = &state {
        for (control, anchor) in state.anchors() {
            if Some(anchor.sessions_dir_id) != store_id
                || store.root().join(&anchor.session_id).exists()
            {
                continue;
            }
            if let Ok(Some(h)) = control.holder() {
                let _ = jail::stop(&control, &h);
            }
            if let Err(e) = control.remove() {
                failures.push(format!("{}: {e:#}", anchor.session_id));
            }
        }
    }
    sweep_orphaned_cgroups();
    Ok((Value::Array(removed), failures))
}

/// Removes one session if it has ended or is corrupt; `Ok(false)` leaves it.
fn cleanup_one(
    store: &Store,
    state: Option<&StateDir>,
    store_id: Option<FileId>,
    id: &SessionId,
) -> Result<bool> {
    let session = store.session(id);
    let control = state.map(|s| s.session(id.as_str()));
    let anchor = match &control {
        Some(c) => c.anchor()?,
        None => None,
    };
    let ours = anchor.as_ref().is_some_and(|a| {
        Some(a.sessions_dir_id) == store_id
            && FileId::lstat(&session.dir).ok() == Some(a.session_dir_id)
    });
    let young = age(&session.dir) < std::time::Duration::from_secs(60);
    if anchor.is_some() && !ours {
        // Recorded for another directory: not this cleanup's to judge.
        return Ok(false);
    }
    if anchor.is_none() {
        // Nobody's: in a recorded sessions dir, only a start killed before
        // it recorded its session leaves such a directory (start refuses to
        // record a sessions dir that holds any). Nothing of it ever ran
        // unrecorded, so nothing is stopped; it goes once it is old enough
        // not to be a start in progress.
        if young {
            return Ok(false);
        }
        session.remove()?;
        return Ok(true);
    }
    let _meta_lock = session.lock_metadata()?;
    let metadata = session.read_metadata();
    let remove = match (&metadata, &control) {
        (Ok(meta), c) => {
            meta.status == Status::Terminated || c.as_ref().is_some_and(|c| c.is_ended())
        }
        // Corrupt: an ended one goes now; otherwise give a start in progress
        // (no metadata yet) its time.
        (Err(_), Some(c)) if ours && c.is_ended() => true,
        (Err(_), _) => !young,
    };
    if !remove {
        return Ok(false);
    }
    // Only a holder recorded in the state dir is ever stopped: a name on a
    // command line could be anyone's process.
    if let (Some(c), true) = (&control, ours) {
        if let Some(h) = c.holder()? {
            jail::stop(c, &h)?;
            c.write_holder(None)?;
        }
    }
    session.remove()?;
    if let (Some(c), true) = (&control, ours) {
        c.remove()?;
    }
    Ok(true)
}

fn age(path: &Path) -> std::time::Duration {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .unwrap_or_default()
}

/// `profiles`: one line per built-in profile.
pub fn profiles_list() -> Result<String> {
    let names = Profile::builtin_names();
    let width = names.iter().map(|n| n.len()).max().unwrap_or(0);
    let mut out = String::new();
    for name in names {
        let p = Profile::load(name).map_err(|e| anyhow!("{e}"))?;
        out.push_str(&format!("{name:<width$}  {}\n", p.summary()));
    }
    Ok(out)
}

/// `profiles show NAME|PATH`: the resolved profile.
pub fn profiles_show(name: &str) -> Result<Value> {
    let p = Profile::load(name).map_err(|e| anyhow!("{e}"))?;
    // The same checks as `start`: a profile shown as fine must start.
    p.check_binds().map_err(|e| anyhow!("{e}"))?;
    Ok(serde_json::to_value(p)?)
}
