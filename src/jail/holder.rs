//! The holder: one small process per session that owns the jail.
//!
//! `delta-sessions start` runs our own binary in the hidden `__holder` mode. It
//! creates the session's namespaces, builds the root filesystem, drops every
//! privilege, and then stays as PID 1 of the session's PID namespace: it
//! reaps orphans and forks a [worker](super::worker) for each exec that
//! connects to its control socket. In a live interpreter session it also
//! starts and keeps the interpreter (see [`interpreter`](super::interpreter)).
//! When it dies, the kernel kills every process of the session.
//!
//! The parent first sends a [`HolderConfig`] on the control socket (the
//! holder's command line shows only the session id). Start-up handshake on
//! the status pipe (holder -> parent), one line each: `U` user namespace
//! created (parent writes the id maps, then sends the go-ahead on the control
//! socket), `P<pid>` host pid of the holder proper, `R` ready, or `E<why>`.
//! Once the parent has recorded the holder it sends `C` on the control
//! socket; a holder whose control socket closes before that exits (its
//! `start` died, and nobody could ever end it).

use super::interpreter::Interpreters;
use super::{mounts, prestart, protocol, rlimits, worker, GoAhead, HolderConfig};
use crate::profile::{Isolation, Network, Profile};
use anyhow::{anyhow, bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

/// Descriptor numbers the parent passes to the holder.
pub const LISTEN_FD: RawFd = 3;
pub const STATUS_FD: RawFd = 4;
pub const CONTROL_FD: RawFd = 5;

/// Entry point of `delta-sessions __holder`. Never returns.
pub fn main() -> ! {
    // SAFETY: the parent set up these descriptors for us and nothing else owns them.
    let status = unsafe { File::from_raw_fd(STATUS_FD) };
    let mut status = Some(status);
    // SAFETY: as above.
    let control = unsafe { UnixStream::from_raw_fd(CONTROL_FD) };
    // Never inherited by what the jail runs.
    let _ = nix::fcntl::fcntl(
        CONTROL_FD,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    if let Err(e) = start(control, &mut status) {
        report_error(&mut status, &e);
        std::process::exit(1);
    }
    std::process::exit(0)
}

/// Tells the parent why the jail could not be built, on one line.
fn report_error(status: &mut Option<File>, e: &anyhow::Error) {
    if let Some(f) = status.as_mut() {
        let line = format!("E{}", format!("{e:#}").replace('\n', " "));
        let _ = write_line(f, &line);
    }
}

fn status_line(status: &mut Option<File>, line: &str) -> Result<()> {
    let f = status.as_mut().context("status pipe already closed")?;
    write_line(f, line).context("cannot report to the parent")
}

/// Writes `line` and its newline with one write(2). Two processes (the first
/// stage and the holder) share the status pipe, and a pipe write of at most
/// PIPE_BUF bytes is atomic, so their lines never interleave. Longer lines
/// (error texts) are cut to fit.
fn write_line(f: &mut File, line: &str) -> std::io::Result<()> {
    const PIPE_BUF: usize = 4096;
    let mut buf = Vec::with_capacity(line.len().min(PIPE_BUF - 1) + 1);
    let mut end = line.len().min(PIPE_BUF - 1);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    buf.extend_from_slice(&line.as_bytes()[..end]);
    buf.push(b'\n');
    let written = f.write(&buf)?;
    if written != buf.len() {
        return Err(std::io::Error::other("short write on the status pipe"));
    }
    Ok(())
}

fn start(control: UnixStream, status: &mut Option<File>) -> Result<()> {
    let (args, _) = protocol::recv_json::<HolderConfig>(&control)
        .context("waiting for the holder's configuration")?
        .context("the parent sent no configuration")?;
    let profile = args.profile.clone();
    let args = &args;
    let jailed = match profile.isolation {
        Isolation::Jail => true,
        Isolation::Landlock | Isolation::None => false,
        Isolation::Auto => bail!("the session's isolation was not resolved at start"),
    };
    let mut jail = None;
    // Built now, with the caller's view of the host, for the children to enforce.
    let landlock = match profile.isolation {
        Isolation::Landlock => Some(landlock_ruleset(args, &profile)?),
        _ => None,
    };
    // Detach from the caller's terminal and process group: Ctrl-C or the end of
    // the calling agent must not take the session down.
    let _ = nix::unistd::setsid();
    if jailed {
        unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| {
            anyhow!(
                "cannot create a user namespace ({e}). {}",
                super::USERNS_HELP
            )
        })?;
        status_line(status, "U")?;
        let (go, premounted) = protocol::recv_json::<GoAhead>(&control)
            .context("waiting for the parent's go-ahead")?
            .context("the parent did not finish the user namespace set-up")?;
        if premounted.len() != go.mounts {
            bail!(
                "expected {} idmapped mounts, got {}",
                go.mounts,
                premounted.len()
            );
        }
        let plan = mounts::plan(
            &rootfs_spec(args, &profile, go.mounts > 0),
            &mounts::RealHost,
        )
        .map_err(|e| anyhow!(e))?;
        let mut flags = CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWPID
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWCGROUP;
        if profile.network == Network::None {
            flags |= CloneFlags::CLONE_NEWNET;
        }
        unshare(flags).map_err(|e| anyhow!("cannot create the session's namespaces: {e}"))?;
        mounts::make_private()?;
        // Opened now, in the new mount namespace (a bind may only copy mounts
        // of its own namespace) and with the caller's host credentials (root's
        // sessions directory is closed to the jail's user).
        let sources = mounts::open_sources(&plan)?;
        // Become the mapped user: until now we still had the caller's host
        // credentials (for root: host root), which the maps do not change.
        let gid = nix::unistd::Gid::from_raw(go.gid);
        let uid = nix::unistd::Uid::from_raw(go.uid);
        nix::unistd::setresgid(gid, gid, gid).context("setresgid in the user namespace")?;
        nix::unistd::setresuid(uid, uid, uid).context("setresuid in the user namespace")?;
        jail = Some(JailParts {
            plan,
            sources,
            premounted,
        });
    }
    // The holder proper is a child: only children enter the new PID namespace.
    // SAFETY: this process is single-threaded (no thread was ever spawned).
    match unsafe { fork() }.context("fork")? {
        ForkResult::Parent { child } => status_line(status, &format!("P{}", child.as_raw())),
        ForkResult::Child => {
            let code = match init(&profile, jail, landlock, status, control) {
                Ok(()) => 0,
                Err(e) => {
                    report_error(status, &e);
                    1
                }
            };
            std::process::exit(code)
        }
    }
}

/// What the holder builds its jail from, gathered before it gave up its
/// host credentials.
struct JailParts {
    plan: mounts::Plan,
    sources: Vec<OwnedFd>,
    premounted: Vec<OwnedFd>,
}

fn rootfs_spec(args: &HolderConfig, profile: &Profile, premounted: bool) -> mounts::RootfsSpec {
    let sessions_root = args
        .session_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| args.session_dir.clone());
    mounts::RootfsSpec {
        work_dir: args.work_dir.clone(),
        work_dir_writable: profile.filesystem.work_dir == crate::profile::Access::ReadWrite,
        tmp_source: args.session_dir.join("tmp"),
        home_source: args.session_dir.join("home"),
        home_target: args.home_target.clone(),
        private_budget: profile.limits.disk_bytes,
        hidden: vec![sessions_root],
        extra_read_only: profile.filesystem.read_only.clone(),
        extra_read_write: profile.filesystem.read_write.clone(),
        masked: profile.filesystem.masked.clone(),
        host_network: profile.network == Network::Host,
        premounted,
    }
}

/// The Landlock ruleset of a Landlock-mode session, from its profile.
fn landlock_ruleset(args: &HolderConfig, profile: &Profile) -> Result<super::landlock::Ruleset> {
    let spec = super::landlock::LandlockSpec {
        work_dir: args.work_dir.clone(),
        work_dir_writable: profile.filesystem.work_dir == crate::profile::Access::ReadWrite,
        tmp_dir: args.session_dir.join("tmp"),
        home_dir: args.session_dir.join("home"),
        extra_read_only: profile.filesystem.read_only.clone(),
        extra_read_write: profile.filesystem.read_write.clone(),
        network: profile.network == Network::Host,
    };
    // The session could write these between execs: what a command left in
    // their place (a symlink, a file) is its own, moved aside, not followed.
    // Done relative to the session dir opened without any symlink, so that
    // a link swapped into the path cannot make us create or move anything
    // elsewhere.
    let dir = mounts::open_path(&args.session_dir, false)
        .map_err(|e| anyhow!("cannot open the session dir: {e}"))?;
    for name in ["tmp", "home"] {
        prepare_private_dir(&dir, name)?;
    }
    let abi = super::probe::landlock_abi().map_err(|e| {
        anyhow!(
            "this kernel has no Landlock ({e}); {}",
            super::LANDLOCK_HELP
        )
    })?;
    let grants = super::landlock::plan(&spec, &mounts::RealHost);
    let ruleset = super::landlock::Ruleset::build(&grants, spec.network, abi)
        .map_err(|e| anyhow!("cannot build the session's Landlock rules: {e}"))?;
    Ok(ruleset)
}

/// Makes `name` in the directory `dir` a plain directory: an entry of
/// another kind is renamed to `NAME.moved-by-delta-sessions[-N]`, and a
/// missing one is made (0700). Never follows a symlink.
fn prepare_private_dir(dir: &OwnedFd, name: &str) -> Result<()> {
    use nix::fcntl::{renameat, AtFlags};
    use nix::sys::stat::{fstatat, mkdirat, Mode, SFlag};
    match fstatat(Some(dir.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR => {
            return Ok(())
        }
        Ok(_) => {
            let moved = (0..100)
                .map(|n| match n {
                    0 => format!("{name}.moved-by-delta-sessions"),
                    n => format!("{name}.moved-by-delta-sessions-{n}"),
                })
                .find(|to| {
                    fstatat(
                        Some(dir.as_raw_fd()),
                        to.as_str(),
                        AtFlags::AT_SYMLINK_NOFOLLOW,
                    )
                    .is_err()
                })
                .ok_or_else(|| anyhow!("cannot move {name} aside: too many moved entries"))?;
            renameat(
                Some(dir.as_raw_fd()),
                name,
                Some(dir.as_raw_fd()),
                moved.as_str(),
            )
            .map_err(|e| anyhow!("cannot move {name} aside: {e}"))?;
        }
        Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => bail!("cannot check {name}: {e}"),
    }
    mkdirat(Some(dir.as_raw_fd()), name, Mode::from_bits_truncate(0o700))
        .map_err(|e| anyhow!("cannot re-create {name}: {e}"))
}

/// Builds the jail around this process and serves execs until killed.
fn init(
    profile: &Profile,
    jail: Option<JailParts>,
    landlock: Option<super::landlock::Ruleset>,
    status: &mut Option<File>,
    control: UnixStream,
) -> Result<()> {
    // SAFETY: the listening socket was passed by the parent and is owned by nobody else.
    let listener = unsafe { UnixListener::from_raw_fd(LISTEN_FD) };
    let limits = rlimits::plan(&profile.limits);
    match jail {
        Some(parts) => build_jail(profile, parts)?,
        None => {
            // Without a PID namespace, orphans of the session must still come
            // back to us, so that `end` finds and kills them.
            // SAFETY: prctl with integer arguments only.
            unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        }
    }
    if let Some(ruleset) = landlock {
        confine_on_host(profile, ruleset)?;
    }
    // Not dumpable: jailed code running as the same uid cannot open
    // /proc/1/fd (our control socket) or ptrace us.
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        libc::prctl(libc::PR_SET_NAME, c"ds-holder".as_ptr(), 0, 0, 0);
    }
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.thread_block().context("block SIGCHLD")?;
    let sigchld = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .context("signalfd")?;
    status_line(status, "R")?;
    // Closing our end lets the parent see EOF.
    *status = None;
    serve(&listener, &sigchld, &limits, control)
}

/// Landlock mode: the holder drops its capabilities, installs the seccomp
/// filters and a Landlock scope (all inherited by what it forks); the
/// filesystem and network domain is entered by each child just before it
/// executes session code ([`super::landlock::confine_self`]), so the holder
/// keeps the file access it needs, and the session's processes can reach
/// one another (and their holder, which they could therefore kill: the
/// next exec rebuilds, and the session's cgroup, where there is one, takes
/// the orphans along) but not the host.
fn confine_on_host(profile: &Profile, ruleset: super::landlock::Ruleset) -> Result<()> {
    let base = super::seccomp::build_filter()?;
    let extra = super::seccomp::build_landlock_filter(
        profile.network == Network::Host,
        nix::unistd::geteuid().is_root(),
        profile.host_unix_sockets,
    )?;
    super::caps::drop_all_on_host().context("cannot drop capabilities")?;
    super::seccomp::install(&base).context("cannot install the seccomp filter")?;
    super::seccomp::install(&extra).context("cannot install the Landlock-mode seccomp filter")?;
    // The scope that keeps the session's signals and abstract sockets away
    // from the host: on the holder, so that every exec's domain nests in it.
    super::scope::restrict().context("cannot scope the session with Landlock")?;
    ruleset.install_for_children();
    Ok(())
}

/// Runs as PID 1 of the new PID namespace (the session's `/proc` needs it).
fn build_jail(profile: &Profile, parts: JailParts) -> Result<()> {
    let filter = super::seccomp::build_filter()?;
    mounts::build(&parts.plan, &parts.sources, &parts.premounted)
        .map_err(|e| anyhow!("cannot build the jail's filesystem: {e}"))?;
    // The host paths they refer to must not stay reachable from the jail.
    drop(parts);
    if profile.network == Network::None {
        super::net::loopback_up().context("cannot bring up loopback")?;
    }
    nix::unistd::sethostname(&profile.hostname).context("sethostname")?;
    super::caps::drop_all().context("cannot drop capabilities")?;
    super::seccomp::install(&filter).context("cannot install the seccomp filter")?;
    // After the filter, which set no_new_privs.
    super::scope::restrict().context("cannot scope the jail with Landlock")?;
    Ok(())
}

/// Accepts exec connections, answers their workers, and reaps orphans, forever.
///
/// Each worker gets a private channel back to the holder (a socketpair made
/// before the fork) for what only the holder can do: start the session's live
/// interpreter as its own child, and stop it.
fn serve(
    listener: &UnixListener,
    sigchld: &SignalFd,
    limits: &[rlimits::RlimitStep],
    control: UnixStream,
) -> Result<()> {
    let mut interpreters = Interpreters::default();
    // Until the parent confirms that it recorded us.
    let mut uncommitted = Some(control);
    // The worker waiting with the next exec's pre-started bash.
    let mut idle: Option<prestart::Idle> = None;
    loop {
        let mut fds = vec![
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(sigchld.as_fd(), PollFlags::POLLIN),
        ];
        fds.extend(
            interpreters
                .channels()
                .map(|w| PollFd::new(w.as_fd(), PollFlags::POLLIN)),
        );
        let channels = fds.len();
        let control_at = uncommitted.as_ref().map(|c| {
            fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
            fds.len() - 1
        });
        let idle_at = fds.len();
        fds.extend(
            interpreters
                .idle_output()
                .into_iter()
                .map(|f| PollFd::new(f, PollFlags::POLLIN)),
        );
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => bail!("poll: {e}"),
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
        drop(fds);
        if let (Some(at), Some(c)) = (control_at, uncommitted.as_ref()) {
            if ready[at] {
                let mut byte = [0u8; 1];
                match nix::unistd::read(c.as_raw_fd(), &mut byte) {
                    Ok(1) if byte[0] == b'C' => uncommitted = None,
                    Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
                    // The parent died (or misspoke) before recording us: no
                    // one could ever end this session, so end it now. As PID 1
                    // our exit kills the jail; unjailed, the subtree goes first.
                    _ => {
                        kill_children();
                        std::process::exit(1);
                    }
                }
            }
        }
        if ready[1] {
            while let Ok(Some(_)) = sigchld.read_signal() {}
            reap_all(&mut interpreters);
        }
        // Before serve_ready, which may lend the pipes to a worker.
        interpreters.drain_idle(&ready[idle_at..]);
        interpreters.serve_ready(&ready[2..channels], limits);
        for sid in interpreters.take_orphaned() {
            kill_orphaned(sid);
        }
        if let Some((request, fds)) = interpreters.take_prestart() {
            // Dropping our end of the older one's channel tells it to leave;
            // before the fork, so that the new one does not keep it open.
            drop(idle.take());
            idle = prestart::spawn_idle(&request, fds, sigchld, limits);
        }
        if ready[0] {
            let Ok((conn, _)) = listener.accept() else {
                continue;
            };
            let conn = match idle.take() {
                Some(waiting) => match waiting.hand_over(conn) {
                    Ok(chan) => {
                        interpreters.add_worker(chan);
                        continue;
                    }
                    Err(conn) => conn,
                },
                None => conn,
            };
            let Ok((ours, theirs)) = UnixStream::pair() else {
                drop(conn);
                continue;
            };
            // SAFETY: the holder is single-threaded, so the child may run
            // ordinary Rust code (the worker) after fork.
            match unsafe { fork() } {
                Ok(ForkResult::Child) => {
                    drop(ours);
                    worker::run(conn, theirs, sigchld, limits, None)
                }
                Ok(ForkResult::Parent { .. }) => {
                    drop(conn);
                    drop(theirs);
                    interpreters.add_worker(ours);
                }
                Err(_) => drop(conn),
            }
        }
    }
}

/// Kills what an exec started after its worker died without finishing it
/// (killed from outside, or by the command itself): the command's session
/// and everything below it, in rounds until none is left (killed processes
/// cannot fork, so the rounds converge).
fn kill_orphaned(sid: i32) {
    for _ in 0..1000 {
        let pids = super::procfs::session_members(sid);
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Kills every process below the holder (used only before commit, when the
/// holder has started nothing but possibly a pre-started shell).
fn kill_children() {
    let me = std::process::id() as i32;
    for pid in super::procfs::descendants(me) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    }
}

fn reap_all(interpreters: &mut Interpreters) {
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
        interpreters.reaped(status);
    }
}
