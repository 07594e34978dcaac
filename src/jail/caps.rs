//! Dropping every capability of a jailed process, for good.
//!
//! The jail's processes are root in their user namespace and so start with a full capability
//! set there. [`drop_all`] empties every set (effective, permitted, inheritable, ambient and
//! bounding) and locks the securebits, so that no later `execve` (by uid 0, or of a
//! set-user-ID or file-capability binary) gives any capability back.
//!
//! [`drop_all`] and [`set_no_new_privs`] make raw system calls only: they run between `fork`
//! and `exec`, where allocating or taking a lock can deadlock.

use std::io;

use libc::{c_int, c_ulong};

/// Securebits set by [`drop_all`]: uid 0 gains nothing from `execve` (`NOROOT`), uid changes
/// leave capabilities alone (`NO_SETUID_FIXUP`), ambient capabilities cannot be raised, and
/// all of them, plus `KEEP_CAPS` staying off, are locked for every descendant.
const SECUREBITS: c_int = libc::SECBIT_NOROOT
    | libc::SECBIT_NOROOT_LOCKED
    | libc::SECBIT_NO_SETUID_FIXUP
    | libc::SECBIT_NO_SETUID_FIXUP_LOCKED
    | libc::SECBIT_KEEP_CAPS_LOCKED
    | libc::SECBIT_NO_CAP_AMBIENT_RAISE
    | libc::SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;

/// Highest capability number the 64-bit capability ABI can carry. The kernel's own last one
/// (`/proc/sys/kernel/cap_last_cap`) is lower; asking past it gives `EINVAL`, which ends the
/// walk, so no file needs reading after `fork`.
const MAX_CAP: c_ulong = 63;

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Drops every capability of the calling thread for good: locks the securebits, empties the
/// bounding set, clears the ambient set, then empties the effective, permitted and
/// inheritable sets.
///
/// The first two steps need `CAP_SETPCAP`. Without it they are skipped when the bounding set
/// is already empty (nothing an `execve` could regain then), and fail with `EPERM` otherwise.
/// Async-signal-safe (raw system calls only). Call it last before `exec`, once nothing else
/// needs a capability.
pub fn drop_all() -> io::Result<()> {
    lock_securebits()?;
    drop_bounding_set()?;
    clear_ambient()?;
    clear_sets()
}

/// For Landlock mode, where there is no user namespace: root (and any
/// caller holding capabilities) loses them all as in [`drop_all`]; a regular
/// user, who cannot change its bounding set or securebits, empties its
/// capability sets, and `no_new_privs` then keeps `execve` from granting any.
pub fn drop_all_on_host() -> io::Result<()> {
    match drop_all() {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) && !nix::unistd::geteuid().is_root() => {
            clear_ambient()?;
            clear_sets()
        }
        other => other,
    }
}

/// Sets `no_new_privs`: `execve` can no longer grant privileges (set-user-ID bits and file
/// capabilities are ignored), and unprivileged seccomp filters become allowed.
/// Async-signal-safe.
pub fn set_no_new_privs() -> io::Result<()> {
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1).map(drop)
}

/// The value of `field` in `/proc/self/status` (e.g. `CapEff`, `NoNewPrivs`, `Seccomp`),
/// trimmed. Allocates: not for use between `fork` and `exec`.
pub fn status_line(field: &str) -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status_field(&status, field).map(str::to_owned)
}

/// The trimmed value of `field` in the text of a `/proc/PID/status` file.
fn status_field<'a>(status: &'a str, field: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
}

fn lock_securebits() -> io::Result<()> {
    let current = prctl(libc::PR_GET_SECUREBITS, 0)?;
    // KEEP_CAPS would keep capabilities across a uid change; it is locked off below.
    let wanted = (current | SECUREBITS) & !libc::SECBIT_KEEP_CAPS;
    if current == wanted {
        return Ok(());
    }
    match prctl(libc::PR_SET_SECUREBITS, wanted as c_ulong) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) && bounding_set_is_empty()? => Ok(()),
        other => other.map(drop),
    }
}

fn drop_bounding_set() -> io::Result<()> {
    for cap in 0..=MAX_CAP {
        match prctl(libc::PR_CAPBSET_READ, cap) {
            Ok(0) => {}
            Ok(_) => {
                prctl(libc::PR_CAPBSET_DROP, cap)?;
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn bounding_set_is_empty() -> io::Result<bool> {
    for cap in 0..=MAX_CAP {
        match prctl(libc::PR_CAPBSET_READ, cap) {
            Ok(0) => {}
            Ok(_) => return Ok(false),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn clear_ambient() -> io::Result<()> {
    match prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as c_ulong,
    ) {
        // Kernels before 4.3 have no ambient set, so nothing to clear.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        other => other.map(drop),
    }
}

fn clear_sets() -> io::Result<()> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: header and data are valid v3 capset arguments (one header, two data words) that
    // live across the call; the kernel only reads data and may write the header's version.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `prctl` with one integer argument (the rest zero), as the options used here take.
fn prctl(option: c_int, arg: c_ulong) -> io::Result<c_int> {
    // SAFETY: every option passed here takes integer arguments only, no pointers.
    let rc = unsafe { libc::prctl(option, arg, 0 as c_ulong, 0 as c_ulong, 0 as c_ulong) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

/// Helpers for tests that fork: the test harness is multi-threaded, so a forked child may only
/// make raw system calls (no allocation, no locks) and must leave with `_exit`. The child
/// reports line by line through a pipe; the parent collects the text and the exit status.
#[cfg(test)]
pub(crate) mod testutil {
    use std::ffi::CStr;
    use std::io::Read as _;
    use std::os::fd::{AsRawFd as _, RawFd};

    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};

    /// The child's end of the report pipe.
    #[derive(Clone, Copy)]
    pub(crate) struct Out {
        pub(crate) fd: RawFd,
    }

    /// What a child reported and how it ended.
    pub(crate) struct Report {
        pub(crate) text: String,
        pub(crate) status: WaitStatus,
    }

    /// The calling thread's errno.
    pub(crate) fn errno() -> i32 {
        nix::errno::Errno::last_raw()
    }

    impl Out {
        pub(crate) fn write(self, mut bytes: &[u8]) {
            while !bytes.is_empty() {
                // SAFETY: writes from a live slice to the pipe's write end.
                let n = unsafe { libc::write(self.fd, bytes.as_ptr().cast(), bytes.len()) };
                if n <= 0 {
                    return;
                }
                bytes = &bytes[n as usize..];
            }
        }

        pub(crate) fn num(self, n: i64) {
            let mut buf = [0u8; 24];
            self.write(format_num(n, &mut buf));
        }

        /// Reports `what` as passed or failed, with the result and errno of the call it checked.
        pub(crate) fn check(self, what: &str, ok: bool, rc: i64, errno: i32) {
            self.write(if ok { b"ok " } else { b"FAIL " });
            self.write(what.as_bytes());
            if !ok {
                self.write(b": rc=");
                self.num(rc);
                self.write(b" errno=");
                self.num(errno.into());
            }
            self.write(b"\n");
        }

        /// Checks that a call returning `rc` (with errno `e`) succeeded.
        pub(crate) fn expect_ok(self, what: &str, rc: i64, e: i32) -> bool {
            self.check(what, rc >= 0, rc, e);
            rc >= 0
        }

        /// Checks that an `io::Result` is `Ok`.
        pub(crate) fn expect_io(self, what: &str, result: std::io::Result<()>) -> bool {
            let errno = result.as_ref().err().and_then(|e| e.raw_os_error());
            self.check(
                what,
                result.is_ok(),
                -i64::from(result.is_err()),
                errno.unwrap_or(0),
            );
            result.is_ok()
        }

        /// Copies this process's /proc/self/status into the report as section `label`.
        pub(crate) fn status(self, label: &str) {
            self.write(b"--- status ");
            self.write(label.as_bytes());
            self.write(b"\n");
            let path = c"/proc/self/status";
            // SAFETY: a NUL-terminated path; the descriptor is closed below.
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
            if fd < 0 {
                self.check("open /proc/self/status", false, -1, errno());
                return;
            }
            let mut buf = [0u8; 1024];
            loop {
                // SAFETY: reads into a live stack buffer of the given length.
                let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
                if n <= 0 {
                    break;
                }
                self.write(&buf[..n as usize]);
            }
            // SAFETY: fd was opened above and is not used again.
            unsafe { libc::close(fd) };
            self.write(b"--- end\n");
        }
    }

    fn format_num(n: i64, buf: &mut [u8; 24]) -> &[u8] {
        let mut i = buf.len();
        let mut v = n.unsigned_abs();
        loop {
            i -= 1;
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        if n < 0 {
            i -= 1;
            buf[i] = b'-';
        }
        &buf[i..]
    }

    /// Runs `body` in a forked child, whose result becomes its exit code, and returns what
    /// it reported. `body` must keep to raw system calls (see the module doc).
    pub(crate) fn run_in_child(body: impl FnOnce(Out) -> i32) -> Report {
        let (read_end, write_end) = nix::unistd::pipe().expect("pipe");
        // SAFETY: the child only runs `body`, which keeps to async-signal-safe calls, and
        // leaves with _exit, never returning into the test harness.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => {
                // SAFETY: closes the child's copy of the read end, so the parent sees EOF.
                unsafe { libc::close(read_end.as_raw_fd()) };
                let code = body(Out {
                    fd: write_end.as_raw_fd(),
                });
                // SAFETY: ends the child without running the parent's atexit handlers.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => {
                drop(write_end);
                let mut bytes = Vec::new();
                std::fs::File::from(read_end)
                    .read_to_end(&mut bytes)
                    .expect("read child report");
                let status = waitpid(child, None).expect("waitpid");
                Report {
                    text: String::from_utf8_lossy(&bytes).into_owned(),
                    status,
                }
            }
        }
    }

    impl Report {
        /// Asserts the child exited 0 and reported no failed check.
        pub(crate) fn assert_ok(&self) {
            assert!(
                matches!(self.status, WaitStatus::Exited(_, 0)) && !self.text.contains("FAIL"),
                "child ended with {:?} and reported:\n{}",
                self.status,
                self.text
            );
        }

        /// The value of `field` in status section `label`.
        pub(crate) fn field(&self, label: &str, field: &str) -> Option<&str> {
            let start = format!("--- status {label}\n");
            let section = &self.text[self.text.find(&start)? + start.len()..];
            let section = &section[..section.find("--- end").unwrap_or(section.len())];
            super::status_field(section, field)
        }
    }

    /// Writes `text` to the file at `path`; in a forked child.
    fn write_file(path: &CStr, text: &[u8]) -> bool {
        // SAFETY: a NUL-terminated path; the descriptor is closed below.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return false;
        }
        // SAFETY: writes from a live slice.
        let n = unsafe { libc::write(fd, text.as_ptr().cast(), text.len()) };
        // SAFETY: fd was opened above and is not used again.
        unsafe { libc::close(fd) };
        n == text.len() as isize
    }

    /// The one-line id map "0 ID 1" (root inside is `id` outside), in `buf`.
    fn id_map(id: u32, buf: &mut [u8; 32]) -> &[u8] {
        let mut num = [0u8; 24];
        let digits = format_num(id.into(), &mut num);
        let len = digits.len();
        buf[..2].copy_from_slice(b"0 ");
        buf[2..2 + len].copy_from_slice(digits);
        buf[2 + len..4 + len].copy_from_slice(b" 1");
        &buf[..4 + len]
    }

    /// In a forked child: enters a new user namespace (and the `extra` namespaces) with the
    /// outer uid and gid mapped to root, so the child is root there with a full capability
    /// set. A new mount namespace is made private so that nothing done in it propagates.
    pub(crate) fn become_userns_root(out: Out, extra: libc::c_int) -> bool {
        // SAFETY: plain syscalls without pointers.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        // SAFETY: unshare takes flags only; the child is single-threaded, as it requires.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWUSER | extra) };
        if !out.expect_ok("unshare user namespace", rc.into(), errno()) {
            return false;
        }
        let (mut uid_line, mut gid_line) = ([0u8; 32], [0u8; 32]);
        let ok = write_file(c"/proc/self/uid_map", id_map(uid, &mut uid_line))
            && write_file(c"/proc/self/setgroups", b"deny")
            && write_file(c"/proc/self/gid_map", id_map(gid, &mut gid_line));
        if !out.expect_ok(
            "map root in user namespace",
            if ok { 0 } else { -1 },
            errno(),
        ) {
            return false;
        }
        if extra & libc::CLONE_NEWNS != 0 {
            // SAFETY: NUL-terminated path; null source/type/data are allowed for this call.
            let rc = unsafe {
                libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                )
            };
            return out.expect_ok("make mounts private", rc.into(), errno());
        }
        true
    }

    /// Replaces a forked child with `argv[0]` (an absolute path), its stdout going to `out`.
    /// Only returns (after reporting) if the exec failed.
    pub(crate) fn exec(out: Out, argv: &[*const libc::c_char], envp: &[*const libc::c_char]) {
        // SAFETY: dup2 on two open descriptors; argv and envp are NULL-terminated arrays of
        // NUL-terminated strings built by the parent before fork.
        unsafe {
            libc::dup2(out.fd, 1);
            libc::execve(argv[0], argv.as_ptr(), envp.as_ptr());
        }
        out.check("execve", false, -1, errno());
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::{become_userns_root, exec, run_in_child};
    use super::*;

    const ZERO: &str = "0000000000000000";
    const CAP_FIELDS: [&str; 5] = ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"];

    #[test]
    fn status_line_reads_own_status() {
        assert!(status_line("Name").is_some_and(|n| !n.is_empty()));
        assert_eq!(status_line("NoSuchField"), None);
        let text = "CapEffX:\t1\nCapEff:\t0000000000000000\nSeccomp:\t2\n";
        assert_eq!(status_field(text, "CapEff"), Some(ZERO));
        assert_eq!(status_field(text, "Seccomp"), Some("2"));
    }

    /// The child becomes root in a new user namespace, drops everything, and then execs
    /// `cat /proc/self/status` as that root: without the bounding set and securebits, execve
    /// by uid 0 would hand the full set back.
    #[test]
    fn drop_all_empties_every_set_and_survives_execve() {
        let argv = [
            c"/bin/cat".as_ptr(),
            c"/proc/self/status".as_ptr(),
            std::ptr::null(),
        ];
        let envp = [std::ptr::null()];
        let report = run_in_child(|out| {
            if !become_userns_root(out, 0) {
                return 1;
            }
            out.status("before");
            out.expect_io("drop_all", drop_all());
            let bits = prctl(libc::PR_GET_SECUREBITS, 0).unwrap_or(-1);
            out.check(
                "securebits set and locked",
                bits == SECUREBITS,
                bits.into(),
                0,
            );
            out.status("after");
            out.write(b"--- status exec\n");
            exec(out, &argv, &envp);
            1
        });
        report.assert_ok();
        // It had something to drop, and it ran the exec as root.
        assert_ne!(
            report.field("before", "CapEff"),
            Some(ZERO),
            "{}",
            report.text
        );
        let uid = report.field("exec", "Uid").unwrap_or_default();
        assert!(uid.starts_with("0\t"), "exec Uid {uid:?}:\n{}", report.text);
        for label in ["after", "exec"] {
            for field in CAP_FIELDS {
                assert_eq!(
                    report.field(label, field),
                    Some(ZERO),
                    "{field} {label}:\n{}",
                    report.text
                );
            }
        }
    }

    /// Control for the test above: emptying only the effective/permitted/inheritable sets is
    /// not enough, root's execve regains them.
    #[test]
    fn clearing_sets_alone_does_not_survive_execve() {
        let argv = [
            c"/bin/cat".as_ptr(),
            c"/proc/self/status".as_ptr(),
            std::ptr::null(),
        ];
        let envp = [std::ptr::null()];
        let report = run_in_child(|out| {
            if !become_userns_root(out, 0) {
                return 1;
            }
            out.expect_io("clear sets", clear_sets());
            out.status("after");
            out.write(b"--- status exec\n");
            exec(out, &argv, &envp);
            1
        });
        report.assert_ok();
        assert_eq!(report.field("after", "CapEff"), Some(ZERO));
        assert_ne!(
            report.field("exec", "CapEff"),
            Some(ZERO),
            "{}",
            report.text
        );
    }

    #[test]
    fn drop_all_again_without_setpcap_succeeds() {
        run_in_child(|out| {
            if !become_userns_root(out, 0) {
                return 1;
            }
            out.expect_io("first drop_all", drop_all());
            out.expect_io("second drop_all", drop_all());
            0
        })
        .assert_ok();
    }

    #[test]
    fn drop_all_fails_without_setpcap_while_bounding_set_is_full() {
        run_in_child(|out| {
            if !become_userns_root(out, 0) {
                return 1;
            }
            out.expect_io("clear sets", clear_sets());
            let e = drop_all().err().and_then(|e| e.raw_os_error());
            out.check(
                "drop_all gives EPERM",
                e == Some(libc::EPERM),
                0,
                e.unwrap_or(0),
            );
            0
        })
        .assert_ok();
    }

    #[test]
    fn set_no_new_privs_shows_in_status() {
        let report = run_in_child(|out| {
            out.expect_io("set_no_new_privs", set_no_new_privs());
            out.status("after");
            0
        });
        report.assert_ok();
        assert_eq!(report.field("after", "NoNewPrivs"), Some("1"));
    }
}
