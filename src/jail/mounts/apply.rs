//! Carries out a [`Plan`](super::Plan): the only code that mounts.
//!
//! Runs in the holder, in the session's fresh mount namespace, in two calls:
//! [`open_sources`] while the holder still has the caller's host credentials
//! (so it can reach paths the jail's user cannot, such as root's 0700
//! sessions directory), and [`build`] after it has become the jail's user.
//!
//! The root is assembled on a tmpfs mounted over `/tmp` *in the new mount
//! namespace only* (the host's `/tmp` is untouched; sources under it are
//! reached through the descriptors opened before), then becomes `/` with
//! `pivot_root`, and the host's root is detached.

use super::plan::{Access, Origin, Plan, Step};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};

/// Where the new root is assembled (a tmpfs over it, in our namespace).
const STAGING: &str = "/tmp";

const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_NO_SYMLINKS: u64 = 0x04;

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `struct open_how` of openat2(2).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// An error that says which step failed, and on what.
fn step_error(what: &str, path: &Path, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{what} {}: {e}", path.display()))
}

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| step_error("path contains a NUL byte:", path, "refused"))
}

/// Makes every mount of the new namespace private, so that nothing done here
/// propagates back to the host (and nothing of the host's later mounts in).
pub fn make_private() -> io::Result<()> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| step_error("cannot make private the mounts under", Path::new("/"), e))
}

/// Opens every host source of the plan as an `O_PATH` descriptor.
pub fn open_sources(plan: &Plan) -> io::Result<Vec<OwnedFd>> {
    plan.sources
        .iter()
        .map(|s| open_path(&s.path, s.follow_symlinks))
        .collect()
}

/// Opens `path` as an `O_PATH` descriptor, optionally refusing every symlink on the way.
pub fn open_path(path: &Path, follow_symlinks: bool) -> io::Result<OwnedFd> {
    let cpath = cstring(path)?;
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: if follow_symlinks {
            0
        } else {
            RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS
        },
    };
    // SAFETY: openat2 reads the C string and `how` (size given) and returns a new descriptor.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            cpath.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        let why = if e.raw_os_error() == Some(libc::ELOOP) {
            "it is, or passes through, a symlink (refused for paths the jail can change)"
                .to_string()
        } else {
            e.to_string()
        };
        return Err(step_error("cannot open", path, why));
    }
    // SAFETY: the kernel returned a fresh descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Builds the root from `plan` and pivots into it. `sources` come from
/// [`open_sources`], `premounted` from the parent (root's idmapped mounts).
pub fn build(plan: &Plan, sources: &[OwnedFd], premounted: &[OwnedFd]) -> io::Result<()> {
    let staging = Path::new(STAGING);
    mount_tmpfs(
        staging,
        0o755,
        super::plan::ROOT_TMPFS_SIZE,
        Access::ReadWrite,
    )
    .map_err(|e| step_error("cannot mount the jail's root tmpfs on", staging, e))?;
    for step in &plan.steps {
        run_step(
            step,
            staging,
            sources,
            premounted,
            &plan.scratch,
            &plan.not_scratch,
        )?;
    }
    pivot_into(staging)
}

fn run_step(
    step: &Step,
    staging: &Path,
    sources: &[OwnedFd],
    premounted: &[OwnedFd],
    scratch: &[PathBuf],
    not_scratch: &[PathBuf],
) -> io::Result<()> {
    let scratch = Scratch {
        roots: scratch,
        except: not_scratch,
    };
    let scratch = &scratch;
    match step {
        Step::Mkdir(path) => {
            prepare(staging, path, true, scratch)?;
        }
        Step::Touch(path) => {
            prepare(staging, path, false, scratch)?;
        }
        Step::Symlink { link, target } => {
            let parent = link.parent().unwrap_or(Path::new("/"));
            let at =
                prepare(staging, parent, true, scratch)?.join(link.file_name().unwrap_or_default());
            std::os::unix::fs::symlink(target, &at)
                .map_err(|e| step_error("cannot create the link", link, e))?;
        }
        Step::Bind {
            origin,
            target,
            access,
            devices,
        } => {
            let at = existing(staging, target)?;
            let mut attrs = MOUNT_ATTR_NOSUID;
            if !devices {
                attrs |= MOUNT_ATTR_NODEV;
            }
            if *access == Access::ReadOnly {
                attrs |= MOUNT_ATTR_RDONLY;
            }
            let tree = match origin {
                Origin::Host(i) => {
                    let src = sources.get(*i).ok_or_else(|| {
                        step_error("no source for", target, "plan/source mismatch")
                    })?;
                    clone_tree(src)
                        .map_err(|e| step_error("cannot copy the mount of", target, e))?
                }
                Origin::Premounted(i) => {
                    let tree = premounted.get(*i).ok_or_else(|| {
                        step_error("no idmapped mount for", target, "the parent sent too few")
                    })?;
                    tree.try_clone()?
                }
            };
            set_attrs(&tree, attrs)
                .map_err(|e| step_error("cannot restrict the bind of", target, e))?;
            attach(&tree, &at).map_err(|e| step_error("cannot bind", target, e))?;
        }
        Step::Tmpfs {
            target,
            mode,
            size,
            access,
        } => {
            mount_tmpfs(&existing(staging, target)?, *mode, *size, *access)
                .map_err(|e| step_error("cannot mount a tmpfs on", target, e))?;
        }
        Step::PrivateTmpfs { size, targets } => private_tmpfs(staging, *size, targets)?,
        Step::Proc(target) => {
            mount(
                Some("proc"),
                &inside(staging, target),
                Some("proc"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                None::<&str>,
            )
            .map_err(|e| step_error("cannot mount the session's /proc on", target, e))?;
        }
        Step::Devpts(target) => {
            mount(
                Some("devpts"),
                &inside(staging, target),
                Some("devpts"),
                MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
                Some("newinstance,ptmxmode=0666,mode=0620"),
            )
            .map_err(|e| step_error("cannot mount a private devpts on", target, e))?;
        }
        Step::ReadOnly(target) => {
            let at = cstring(&inside(staging, target))?;
            let attr = MountAttr {
                attr_set: MOUNT_ATTR_RDONLY,
                attr_clr: 0,
                propagation: 0,
                userns_fd: 0,
            };
            // SAFETY: mount_setattr reads the C string and `attr` (size given).
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_mount_setattr,
                    libc::AT_FDCWD,
                    at.as_ptr(),
                    0,
                    &attr as *const MountAttr,
                    std::mem::size_of::<MountAttr>(),
                )
            };
            if rc < 0 {
                return Err(step_error(
                    "cannot make read-only",
                    target,
                    io::Error::last_os_error(),
                ));
            }
        }
    }
    Ok(())
}

/// The place of jail path `path` in the staging root.
fn inside(staging: &Path, path: &Path) -> PathBuf {
    let mut at = staging.to_path_buf();
    at.extend(
        path.components()
            .filter(|c| matches!(c, Component::Normal(_))),
    );
    at
}

/// Creates `path` (a directory, or an empty file) and its missing parents
/// under the staging root, refusing to pass through any symlink: the jail's
/// `/tmp`, `$HOME` and work dir hold files that earlier execs wrote, and a
/// link among them must not steer a mount (or a mkdir) somewhere else.
///
/// Below a `scratch` root (the session's own `/tmp` and `$HOME`), an entry in
/// the way is renamed to `NAME.moved-by-delta-sessions[-N]` instead: it is
/// the session's own file, and refusing would make every rebuild fail.
fn prepare(staging: &Path, path: &Path, dir: bool, scratch: &Scratch) -> io::Result<PathBuf> {
    let mut at = staging.to_path_buf();
    let parts: Vec<&std::ffi::OsStr> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    for (i, part) in parts.iter().enumerate() {
        at.push(part);
        let last = i + 1 == parts.len();
        let in_the_way =
            |m: &std::fs::Metadata| m.file_type().is_symlink() || ((!last || dir) && !m.is_dir());
        let jp = jail_path(staging, &at);
        let mut found = std::fs::symlink_metadata(&at);
        if let Ok(m) = &found {
            if in_the_way(m) && scratch.holds(&jp) {
                move_aside(&at)?;
                found = Err(io::ErrorKind::NotFound.into());
            }
        }
        match found {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(step_error(
                    "refusing to mount through the symlink",
                    &jail_path(staging, &at),
                    "a jail path to mount on must be a plain directory",
                ))
            }
            Ok(m) if !last && !m.is_dir() => {
                return Err(step_error(
                    "not a directory:",
                    &jail_path(staging, &at),
                    "cannot mount below it",
                ))
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let made = if last && !dir {
                    std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&at)
                        .map(drop)
                } else {
                    std::fs::DirBuilder::new().mode(0o755).create(&at)
                };
                made.map_err(|e| {
                    step_error("cannot create the mount point", &jail_path(staging, &at), e)
                })?;
            }
            Err(e) => return Err(step_error("cannot inspect", &jail_path(staging, &at), e)),
        }
    }
    Ok(at)
}

/// The place of jail path `path` in the staging root, which must exist with
/// no symlink anywhere on the way. Every mount lands through this: a mask
/// whose parent the jail replaced with a symlink (after moving the masked
/// file away with its old parent) must not follow the link and land outside
/// the new root, leaving the file uncovered; the build fails instead.
fn existing(staging: &Path, path: &Path) -> io::Result<PathBuf> {
    let mut at = staging.to_path_buf();
    for part in path.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n),
        _ => None,
    }) {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(step_error(
                    "refusing to mount through the symlink",
                    &jail_path(staging, &at),
                    "a mount point must be reached through plain directories \
                     (was a masked path's parent replaced by a link?)",
                ))
            }
            Ok(_) => {}
            Err(e) => return Err(step_error("cannot reach", &jail_path(staging, &at), e)),
        }
    }
    Ok(at)
}

/// Where an entry in the way of a mount point is the session's own.
struct Scratch<'a> {
    roots: &'a [PathBuf],
    except: &'a [PathBuf],
}

impl Scratch<'_> {
    /// Strictly below a scratch root, and in none of the binds made on it.
    fn holds(&self, jail_path: &Path) -> bool {
        self.roots
            .iter()
            .any(|r| jail_path.starts_with(r) && jail_path != r)
            && !self.except.iter().any(|b| jail_path.starts_with(b))
    }
}

/// Renames `at` to the first free `NAME.moved-by-delta-sessions[-N]` beside it.
pub fn move_aside(at: &Path) -> io::Result<()> {
    let name = at
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    for n in 0..100 {
        let suffix = if n == 0 {
            String::new()
        } else {
            format!("-{n}")
        };
        let to = at.with_file_name(format!("{name}.moved-by-delta-sessions{suffix}"));
        if std::fs::symlink_metadata(&to).is_ok() {
            continue;
        }
        return std::fs::rename(at, &to).map_err(|e| step_error("cannot move aside", at, e));
    }
    Err(step_error(
        "cannot move aside",
        at,
        "too many moved entries",
    ))
}

/// `at` as the jail will see it, for messages.
fn jail_path(staging: &Path, at: &Path) -> PathBuf {
    Path::new("/").join(at.strip_prefix(staging).unwrap_or(at))
}

fn mount_tmpfs(at: &Path, mode: u32, size: u64, access: Access) -> nix::Result<()> {
    let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    if access == Access::ReadOnly {
        flags |= MsFlags::MS_RDONLY | MsFlags::MS_NOEXEC;
    }
    let options = format!("mode={mode:o},size={size}");
    mount(
        Some("tmpfs"),
        at,
        Some("tmpfs"),
        flags,
        Some(options.as_str()),
    )
}

/// Where the private tmpfs is mounted while its directories are bound out;
/// gone before the jail starts.
const PRIVATE_STAGING: &str = ".delta-sessions-private";

/// Bytes of budget per inode the private tmpfs grants: files cost kernel
/// memory even when empty, so their number is bounded with their size.
const PRIVATE_BYTES_PER_INODE: u64 = 4096;

/// Mounts one tmpfs of `size` bytes, makes a 0700 directory in it per
/// target, binds each on its target, and lets go of the tmpfs's own root,
/// which no jail path then shows: the targets share the budget and nothing
/// else.
fn private_tmpfs(staging: &Path, size: u64, targets: &[PathBuf]) -> io::Result<()> {
    let holder = staging.join(PRIVATE_STAGING);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&holder)
        .map_err(|e| step_error("cannot create", &holder, e))?;
    let inodes = (size / PRIVATE_BYTES_PER_INODE).max(1024);
    let options = format!("mode=700,size={size},nr_inodes={inodes}");
    mount(
        Some("tmpfs"),
        &holder,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(options.as_str()),
    )
    .map_err(|e| step_error("cannot mount the private tmpfs on", &holder, e))?;
    for (i, target) in targets.iter().enumerate() {
        let dir = holder.join(i.to_string());
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| step_error("cannot create", &dir, e))?;
        let tree = clone_tree(&open_path(&dir, false)?)
            .map_err(|e| step_error("cannot copy the private dir for", target, e))?;
        set_attrs(&tree, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)
            .map_err(|e| step_error("cannot restrict the bind of", target, e))?;
        attach(&tree, &existing(staging, target)?)
            .map_err(|e| step_error("cannot bind", target, e))?;
    }
    umount2(&holder, MntFlags::MNT_DETACH).map_err(|e| step_error("cannot unmount", &holder, e))?;
    std::fs::remove_dir(&holder).map_err(|e| step_error("cannot remove", &holder, e))
}

/// A detached copy of the mount tree at `src` (with its submounts: a locked
/// submount may not be left behind).
fn clone_tree(src: &OwnedFd) -> io::Result<OwnedFd> {
    // SAFETY: open_tree on a descriptor we hold, with an empty path; returns a new descriptor.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            src.as_raw_fd(),
            c"".as_ptr(),
            OPEN_TREE_CLONE
                | AT_RECURSIVE
                | libc::AT_EMPTY_PATH as libc::c_uint
                | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a fresh descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sets mount flags on a whole detached tree. Setting flags never needs to
/// clear the host's locked ones, so this works in a user namespace.
fn set_attrs(tree: &OwnedFd, attrs: u64) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr on a descriptor we hold, reading `attr` (size given).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | AT_RECURSIVE as libc::c_int,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn attach(tree: &OwnedFd, at: &Path) -> io::Result<()> {
    let cat = cstring(at)?;
    // SAFETY: move_mount of a detached tree we hold onto a path (C string).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            cat.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes `new_root` the process's `/` and drops the host's root from the
/// namespace (`pivot_root(".", ".")` stacks the old root on the new one,
/// and the lazy unmount takes it away).
fn pivot_into(new_root: &Path) -> io::Result<()> {
    let dir = File::open(new_root)?;
    nix::unistd::fchdir(dir.as_raw_fd()).map_err(|e| step_error("cannot enter", new_root, e))?;
    // SAFETY: pivot_root with two static C strings.
    let rc = unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) };
    if rc < 0 {
        return Err(step_error(
            "pivot_root into",
            new_root,
            io::Error::last_os_error(),
        ));
    }
    umount2(".", MntFlags::MNT_DETACH)
        .map_err(|e| step_error("cannot detach the host's root from", new_root, e))?;
    nix::unistd::chdir("/").map_err(|e| step_error("cannot enter", Path::new("/"), e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jail_paths_map_into_the_staging_root() {
        assert_eq!(
            inside(Path::new("/tmp"), Path::new("/usr/bin")),
            Path::new("/tmp/usr/bin")
        );
        assert_eq!(inside(Path::new("/tmp"), Path::new("/")), Path::new("/tmp"));
    }

    const NO_SCRATCH: Scratch<'static> = Scratch {
        roots: &[],
        except: &[],
    };

    #[test]
    fn mount_targets_are_reached_without_any_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path();
        prepare(staging, Path::new("/w/real/secret"), false, &NO_SCRATCH).unwrap();
        assert!(existing(staging, Path::new("/w/real/secret")).is_ok());
        std::os::unix::fs::symlink("real", staging.join("w/link")).unwrap();
        let e = existing(staging, Path::new("/w/link/secret")).unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        assert!(existing(staging, Path::new("/w/missing")).is_err());
    }

    #[test]
    fn below_the_sessions_own_dirs_an_entry_in_the_way_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path();
        std::fs::create_dir_all(staging.join("tmp")).unwrap();
        std::os::unix::fs::symlink("/", staging.join("tmp/w")).unwrap();
        std::fs::write(staging.join("tmp/f"), b"x").unwrap();
        let roots = [PathBuf::from("/tmp")];
        let except = [PathBuf::from("/tmp/bound")];
        let scratch = Scratch {
            roots: &roots,
            except: &except,
        };
        let at = prepare(staging, Path::new("/tmp/w/work"), true, &scratch).unwrap();
        assert!(at.is_dir());
        assert!(
            std::fs::symlink_metadata(staging.join("tmp/w.moved-by-delta-sessions"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        prepare(staging, Path::new("/tmp/f/x"), true, &scratch).unwrap();
        assert_eq!(
            std::fs::read(staging.join("tmp/f.moved-by-delta-sessions")).unwrap(),
            b"x"
        );
        // Elsewhere (the work dir's own tree), still refused.
        std::os::unix::fs::symlink("/", staging.join("link")).unwrap();
        assert!(prepare(staging, Path::new("/link/x"), true, &scratch).is_err());
        // And so inside a bind made below /tmp (a work dir's files).
        std::fs::create_dir_all(staging.join("tmp/bound")).unwrap();
        std::os::unix::fs::symlink("/", staging.join("tmp/bound/l")).unwrap();
        assert!(prepare(staging, Path::new("/tmp/bound/l/x"), true, &scratch).is_err());
    }

    #[test]
    fn prepare_creates_parents_and_refuses_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path();
        let at = prepare(staging, Path::new("/a/b/c"), true, &NO_SCRATCH).unwrap();
        assert!(at.is_dir());
        let f = prepare(staging, Path::new("/a/f"), false, &NO_SCRATCH).unwrap();
        assert!(f.is_file());
        std::os::unix::fs::symlink("/etc", staging.join("a/link")).unwrap();
        let err = prepare(staging, Path::new("/a/link/x"), true, &NO_SCRATCH).unwrap_err();
        assert!(err.to_string().contains("symlink /a/link"), "{err}");
        assert!(!Path::new("/etc/x").exists());
        let err = prepare(staging, Path::new("/a/f/x"), true, &NO_SCRATCH).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }

    #[test]
    fn sources_reachable_by_the_jail_are_opened_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("link")).unwrap();
        assert!(open_path(&dir.path().join("real"), false).is_ok());
        let err = open_path(&dir.path().join("link/"), false).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        assert!(open_path(&dir.path().join("link"), true).is_ok());
    }
}
