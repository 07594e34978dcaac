//! The jail's root filesystem as data: which host paths to open, and the
//! ordered mount steps that build the root from them.
//!
//! Pure code: it looks at the host only through [`HostView`], so every rule
//! below is unit-tested with a fake host and no privileges.
//!
//! Every path inside the jail that comes from the host keeps its host path
//! (an *identity* bind: `/usr` is `/usr`, the work dir is at its own path),
//! except the session's private `/tmp` and `$HOME`, which are either two
//! directories of one sized tmpfs (the profile's disk budget) or come from
//! the session directory.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// Host directories the jail sees read-only, when the host has them. A
/// symlink among them (merged /usr: `/bin -> usr/bin`) is recreated as the
/// same symlink.
pub const SYSTEM_PATHS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt",
];

/// Device nodes bound from the host's `/dev`; nothing else of it is visible.
pub const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// Secrets under `/etc` that the jail never sees, whatever the profile says.
pub const ETC_SECRETS: &[&str] = &[
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/security/opasswd",
];

/// Entries of the jail's own `/proc` that still show the host: the kernel's
/// memory and symbols, its keyrings (`keys` lists the caller's key entries),
/// timers and scheduler internals of every CPU, hardware and IRQ details,
/// and `sysrq-trigger`. Covered by `/dev/null` (files) or an empty read-only
/// tmpfs (directories), as container runtimes do (runc's masked paths, plus
/// `key-users`, `kallsyms`, `vmallocinfo` and the `kpage*` files).
pub const PROC_MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kallsyms",
    "/proc/kcore",
    "/proc/key-users",
    "/proc/keys",
    "/proc/kpagecgroup",
    "/proc/kpagecount",
    "/proc/kpageflags",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/sysrq-trigger",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/vmallocinfo",
];

/// Where ssh keeps host keys; every `ssh_host_*` file in it is masked.
const SSH_DIR: &str = "/etc/ssh";

/// What the profile and the session ask of the root filesystem.
#[derive(Debug, Clone, PartialEq)]
pub struct RootfsSpec {
    /// The work dir, canonical, bound at its own path.
    pub work_dir: PathBuf,
    pub work_dir_writable: bool,
    /// The session's private `/tmp` and `$HOME` on the host (used when
    /// there is no `private_budget`).
    pub tmp_source: PathBuf,
    pub home_source: PathBuf,
    /// Bytes that `/tmp` and `$HOME` may hold together: they are then one
    /// tmpfs of that size instead of host directories.
    pub private_budget: Option<u64>,
    /// Where `$HOME` is inside the jail.
    pub home_target: PathBuf,
    /// Host paths that must stay invisible even when a bind would show them
    /// (the sessions directory, which may lie inside the work dir).
    pub hidden: Vec<PathBuf>,
    /// Extra identity binds from the profile (absolute, canonical).
    pub extra_read_only: Vec<PathBuf>,
    pub extra_read_write: Vec<PathBuf>,
    /// Jail paths the profile masks.
    pub masked: Vec<PathBuf>,
    pub host_network: bool,
    /// Root started the session: the work dir, `/tmp` and `$HOME` (when they
    /// are host directories) and the read-write extras arrive as idmapped
    /// mounts, in that order (see
    /// [`crate::jail::idmapped_sources`]), instead of being opened here.
    pub premounted: bool,
}

/// What a path is on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKind {
    Missing,
    Dir,
    File,
    Symlink(PathBuf),
}

/// The read-only questions the planner asks about the host.
pub trait HostView {
    /// What `path` is, without following a final symlink.
    fn kind(&self, path: &Path) -> HostKind;
    /// Names in a directory (empty when it cannot be read).
    fn list(&self, dir: &Path) -> Vec<OsString>;
}

/// The real host.
pub struct RealHost;

impl HostView for RealHost {
    fn kind(&self, path: &Path) -> HostKind {
        match std::fs::symlink_metadata(path) {
            Err(_) => HostKind::Missing,
            Ok(m) if m.file_type().is_symlink() => std::fs::read_link(path)
                .map(HostKind::Symlink)
                .unwrap_or(HostKind::Missing),
            Ok(m) if m.is_dir() => HostKind::Dir,
            Ok(_) => HostKind::File,
        }
    }

    fn list(&self, dir: &Path) -> Vec<OsString> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut names: Vec<OsString> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        names.sort();
        names
    }
}

/// A host path the holder opens (as an `O_PATH` descriptor) before it gives
/// up its host credentials; bind steps refer to it by index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSource {
    pub path: PathBuf,
    /// Whether symlinks may be followed on the way. Paths that jailed code can
    /// reach (the work dir and everything under it, the session's dirs) are
    /// opened without following any symlink, so that a link planted by an
    /// earlier exec cannot redirect a bind when the jail is rebuilt.
    pub follow_symlinks: bool,
}

/// Where a bind's tree comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `Plan::sources[i]`, cloned with its submounts.
    Host(usize),
    /// The i-th idmapped mount handed over by the parent.
    Premounted(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

/// One step of building the root. Paths are jail paths (absolute); the
/// applier places them under the staging root and never follows a symlink
/// while doing so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A directory (and missing parents) to mount on.
    Mkdir(PathBuf),
    /// An empty file (and missing parent dirs) to mount on.
    Touch(PathBuf),
    Symlink {
        link: PathBuf,
        target: PathBuf,
    },
    /// An identity or session bind: nosuid, nodev unless `devices`.
    Bind {
        origin: Origin,
        target: PathBuf,
        access: Access,
        devices: bool,
    },
    /// A fresh tmpfs (`size` in bytes; read-only ones mask what is below).
    Tmpfs {
        target: PathBuf,
        mode: u32,
        size: u64,
        access: Access,
    },
    /// The session's own `/proc`.
    Proc(PathBuf),
    /// A private devpts instance.
    Devpts(PathBuf),
    /// One tmpfs of `size` bytes (nosuid, nodev) holding a directory of mode
    /// 0700 per target, each bound read-write on its (existing) target:
    /// `/tmp` and `$HOME` share the budget, and neither sees the other.
    PrivateTmpfs {
        size: u64,
        targets: Vec<PathBuf>,
    },
    /// Makes an existing mount read-only (not its submounts).
    ReadOnly(PathBuf),
}

/// The whole recipe: sources to open, then steps to run in order, then
/// pivot_root into the result.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub sources: Vec<HostSource>,
    pub steps: Vec<Step>,
    /// Jail paths whose contents are the session's own scratch (`/tmp`,
    /// `$HOME`): a mount point below them that an earlier exec replaced by a
    /// symlink or a file is moved aside rather than refused, so that no
    /// command can make every later rebuild of its jail fail.
    pub scratch: Vec<PathBuf>,
    /// Bind targets below which a path is not scratch even under `/tmp` or
    /// `$HOME` (a work dir below `/tmp` holds the user's files, not the
    /// session's).
    pub not_scratch: Vec<PathBuf>,
}

impl Plan {
    fn source(&mut self, path: &Path, follow_symlinks: bool) -> Origin {
        self.sources.push(HostSource {
            path: path.to_path_buf(),
            follow_symlinks,
        });
        Origin::Host(self.sources.len() - 1)
    }

    /// Covers `path`: a directory with an empty read-only tmpfs, a file with
    /// `/dev/null` (one source, `null`, shared by all such masks). A symlink
    /// in a read-only bind can only point somewhere the jail's own binds and
    /// masks already decide about; a missing path needs nothing.
    fn mask(&mut self, path: PathBuf, host: &dyn HostView, null: &mut Option<Origin>) {
        match host.kind(&path) {
            HostKind::Dir => self.steps.push(Step::Tmpfs {
                target: path,
                mode: 0o000,
                size: MASK_TMPFS_SIZE,
                access: Access::ReadOnly,
            }),
            HostKind::File => {
                let origin = match *null {
                    Some(o) => o,
                    None => *null.insert(self.source(Path::new("/dev/null"), true)),
                };
                self.steps.push(Step::Bind {
                    origin,
                    target: path,
                    access: Access::ReadOnly,
                    devices: true,
                });
            }
            HostKind::Symlink(_) | HostKind::Missing => {}
        }
    }

    fn bind(&mut self, origin: Origin, target: &Path, access: Access, is_dir: bool) {
        self.steps.push(if is_dir {
            Step::Mkdir(target.to_path_buf())
        } else {
            Step::Touch(target.to_path_buf())
        });
        self.steps.push(Step::Bind {
            origin,
            target: target.to_path_buf(),
            access,
            devices: false,
        });
    }
}

/// Sizes of the jail's own small filesystems.
pub const ROOT_TMPFS_SIZE: u64 = 1 << 20;
const DEV_TMPFS_SIZE: u64 = 64 << 10;
const SHM_SIZE: u64 = 64 << 20;
const MASK_TMPFS_SIZE: u64 = 4 << 10;

/// Where the session's `/tmp` and `$HOME` come from.
enum Private {
    /// Host directories of the session dir (their origins).
    Hosts(Origin, Origin),
    /// One tmpfs of this many bytes.
    Tmpfs(u64),
}

/// Computes the root filesystem of a jail.
///
/// Order matters and is kept here, in one place: system directories, `/proc`
/// and `/dev`, then the session's `/tmp` and `$HOME`, then the work dir and
/// the extra binds (parents before children, so a work dir under `/tmp` or
/// an extra bind inside the work dir lands on top), then the masks, which
/// must cover whatever the binds brought in, and last the root made
/// read-only.
pub fn plan(spec: &RootfsSpec, host: &dyn HostView) -> Result<Plan, String> {
    validate(spec)?;
    let mut p = Plan::default();

    for name in SYSTEM_PATHS {
        let path = Path::new(name);
        match host.kind(path) {
            HostKind::Dir => {
                let origin = p.source(path, true);
                p.bind(origin, path, Access::ReadOnly, true);
            }
            HostKind::Symlink(target) => p.steps.push(Step::Symlink {
                link: path.to_path_buf(),
                target,
            }),
            HostKind::File | HostKind::Missing => {}
        }
    }
    if spec.host_network {
        resolver_config(&mut p, host);
    }

    p.steps.push(Step::Mkdir("/proc".into()));
    p.steps.push(Step::Proc("/proc".into()));
    // The host's /proc has the same entries as the jail's (one kernel).
    let mut null = None;
    for name in PROC_MASKED {
        let path = PathBuf::from(name);
        p.mask(path, host, &mut null);
    }
    dev(&mut p);

    // The session's private dirs, then the work dir and extras, parents first.
    let mut premounted = 0..;
    let mut next_origin = |p: &mut Plan, path: &Path| {
        if spec.premounted {
            Origin::Premounted(premounted.next().unwrap_or_default())
        } else {
            p.source(path, false)
        }
    };
    let work = next_origin(&mut p, &spec.work_dir);
    // Host dirs take their origins now, before the extras (the premounted order).
    let private = match spec.private_budget {
        Some(size) => Private::Tmpfs(size),
        None => {
            let tmp = next_origin(&mut p, &spec.tmp_source);
            let home = next_origin(&mut p, &spec.home_source);
            Private::Hosts(tmp, home)
        }
    };
    let mut user_binds: Vec<(Origin, PathBuf, Access)> = vec![(
        work,
        spec.work_dir.clone(),
        if spec.work_dir_writable {
            Access::ReadWrite
        } else {
            Access::ReadOnly
        },
    )];
    for path in &spec.extra_read_write {
        let origin = next_origin(&mut p, path);
        user_binds.push((origin, path.clone(), Access::ReadWrite));
    }
    for path in &spec.extra_read_only {
        let origin = p.source(path, false);
        user_binds.push((origin, path.clone(), Access::ReadOnly));
    }
    match private {
        Private::Hosts(tmp, home) => {
            p.bind(tmp, Path::new("/tmp"), Access::ReadWrite, true);
            p.bind(home, &spec.home_target, Access::ReadWrite, true);
        }
        Private::Tmpfs(size) => {
            let targets = vec![PathBuf::from("/tmp"), spec.home_target.clone()];
            for target in &targets {
                p.steps.push(Step::Mkdir(target.clone()));
            }
            p.steps.push(Step::PrivateTmpfs { size, targets });
        }
    }
    p.scratch = vec![PathBuf::from("/tmp"), spec.home_target.clone()];
    // Stable sort: among equally deep paths the profile's order stands.
    user_binds.sort_by_key(|(_, path, _)| path.components().count());
    for (origin, path, access) in &user_binds {
        let is_dir = host.kind(path) != HostKind::File;
        p.bind(*origin, path, *access, is_dir);
    }
    p.not_scratch = user_binds.iter().map(|(_, path, _)| path.clone()).collect();

    // Masks. A jail path shows host content only through an identity bind,
    // so that is where a hidden host path or a masked file can appear.
    let identity: Vec<PathBuf> = SYSTEM_PATHS
        .iter()
        .map(PathBuf::from)
        .chain(user_binds.iter().map(|(_, path, _)| path.clone()))
        .collect();
    let visible = |path: &Path| identity.iter().any(|root| path.starts_with(root));
    let mut masks: Vec<PathBuf> = ETC_SECRETS.iter().map(PathBuf::from).collect();
    masks.extend(
        host.list(Path::new(SSH_DIR))
            .into_iter()
            .filter(|n| n.to_string_lossy().starts_with("ssh_host_"))
            .map(|n| Path::new(SSH_DIR).join(n)),
    );
    masks.extend(spec.masked.iter().cloned());
    masks.extend(spec.hidden.iter().cloned());
    for path in masks {
        if !visible(&path) {
            continue;
        }
        p.mask(path, host, &mut null);
    }
    p.steps.push(Step::ReadOnly("/".into()));
    Ok(p)
}

/// Minimal `/dev`: a small tmpfs with bound device nodes, the usual links, a
/// private devpts and `/dev/shm`; read-only once built.
fn dev(p: &mut Plan) {
    let dev = Path::new("/dev");
    p.steps.push(Step::Mkdir(dev.into()));
    p.steps.push(Step::Tmpfs {
        target: dev.into(),
        mode: 0o755,
        size: DEV_TMPFS_SIZE,
        access: Access::ReadWrite,
    });
    for name in DEVICES {
        let path = dev.join(name);
        let origin = p.source(&path, true);
        p.steps.push(Step::Touch(path.clone()));
        p.steps.push(Step::Bind {
            origin,
            target: path,
            access: Access::ReadWrite,
            devices: true,
        });
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        p.steps.push(Step::Symlink {
            link: dev.join(link),
            target: target.into(),
        });
    }
    p.steps.push(Step::Mkdir(dev.join("pts")));
    p.steps.push(Step::Devpts(dev.join("pts")));
    p.steps.push(Step::Mkdir(dev.join("shm")));
    p.steps.push(Step::Tmpfs {
        target: dev.join("shm"),
        mode: 0o1777,
        size: SHM_SIZE,
        access: Access::ReadWrite,
    });
    p.steps.push(Step::ReadOnly(dev.into()));
}

/// With the host network, name resolution must work: when
/// `/etc/resolv.conf` is a link out of `/etc` (systemd-resolved puts it in
/// `/run`), the file it points to is bound read-only at its own path.
fn resolver_config(p: &mut Plan, host: &dyn HostView) {
    let mut path = PathBuf::from("/etc/resolv.conf");
    for _ in 0..8 {
        match host.kind(&path) {
            HostKind::Symlink(target) => {
                let parent = path.parent().unwrap_or(Path::new("/"));
                path = normalize(&parent.join(target));
            }
            HostKind::File => {
                let covered = SYSTEM_PATHS.iter().any(|s| path.starts_with(s));
                if !covered {
                    let origin = p.source(&path, true);
                    p.bind(origin, &path, Access::ReadOnly, false);
                }
                return;
            }
            HostKind::Dir | HostKind::Missing => return,
        }
    }
}

/// Lexical `..` and `.` removal (for symlink targets joined to their
/// parent, and for paths that must be compared without following links).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Paths the plan builds on must be absolute and plain (no `..`), or a bind
/// could land outside the place its name promises.
fn validate(spec: &RootfsSpec) -> Result<(), String> {
    let all = [
        &spec.work_dir,
        &spec.tmp_source,
        &spec.home_source,
        &spec.home_target,
    ]
    .into_iter()
    .chain(&spec.extra_read_only)
    .chain(&spec.extra_read_write)
    .chain(&spec.masked)
    .chain(&spec.hidden);
    for path in all {
        let plain = path.is_absolute()
            && path
                .components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        if !plain {
            return Err(format!(
                "jail path {} must be absolute, without `.` or `..`",
                path.display()
            ));
        }
    }
    if spec.work_dir == Path::new("/") {
        return Err("the work dir cannot be / (it would expose the whole host)".into());
    }
    let reserved = ["/proc", "/dev", "/tmp"];
    for path in std::iter::once(&spec.work_dir)
        .chain(&spec.extra_read_only)
        .chain(&spec.extra_read_write)
    {
        if reserved.iter().any(|r| Path::new(r) == path) {
            return Err(format!(
                "{} cannot be bound into the jail: the jail has its own",
                path.display()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::fake_host::FakeHost;
    use super::*;

    fn spec(work: &str) -> RootfsSpec {
        RootfsSpec {
            work_dir: work.into(),
            work_dir_writable: true,
            tmp_source: "/s/.sessions/sess_1/tmp".into(),
            home_source: "/s/.sessions/sess_1/home".into(),
            home_target: "/home/user".into(),
            private_budget: None,
            hidden: vec!["/s/.sessions".into()],
            extra_read_only: vec![],
            extra_read_write: vec![],
            masked: vec![],
            host_network: false,
            premounted: false,
        }
    }

    /// The bind steps as (target, access), in order.
    fn binds(p: &Plan) -> Vec<(String, Access)> {
        p.steps
            .iter()
            .filter_map(|s| match s {
                Step::Bind {
                    target,
                    access,
                    devices: false,
                    ..
                } => Some((target.display().to_string(), *access)),
                _ => None,
            })
            .collect()
    }

    fn position(p: &Plan, wanted: &Step) -> usize {
        p.steps
            .iter()
            .position(|s| s == wanted)
            .unwrap_or_else(|| panic!("{wanted:?} not in plan"))
    }

    fn masked_with_null(p: &Plan, path: &str) -> bool {
        p.steps.iter().any(|s| {
            matches!(s, Step::Bind { target, devices: true, access: Access::ReadOnly, origin: Origin::Host(i) }
                if target == Path::new(path) && p.sources[*i].path == Path::new("/dev/null"))
        })
    }

    #[test]
    fn system_dirs_are_read_only_and_merged_usr_links_are_recreated() {
        let p = plan(
            &spec("/s/work"),
            &FakeHost::debian().dir("/s/work").dir("/s"),
        )
        .unwrap();
        let b = binds(&p);
        assert!(b.contains(&("/usr".into(), Access::ReadOnly)));
        assert!(b.contains(&("/etc".into(), Access::ReadOnly)));
        assert!(b.contains(&("/opt".into(), Access::ReadOnly)));
        assert!(!b
            .iter()
            .any(|(t, _)| t == "/home" || t == "/root" || t == "/var" || t == "/run"));
        assert!(p.steps.contains(&Step::Symlink {
            link: "/bin".into(),
            target: "usr/bin".into()
        }));
        // Missing on the host: neither bound nor linked.
        assert!(!p
            .steps
            .iter()
            .any(|s| matches!(s, Step::Symlink { link, .. } if link == Path::new("/lib32"))));
    }

    #[test]
    fn work_dir_tmp_and_home_are_writable_and_the_root_ends_read_only() {
        let p = plan(&spec("/s/work"), &FakeHost::debian().dir("/s/work")).unwrap();
        let b = binds(&p);
        assert!(b.contains(&("/s/work".into(), Access::ReadWrite)));
        assert!(b.contains(&("/tmp".into(), Access::ReadWrite)));
        assert!(b.contains(&("/home/user".into(), Access::ReadWrite)));
        assert_eq!(p.steps.last(), Some(&Step::ReadOnly("/".into())));
        // Paths jailed code can reach are opened without following symlinks.
        for s in &p.sources {
            let reachable = s.path.starts_with("/s");
            assert_eq!(s.follow_symlinks, !reachable, "{s:?}");
        }
    }

    #[test]
    fn readonly_profile_binds_the_work_dir_read_only() {
        let mut s = spec("/s/work");
        s.work_dir_writable = false;
        let p = plan(&s, &FakeHost::debian().dir("/s/work")).unwrap();
        assert!(binds(&p).contains(&("/s/work".into(), Access::ReadOnly)));
    }

    #[test]
    fn a_work_dir_under_tmp_lands_on_top_of_the_private_tmp() {
        let p = plan(&spec("/tmp/x/work"), &FakeHost::debian().dir("/tmp/x/work")).unwrap();
        let b = binds(&p);
        let tmp = b.iter().position(|(t, _)| t == "/tmp").unwrap();
        let work = b.iter().position(|(t, _)| t == "/tmp/x/work").unwrap();
        assert!(tmp < work, "{b:?}");
    }

    #[test]
    fn extra_binds_nested_in_the_work_dir_come_after_it() {
        let mut s = spec("/s/work");
        s.extra_read_only = vec!["/s/work/vendor".into(), "/data".into()];
        s.extra_read_write = vec!["/s/work/vendor/cache".into()];
        let host = FakeHost::debian()
            .dir("/s/work")
            .dir("/s/work/vendor")
            .dir("/data")
            .dir("/s/work/vendor/cache");
        let b = binds(&plan(&s, &host).unwrap());
        let at = |t: &str| b.iter().position(|(x, _)| x == t).unwrap();
        assert!(at("/s/work") < at("/s/work/vendor"));
        assert!(at("/s/work/vendor") < at("/s/work/vendor/cache"));
        assert_eq!(b[at("/s/work/vendor")].1, Access::ReadOnly);
        assert_eq!(b[at("/s/work/vendor/cache")].1, Access::ReadWrite);
        assert_eq!(b[at("/data")].1, Access::ReadOnly);
    }

    #[test]
    fn sessions_dir_inside_the_work_dir_is_masked_after_the_work_dir_bind() {
        let mut s = spec("/s");
        s.hidden = vec!["/s/.sessions".into()];
        let p = plan(&s, &FakeHost::debian().dir("/s").dir("/s/.sessions")).unwrap();
        let mask = Step::Tmpfs {
            target: "/s/.sessions".into(),
            mode: 0,
            size: MASK_TMPFS_SIZE,
            access: Access::ReadOnly,
        };
        let bind = p
            .steps
            .iter()
            .position(|st| matches!(st, Step::Bind { target, .. } if target == Path::new("/s")))
            .unwrap();
        assert!(position(&p, &mask) > bind);
    }

    #[test]
    fn sessions_dir_outside_every_bind_needs_no_mask() {
        let mut s = spec("/w");
        s.hidden = vec!["/srv/.sessions".into()];
        let p = plan(&s, &FakeHost::debian().dir("/w").dir("/srv/.sessions")).unwrap();
        assert!(!p
            .steps
            .iter()
            .any(|st| matches!(st, Step::Tmpfs { target, .. } if target.starts_with("/srv"))));
    }

    #[test]
    fn etc_secrets_and_ssh_host_keys_are_masked_but_public_files_are_not() {
        let p = plan(&spec("/w"), &FakeHost::debian().dir("/w")).unwrap();
        assert!(masked_with_null(&p, "/etc/shadow"));
        assert!(masked_with_null(&p, "/etc/gshadow"));
        assert!(masked_with_null(&p, "/etc/ssh/ssh_host_ed25519_key"));
        assert!(!masked_with_null(&p, "/etc/passwd"));
        assert!(!masked_with_null(&p, "/etc/ssh/ssh_config"));
        // A directory secret is covered by an empty read-only tmpfs.
        assert!(p.steps.iter().any(|s| matches!(s, Step::Tmpfs { target, access: Access::ReadOnly, .. } if target == Path::new("/etc/sudoers.d"))));
        // Missing on this host: nothing to mask.
        assert!(!masked_with_null(&p, "/etc/shadow-"));
    }

    #[test]
    fn masks_come_after_every_bind() {
        let mut s = spec("/w");
        s.masked = vec!["/w/secret.txt".into()];
        let mut host = FakeHost::debian().dir("/w");
        host.0.insert("/w/secret.txt".into(), HostKind::File);
        let p = plan(&s, &host).unwrap();
        let last_bind = p
            .steps
            .iter()
            .rposition(|st| matches!(st, Step::Bind { devices: false, .. }))
            .unwrap();
        let first_mask = p
            .steps
            .iter()
            .position(
                |st| matches!(st, Step::Bind { target, .. } if target == Path::new("/etc/shadow")),
            )
            .unwrap();
        assert!(first_mask > last_bind);
        assert!(masked_with_null(&p, "/w/secret.txt"));
    }

    #[test]
    fn dev_is_minimal() {
        let p = plan(&spec("/w"), &FakeHost::debian().dir("/w")).unwrap();
        let nodes: Vec<&PathBuf> = p
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Bind {
                    target,
                    devices: true,
                    access: Access::ReadWrite,
                    ..
                } => Some(target),
                _ => None,
            })
            .collect();
        let expected: Vec<PathBuf> = DEVICES.iter().map(|d| Path::new("/dev").join(d)).collect();
        assert_eq!(nodes, expected.iter().collect::<Vec<_>>());
        assert!(p.steps.contains(&Step::Devpts("/dev/pts".into())));
        assert!(p.steps.contains(&Step::Proc("/proc".into())));
        assert!(p.steps.contains(&Step::ReadOnly("/dev".into())));
    }

    #[test]
    fn root_started_sessions_use_the_premounted_trees_in_order() {
        let mut s = spec("/w");
        s.premounted = true;
        s.extra_read_write = vec!["/cache".into()];
        s.extra_read_only = vec!["/data".into()];
        let p = plan(&s, &FakeHost::debian().dir("/w").dir("/cache").dir("/data")).unwrap();
        let origin_of = |t: &str| {
            p.steps
                .iter()
                .find_map(|st| match st {
                    Step::Bind { origin, target, .. } if target == Path::new(t) => Some(*origin),
                    _ => None,
                })
                .unwrap()
        };
        assert_eq!(origin_of("/w"), Origin::Premounted(0));
        assert_eq!(origin_of("/tmp"), Origin::Premounted(1));
        assert_eq!(origin_of("/home/user"), Origin::Premounted(2));
        assert_eq!(origin_of("/cache"), Origin::Premounted(3));
        assert!(matches!(origin_of("/data"), Origin::Host(_)));
    }

    #[test]
    fn a_disk_budget_makes_tmp_and_home_one_tmpfs_and_no_host_source() {
        let mut s = spec("/w");
        s.private_budget = Some(64 << 20);
        s.extra_read_write = vec!["/cache".into()];
        let p = plan(&s, &FakeHost::debian().dir("/w").dir("/cache")).unwrap();
        let tmpfs = p
            .steps
            .iter()
            .position(|st| {
                *st == Step::PrivateTmpfs {
                    size: 64 << 20,
                    targets: vec!["/tmp".into(), "/home/user".into()],
                }
            })
            .expect("one private tmpfs for both");
        // Mount points first; the work dir (which may lie below /tmp) after.
        for target in ["/tmp", "/home/user"] {
            let mkdir = p
                .steps
                .iter()
                .position(|st| *st == Step::Mkdir(target.into()));
            assert!(mkdir.is_some_and(|m| m < tmpfs), "{target}");
        }
        let work = binds(&p).iter().position(|(t, _)| t == "/w").unwrap();
        let bind_steps = p.steps[..tmpfs]
            .iter()
            .filter(|st| matches!(st, Step::Bind { devices: false, .. }))
            .count();
        assert!(
            bind_steps <= work,
            "the work dir is bound after the private dirs"
        );
        assert!(binds(&p)
            .iter()
            .all(|(t, _)| t != "/tmp" && t != "/home/user"));
        assert!(p
            .sources
            .iter()
            .all(|src| !src.path.starts_with("/s/.sessions")));
        // Root's premounted trees: the work dir, then straight to the extras.
        s.premounted = true;
        let p = plan(&s, &FakeHost::debian().dir("/w").dir("/cache")).unwrap();
        let origins: Vec<Origin> = p
            .steps
            .iter()
            .filter_map(|st| match st {
                Step::Bind {
                    origin: o @ Origin::Premounted(_),
                    ..
                } => Some(*o),
                _ => None,
            })
            .collect();
        assert_eq!(origins, vec![Origin::Premounted(0), Origin::Premounted(1)]);
    }

    #[test]
    fn resolver_config_outside_etc_is_bound_only_with_the_host_network() {
        let mut host = FakeHost::debian().dir("/w");
        host.0.insert(
            "/etc/resolv.conf".into(),
            HostKind::Symlink("../run/systemd/resolve/stub-resolv.conf".into()),
        );
        host.0.insert(
            "/run/systemd/resolve/stub-resolv.conf".into(),
            HostKind::File,
        );
        let mut s = spec("/w");
        assert!(!binds(&plan(&s, &host).unwrap())
            .iter()
            .any(|(t, _)| t.starts_with("/run")));
        s.host_network = true;
        assert!(binds(&plan(&s, &host).unwrap()).contains(&(
            "/run/systemd/resolve/stub-resolv.conf".into(),
            Access::ReadOnly
        )));
    }

    #[test]
    fn bad_paths_are_refused() {
        for bad in ["/", "relative", "/a/../etc", "/proc", "/tmp"] {
            assert!(plan(&spec(bad), &FakeHost::debian()).is_err(), "{bad}");
        }
        let mut s = spec("/w");
        s.extra_read_write = vec!["/dev".into()];
        assert!(plan(&s, &FakeHost::debian()).is_err());
    }
}
