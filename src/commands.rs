//! The session commands other than exec: start, end, list, cleanup, profiles.
//! Each returns the JSON value to print; errors become `Error: …`.

use crate::exec::shell::valid_name;
use crate::jail;
use crate::profile::Profile;
use crate::store::{Metadata, SessionId, State, Status, Store};
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
    let profile =
        Profile::load(opts.profile.as_deref().unwrap_or("default")).map_err(|e| anyhow!("{e}"))?;
    profile.check_binds().map_err(|e| anyhow!("{e}"))?;
    let work_dir = resolve_work_dir(opts.work_dir.as_deref())?;
    let overrides = parse_env_args(&opts.env)?;
    let mut command = opts.command;
    if command.is_empty() {
        command.push("bash".into());
    }
    if command[0].is_empty() {
        bail!("Empty command name");
    }
    check_program(&command[0])?;

    let store = Store::open(sessions_dir, true)?;
    let session = store.create_session()?;
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
        let holder = jail::start(&session, &profile, &work_dir)?;
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
            holder: Some(holder.clone()),
            jail_restarts: 0,
            ended_at: None,
        };
        if let Err(e) = session.write_metadata(&meta) {
            let _ = jail::stop(&session, &holder);
            return Err(e);
        }
        // Last, so that the holder's work on it does not slow `start` down;
        // without it the first exec only starts its own shell.
        if let Some(first) = crate::exec::first_prestart(&command, &state, &work_dir, &profile) {
            let _ = jail::queue_prestart(&session, &first);
        }
        Ok(json!({
            "session_id": session.id.as_str(),
            "command": meta.command,
            "work_dir": work_dir,
            "status": "active",
            "profile": profile.name,
        }))
    })();
    if created.is_err() {
        // A session that could not be built leaves nothing behind.
        let _ = std::fs::remove_dir_all(&session.dir);
    }
    created
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

/// Fails early when the session command cannot be found (the jail sees the same /usr).
fn check_program(name: &str) -> Result<()> {
    if name.contains('/') {
        if Path::new(name).is_file() {
            return Ok(());
        }
        bail!("Command not found: {name}");
    }
    let found = DEFAULT_PATH
        .split(':')
        .any(|dir| Path::new(dir).join(name).is_file());
    if !found {
        bail!("Command not found: {name} (looked in {DEFAULT_PATH})");
    }
    Ok(())
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
    let store = Store::open(sessions_dir, false)?;
    let session = store.existing(&id)?;
    {
        let _meta_lock = session.lock_metadata()?;
        let mut meta = session.read_metadata()?;
        if meta.status == Status::Terminated {
            bail!("Session {id} has already ended (use `delta-sessions cleanup` to remove ended sessions)");
        }
        // Terminated first: a concurrent exec then refuses to rebuild the jail.
        meta.status = Status::Terminated;
        meta.ended_at = Some(timefmt::now_rfc3339());
        let holder = meta.holder.take();
        session.write_metadata(&meta)?;
        if let Some(h) = holder {
            jail::stop(&session, &h)?;
        }
    }
    if remove {
        std::fs::remove_dir_all(&session.dir)
            .with_context(|| format!("cannot remove {}", session.dir.display()))?;
    }
    Ok(json!({"status": "terminated", "session_id": id.as_str()}))
}

/// One entry of `list`.
fn list_entry(meta: &Metadata) -> Value {
    json!({
        "session_id": meta.session_id,
        "command": meta.command,
        "work_dir": meta.work_dir,
        "status": meta.status.as_str(),
        "profile": meta.profile,
        "created_at": meta.created_at,
        "last_executed_at": meta.last_executed_at,
        "execution_count": meta.execution_count,
    })
}

pub fn list(sessions_dir: &Path, all: bool) -> Result<Value> {
    let store = match Store::open(sessions_dir, false) {
        Ok(s) => s,
        // No sessions directory yet means no sessions.
        Err(_) if !sessions_dir.exists() => return Ok(Value::Array(Vec::new())),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for id in store.list_ids()? {
        let session = store.session(&id);
        match session.read_metadata() {
            Ok(meta) if meta.session_id == id.as_str() => {
                if all || meta.status == Status::Active {
                    out.push(list_entry(&meta));
                }
            }
            _ => out.push(json!({"session_id": id.as_str(), "status": "corrupt"})),
        }
    }
    Ok(Value::Array(out))
}

pub fn cleanup(sessions_dir: &Path) -> Result<Value> {
    let store = Store::open(sessions_dir, false)?;
    let mut removed = Vec::new();
    for id in store.list_ids()? {
        let session = store.session(&id);
        let _meta_lock = session.lock_metadata()?;
        let (remove, corrupt) = match session.read_metadata() {
            Ok(meta) => (meta.status == Status::Terminated, false),
            // A session being created has no metadata for a moment: leave young ones alone.
            Err(_) => (age(&session.dir) > std::time::Duration::from_secs(60), true),
        };
        if remove {
            if corrupt {
                // Its holder may still run; it must not outlive the directory
                // that names it.
                crate::jail::stop_unrecorded(&session)?;
            }
            std::fs::remove_dir_all(&session.dir)
                .with_context(|| format!("cannot remove {}", session.dir.display()))?;
            removed.push(Value::String(id.to_string()));
        }
    }
    Ok(Value::Array(removed))
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
    Ok(serde_json::to_value(p)?)
}
