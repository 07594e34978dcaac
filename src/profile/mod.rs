//! Profiles: what a session may see, spend and reach.
//!
//! A profile is a TOML file (see `docs/profiles.md`): one of the built-ins of
//! `profiles/`, compiled in ([`builtin`]), or a user file given by path. Every
//! key a file leaves out takes the value of the `default` profile. The file
//! is parsed into the all-optional [`raw`] structs, then checked and resolved
//! by [`validate`] into [`Profile`], which is what the rest of the program
//! uses and what is stored as `profile.json` with the session.

pub mod builtin;
mod raw;
pub mod units;
mod validate;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

pub use validate::MAX_OUTPUT_BYTES;

/// Largest profile file read.
const MAX_FILE_BYTES: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// The session runs in its own namespaces (section 4 of the spec).
    #[serde(alias = "Jail")]
    Jail,
    /// No namespaces: Landlock, seccomp, no capabilities, `no_new_privs`,
    /// rlimits (for hosts that block user namespaces).
    Landlock,
    /// `Jail` where the host allows user namespaces, else `Landlock`; never
    /// `None`. Resolved at `start`: a session's recorded profile never says
    /// `auto`.
    Auto,
    /// No jail: limits only.
    #[serde(alias = "None")]
    None,
}

impl Isolation {
    /// The name used in profiles and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Jail => "jail",
            Isolation::Landlock => "landlock",
            Isolation::Auto => "auto",
            Isolation::None => "none",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// A fresh network namespace with loopback only.
    #[serde(alias = "None")]
    None,
    /// The host's network.
    #[serde(alias = "Host")]
    Host,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Access {
    #[serde(rename = "rw", alias = "ReadWrite")]
    ReadWrite,
    #[serde(rename = "ro", alias = "ReadOnly")]
    ReadOnly,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Filesystem {
    /// How the work dir is mounted.
    pub work_dir: Access,
    /// Extra host paths bound read-only at the same path.
    pub read_only: Vec<PathBuf>,
    /// Extra host paths bound read-write at the same path.
    pub read_write: Vec<PathBuf>,
    /// Extra paths hidden inside the jail.
    pub masked: Vec<PathBuf>,
}

/// Resource limits. `None` leaves the limit inherited from the caller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Wall clock per exec.
    pub timeout_ms: u64,
    /// Between SIGTERM and SIGKILL when the timeout expires.
    pub kill_grace_ms: u64,
    /// RLIMIT_CPU (soft; the hard limit is 5 s more).
    pub cpu_seconds: Option<u64>,
    /// RLIMIT_AS.
    pub memory_bytes: Option<u64>,
    /// RLIMIT_NPROC.
    pub processes: Option<u64>,
    /// RLIMIT_FSIZE.
    pub file_size_bytes: Option<u64>,
    /// RLIMIT_NOFILE.
    pub open_files: Option<u64>,
    /// Output kept per stream (head and tail).
    pub output_bytes: u64,
    /// Budget of the session's private `/tmp` and `$HOME` together: they
    /// are one tmpfs of this size in the jail. `None`: host directories in
    /// the session dir, persistent through a jail rebuild but unbounded.
    /// (Sessions recorded before this key existed read as `None`, which is
    /// what they had.)
    #[serde(default)]
    pub disk_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvPolicy {
    /// Variables set in the session's first environment.
    pub set: BTreeMap<String, String>,
    /// Variables copied from the caller's environment when present.
    pub pass: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Built-in name, or the stem of the user file.
    pub name: String,
    pub description: String,
    /// The user file it was read from; `None` for a built-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<PathBuf>,
    pub isolation: Isolation,
    pub filesystem: Filesystem,
    pub network: Network,
    pub limits: Limits,
    pub env: EnvPolicy,
    pub hostname: String,
    /// Landlock mode only: let the session open Unix sockets, which then
    /// reach every socket file of the host its user may connect to (a
    /// jail's Unix sockets reach only the jail's own files, always).
    #[serde(default)]
    pub host_unix_sockets: bool,
}

impl Profile {
    /// Names of the built-in profiles, in listing order.
    pub fn builtin_names() -> &'static [&'static str] {
        builtin::NAMES
    }

    /// Checks the extra binds against this host, at `start`: each must exist
    /// and be written as its real path. The holder opens them refusing
    /// symlinks (a symlink's target could change under the jail), so a path
    /// through a symlink would only fail later, less clearly.
    pub fn check_binds(&self) -> Result<(), String> {
        let label = match &self.source {
            Some(path) => format!("profile {}", path.display()),
            None => format!("built-in profile {}", self.name),
        };
        let lists = [
            ("filesystem.read_only", &self.filesystem.read_only),
            ("filesystem.read_write", &self.filesystem.read_write),
        ];
        for (key, paths) in lists {
            for path in paths {
                let real = std::fs::canonicalize(path)
                    .map_err(|e| format!("{label}: {key}: {}: {e}", path.display()))?;
                if &real != path {
                    return Err(format!(
                        "{label}: {key}: {} goes through a symlink; write its real path {}",
                        path.display(),
                        real.display()
                    ));
                }
            }
        }
        Ok(())
    }

    /// A built-in profile by name, or a user file when the argument contains
    /// a `/` or ends in `.toml`. Errors are one line naming the file and key.
    pub fn load(name_or_path: &str) -> Result<Profile, String> {
        if is_path(name_or_path) {
            let path = Path::new(name_or_path);
            let label = path.display().to_string();
            let text = read_file(path).map_err(|e| format!("profile {label}: {e}"))?;
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "custom".to_string());
            Self::from_toml(&name, Some(path.to_path_buf()), &text)
                .map_err(|e| format!("profile {label}: {e}"))
        } else {
            let text = builtin::text(name_or_path).ok_or_else(|| {
                format!(
                    "unknown profile {name_or_path:?} (built-in: {}; or give a path to a .toml file)",
                    Self::builtin_names().join(", ")
                )
            })?;
            Self::from_toml(name_or_path, None, text)
                .map_err(|e| format!("built-in profile {name_or_path}: {e}"))
        }
    }

    /// Parses and resolves profile text; keys it omits come from `default`.
    /// The error names the key, not the file.
    pub fn from_toml(name: &str, source: Option<PathBuf>, text: &str) -> Result<Profile, String> {
        let mut raw = raw::parse(text)?;
        if raw.description.is_none() {
            if let Some(path) = &source {
                raw.description = Some(format!("user profile {}", path.display()));
            }
        }
        // A budget the file did not ask for adapts to what it did ask for.
        let disk_given = raw.limits.as_ref().is_some_and(|l| l.disk.is_some());
        let base = raw::parse(builtin::default_text())
            .map_err(|e| format!("built-in profile default: {e}"))?;
        validate::resolve(name, source, raw.over(base), disk_given)
    }

    /// One line for `profiles`: the description and the main limits.
    pub fn summary(&self) -> String {
        let l = &self.limits;
        let opt = |v: Option<u64>, f: &dyn Fn(u64) -> String| v.map_or("unlimited".into(), f);
        format!(
            "{} [timeout {}, cpu {}, memory {}, processes {}, output {}, disk {}]",
            self.description,
            units::format_duration_ms(l.timeout_ms),
            opt(l.cpu_seconds, &|s| units::format_duration_ms(s * 1000)),
            opt(l.memory_bytes, &units::format_size),
            opt(l.processes, &|n| n.to_string()),
            units::format_size(l.output_bytes),
            opt(l.disk_bytes, &units::format_size),
        )
    }
}

/// What Landlock mode cannot hold, checked once `auto` became `landlock`
/// (see [`validate::check_landlock`]).
pub fn check_landlock(profile: &Profile) -> Result<(), String> {
    validate::check_landlock(&profile.filesystem)
}

/// True when `--profile` names a file rather than a built-in.
fn is_path(arg: &str) -> bool {
    arg.contains('/') || arg.ends_with(".toml")
}

/// Reads a profile file, at most [`MAX_FILE_BYTES`].
fn read_file(path: &Path) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {}", os_reason(&e)))?;
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        return Err("cannot read: is a directory".into());
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {}", os_reason(&e)))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "is larger than {} (not a profile?)",
            units::format_size(MAX_FILE_BYTES)
        ));
    }
    String::from_utf8(bytes).map_err(|_| "is not UTF-8 text".to_string())
}

/// The OS reason without Rust's "(os error N)" suffix.
fn os_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests;
