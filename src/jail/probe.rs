//! Live probes of what this host lets us do, for `doctor` and for clear
//! start-up errors.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// Tries to create a user namespace (plus mount and PID namespaces) in a
/// short-lived child, the way the holder does.
pub fn user_namespace() -> io::Result<()> {
    let mut cmd = Command::new("/bin/true");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: the closure runs between fork and exec and makes one syscall.
    unsafe {
        cmd.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWPID) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let status = cmd.status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("probe exited with {status}")))
    }
}

/// Whether this process may create a user namespace with mount and PID
/// namespaces, the way the holder does, measured the cheap way: a child
/// made by `clone` with those flags, which exits at once. (Docker's default
/// seccomp profile and `user.max_user_namespaces = 0` fail the clone; so does
/// Ubuntu's AppArmor restriction, which leaves the new namespace without
/// the capability a mount namespace needs.)
pub fn can_make_user_namespace() -> bool {
    let flags = libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::SIGCHLD;
    // SAFETY: a fork-like clone (no new stack); the child only calls _exit,
    // which is async-signal-safe, so a multi-threaded parent is fine too.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid == 0 {
        // SAFETY: leaves the child at once, without running any handler.
        unsafe { libc::_exit(0) };
    }
    if pid < 0 {
        return false;
    }
    let mut status = 0;
    // SAFETY: waits for the child made above.
    unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::__WALL) };
    libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
}

/// The Landlock ABI version the kernel offers, if any.
pub fn landlock_abi() -> io::Result<i64> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a NULL attribute pointer and size 0, the VERSION flag only
    // queries the ABI version; no memory is read or written.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// The filesystem magic of `path` (to tell cgroup v1 from v2).
pub fn fs_magic(path: &str) -> io::Result<i64> {
    let c = std::ffi::CString::new(path)?;
    // SAFETY: statfs fills the zeroed struct we pass; the path is a valid C string.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut buf) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(buf.f_type as i64)
}
