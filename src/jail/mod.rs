//! The jail: everything that isolates a session from the host.
//!
//! One file per concern, after nsjail and youki: [`userns`] (id maps),
//! [`mounts`] (root filesystem, planned as data then applied), [`net`]
//! (loopback), [`caps`] and [`seccomp`] (privileges), [`rlimits`], the
//! [`holder`] process that owns a session's namespaces, and the per-exec
//! [`worker`] it forks. [`protocol`] is the channel between `exec` and the
//! worker. All unsafe code of the program lives in this module tree.
//!
//! The rest of the program uses only [`start`], [`connect`], [`spawn`] and
//! [`stop`]: no other path runs a user command.

pub mod caps;
pub mod cgroup;
pub mod holder;
pub mod idmap;
pub mod interpreter;
pub mod landlock;
pub mod live;
pub mod mounts;
pub mod net;
pub mod prestart;
pub mod probe;
pub mod procfs;
pub mod protocol;
pub mod relay;
pub mod rlimits;
pub mod scope;
pub mod seccomp;
pub mod userns;
pub mod worker;

use crate::profile::{Isolation, Profile};
use crate::store::{Anchor, ControlDir, HolderRecord, SessionDir};
use anyhow::{anyhow, bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use protocol::{Exit, SpawnRequest, WorkerEvent, INTERPRETER_FD};

/// Where `$HOME` is inside a jail.
pub const JAIL_HOME: &str = "/home/user";

/// What to do when user namespaces are unavailable, shown with every such failure.
pub const USERNS_HELP: &str = "delta-sessions needs unprivileged user namespaces to build its jail. \
Enable them (sysctl -w kernel.unprivileged_userns_clone=1 on Debian, \
sysctl -w user.max_user_namespaces=15000 where it is 0; on Ubuntu 23.10+ \
sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 or an AppArmor profile for delta-sessions), \
run `delta-sessions doctor` to check, or start with `--profile unconfined` to run without a jail on purpose";

/// What to do where Landlock is missing.
pub const LANDLOCK_HELP: &str = "Landlock mode needs Linux 5.13 or later with Landlock enabled \
(the `lsm=` boot parameter must list landlock); run `delta-sessions doctor` to check";

/// Lowest Landlock ABI for a root caller: without the signal scope (ABI 6)
/// a capability-less root could still signal every root process of the host.
pub const MIN_ROOT_LANDLOCK_ABI: i64 = 6;

/// The isolation a session started now gets: `auto` becomes the jail where
/// this host lets us make user namespaces and Landlock mode elsewhere, never
/// `none`; `landlock` is checked against the kernel. The reason for the
/// choice comes back for `doctor`.
pub fn resolve_isolation(requested: Isolation) -> Result<(Isolation, String)> {
    match requested {
        Isolation::Auto if probe::can_make_user_namespace() => Ok((
            Isolation::Jail,
            "this host lets delta-sessions create user namespaces".into(),
        )),
        Isolation::Auto => {
            let abi = landlock_usable().map_err(|e| {
                anyhow!("cannot sandbox here: user namespaces are blocked and {e}. {USERNS_HELP}")
            })?;
            Ok((
                Isolation::Landlock,
                format!("user namespaces are blocked here; Landlock ABI {abi} is available"),
            ))
        }
        Isolation::Landlock => {
            let abi = landlock_usable().map_err(|e| anyhow!("cannot use Landlock mode: {e}"))?;
            Ok((Isolation::Landlock, format!("Landlock ABI {abi}")))
        }
        other => Ok((other, "as the profile says".into())),
    }
}

/// The kernel's Landlock ABI, if Landlock mode can hold here for this caller.
fn landlock_usable() -> Result<i64> {
    let abi = probe::landlock_abi()
        .map_err(|e| anyhow!("this kernel has no Landlock ({e}); {LANDLOCK_HELP}"))?;
    check_landlock_abi(abi, nix::unistd::geteuid().is_root())?;
    Ok(abi)
}

/// Whether Landlock `abi` holds Landlock mode's rows for this caller: root's
/// session, without capabilities but still uid 0, needs the signal scope.
fn check_landlock_abi(abi: i64, root: bool) -> Result<()> {
    if root && abi < MIN_ROOT_LANDLOCK_ABI {
        bail!(
            "Landlock ABI {abi} cannot keep a root caller's session from signalling the host's \
             root processes (that needs ABI {MIN_ROOT_LANDLOCK_ABI}, Linux 6.12); run as a \
             regular user"
        );
    }
    Ok(())
}

/// How long start waits for the holder before giving up.
pub const HOLDER_START_TIMEOUT: Duration = Duration::from_secs(20);

/// The `$HOME` a session's commands see.
pub fn home_for(session: &SessionDir, profile: &Profile) -> PathBuf {
    match profile.isolation {
        Isolation::Jail | Isolation::Auto => PathBuf::from(JAIL_HOME),
        Isolation::Landlock | Isolation::None => session.home_dir(),
    }
}

/// The `/tmp` a session's commands see (`TMPDIR`).
pub fn tmp_for(session: &SessionDir, profile: &Profile) -> PathBuf {
    match profile.isolation {
        Isolation::Jail | Isolation::Auto => PathBuf::from("/tmp"),
        Isolation::Landlock | Isolation::None => session.tmp_dir(),
    }
}

/// What the holder is told before it builds anything, on its control
/// socket: nothing of it is on its command line (which the jail can read in
/// `/proc/1/cmdline`), and the profile is the trusted one given at `start`,
/// never a file a jail could have reached.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct HolderConfig {
    pub session_dir: PathBuf,
    pub work_dir: PathBuf,
    pub home_target: PathBuf,
    pub profile: Profile,
}

/// A holder that is built but not yet committed: it exits by itself (and
/// takes its jail along) if this is dropped, or if the process holding it
/// dies, before [`Pending::commit`] is called. So a `start` or a rebuild
/// killed before it recorded the holder leaves no jail that nobody owns.
pub struct Pending {
    control: UnixStream,
}

impl Pending {
    /// Tells the holder that it is recorded and may live on without us.
    pub fn commit(self) -> Result<()> {
        protocol::write_all(&self.control, b"C").context("cannot confirm the session to its holder")
    }
}

/// Builds the jail of a session and starts its holder. Fails, and leaves no
/// process behind, if any layer of the jail cannot be built. Everything it
/// builds from comes from the trusted `anchor`.
pub fn start(
    session: &SessionDir,
    control_dir: &ControlDir,
    anchor: &Anchor,
) -> Result<(HolderRecord, Pending)> {
    anchor.check_pins()?;
    let profile = &anchor.profile;
    let work_dir = anchor.work_dir.as_path();
    let jailed = profile.isolation == Isolation::Jail;
    let socket_path = control_dir.socket_path();
    let _ = std::fs::remove_file(&socket_path);
    let listener = bind_listener(&socket_path)?;
    let (status_r, status_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (control, holder_control) = UnixStream::pair()?;
    let log = session.open_holder_log()?;

    let fds: [(RawFd, RawFd); 3] = [
        (listener.as_raw_fd(), holder::LISTEN_FD),
        (status_w.as_raw_fd(), holder::STATUS_FD),
        (holder_control.as_raw_fd(), holder::CONTROL_FD),
    ];
    let mut cmd = Command::new("/proc/self/exe");
    // The id only names the process for `ps` and for `cleanup`; the holder
    // learns everything else over its control socket.
    cmd.arg("__holder")
        .arg(session.id.as_str())
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // SAFETY: the closure runs between fork and exec and calls only dup2 and
    // fcntl (async-signal-safe). Sources are parked above the target range
    // first so that placing one never clobbers another.
    unsafe {
        cmd.pre_exec(move || {
            let mut parked = [0; 3];
            for (i, (src, _)) in fds.iter().enumerate() {
                parked[i] = libc::fcntl(*src, libc::F_DUPFD_CLOEXEC, 16);
                if parked[i] < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (i, (_, dst)) in fds.iter().enumerate() {
                if libc::dup2(parked[i], *dst) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("cannot start the session holder")?;
    drop(status_w);
    drop(holder_control);
    drop(listener);

    let config = HolderConfig {
        session_dir: session.dir.clone(),
        work_dir: work_dir.to_path_buf(),
        home_target: home_for(session, profile),
        profile: profile.clone(),
    };
    let mut progress = Startup::default();
    let result = protocol::send_json(&control, &config)
        .context("cannot configure the session holder")
        .and_then(|()| {
            handshake(
                anchor.root_jail_id.unwrap_or(idmap::ROOT_JAIL_UID),
                child.id() as i32,
                session,
                profile,
                work_dir,
                status_r,
                &control,
                &mut progress,
            )
        });
    let pid = match result {
        Ok(pid) => {
            // The first stage exits right after forking the holder proper.
            let _ = child.wait();
            pid
        }
        Err(e) => {
            // Closed first: a first stage still waiting for its go-ahead
            // then sees the end of the channel and exits, so the wait
            // below cannot hang (and with it every later command).
            drop(control);
            let _ = child.kill();
            let _ = child.wait();
            // A holder that was forked but did not get ready must not stay
            // behind: as PID 1 of its namespace, it takes the rest with it.
            if let Some(pid) = progress.holder_pid {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            cgroup::remove(&progress.cgroups);
            let _ = std::fs::remove_file(&socket_path);
            return Err(e);
        }
    };
    let start_time = procfs::start_time(pid).context("the holder vanished right after start")?;
    Ok((
        HolderRecord {
            pid,
            start_time,
            jailed,
            cgroups: progress.cgroups,
        },
        Pending { control },
    ))
}

/// Asks the holder of a new bash session to pre-start the shell of its first
/// exec from `req` (see [`prestart`]): a `prestart_only` request with an
/// empty prelude and state report. Nothing waits for it.
pub fn queue_prestart(control_dir: &ControlDir, req: &SpawnRequest) -> Result<()> {
    let conn = connect(control_dir)?.ok_or_else(|| anyhow!("no listener"))?;
    let prelude = memfd("prelude")?;
    let report = memfd("state")?;
    spawn(&conn, req, &[prelude.as_raw_fd(), report.as_raw_fd()])
}

/// What the parent has learnt and done while the holder starts.
#[derive(Default)]
struct Startup {
    /// Host pid of the holder proper, once the first stage reported it.
    holder_pid: Option<i32>,
    /// The session's cgroups, made and joined by the holder.
    cgroups: Vec<PathBuf>,
}

fn bind_listener(path: &Path) -> Result<UnixListener> {
    let listener = if path.as_os_str().len() < 100 {
        UnixListener::bind(path)
    } else {
        // sockaddr_un holds ~108 bytes; reach a deep dir through /proc.
        let dir = File::open(path.parent().unwrap_or(Path::new("/")))?;
        UnixListener::bind(format!(
            "/proc/self/fd/{}/{}",
            dir.as_raw_fd(),
            path.file_name().unwrap_or_default().to_string_lossy()
        ))
    };
    listener.with_context(|| format!("cannot create the control socket {}", path.display()))
}

/// The host directories that root's jails attach through idmapped mounts, in
/// the order the parent sends them and the holder expects them.
pub fn idmapped_sources(session: &SessionDir, profile: &Profile, work_dir: &Path) -> Vec<PathBuf> {
    let mut v = vec![work_dir.to_path_buf()];
    v.extend(host_private_dirs(session, profile));
    v.extend(profile.filesystem.read_write.iter().cloned());
    v
}

/// The session dir's `tmp` and `home` when the jail uses them (no disk
/// budget: with one, they are a tmpfs of the jail's own).
fn host_private_dirs(session: &SessionDir, profile: &Profile) -> Vec<PathBuf> {
    match profile.limits.disk_bytes {
        Some(_) => Vec::new(),
        None => vec![session.tmp_dir(), session.home_dir()],
    }
}

/// Ids the holder takes inside its user namespace, sent with the go-ahead.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct GoAhead {
    pub uid: u32,
    pub gid: u32,
    /// Number of idmapped mounts attached (in [`idmapped_sources`] order).
    pub mounts: usize,
}

/// Writes the id maps of the holder's new user namespace and sends it the
/// go-ahead, with the idmapped mounts when root started it.
fn set_up_user_namespace(
    root_jail_id: u32,
    first_stage: i32,
    session: &SessionDir,
    profile: &Profile,
    work_dir: &Path,
    control: &UnixStream,
) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let euid = nix::unistd::geteuid().as_raw();
    let egid = nix::unistd::getegid().as_raw();
    let owner = std::fs::metadata(work_dir).map(|m| (m.uid(), m.gid()))?;
    let (uid, gid) = userns::plan_maps(euid, egid, owner, root_jail_id);
    userns::write_maps(first_stage, uid, gid).map_err(|e| {
        anyhow!("cannot map ids into the session's user namespace: {e}. {USERNS_HELP}")
    })?;
    let mut trees = Vec::new();
    if userns::needs_idmapped_mounts(euid) {
        // The private dirs must belong to the id that the work dir's owner maps to.
        for dir in host_private_dirs(session, profile) {
            // Through a descriptor opened without following a symlink: a
            // link put in place of the dir must not hand a host file over.
            let fd = nix::fcntl::open(
                &dir,
                nix::fcntl::OFlag::O_PATH
                    | nix::fcntl::OFlag::O_DIRECTORY
                    | nix::fcntl::OFlag::O_NOFOLLOW
                    | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|e| {
                anyhow!(
                    "cannot open {} ({e}): it must be a plain directory",
                    dir.display()
                )
            })?;
            nix::unistd::fchownat(
                Some(fd),
                "",
                Some(owner.0.into()),
                Some(owner.1.into()),
                nix::unistd::FchownatFlags::AT_EMPTY_PATH,
            )
            .map_err(|e| anyhow!("cannot give {} to the work dir's owner: {e}", dir.display()))?;
            let _ = nix::unistd::close(fd);
        }
        let ns = File::open(format!("/proc/{first_stage}/ns/user"))?;
        for src in idmapped_sources(session, profile, work_dir) {
            trees.push(idmap::detached_idmapped_mount(&src, &ns)?);
        }
    }
    let go = GoAhead {
        uid: uid.inside,
        gid: gid.inside,
        mounts: trees.len(),
    };
    let raw: Vec<RawFd> = trees.iter().map(|t| t.as_raw_fd()).collect();
    protocol::send_frame(control, &serde_json::to_vec(&go)?, &raw)?;
    Ok(())
}

/// Follows the holder's start-up lines; returns the holder's host pid once ready.
#[allow(clippy::too_many_arguments)]
fn handshake(
    root_jail_id: u32,
    first_stage: i32,
    session: &SessionDir,
    profile: &Profile,
    work_dir: &Path,
    status_r: OwnedFd,
    control: &UnixStream,
    progress: &mut Startup,
) -> Result<i32> {
    let jailed = profile.isolation == Isolation::Jail;
    let deadline = Instant::now() + HOLDER_START_TIMEOUT;
    let status_fd = status_r.as_raw_fd();
    let mut reader = BufReader::new(File::from(status_r));
    let mut control = Some(control);
    // The first stage reports the holder's pid and the holder reports ready;
    // they are different processes, so either line may come first.
    let mut ready = false;
    loop {
        if let (Some(pid), true) = (progress.holder_pid, ready) {
            return Ok(pid);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        // SAFETY: status_fd stays open as long as `reader` lives.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(status_fd) };
        let mut pfd = [PollFd::new(borrowed.as_fd(), PollFlags::POLLIN)];
        let ms =
            PollTimeout::try_from(left.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::MAX);
        if reader.buffer().is_empty() && poll(&mut pfd, ms).unwrap_or(0) == 0 {
            bail!(
                "the session holder did not start within {:?}",
                HOLDER_START_TIMEOUT
            );
        }
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            bail!("the session holder exited during start-up (see holder.log in the session directory)");
        }
        let line = line.trim_end();
        match line.split_at(line.len().min(1)) {
            ("U", _) if jailed => {
                let c = control.take().context("duplicate handshake line")?;
                set_up_user_namespace(root_jail_id, first_stage, session, profile, work_dir, c)?;
            }
            ("P", pid) => {
                let pid = pid.parse::<i32>().context("bad holder pid")?;
                progress.holder_pid = Some(pid);
                // Moved now, while the holder still builds its jail: the
                // first move into a cgroup waits for an RCU grace period
                // (several ms), which so overlaps the build. The holder has
                // no child before it is ready, so nothing escapes the move.
                // Best effort: where the host gives no cgroup, rlimits still
                // bound every process; the record shows which the session got.
                let plan = cgroup::plan(
                    &cgroup::Hierarchies::of_self(),
                    session.id.as_str(),
                    &profile.limits,
                );
                progress.cgroups = cgroup::apply(&plan, pid).unwrap_or_default();
            }
            ("R", _) => ready = true,
            ("E", why) => bail!("cannot build the session's jail: {why}"),
            _ => bail!("unexpected start-up message from the holder: {line:?}"),
        }
    }
}

/// Connects to a session's holder. `Ok(None)` means the holder is gone (host
/// reboot, OOM kill) and the jail must be rebuilt.
pub fn connect(control_dir: &ControlDir) -> Result<Option<UnixStream>> {
    let path = control_dir.socket_path();
    let result = if path.as_os_str().len() < 100 {
        UnixStream::connect(&path)
    } else {
        let dir = File::open(control_dir.path())?;
        UnixStream::connect(format!("/proc/self/fd/{}/holder.sock", dir.as_raw_fd()))
    };
    match result {
        Ok(s) => Ok(Some(s)),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(anyhow!(e)).context("cannot reach the session's holder"),
    }
}

/// Sends a request; `fds` become fds 0, 1, 2, … of the command.
pub fn spawn(conn: &UnixStream, req: &SpawnRequest, fds: &[RawFd]) -> Result<()> {
    let body = serde_json::to_vec(req)?;
    protocol::send_frame(conn, &body, fds)
        .context("cannot send the command to the session's holder")
}

/// Whether the process in `record` is still the holder we started.
pub fn is_alive(record: &HolderRecord) -> bool {
    procfs::start_time(record.pid).ok() == Some(record.start_time)
}

/// Kills every process of the session and its holder, and waits until they are gone.
pub fn stop(control_dir: &ControlDir, record: &HolderRecord) -> Result<()> {
    let pidfd = match pidfd_open(record.pid) {
        Ok(fd) => fd,
        Err(_) => {
            // Already gone; its (now empty) cgroups may remain.
            cgroup::remove(&record.cgroups);
            return Ok(());
        }
    };
    // Checked after pidfd_open, so the pidfd cannot refer to a recycled pid.
    if !is_alive(record) {
        cgroup::remove(&record.cgroups);
        return Ok(());
    }
    if !record.jailed {
        // No PID namespace: kill the holder's subtree first, or its members
        // would be orphaned to the host's init.
        for _ in 0..1000 {
            let pids = procfs::descendants(record.pid);
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    pidfd_kill(&pidfd)?;
    // Killing PID 1 of a namespace kills all its processes; the pidfd becomes
    // readable once the holder, and so the whole namespace, is gone.
    let mut pfd = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    let _ = poll(&mut pfd, PollTimeout::from(10_000u16));
    let _ = std::fs::remove_file(control_dir.socket_path());
    cgroup::remove(&record.cgroups);
    Ok(())
}

fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a fresh descriptor that we now own.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as RawFd) })
}

fn pidfd_kill(pidfd: &OwnedFd) -> Result<()> {
    // SAFETY: pidfd_send_signal with a valid pidfd, no siginfo, no flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ESRCH) {
            return Err(anyhow!(err)).context("cannot kill the session holder");
        }
    }
    Ok(())
}

/// Creates an anonymous in-memory file (for the command text and the state
/// capture): nothing reaches the disk and nothing is visible in the jail's
/// filesystem.
pub fn memfd(name: &str) -> Result<File> {
    let cname = std::ffi::CString::new(name)?;
    let fd = nix::sys::memfd::memfd_create(&cname, nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC)
        .context("memfd_create")?;
    Ok(File::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn landlock_mode_for_root_needs_the_signal_scope() {
        for abi in 1..MIN_ROOT_LANDLOCK_ABI {
            let e = check_landlock_abi(abi, true).unwrap_err().to_string();
            assert!(e.contains("root") && !e.contains("  "), "{e}");
            assert!(
                check_landlock_abi(abi, false).is_ok(),
                "a user at ABI {abi}"
            );
        }
        assert!(check_landlock_abi(MIN_ROOT_LANDLOCK_ABI, true).is_ok());
    }
}
