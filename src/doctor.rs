//! `delta-sessions doctor`: checks what this host allows and says how to fix
//! what is missing.

use crate::jail::probe;
use std::fs;

/// One line of the report.
struct Check {
    name: &'static str,
    ok: bool,
    /// Needed for the default (jailed) profiles; a failed optional check only degrades.
    required: bool,
    detail: String,
    fix: Option<String>,
}

fn read_trim(path: &str) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn user_namespaces() -> Check {
    let mut fix = None;
    if read_trim("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        fix = Some(
            "sysctl -w kernel.unprivileged_userns_clone=1 (persist it in /etc/sysctl.d/)".into(),
        );
    }
    if read_trim("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        fix = Some("sysctl -w user.max_user_namespaces=15000".into());
    }
    let apparmor =
        read_trim("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1");
    match probe::user_namespace() {
        Ok(()) => Check {
            name: "user namespaces",
            ok: true,
            required: false,
            detail: if apparmor {
                "available (AppArmor restricts them for other programs)".into()
            } else {
                "available".into()
            },
            fix: None,
        },
        Err(e) => Check {
            name: "user namespaces",
            ok: false,
            required: false,
            detail: format!(
                "cannot create one: {e}; sessions get Landlock mode (profile untrusted refuses to start)"
            ),
            fix: fix.or_else(|| {
                apparmor.then(|| {
                    "Ubuntu's AppArmor restricts them: sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, \
or add an AppArmor profile granting `userns` to delta-sessions"
                        .to_string()
                })
            })
            .or_else(|| Some("run inside a container or VM that allows nested user namespaces, or use --profile unconfined on purpose".into())),
        },
    }
}

fn seccomp() -> Check {
    let actions = read_trim("/proc/sys/kernel/seccomp/actions_avail").unwrap_or_default();
    let ok = actions.split_whitespace().any(|a| a == "errno");
    Check {
        name: "seccomp",
        ok,
        required: true,
        detail: if ok {
            format!("filters available ({actions})")
        } else {
            "seccomp filters unavailable".into()
        },
        fix: (!ok).then(|| "use a kernel built with CONFIG_SECCOMP_FILTER".into()),
    }
}

fn landlock() -> Check {
    match probe::landlock_abi() {
        Ok(v) => Check {
            name: "landlock",
            ok: v >= 6,
            required: false,
            detail: if v >= 6 {
                format!("ABI version {v}: jails are scoped (no host abstract Unix socket or signal); Landlock mode available")
            } else {
                format!("ABI version {v}: no scopes (ABI 6), so a jail with the host network can reach the host's abstract Unix sockets")
            },
            fix: (v < 6).then(|| "optional: Linux 6.12 or newer".into()),
        },
        Err(e) => Check {
            name: "landlock",
            ok: false,
            required: false,
            detail: format!("not available ({e}); the jail does not need it, Landlock mode does"),
            fix: Some("optional: boot with lsm=...,landlock to add it".into()),
        },
    }
}

/// What a `start` with the default profile (`isolation = "auto"`) gets here.
fn isolation() -> Check {
    use crate::profile::Isolation;
    match crate::jail::resolve_isolation(Isolation::Auto) {
        Ok((chosen, why)) => Check {
            name: "isolation",
            ok: true,
            required: true,
            detail: format!("start picks {}: {why}", chosen.as_str()),
            fix: (chosen == Isolation::Landlock).then(|| {
                "optional: allow user namespaces for the full jail (see the user namespaces line)"
                    .into()
            }),
        },
        Err(e) => Check {
            name: "isolation",
            ok: false,
            required: true,
            detail: format!("{e:#}"),
            fix: Some(
                "allow user namespaces or enable Landlock; or start with --profile unconfined on purpose"
                    .into(),
            ),
        },
    }
}

fn cgroups() -> Check {
    use crate::jail::cgroup;
    const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
    let version = match probe::fs_magic("/sys/fs/cgroup") {
        Ok(CGROUP2_SUPER_MAGIC) => "v2",
        Ok(_) => "v1",
        Err(e) => {
            return Check {
                name: "cgroups",
                ok: false,
                required: false,
                detail: format!("/sys/fs/cgroup not readable ({e}); limits use rlimits only"),
                fix: None,
            }
        }
    };
    let limits = match crate::profile::Profile::load("default") {
        Ok(p) => p.limits,
        Err(e) => {
            return Check {
                name: "cgroups",
                ok: false,
                required: false,
                detail: e,
                fix: None,
            }
        }
    };
    let dirs = cgroup::plan(
        &cgroup::Hierarchies::of_self(),
        &format!("doctor-{}", std::process::id()),
        &limits,
    );
    match (dirs.is_empty(), cgroup::probe(&dirs)) {
        (false, Ok(())) => Check {
            name: "cgroups",
            ok: true,
            required: false,
            detail: format!(
                "{version}; each session gets memory and pids cgroups below {}",
                dirs[0].path.parent().map(|p| p.display().to_string()).unwrap_or_default()
            ),
            fix: None,
        },
        (true, _) => Check {
            name: "cgroups",
            ok: false,
            required: false,
            detail: format!("{version}, no memory or pids controller found; limits use rlimits only"),
            fix: None,
        },
        (false, Err(e)) => Check {
            name: "cgroups",
            ok: false,
            required: false,
            detail: format!("{version}, not delegated to this user ({e:#}); limits use rlimits only (per process, not per session)"),
            fix: Some(if version == "v2" {
                "optional: run as root, or from a delegated cgroup whose cgroup.subtree_control enables memory and pids".into()
            } else {
                "optional: run as root, or give this user a writable memory and pids cgroup".into()
            }),
        },
    }
}

fn pidfd() -> Check {
    let me = std::process::id() as libc::c_long;
    // SAFETY: pidfd_open of our own pid; the descriptor is closed right away.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, me, 0) };
    let ok = fd >= 0;
    if ok {
        // SAFETY: closing the descriptor we just got.
        unsafe { libc::close(fd as i32) };
    }
    Check {
        name: "pidfd",
        ok,
        required: true,
        detail: if ok {
            "available".into()
        } else {
            "pidfd_open unavailable".into()
        },
        fix: (!ok).then(|| "use Linux 5.3 or newer".into()),
    }
}

/// The per-user state dir (see `store::trusted`): usable, or what to do.
fn state_dir() -> Check {
    use crate::store::StateDir;
    let path = StateDir::location();
    let problem = match StateDir::open(false) {
        Ok(Some(_)) => None,
        // Not made yet: the first `start` makes it, if its parent allows.
        Ok(None) => path
            .parent()
            .filter(|p| !p.is_dir())
            .map(|p| format!("{} does not exist", p.display())),
        Err(e) => Some(format!("{e:#}")),
    };
    Check {
        name: "state dir",
        ok: problem.is_none(),
        required: true,
        detail: match &problem {
            None => format!("{} (only the caller may use it)", path.display()),
            Some(why) => why.clone(),
        },
        fix: problem.map(|_| {
            format!(
                "set {} to a directory of yours with mode 700",
                crate::store::trusted::STATE_DIR_ENV
            )
        }),
    }
}

/// Prints the report; exit status 1 when a required check fails.
pub fn run() -> i32 {
    let checks = [
        user_namespaces(),
        isolation(),
        seccomp(),
        pidfd(),
        landlock(),
        cgroups(),
        state_dir(),
    ];
    let mut failed = false;
    for c in &checks {
        let tag = if c.ok {
            "ok  "
        } else if c.required {
            "FAIL"
        } else {
            "warn"
        };
        println!("{tag} {:<16} {}", c.name, c.detail);
        if let Some(fix) = &c.fix {
            println!("     {:<16} fix: {fix}", "");
        }
        failed |= !c.ok && c.required;
    }
    if failed {
        let jail_ok = checks
            .iter()
            .all(|c| c.ok || !c.required || c.name == "state dir");
        if jail_ok {
            println!("\ndelta-sessions cannot keep sessions here. Fix the lines marked FAIL.");
        } else {
            println!("\nThe jail cannot be built here. Fix the lines marked FAIL, or start sessions with --profile unconfined on purpose.");
        }
        1
    } else {
        println!("\nThis host can run delta-sessions sessions (see the isolation line for which sandbox).");
        0
    }
}
