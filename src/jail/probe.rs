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
