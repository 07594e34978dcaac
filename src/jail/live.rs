//! The worker's side of an exec in a live interpreter session.
//!
//! Instead of forking a command, the worker gets the interpreter's channel
//! from the holder (which starts the interpreter if none runs), hands the
//! exec's stdout, stderr and code memfd to the driver over that channel, and
//! waits for the driver's reply, the deadline, or the caller going away.
//!
//! On the deadline it sends SIGINT to the interpreter and what this exec
//! started (a `KeyboardInterrupt` for Python: the session's state survives) and waits up
//! to the profile's kill grace for the reply. An interpreter that does not
//! answer in time is stopped (SIGSTOP), the processes this exec started
//! below it are killed, and the holder kills and reaps the interpreter.
//!
//! An interpreter started with `output_pipes` (node) gets the code inside the
//! request frame instead, and writes to pipes of the holder: the worker
//! relays them into the exec's pipes (see [`relay`](super::relay)).

use super::procfs;
use super::protocol::{self, Exit, HolderAsk, HolderReply, SpawnRequest, WorkerEvent};
use super::relay::Relay;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What the worker sends the driver with the exec's descriptors.
#[derive(Debug, Serialize)]
struct DriverRequest {
    id: u64,
    /// `output_pipes` drivers: a secret of this exec that the reply must
    /// echo. Node cannot mark its channel close-on-exec, and code can hand it
    /// to processes it starts (`stdio: [.., 3]`), which could otherwise forge
    /// a reply.
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<String>,
    /// `output_pipes` drivers: the code itself (they cannot receive the memfd).
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<String>,
}

/// The driver's answer once the code has run.
#[derive(Debug, Deserialize)]
struct DriverReply {
    id: u64,
    #[serde(default)]
    nonce: Option<String>,
    exit_code: i32,
    cwd: Option<PathBuf>,
}

/// How waiting for the driver ended.
enum Outcome {
    Reply(DriverReply),
    /// The channel closed: the interpreter died (or closed its channel).
    Lost,
    /// The channel carries something that is not a whole reply in time
    /// (garbage, or a frame the code began and never finished): the
    /// interpreter must go, or every later exec would read its bytes.
    Broken {
        past_deadline: bool,
    },
    Deadline,
    CallerGone,
}

/// Runs one exec in the live interpreter. `fds`: stdin, stdout, stderr, code.
pub fn serve(
    conn: &UnixStream,
    holder: &UnixStream,
    req: &SpawnRequest,
    fds: Vec<OwnedFd>,
) -> Result<(), String> {
    if fds.len() < 4 {
        return Err("a live interpreter exec needs stdin, stdout, stderr and the code".into());
    }
    let (pid, restarted, cwd_reset, channel, output) = interpreter(holder, req, &fds[..3])?;
    protocol::send_json(
        conn,
        &WorkerEvent::Started {
            pid: pid.as_raw(),
            cwd_reset,
            prestarted: false,
        },
    )
    .map_err(|e| format!("cannot report start: {e}"))?;
    let deadline = Instant::now() + Duration::from_millis(req.timeout_ms);
    let grace = Duration::from_millis(req.kill_grace_ms);
    // Processes left by earlier execs are not this exec's to kill.
    let before: HashSet<i32> = procfs::descendants(pid.as_raw()).into_iter().collect();
    let id = exec_id();
    let (sent, nonce, mut relay) = if req.output_pipes {
        let nonce = Some(nonce());
        let request = DriverRequest {
            id,
            nonce: nonce.clone(),
            code: Some(read_code(&fds[3])?),
        };
        let body = serde_json::to_vec(&request).map_err(|e| e.to_string())?;
        let mut fds = fds;
        let err = fds.remove(2);
        let out = fds.remove(1);
        let relay = Relay::new(output, [out, err]);
        (protocol::send_frame(&channel, &body, &[]), nonce, relay)
    } else {
        let request = DriverRequest {
            id,
            nonce: None,
            code: None,
        };
        let body = serde_json::to_vec(&request).map_err(|e| e.to_string())?;
        let sent = protocol::send_frame(
            &channel,
            &body,
            &[fds[1].as_raw_fd(), fds[2].as_raw_fd(), fds[3].as_raw_fd()],
        );
        // Our copies of the pipes must go, or the caller would wait for us too.
        drop(fds);
        (sent, None, Relay::default())
    };
    let expected = Expected { id, nonce };
    let outcome = match sent {
        Ok(()) => wait_reply(&channel, Some(conn), &expected, &mut relay, deadline),
        Err(_) => Outcome::Lost,
    };
    let finished = |exit, timed_out, interpreter_restarted, cwd| WorkerEvent::Finished {
        exit,
        timed_out,
        interpreter_restarted,
        cwd,
    };
    let event = match outcome {
        Outcome::Reply(r) => finished(Exit::Code { code: r.exit_code }, false, restarted, r.cwd),
        Outcome::Lost => {
            // Said by the next exec, which starts a fresh interpreter.
            let exit = stop(holder, pid, &before, false)?;
            finished(exit, false, restarted, None)
        }
        Outcome::Broken { past_deadline } => {
            let exit = stop(holder, pid, &before, true)?;
            finished(exit, past_deadline, true, None)
        }
        Outcome::Deadline | Outcome::CallerGone => {
            let timed_out = matches!(outcome, Outcome::Deadline);
            interrupt(pid, &before);
            match wait_reply(
                &channel,
                None,
                &expected,
                &mut relay,
                Instant::now() + grace,
            ) {
                Outcome::Reply(r) => finished(
                    Exit::Code { code: r.exit_code },
                    timed_out,
                    restarted,
                    r.cwd,
                ),
                _ => {
                    let exit = stop(holder, pid, &before, true)?;
                    finished(exit, timed_out, true, None)
                }
            }
        }
    };
    // What the code printed before its reply is in the pipes by now; the
    // caller sees EOF once the relay is gone.
    relay.finish();
    let _ = protocol::send_json(conn, &event);
    Ok(())
}

/// The reply that ends this exec.
struct Expected {
    id: u64,
    nonce: Option<String>,
}

impl Expected {
    fn matches(&self, r: &DriverReply) -> bool {
        r.id == self.id && r.nonce == self.nonce
    }
}

/// The code of the exec, from its memfd, as text (invalid UTF-8 replaced,
/// as the Python driver does).
fn read_code(memfd: &OwnedFd) -> Result<String, String> {
    use std::io::{Read, Seek};
    let mut file = std::fs::File::from(
        memfd
            .try_clone()
            .map_err(|e| format!("cannot read the code: {e}"))?,
    );
    let mut bytes = Vec::new();
    file.rewind()
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read the code: {e}"))?;
    if bytes.len() + 1024 > protocol::MAX_FRAME {
        return Err(format!(
            "the code is {} bytes; a live node exec takes at most {} bytes",
            bytes.len(),
            protocol::MAX_FRAME - 1024
        ));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// 128 bits no other process can guess: the kernel's random bytes.
fn nonce() -> String {
    let mut bytes = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    if read.is_err() {
        // No /dev/urandom in the jail: std's per-process random hash keys.
        use std::hash::{BuildHasher, Hasher};
        for chunk in bytes.chunks_mut(8) {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(exec_id());
            chunk.copy_from_slice(&h.finish().to_le_bytes());
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The interpreter's pid, whether it was restarted, whether its cwd was
/// reset, its channel, and the lent read ends of its output pipes (by stream).
type Granted = (Pid, bool, bool, UnixStream, Vec<(u8, OwnedFd)>);

/// Asks the holder for the interpreter's channel. `stdio` (the exec's
/// stdin, stdout, stderr) become the interpreter's fds 0-2 if it starts now.
fn interpreter(
    holder: &UnixStream,
    req: &SpawnRequest,
    stdio: &[OwnedFd],
) -> Result<Granted, String> {
    let ask = HolderAsk::Interpreter {
        request: req.clone(),
    };
    let body = serde_json::to_vec(&ask).map_err(|e| e.to_string())?;
    let raw: Vec<_> = stdio.iter().map(|f| f.as_raw_fd()).collect();
    protocol::send_frame(holder, &body, &raw)
        .map_err(|e| format!("cannot ask the holder for the interpreter: {e}"))?;
    match protocol::recv_json::<HolderReply>(holder) {
        Ok(Some((
            HolderReply::Interpreter {
                pid,
                output,
                restarted,
                cwd_reset,
            },
            mut fds,
        ))) if fds.len() == 1 + output.len() => {
            let channel = UnixStream::from(fds.remove(0));
            Ok((
                Pid::from_raw(pid),
                restarted,
                cwd_reset,
                channel,
                output.into_iter().zip(fds).collect(),
            ))
        }
        Ok(Some((HolderReply::Failed { message }, _))) => {
            Err(format!("cannot start the session's interpreter: {message}"))
        }
        other => Err(format!(
            "unexpected answer from the holder about the interpreter: {other:?}"
        )),
    }
}

/// Waits for the reply to exec `expected` until `deadline`, relaying the
/// interpreter's output meanwhile. Other replies (to an earlier exec whose
/// caller left, or forged) are skipped.
fn wait_reply(
    channel: &UnixStream,
    conn: Option<&UnixStream>,
    expected: &Expected,
    relay: &mut Relay,
    deadline: Instant,
) -> Outcome {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Outcome::Deadline;
        }
        let wait_ms = (deadline - now).as_millis().min(i32::MAX as u128) as i32;
        let mut fds = vec![PollFd::new(channel.as_fd(), PollFlags::POLLIN)];
        if let Some(c) = conn {
            fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
        }
        let first_source = fds.len();
        fds.extend(
            relay
                .sources()
                .into_iter()
                .map(|f| PollFd::new(f, PollFlags::POLLIN)),
        );
        match poll(
            &mut fds,
            PollTimeout::try_from(wait_ms).unwrap_or(PollTimeout::MAX),
        ) {
            Err(Errno::EINTR) | Ok(0) => continue,
            Err(_) => return Outcome::Lost,
            Ok(_) => {}
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
        drop(fds);
        relay.pump(&ready[first_source..]);
        if ready[0] {
            // A frame that has begun must be whole by the deadline: the code
            // shares its process with the driver and may write half of one.
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = channel.set_read_timeout(Some(left.max(Duration::from_millis(1))));
            let got = protocol::recv_json::<DriverReply>(channel);
            let _ = channel.set_read_timeout(None);
            match got {
                Ok(Some((r, _))) if expected.matches(&r) => return Outcome::Reply(r),
                Ok(Some(_)) => continue,
                Ok(None) => return Outcome::Lost,
                Err(_) => {
                    return Outcome::Broken {
                        past_deadline: Instant::now() >= deadline,
                    }
                }
            }
        }
        if let (Some(c), true) = (conn, conn.is_some() && ready[1]) {
            let mut probe = [0u8; 1];
            if matches!(nix::unistd::read(c.as_raw_fd(), &mut probe), Ok(0) | Err(_)) {
                return Outcome::CallerGone;
            }
        }
    }
}

/// Sends SIGINT to the interpreter and to the processes this exec started
/// below it (as Ctrl-C would to a terminal's foreground job), but not to
/// processes left by earlier execs (a server started in the background).
fn interrupt(pid: Pid, before: &HashSet<i32>) {
    let _ = kill(pid, Signal::SIGINT);
    for p in procfs::descendants(pid.as_raw()) {
        if !before.contains(&p) {
            let _ = kill(Pid::from_raw(p), Signal::SIGINT);
        }
    }
}

/// Freezes the interpreter, kills what this exec started below it (not the
/// processes in `before`), then has the holder kill and reap the interpreter.
fn stop(
    holder: &UnixStream,
    pid: Pid,
    before: &HashSet<i32>,
    reported: bool,
) -> Result<Exit, String> {
    let _ = kill(pid, Signal::SIGSTOP);
    // Killed processes cannot fork, so the rounds converge (as in kill_tree).
    for _ in 0..1000 {
        let new: Vec<i32> = procfs::descendants(pid.as_raw())
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        if new.is_empty() {
            break;
        }
        for p in new {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    protocol::send_json(
        holder,
        &HolderAsk::Stop {
            pid: pid.as_raw(),
            reported,
        },
    )
    .map_err(|e| format!("cannot ask the holder to stop the interpreter: {e}"))?;
    match protocol::recv_json::<HolderReply>(holder) {
        Ok(Some((HolderReply::Stopped { exit }, _))) => Ok(exit),
        Ok(Some((HolderReply::Failed { message }, _))) => Err(message),
        other => Err(format!(
            "unexpected answer from the holder about stopping the interpreter: {other:?}"
        )),
    }
}

/// A number that tells this exec's reply from a late reply to an earlier one.
/// At most 2^53, so that JavaScript (whose JSON numbers are doubles) echoes
/// it exactly.
fn exec_id() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    (nanos ^ ((std::process::id() as u64) << 32)) & ((1 << 53) - 1)
}
