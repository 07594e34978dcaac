//! The channel between `delta-sessions exec` (on the host) and the holder's
//! per-exec worker (inside the jail): a Unix stream socket carrying
//! length-prefixed JSON frames, with the command's file descriptors attached
//! to the first frame (`SCM_RIGHTS`).
//!
//! The socket lives in the session directory, which the jail cannot see, so
//! jailed code can neither reach nor spoof this channel.
//!
//! The same framing serves two private socketpairs inside the jail: a
//! worker's channel to the holder ([`HolderAsk`], [`HolderReply`]) and the
//! channel to a live interpreter (see [`live`](super::live)).

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use serde::{Deserialize, Serialize};
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

/// Upper bound of one frame: a request carries argv and env, nothing bulky
/// (the command text travels in a memfd).
pub const MAX_FRAME: usize = 16 << 20;
/// At most this many descriptors ride along with a request.
pub const MAX_FDS: usize = 8;

/// What to run. The descriptors attached become fds 0, 1, 2, 3, … of the command.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpawnRequest {
    pub argv: Vec<String>,
    /// The session's program as found at `start`: run when argv[0] is no
    /// longer found on the session's `PATH` (a command set `PATH` to
    /// something that does not hold it), so that no `PATH` can make the
    /// session unusable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<PathBuf>,
    pub env: Vec<String>,
    pub cwd: PathBuf,
    /// Used when `cwd` no longer exists (deleted by an earlier command).
    pub fallback_cwd: PathBuf,
    pub timeout_ms: u64,
    pub kill_grace_ms: u64,
    /// Send the code (fd 3) to the session's live interpreter instead of
    /// running `argv`; `argv` then says how to start the interpreter when
    /// none is running (it receives its channel as fd [`INTERPRETER_FD`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interpreter: bool,
    /// The interpreter cannot take descriptors over its channel (node): the
    /// holder starts it with pipes of its own as fds 1 and 2 and lends their
    /// read ends to the worker, and the code travels inside the request frame.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub output_pipes: bool,
    /// A bash exec whose output the caller captures (not `--raw`): the worker
    /// may run it in a shell pre-started from this very request, and once it
    /// ends, the holder pre-starts the shell for the next exec (see
    /// [`prestart`](super::prestart)).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prestart: bool,
    /// Sent by `start`, not an exec: run nothing, only pre-start the shell
    /// of the first exec from this request. Its descriptors are the
    /// prelude and state report memfds (empty), and no reply comes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prestart_only: bool,
}

/// The descriptor number of a live interpreter's channel to the holder.
pub const INTERPRETER_FD: RawFd = 3;

/// How the command's main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Exit {
    Code { code: i32 },
    Signal { signal: i32 },
}

/// Messages from the worker back to exec.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WorkerEvent {
    Started {
        pid: i32,
        cwd_reset: bool,
        /// The command runs in a pre-started shell, whose stdout and stderr
        /// (read ends) and state report are attached, in that order: they
        /// replace the caller's own.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        prestarted: bool,
    },
    Finished {
        exit: Exit,
        timed_out: bool,
        /// Live interpreter sessions: the interpreter had to be killed, or
        /// this exec ran in a fresh one because the previous one was lost.
        #[serde(default)]
        interpreter_restarted: bool,
        /// Live interpreter sessions: its working directory after the exec.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cwd: Option<PathBuf>,
    },
    Failed {
        message: String,
    },
}

/// What a worker asks of the holder, on the private channel the holder made
/// for it before forking it (only the holder can fork processes that outlive
/// an exec as its own children).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "ask", rename_all = "snake_case")]
pub enum HolderAsk {
    /// The channel to the live interpreter, started from `request` if none runs.
    Interpreter { request: SpawnRequest },
    /// Kill the interpreter `pid` and report how it ended. `reported`: the
    /// worker tells its caller that the interpreter was lost, so the next
    /// exec need not say it again.
    Stop { pid: i32, reported: bool },
    /// A bash exec of `request` ended normally: pre-start the next exec's
    /// shell from the state it reported. Its prelude and report memfds are
    /// attached, in that order. No reply.
    Prestart { request: SpawnRequest },
    /// The worker started the exec's command, `pid`, as the leader of its
    /// own session (`setsid`). Should the worker die before it says
    /// [`Done`](Self::Done), the holder kills that session's processes, so
    /// the exec's timeout and kill hold without the worker. No reply.
    Running { pid: i32 },
    /// The worker is done with its command (ended, or killed by it). No reply.
    Done,
}

/// The holder's answers to [`HolderAsk`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum HolderReply {
    /// The interpreter's channel is attached, then the read ends of its
    /// output pipes listed in `output` (1 stdout, 2 stderr; `output_pipes`).
    Interpreter {
        pid: i32,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        output: Vec<u8>,
        /// A new interpreter replaces one that was lost without anyone saying so.
        restarted: bool,
        /// It was started in the fallback directory (the saved cwd is gone).
        cwd_reset: bool,
    },
    Stopped {
        exit: Exit,
    },
    /// To a pre-started worker: the exec connection it is to serve is attached.
    Connection,
    Failed {
        message: String,
    },
}

/// Sends one frame, attaching `fds` to its first byte.
pub fn send_frame(sock: &UnixStream, body: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let len = (body.len() as u32).to_le_bytes();
    let mut sent = 0usize;
    let total = len.len() + body.len();
    let mut first = true;
    while sent < total {
        let (a, b) = if sent < len.len() {
            (&len[sent..], body)
        } else {
            (&[][..], &body[sent - len.len()..])
        };
        let iov = [IoSlice::new(a), IoSlice::new(b)];
        let cmsgs = [ControlMessage::ScmRights(fds)];
        let cmsg: &[ControlMessage] = if first && !fds.is_empty() {
            &cmsgs
        } else {
            &[]
        };
        let n = sendmsg::<()>(sock.as_raw_fd(), &iov, cmsg, MsgFlags::MSG_NOSIGNAL, None)
            .map_err(io::Error::from)?;
        first = false;
        sent += n;
    }
    Ok(())
}

/// Receives one frame and the descriptors attached to it. `Ok(None)` on a clean EOF.
pub fn recv_frame(sock: &UnixStream) -> io::Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
    let mut header = [0u8; 4];
    let mut fds = Vec::new();
    let mut got = 0usize;
    // The descriptors arrive with the first bytes, so read the header with recvmsg.
    while got < header.len() {
        let mut cmsg_space = nix::cmsg_space!([RawFd; MAX_FDS]);
        let mut iov = [IoSliceMut::new(&mut header[got..])];
        let msg = recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg_space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        for c in msg.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(received) = c {
                // SAFETY: the kernel just installed these descriptors in our table;
                // nothing else owns them.
                fds.extend(
                    received
                        .into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        if msg.bytes == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        got += msg.bytes;
    }
    let len = u32::from_le_bytes(header) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    let mut body = vec![0u8; len];
    (&*sock).read_exact(&mut body)?;
    Ok(Some((body, fds)))
}

/// Sends a JSON message with no descriptors.
pub fn send_json<T: Serialize>(sock: &UnixStream, value: &T) -> io::Result<()> {
    let body = serde_json::to_vec(value).map_err(io::Error::other)?;
    send_frame(sock, &body, &[])
}

/// Receives a JSON message. `Ok(None)` on EOF.
pub fn recv_json<T: for<'de> Deserialize<'de>>(
    sock: &UnixStream,
) -> io::Result<Option<(T, Vec<OwnedFd>)>> {
    match recv_frame(sock)? {
        None => Ok(None),
        Some((body, fds)) => {
            let value = serde_json::from_slice(&body)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            Ok(Some((value, fds)))
        }
    }
}

/// Writes all of `bytes` to a stream (used for tiny control messages).
pub fn write_all(mut sock: &UnixStream, bytes: &[u8]) -> io::Result<()> {
    sock.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_with_descriptors() {
        let (a, b) = UnixStream::pair().unwrap();
        let (r, _w) = nix::unistd::pipe().unwrap();
        let req = SpawnRequest {
            argv: vec!["bash".into()],
            program: None,
            env: vec!["A=1".into()],
            cwd: "/x".into(),
            fallback_cwd: "/".into(),
            timeout_ms: 5,
            kill_grace_ms: 1,
            interpreter: false,
            output_pipes: false,
            prestart: false,
            prestart_only: false,
        };
        let body = serde_json::to_vec(&req).unwrap();
        send_frame(&a, &body, &[r.as_raw_fd()]).unwrap();
        let (got, fds) = recv_json::<SpawnRequest>(&b).unwrap().unwrap();
        assert_eq!(got.argv, req.argv);
        assert_eq!(fds.len(), 1);
        drop(a);
        assert!(recv_frame(&b).unwrap().is_none());
    }

    #[test]
    fn events_serialize_with_a_tag() {
        let text = serde_json::to_string(&WorkerEvent::Finished {
            exit: Exit::Code { code: 3 },
            timed_out: false,
            interpreter_restarted: false,
            cwd: None,
        })
        .unwrap();
        assert!(text.contains("\"event\":\"finished\""), "{text}");
    }

    #[test]
    fn older_finished_events_still_parse() {
        let e: WorkerEvent = serde_json::from_str(
            r#"{"event":"finished","exit":{"kind":"code","code":0},"timed_out":false}"#,
        )
        .unwrap();
        assert!(matches!(
            e,
            WorkerEvent::Finished {
                interpreter_restarted: false,
                cwd: None,
                ..
            }
        ));
    }
}
