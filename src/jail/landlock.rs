//! Landlock mode: the sandbox of hosts that block user namespaces.
//!
//! No namespace is made. Instead every process of the session runs under a
//! Landlock domain that grants read and execute on the system directories,
//! read on `/etc` entry by entry (its secrets left out: Landlock grants
//! whole trees, so a secret inside a granted tree could not be taken back),
//! the device nodes a shell needs, `/proc`, and read-write on the work dir
//! (read-only for `readonly`), the session's own `tmp` and `home` and the
//! profile's binds. Nothing else of the host is reachable: not `/home`,
//! `/root`, the host's `/tmp`, nor the state dir. Without the network, TCP
//! `bind` and `connect` are refused too (ABI 4). Each right is used when
//! the kernel's ABI has it.
//!
//! [`plan`] computes the grants as data from the profile and a
//! [`HostView`], without privileges; [`Ruleset::build`] turns them into a
//! Landlock ruleset in the holder (opening each path), and
//! [`confine_self`] enforces it in a forked child just before it executes
//! the session's program. The holder itself is outside that domain (it
//! keeps its file access) but inside a scope-only one of its own (signals
//! and abstract sockets, ABI 6), in which every child's domain nests: the
//! session's processes can signal each other across execs, and nothing of
//! the host.

use super::mounts::{HostKind, HostView, DEVICES, ETC_SECRETS, SYSTEM_PATHS};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

// Filesystem access rights (include/uapi/linux/landlock.h).
const EXECUTE: u64 = 1 << 0;
const WRITE_FILE: u64 = 1 << 1;
const READ_FILE: u64 = 1 << 2;
const READ_DIR: u64 = 1 << 3;
const REMOVE_DIR: u64 = 1 << 4;
const REMOVE_FILE: u64 = 1 << 5;
const MAKE_CHAR: u64 = 1 << 6;
const MAKE_DIR: u64 = 1 << 7;
const MAKE_REG: u64 = 1 << 8;
const MAKE_SOCK: u64 = 1 << 9;
const MAKE_FIFO: u64 = 1 << 10;
const MAKE_BLOCK: u64 = 1 << 11;
const MAKE_SYM: u64 = 1 << 12;
/// ABI 2: linking or renaming a file into another directory.
const REFER: u64 = 1 << 13;
/// ABI 3: truncating (`O_TRUNC`, `truncate`).
const TRUNCATE: u64 = 1 << 14;
/// ABI 5: `ioctl` on device files.
const IOCTL_DEV: u64 = 1 << 15;
/// Rights a rule on a regular file (not a directory) may carry.
const FILE_RIGHTS: u64 = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV;

// Network rights (ABI 4).
const NET_BIND_TCP: u64 = 1 << 0;
const NET_CONNECT_TCP: u64 = 1 << 1;

const LANDLOCK_RULE_PATH_BENEATH: libc::c_int = 1;

/// What a grant lets the session do below its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read files, list directories, execute programs.
    Read,
    /// List the directory only (its entries' names), not read what is below.
    ListOnly,
    /// Everything on files and directories, except making device nodes.
    ReadWrite,
    /// Read and write an existing device node (`/dev/null`), with its ioctls.
    Device,
}

/// One Landlock rule: `access` on `path` and everything below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub path: PathBuf,
    pub access: Access,
    /// Whether a symlink may be followed on the way to `path`. Paths the
    /// session can change (the work dir, its own dirs, the binds) are opened
    /// refusing every symlink, so that a link planted by a command cannot
    /// turn a grant on its own directory into one on `/` at a rebuild.
    pub follow_symlinks: bool,
}

/// What the profile and the session ask of the Landlock domain.
#[derive(Debug, Clone, PartialEq)]
pub struct LandlockSpec {
    pub work_dir: PathBuf,
    pub work_dir_writable: bool,
    /// The session's own `TMPDIR` and `HOME` on the host.
    pub tmp_dir: PathBuf,
    pub home_dir: PathBuf,
    pub extra_read_only: Vec<PathBuf>,
    pub extra_read_write: Vec<PathBuf>,
    /// The host network (`network = "host"`); without it, no TCP at all.
    pub network: bool,
}

/// The grants of a session's domain, in the order they are added.
pub fn plan(spec: &LandlockSpec, host: &dyn HostView) -> Vec<Grant> {
    let mut grants = Vec::new();
    let system = |path: &Path, access| Grant {
        path: path.to_path_buf(),
        access,
        follow_symlinks: true,
    };
    for name in SYSTEM_PATHS.iter().filter(|n| **n != "/etc") {
        // A symlink among them (`/bin -> usr/bin`) leads into a granted tree.
        if host.kind(Path::new(name)) == HostKind::Dir {
            grants.push(system(Path::new(name), Access::Read));
        }
    }
    let etc = Path::new("/etc");
    if host.kind(etc) == HostKind::Dir {
        let mut secrets: Vec<PathBuf> = ETC_SECRETS.iter().map(PathBuf::from).collect();
        let ssh = Path::new("/etc/ssh");
        secrets.extend(
            host.list(ssh)
                .into_iter()
                .filter(|n| n.to_string_lossy().starts_with("ssh_host_"))
                .map(|n| ssh.join(n)),
        );
        grants.push(system(etc, Access::ListOnly));
        grant_all_but(etc, &secrets, host, &mut grants);
    }
    for name in DEVICES {
        let path = Path::new("/dev").join(name);
        if host.kind(&path) == HostKind::File {
            grants.push(system(&path, Access::Device));
        }
    }
    grants.push(system(Path::new("/proc"), Access::Read));
    let own = |path: &Path, access| Grant {
        path: path.to_path_buf(),
        access,
        follow_symlinks: false,
    };
    grants.push(own(
        &spec.work_dir,
        if spec.work_dir_writable {
            Access::ReadWrite
        } else {
            Access::Read
        },
    ));
    grants.push(own(&spec.tmp_dir, Access::ReadWrite));
    grants.push(own(&spec.home_dir, Access::ReadWrite));
    for path in &spec.extra_read_write {
        grants.push(own(path, Access::ReadWrite));
    }
    for path in &spec.extra_read_only {
        grants.push(own(path, Access::Read));
    }
    grants
}

/// Grants read on every entry of `dir` except the `secrets`, descending into
/// the entries that hold a secret (which get only their listing).
fn grant_all_but(dir: &Path, secrets: &[PathBuf], host: &dyn HostView, out: &mut Vec<Grant>) {
    for name in host.list(dir) {
        let path = dir.join(&name);
        if secrets.contains(&path) {
            continue;
        }
        if secrets.iter().any(|s| s != &path && s.starts_with(&path)) {
            if host.kind(&path) == HostKind::Dir {
                out.push(Grant {
                    path: path.clone(),
                    access: Access::ListOnly,
                    follow_symlinks: true,
                });
                grant_all_but(&path, secrets, host, out);
            }
            continue;
        }
        out.push(Grant {
            path,
            access: Access::Read,
            follow_symlinks: true,
        });
    }
}

/// The filesystem rights this ABI handles.
fn handled_fs(abi: i64) -> u64 {
    let mut rights = (1 << 13) - 1;
    if abi >= 2 {
        rights |= REFER;
    }
    if abi >= 3 {
        rights |= TRUNCATE;
    }
    if abi >= 5 {
        rights |= IOCTL_DEV;
    }
    rights
}

/// The rights of `access` (for a directory; a file's rule keeps only file rights).
fn rights(access: Access, handled: u64) -> u64 {
    let all = match access {
        Access::Read => EXECUTE | READ_FILE | READ_DIR,
        Access::ListOnly => READ_DIR,
        Access::Device => READ_FILE | WRITE_FILE | TRUNCATE | IOCTL_DEV,
        Access::ReadWrite => {
            EXECUTE
                | WRITE_FILE
                | READ_FILE
                | READ_DIR
                | REMOVE_DIR
                | REMOVE_FILE
                | MAKE_DIR
                | MAKE_REG
                | MAKE_SOCK
                | MAKE_FIFO
                | MAKE_SYM
                | REFER
                | TRUNCATE
        }
    };
    // Never granted: device nodes made by the session.
    all & handled & !(MAKE_CHAR | MAKE_BLOCK)
}

/// `struct landlock_ruleset_attr` (ABI 6 size; older kernels accept it with
/// the fields they do not know left zero).
#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

/// `struct landlock_path_beneath_attr` (packed in the kernel's header).
#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// A built ruleset, ready to be enforced by [`confine_self`].
pub struct Ruleset {
    fd: OwnedFd,
}

impl Ruleset {
    /// Creates the ruleset of `grants` for the kernel's ABI `abi` (at least 1).
    /// A grant whose path is missing is skipped; any other failure is an
    /// error (a sandbox with a rule silently missing would be wider or
    /// narrower than the plan).
    pub fn build(grants: &[Grant], network: bool, abi: i64) -> io::Result<Ruleset> {
        let handled = handled_fs(abi);
        let tcp_refused = !network && abi >= 4;
        // No scope here: each child enters a domain of its own, and a scope
        // on it would keep a later exec from signalling an earlier exec's
        // background job (sibling domains). The holder scopes itself instead
        // (see `holder::confine_on_host`), and every child's domain nests in
        // that one: the session's processes reach one another, never the
        // host's.
        let attr = RulesetAttr {
            handled_access_fs: handled,
            handled_access_net: if tcp_refused {
                NET_BIND_TCP | NET_CONNECT_TCP
            } else {
                0
            },
            scoped: 0,
        };
        // Older kernels know a shorter struct; give them only what they know.
        let size = if abi >= 6 {
            std::mem::size_of::<RulesetAttr>()
        } else if abi >= 4 {
            16
        } else {
            8
        };
        // SAFETY: the kernel reads `size` bytes of `attr` and returns a new fd.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                &attr as *const RulesetAttr,
                size,
                0u32,
            )
        };
        if fd < 0 {
            return Err(io::Error::other(format!(
                "cannot create a Landlock ruleset: {}",
                io::Error::last_os_error()
            )));
        }
        // SAFETY: the kernel returned a fresh descriptor that we now own.
        let ruleset = Ruleset {
            fd: unsafe { OwnedFd::from_raw_fd(fd as RawFd) },
        };
        for grant in grants {
            let target = match super::mounts::open_path(&grant.path, grant.follow_symlinks) {
                Ok(fd) => fd,
                Err(_) if !grant.path.exists() && grant.follow_symlinks => continue,
                Err(e) => return Err(e),
            };
            let is_dir = nix::sys::stat::fstat(target.as_raw_fd())
                .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
                .map_err(io::Error::from)?;
            let mut allowed = rights(grant.access, handled);
            if !is_dir {
                allowed &= FILE_RIGHTS;
            }
            if allowed == 0 {
                continue;
            }
            let rule = PathBeneathAttr {
                allowed_access: allowed,
                parent_fd: target.as_raw_fd(),
            };
            // SAFETY: the kernel reads the packed rule; both fds are ours.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_landlock_add_rule,
                    ruleset.fd.as_raw_fd(),
                    LANDLOCK_RULE_PATH_BENEATH,
                    &rule as *const PathBeneathAttr,
                    0u32,
                )
            };
            if rc < 0 {
                return Err(io::Error::other(format!(
                    "cannot add the Landlock rule for {}: {}",
                    grant.path.display(),
                    io::Error::last_os_error()
                )));
            }
        }
        Ok(ruleset)
    }

    /// Keeps the ruleset for [`confine_self`] in the processes this one
    /// forks from now on. Called once, by the holder.
    pub fn install_for_children(self) {
        let fd = std::os::fd::IntoRawFd::into_raw_fd(self.fd);
        RULESET_FD.store(fd, Ordering::SeqCst);
    }
}

/// The holder's ruleset descriptor (close-on-exec), or -1 in a jail or an
/// unconfined session. Set once before any fork that runs session code.
static RULESET_FD: AtomicI32 = AtomicI32::new(-1);

/// Enforces the holder's ruleset on the calling process, if there is one.
/// Called between fork and exec: one system call, async-signal-safe.
/// `no_new_privs` is already set (inherited from the holder's seccomp set-up).
pub fn confine_self() -> io::Result<()> {
    let fd = RULESET_FD.load(Ordering::SeqCst);
    if fd < 0 {
        return Ok(());
    }
    // SAFETY: restrict_self on a ruleset descriptor the holder keeps open.
    let rc = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, fd, 0u32) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::mounts::fake_host::FakeHost;
    use super::*;

    /// [`FakeHost::debian`] with what the Landlock plan looks at besides.
    fn debian() -> FakeHost {
        let mut h = FakeHost::debian()
            .with("/etc/sudoers", HostKind::File)
            .dir("/etc/ssl")
            .dir("/etc/security")
            .with("/etc/security/limits.conf", HostKind::File)
            .with("/etc/security/opasswd", HostKind::File);
        for d in DEVICES {
            h = h.with(&format!("/dev/{d}"), HostKind::File);
        }
        h
    }

    fn spec() -> LandlockSpec {
        LandlockSpec {
            work_dir: "/w".into(),
            work_dir_writable: true,
            tmp_dir: "/w/.sessions/sess_1/tmp".into(),
            home_dir: "/w/.sessions/sess_1/home".into(),
            extra_read_only: vec!["/data".into()],
            extra_read_write: vec!["/cache".into()],
            network: false,
        }
    }

    fn access_of(grants: &[Grant], path: &str) -> Option<Access> {
        grants
            .iter()
            .find(|g| g.path == Path::new(path))
            .map(|g| g.access)
    }

    /// Whether `path` is readable: some grant at or above it gives `Read`
    /// or more (a `ListOnly` grant reads no file).
    fn readable(grants: &[Grant], path: &str) -> bool {
        grants.iter().any(|g| {
            Path::new(path).starts_with(&g.path)
                && matches!(g.access, Access::Read | Access::ReadWrite | Access::Device)
        })
    }

    #[test]
    fn system_dirs_are_read_only_and_symlinks_add_nothing() {
        let g = plan(&spec(), &debian());
        assert_eq!(access_of(&g, "/usr"), Some(Access::Read));
        assert_eq!(access_of(&g, "/opt"), Some(Access::Read));
        assert_eq!(
            access_of(&g, "/bin"),
            None,
            "a link into /usr needs no grant"
        );
        assert_eq!(access_of(&g, "/proc"), Some(Access::Read));
        assert_eq!(access_of(&g, "/dev/null"), Some(Access::Device));
        assert!(g.iter().all(|x| x.path != Path::new("/dev")));
        for outside in [
            "/home", "/root", "/tmp", "/run", "/var", "/", "/sys", "/dev/shm",
        ] {
            assert!(!readable(&g, &format!("{outside}/x")), "{outside}");
        }
    }

    #[test]
    fn etc_is_granted_entry_by_entry_without_its_secrets() {
        let g = plan(&spec(), &debian());
        assert_eq!(access_of(&g, "/etc"), Some(Access::ListOnly));
        assert!(readable(&g, "/etc/passwd"));
        assert!(readable(&g, "/etc/ssl/certs/ca.pem"));
        assert!(readable(&g, "/etc/ssh/ssh_config"));
        assert!(readable(&g, "/etc/security/limits.conf"));
        for secret in [
            "/etc/shadow",
            "/etc/gshadow",
            "/etc/sudoers",
            "/etc/sudoers.d/admins",
            "/etc/ssh/ssh_host_ed25519_key",
            "/etc/security/opasswd",
        ] {
            assert!(!readable(&g, secret), "{secret}");
        }
    }

    #[test]
    fn the_session_gets_its_dirs_and_binds_without_following_links() {
        let g = plan(&spec(), &debian());
        for rw in [
            "/w",
            "/w/.sessions/sess_1/tmp",
            "/w/.sessions/sess_1/home",
            "/cache",
        ] {
            let grant = g.iter().find(|x| x.path == Path::new(rw)).unwrap();
            assert_eq!(grant.access, Access::ReadWrite, "{rw}");
            assert!(!grant.follow_symlinks, "{rw}");
        }
        assert_eq!(access_of(&g, "/data"), Some(Access::Read));
        let mut ro = spec();
        ro.work_dir_writable = false;
        assert_eq!(access_of(&plan(&ro, &debian()), "/w"), Some(Access::Read));
    }

    #[test]
    fn rights_follow_the_abi_and_never_make_devices() {
        assert_eq!(handled_fs(1), (1 << 13) - 1);
        assert_eq!(handled_fs(2) & REFER, REFER);
        assert_eq!(handled_fs(3) & TRUNCATE, TRUNCATE);
        assert_eq!(handled_fs(4) & IOCTL_DEV, 0);
        assert_eq!(handled_fs(5) & IOCTL_DEV, IOCTL_DEV);
        for abi in 1..=7 {
            let h = handled_fs(abi);
            let rw = rights(Access::ReadWrite, h);
            assert_eq!(rw & (MAKE_CHAR | MAKE_BLOCK), 0);
            assert_eq!(rw & !h, 0, "only handled rights");
            assert_eq!(
                rights(Access::Read, h) & (WRITE_FILE | MAKE_REG | REMOVE_FILE),
                0
            );
            assert_eq!(rights(Access::ListOnly, h), READ_DIR);
        }
    }
}
