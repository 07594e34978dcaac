//! Checks a [`RawProfile`] (already laid over `default`) and resolves it.
//! Every error is `KEY: REASON`, one line; the caller adds the file.

use super::raw::{RawEnv, RawFilesystem, RawLimits, RawProfile, Scalar};
use super::units::{format_duration_ms, format_size, is_unlimited, parse_duration_ms, parse_size};
use super::{Access, EnvPolicy, Filesystem, Isolation, Limits, Network, Profile};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// Longest per-exec timeout: 7 days.
pub const MAX_TIMEOUT_MS: u64 = 7 * 86_400_000;
/// Longest grace between SIGTERM and SIGKILL.
pub const MAX_KILL_GRACE_MS: u64 = 60_000;
/// Most CPU seconds per process: 30 days.
pub const MAX_CPU_SECONDS: u64 = 30 * 86_400;
/// Smallest address space a shell can start in.
pub const MIN_MEMORY_BYTES: u64 = 16 << 20;
/// Output kept per stream: bounded so delta-sessions stays small in memory.
pub const MAX_OUTPUT_BYTES: u64 = 4 << 20;
pub const MIN_OUTPUT_BYTES: u64 = 1 << 10;
/// Fewest open files a shell and its pipes work with.
pub const MIN_OPEN_FILES: u64 = 16;
/// Linux's default `fs.nr_open`: more cannot be granted.
pub const MAX_OPEN_FILES: u64 = 1 << 20;
/// Smallest budget for `/tmp` and `$HOME`: a shell's history and a few
/// temporary files fit.
pub const MIN_DISK_BYTES: u64 = 1 << 20;
/// Largest: a tmpfs is memory; more than this belongs on the host disk.
pub const MAX_DISK_BYTES: u64 = 1 << 40;
/// Longest description, hostname.
const MAX_DESCRIPTION: usize = 200;
const MAX_HOSTNAME: usize = 64;

type Check<T> = Result<T, String>;

/// Resolves `raw` (every key present, as after `over(default)`).
///
/// `disk_given`: the file itself sets `limits.disk`. When it does not, the
/// budget taken from `default` adapts instead of failing a check the file
/// never asked for: none without a jail, and at most half of a `memory`
/// the file lowered below it.
pub fn resolve(
    name: &str,
    source: Option<PathBuf>,
    mut raw: RawProfile,
    disk_given: bool,
) -> Check<Profile> {
    let description = raw.description.unwrap_or_default();
    if description.chars().count() > MAX_DESCRIPTION || description.chars().any(char::is_control) {
        return Err(format!(
            "description: must be one line of at most {MAX_DESCRIPTION} characters, without control characters (NUL, tabs, escapes)"
        ));
    }
    let isolation = match raw.isolation.as_deref() {
        Some("auto") => Isolation::Auto,
        Some("jail") => Isolation::Jail,
        Some("landlock") => Isolation::Landlock,
        Some("none") => Isolation::None,
        other => {
            return Err(bad_choice(
                "isolation",
                other,
                &["auto", "jail", "landlock", "none"],
            ))
        }
    };
    let network = match raw.network.as_deref() {
        Some("none") => Network::None,
        Some("host") => Network::Host,
        other => return Err(bad_choice("network", other, &["none", "host"])),
    };
    let hostname = raw.hostname.unwrap_or_default();
    check_hostname(&hostname)?;
    let filesystem = filesystem(raw.filesystem.unwrap_or_default())?;
    if !disk_given {
        let none = raw.isolation.as_deref() == Some("none");
        if let Some(l) = raw.limits.as_mut() {
            if none {
                l.disk = Some(Scalar::Text("unlimited".into()));
            } else if let (Some(memory), Some(disk)) = (l.memory.clone(), l.disk.clone()) {
                let bytes = |v| optional(Some(v)).map(|v| size("", Some(v))).transpose();
                if let (Ok(Some(m)), Ok(Some(d))) = (bytes(memory), bytes(disk)) {
                    if d >= m {
                        l.disk = Some(Scalar::Int((m / 2) as i64));
                    }
                }
            }
        }
    }
    let limits = limits(raw.limits.unwrap_or_default())?;
    let env = env(raw.env.unwrap_or_default())?;
    if isolation == Isolation::None {
        // Without a jail there is no namespace to take the network away or to
        // hold binds and masks: refuse rather than silently ignore them.
        if network == Network::None {
            return Err("network: \"none\" needs isolation = \"jail\"; \
                with isolation = \"none\" set network = \"host\""
                .into());
        }
        if filesystem.work_dir == Access::ReadOnly {
            return Err("filesystem.work_dir: \"ro\" needs isolation = \"jail\"".into());
        }
        for (key, list) in [
            ("read_only", &filesystem.read_only),
            ("read_write", &filesystem.read_write),
            ("masked", &filesystem.masked),
        ] {
            if !list.is_empty() {
                return Err(format!(
                    "filesystem.{key}: needs isolation = \"jail\" (there are no binds or masks without a jail)"
                ));
            }
        }
        if limits.disk_bytes.is_some() {
            return Err(
                "limits.disk: a budget needs isolation = \"jail\" (without a jail, \
                /tmp and $HOME are host directories); set disk = \"unlimited\""
                    .into(),
            );
        }
    }
    if isolation == Isolation::Landlock {
        check_landlock(&filesystem)?;
    }
    Ok(Profile {
        name: name.to_string(),
        description,
        source,
        isolation,
        filesystem,
        network,
        limits,
        env,
        hostname,
        host_unix_sockets: raw.host_unix_sockets.unwrap_or(false),
    })
}

/// What Landlock mode cannot do, refused rather than ignored: Landlock
/// grants whole trees and has no way to hide a path inside one.
pub fn check_landlock(filesystem: &Filesystem) -> Check<()> {
    if !filesystem.masked.is_empty() {
        return Err(
            "filesystem.masked: needs isolation = \"jail\" (Landlock grants whole \
            trees and cannot hide a path inside one; a path outside the work dir and the binds \
            is unreachable anyway)"
                .into(),
        );
    }
    Ok(())
}

fn bad_choice(key: &str, got: Option<&str>, choices: &[&str]) -> String {
    let choices: Vec<String> = choices.iter().map(|c| format!("{c:?}")).collect();
    format!(
        "{key}: {:?} is not one of {}",
        got.unwrap_or(""),
        choices.join(", ")
    )
}

fn check_hostname(name: &str) -> Check<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_HOSTNAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "hostname: {name:?} is not a host name (1 to {MAX_HOSTNAME} characters of A-Z, a-z, 0-9, '-' and '.')"
        ))
    }
}

fn filesystem(raw: RawFilesystem) -> Check<Filesystem> {
    let work_dir = match raw.work_dir.as_deref() {
        Some("rw") => Access::ReadWrite,
        Some("ro") => Access::ReadOnly,
        other => return Err(bad_choice("filesystem.work_dir", other, &["rw", "ro"])),
    };
    Ok(Filesystem {
        work_dir,
        read_only: paths("filesystem.read_only", raw.read_only.unwrap_or_default())?,
        read_write: paths("filesystem.read_write", raw.read_write.unwrap_or_default())?,
        masked: paths("filesystem.masked", raw.masked.unwrap_or_default())?,
    })
}

fn paths(key: &str, list: Vec<String>) -> Check<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = Vec::with_capacity(list.len());
    for text in list {
        let path = Path::new(&text);
        let reason = if text.contains('\0') {
            Some("contains a NUL character")
        } else if !path.is_absolute() {
            Some("is not an absolute path")
        } else if path.components().any(|c| c == Component::ParentDir) {
            Some("contains \"..\"")
        } else if path == Path::new("/") {
            Some("is the whole file system")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(format!("{key}: {text:?} {reason}"));
        }
        // Normalised: no trailing slash, no "." or doubled slashes.
        let clean: PathBuf = path.components().collect();
        if out.contains(&clean) {
            return Err(format!("{key}: {text:?} is listed twice"));
        }
        out.push(clean);
    }
    Ok(out)
}

fn limits(raw: RawLimits) -> Check<Limits> {
    let timeout_ms = duration_ms("limits.timeout", raw.timeout)?;
    if timeout_ms == 0 || timeout_ms > MAX_TIMEOUT_MS {
        return Err(format!(
            "limits.timeout: must be more than 0s and at most {}",
            format_duration_ms(MAX_TIMEOUT_MS)
        ));
    }
    let kill_grace_ms = duration_ms("limits.kill_grace", raw.kill_grace)?;
    if kill_grace_ms > MAX_KILL_GRACE_MS {
        return Err(format!(
            "limits.kill_grace: must be at most {}",
            format_duration_ms(MAX_KILL_GRACE_MS)
        ));
    }
    let cpu_seconds = match optional(raw.cpu) {
        None => None,
        Some(v) => {
            let ms = duration_ms("limits.cpu", Some(v))?;
            if ms == 0 || ms > MAX_CPU_SECONDS * 1000 {
                return Err(format!(
                    "limits.cpu: must be more than 0s and at most {}, or \"unlimited\"",
                    format_duration_ms(MAX_CPU_SECONDS * 1000)
                ));
            }
            // The kernel counts whole seconds; round up.
            Some(ms.div_ceil(1000))
        }
    };
    let memory_bytes = match optional(raw.memory) {
        None => None,
        Some(v) => {
            let n = size("limits.memory", Some(v))?;
            if n < MIN_MEMORY_BYTES {
                return Err(format!(
                    "limits.memory: {} is too small to start a shell (at least {}), or \"unlimited\"",
                    format_size(n),
                    format_size(MIN_MEMORY_BYTES)
                ));
            }
            Some(n)
        }
    };
    let processes = match optional(raw.processes) {
        None => None,
        Some(v) => Some(count("limits.processes", v, 1, u64::from(u32::MAX))?),
    };
    let file_size_bytes = match optional(raw.file_size) {
        None => None,
        Some(v) => {
            let n = size("limits.file_size", Some(v))?;
            if n == 0 {
                return Err(
                    "limits.file_size: must be more than 0 (a read-only work dir is filesystem.work_dir = \"ro\"), or \"unlimited\""
                        .into(),
                );
            }
            Some(n)
        }
    };
    let open_files = match optional(raw.open_files) {
        None => None,
        Some(v) => Some(count(
            "limits.open_files",
            v,
            MIN_OPEN_FILES,
            MAX_OPEN_FILES,
        )?),
    };
    let output_bytes = match raw.output {
        Some(v) if matches!(&v, Scalar::Text(t) if is_unlimited(t)) => {
            return Err(format!(
                "limits.output: cannot be unlimited (at most {} per stream; use exec --raw to stream everything)",
                format_size(MAX_OUTPUT_BYTES)
            ))
        }
        v => size("limits.output", v)?,
    };
    if !(MIN_OUTPUT_BYTES..=MAX_OUTPUT_BYTES).contains(&output_bytes) {
        return Err(format!(
            "limits.output: {} is out of range ({} to {} per stream; use exec --raw to stream everything)",
            format_size(output_bytes),
            format_size(MIN_OUTPUT_BYTES),
            format_size(MAX_OUTPUT_BYTES)
        ));
    }
    let disk_bytes = match optional(raw.disk) {
        None => None,
        Some(v) => {
            let n = size("limits.disk", Some(v))?;
            if !(MIN_DISK_BYTES..=MAX_DISK_BYTES).contains(&n) {
                return Err(format!(
                    "limits.disk: {} is out of range ({} to {}, or \"unlimited\" for host directories without a budget)",
                    format_size(n),
                    format_size(MIN_DISK_BYTES),
                    format_size(MAX_DISK_BYTES)
                ));
            }
            Some(n)
        }
    };
    if let (Some(disk), Some(memory)) = (disk_bytes, memory_bytes) {
        // The tmpfs is memory, counted against the session's memory cgroup:
        // a budget that reaches the limit would end in the OOM killer, not
        // in "No space left on device".
        if disk >= memory {
            return Err(format!(
                "limits.disk: {} must be below limits.memory ({}): /tmp and $HOME are held in memory",
                format_size(disk),
                format_size(memory)
            ));
        }
    }
    Ok(Limits {
        timeout_ms,
        kill_grace_ms,
        cpu_seconds,
        memory_bytes,
        processes,
        file_size_bytes,
        open_files,
        output_bytes,
        disk_bytes,
    })
}

/// `None` for a missing key or `"unlimited"`.
fn optional(v: Option<Scalar>) -> Option<Scalar> {
    v.filter(|v| !matches!(v, Scalar::Text(t) if is_unlimited(t)))
}

fn missing(key: &str) -> String {
    format!("{key}: missing")
}

fn duration_ms(key: &str, v: Option<Scalar>) -> Check<u64> {
    match v.ok_or_else(|| missing(key))? {
        Scalar::Int(n) if n < 0 => Err(format!("{key}: {n} is negative")),
        Scalar::Int(n) => (n as u64)
            .checked_mul(1000)
            .ok_or_else(|| format!("{key}: {n} is too long a duration")),
        Scalar::Text(t) => parse_duration_ms(&t).map_err(|e| format!("{key}: {e}")),
    }
}

fn size(key: &str, v: Option<Scalar>) -> Check<u64> {
    match v.ok_or_else(|| missing(key))? {
        Scalar::Int(n) if n < 0 => Err(format!("{key}: {n} is negative")),
        Scalar::Int(n) => Ok(n as u64),
        Scalar::Text(t) => parse_size(&t).map_err(|e| format!("{key}: {e}")),
    }
}

fn count(key: &str, v: Scalar, min: u64, max: u64) -> Check<u64> {
    let n = match v {
        Scalar::Int(n) => n,
        Scalar::Text(t) => t.trim().parse::<i64>().map_err(|_| {
            format!("{key}: {t:?} is not a whole number (use e.g. 256, or \"unlimited\")")
        })?,
    };
    if n < 0 || (n as u64) < min || (n as u64) > max {
        return Err(format!(
            "{key}: {n} is out of range ({min} to {max}, or \"unlimited\")"
        ));
    }
    Ok(n as u64)
}

fn env(raw: RawEnv) -> Check<EnvPolicy> {
    let set: BTreeMap<String, String> = raw.set.unwrap_or_default();
    for (name, value) in &set {
        check_env_name("env.set", name)?;
        if value.contains('\0') {
            return Err(format!("env.set.{name}: contains a NUL character"));
        }
    }
    let pass = raw.pass.unwrap_or_default();
    for name in &pass {
        check_env_name("env.pass", name)?;
    }
    Ok(EnvPolicy { set, pass })
}

fn check_env_name(key: &str, name: &str) -> Check<()> {
    let mut bytes = name.bytes();
    let ok = matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{key}: {name:?} is not a variable name (letters, digits and '_', not starting with a digit)"
        ))
    }
}
