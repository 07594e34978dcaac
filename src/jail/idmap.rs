//! Idmapped mounts, for jails started by root.
//!
//! When root starts a session, the jail must not run as host root: a jail
//! escape would then own every root-owned file of the host, and the kernel
//! does not count root's processes against RLIMIT_NPROC. So the jail's user
//! is mapped to [`ROOT_JAIL_UID`], an id no host user has. To let that user
//! write the work dir (owned by root or by someone else), the work dir and
//! the session's private dirs are attached through *idmapped mounts* that
//! translate the directory owner's id to the jail's id. Files the jail
//! creates still belong to the directory's owner on disk.
//!
//! Only a process with CAP_SYS_ADMIN in the initial user namespace can make
//! such mounts, so the parent (`start`, or the `exec` that rebuilds a jail)
//! makes them, detached, and hands them to the holder, which attaches them
//! inside its own mount namespace.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// The first of the host uids and gids that root-started jails run as: each
/// session gets its own, `ROOT_JAIL_UID + slot` with a slot in
/// `1..=ROOT_JAIL_SLOTS`, so that per-uid kernel limits (processes, inotify
/// instances, message queues) are not shared between sessions.
pub const ROOT_JAIL_UID: u32 = 0x6473_0000;
/// How many per-session ids the reserved range holds.
pub const ROOT_JAIL_SLOTS: u32 = 0xffff;

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOUNT_ATTR_NOSUID: u64 = 0x0000_0002;
const MOUNT_ATTR_NODEV: u64 = 0x0000_0004;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// `struct mount_attr` of the mount_setattr(2) ABI.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// A detached copy of the mount at `path`, idmapped through `userns`.
pub fn detached_idmapped_mount(path: &Path, userns: &File) -> io::Result<OwnedFd> {
    // Jailed code can change what lies under the work dir: a symlink it
    // planted must not redirect this mount when the jail is rebuilt.
    let dir = super::mounts::apply::open_path(path, false)?;
    // SAFETY: open_tree on a descriptor we hold, with an empty path; returns a new descriptor.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            dir.as_raw_fd(),
            c"".as_ptr(),
            OPEN_TREE_CLONE | libc::AT_EMPTY_PATH as libc::c_uint | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a fresh descriptor that we now own.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: mount_setattr reads `attr` (size given) and the empty path.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!(
                "cannot make an idmapped mount of {} ({e}); its filesystem may not support idmapped mounts: \
run delta-sessions as a regular user, or use --profile unconfined on purpose",
                path.display()
            ),
        ));
    }
    Ok(tree)
}

/// Attaches a detached mount at `target` (called by the holder, in its mount namespace).
pub fn attach(tree: &OwnedFd, target: &Path) -> io::Result<()> {
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
    let ctarget = std::ffi::CString::new(target.as_os_str().as_encoded_bytes())?;
    // SAFETY: move_mount reads the two C strings; `tree` is a valid mount descriptor.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            ctarget.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
