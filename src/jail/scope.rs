//! Landlock scoping: the session's processes may not connect to abstract
//! Unix sockets, nor signal processes, outside the session.
//!
//! A jail with the host's network (`network = "host"`) shares the host's
//! network namespace, and with it every abstract Unix socket of the host (a
//! desktop's X11 and D-Bus, container runtimes' sockets), which no path and
//! so no mount hides. Landlock's scopes (ABI 6, Linux 6.12) close exactly
//! that: a socket made outside the Landlock domain cannot be reached from
//! inside it, and neither can a process be signalled. No file-system or
//! network access right is handled, so nothing else changes.
//!
//! Where the kernel's Landlock is older or disabled, [`restrict`] does
//! nothing and says so (`doctor` reports the ABI).

use std::io;

const LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1;
const LANDLOCK_SCOPE_SIGNAL: u64 = 2;

/// `struct landlock_ruleset_attr` of ABI 6 and later.
#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

/// Scopes the calling process (and all it starts) to its own abstract Unix
/// sockets and processes. Needs `no_new_privs` (set by the seccomp install).
/// `Ok(false)`: the kernel has no scopes, nothing was done.
pub fn restrict() -> io::Result<bool> {
    if super::probe::landlock_abi().map_or(true, |v| v < 6) {
        return Ok(false);
    }
    let attr = RulesetAttr {
        handled_access_fs: 0,
        handled_access_net: 0,
        scoped: LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | LANDLOCK_SCOPE_SIGNAL,
    };
    // SAFETY: the kernel reads `attr` (its size given) and returns a new fd.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            &attr as *const RulesetAttr,
            std::mem::size_of::<RulesetAttr>(),
            0u32,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: restrict_self with the ruleset fd we just made and no flags.
    let rc = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, fd as libc::c_int, 0u32) };
    let err = io::Error::last_os_error();
    // SAFETY: closing the descriptor we own.
    unsafe { libc::close(fd as libc::c_int) };
    if rc < 0 {
        return Err(err);
    }
    Ok(true)
}
