//! Crash consistency (issue 11): delta-sessions killed at a named step (the
//! debug build's `DELTA_SESSIONS_FAULT` hook, a `kill -9` at exactly that
//! moment) loses nothing and leaks nothing.

mod common;

use common::*;
use std::time::Duration;

/// Holders of sessions in `sb`'s sessions dir, found by their command line.
fn holders_of(sb: &Sandbox) -> Vec<(i32, String)> {
    let Ok(rd) = std::fs::read_dir(&sb.sessions) else {
        return Vec::new();
    };
    let ids: Vec<String> = rd
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("sess_"))
        .collect();
    ids.iter()
        .flat_map(|id| {
            procs_with_marker(&format!("__holder {id}"))
                .into_iter()
                .filter(|&p| proc_start_time(p).is_some())
                .map(move |p| (p, id.clone()))
        })
        .collect()
}

#[test]
fn a_start_killed_before_it_recorded_the_session_leaves_no_jail() {
    let sb = Sandbox::new();
    let mut c = sb.command();
    c.arg("start")
        .env("DELTA_SESSIONS_FAULT", "start:before-commit");
    let r = run_command(c, b"");
    assert_eq!(r.status, -1, "start was killed at the fault point: {r:?}");
    assert!(
        wait_until(Duration::from_secs(2), || holders_of(&sb).is_empty()),
        "holders outlived their start: {:?}",
        holders_of(&sb)
    );
}

#[test]
fn an_end_killed_after_it_stopped_the_jail_is_completed_by_the_next_end() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    let marker = unique_sleep_arg();
    sb.exec(&id, &format!("setsid sleep {marker} & true"));
    let cgroups = sb.metadata(&id)["holder"]["cgroups"].clone();
    let mut c = sb.command();
    c.args(["end", &id])
        .env("DELTA_SESSIONS_FAULT", "end:after-stop");
    assert_eq!(run_command(c, b"").status, -1);
    assert!(
        wait_until(Duration::from_secs(5), || procs_with_marker(&marker)
            .into_iter()
            .all(|p| proc_start_time(p).is_none())),
        "the session's processes outlived end"
    );
    // Still active (the record came after the kill), so a second end finishes.
    assert_eq!(sb.metadata(&id)["status"], "active");
    let r = sb.end(&id);
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(sb.metadata(&id)["status"], "terminated");
    for dir in cgroups.as_array().into_iter().flatten() {
        let dir = dir.as_str().unwrap();
        assert!(
            !std::path::Path::new(dir).exists(),
            "cgroup {dir} of an ended session is left"
        );
    }
}

#[test]
fn an_exec_killed_between_its_history_line_and_its_count_still_agrees() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    sb.exec(&id, "true");
    let mut c = sb.command();
    c.args(["exec", &id])
        .env("DELTA_SESSIONS_FAULT", "exec:after-append");
    assert_eq!(run_command(c, b"echo two").status, -1);
    let count = |sb: &Sandbox| {
        let list = sb.run(&["list"], b"").json();
        list[0]["execution_count"].as_u64().unwrap()
    };
    assert_eq!(sb.history(&id).len(), 2);
    assert_eq!(count(&sb), 2, "list counts what history holds");
    sb.exec(&id, "true");
    assert_eq!(sb.history(&id).len(), 3);
    assert_eq!(sb.metadata(&id)["execution_count"], 3);
    assert_eq!(count(&sb), 3);
    // Killed after it was counted, before its line: not counted.
    let mut c = sb.command();
    c.args(["exec", &id])
        .env("DELTA_SESSIONS_FAULT", "exec:before-append");
    assert_eq!(run_command(c, b"echo four").status, -1);
    assert_eq!(sb.history(&id).len(), 3);
    assert_eq!(count(&sb), 3, "list counts only what history holds");
    sb.exec(&id, "true");
    assert_eq!(sb.history(&id).len(), 4);
    assert_eq!(sb.metadata(&id)["execution_count"], 4);
    assert_eq!(count(&sb), 4);
}

fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Issue 11: the worker that runs an exec is killed (from outside, or by
/// the command itself): what that exec started must not run on, past its
/// timeout, until `end`.
#[test]
fn an_exec_whose_worker_is_killed_does_not_outlive_it() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    let (holder, _) = sb.holder(&id).unwrap();
    let a = unique_sleep_arg();
    let b = unique_sleep_arg();
    let mut caller = sb.spawn_exec(&id, &format!("setsid sleep {a} & sleep {b}"));
    let mut found = Vec::new();
    assert!(
        wait_until(Duration::from_secs(5), || {
            found = procs_with_marker(&b);
            !found.is_empty() && !procs_with_marker(&a).is_empty()
        }),
        "the exec's sleeps did not start"
    );
    // Up from the foreground sleep to the holder's child: the worker.
    let mut worker = found[0];
    while let Some(p) = parent_of(worker) {
        if p == holder {
            break;
        }
        worker = p;
    }
    assert_eq!(parent_of(worker), Some(holder), "worker found");
    // SAFETY: kill(2) of this test's own session's worker.
    assert_eq!(unsafe { libc::kill(worker, libc::SIGKILL) }, 0);
    let _ = caller.wait();
    let alive = |m: &str| {
        procs_with_marker(m)
            .into_iter()
            .any(|p| proc_start_time(p).is_some())
    };
    assert!(
        wait_until(Duration::from_secs(3), || !alive(&a) && !alive(&b)),
        "the exec's processes outlived its worker"
    );
    // The session goes on.
    assert_eq!(sb.exec(&id, "echo ok")["stdout"], "ok\n");
}

/// The cgroups of a holder that died before anyone recorded it (a `start`
/// killed between making them and recording the holder) are not left for
/// good: `end` and `cleanup` remove the empty session cgroups that no
/// recorded session can own, and never one with a process in it.
#[test]
fn empty_orphaned_session_cgroups_are_swept_by_end() {
    let sb = Sandbox::new();
    let ended = sb.start(&[]);
    let cgroups = sb.metadata(&ended)["holder"]["cgroups"].clone();
    let Some(first) = cgroups.as_array().and_then(|c| c.first()) else {
        eprintln!("skipped: no session cgroups for this user here");
        return;
    };
    let parent = std::path::Path::new(first.as_str().unwrap())
        .parent()
        .unwrap()
        .to_path_buf();
    assert_eq!(sb.end(&ended).status, 0);
    let id = sb.start(&[]);
    let busy_id = sb.start(&[]);
    // Left behind by an ended session (as by a start killed midway): swept.
    let orphan = parent.join(format!("delta-sessions-{ended}"));
    // A live session's cgroup that happens to be ours to see: kept.
    let busy = parent.join(format!("delta-sessions-{busy_id}"));
    // Not a session of this state dir (another user's, or one starting
    // right now under another state dir): kept, even empty.
    let unknown = parent.join("delta-sessions-sess_0000000000a1");
    let other = parent.join("not-delta-sessions-sess_0000000000a3");
    for dir in [&orphan, &unknown, &other] {
        std::fs::create_dir(dir).unwrap();
    }
    assert_eq!(sb.end(&id).status, 0);
    let (orphan_gone, busy_kept, unknown_kept, other_kept) = (
        !orphan.exists(),
        busy.exists(),
        unknown.exists(),
        other.exists(),
    );
    for dir in [&unknown, &other, &orphan] {
        let _ = std::fs::remove_dir(dir);
    }
    assert!(orphan_gone, "an ended session's empty cgroup was left");
    assert!(busy_kept, "a live session's cgroup was removed");
    assert!(unknown_kept, "a cgroup of no session of ours was removed");
    assert!(other_kept, "a cgroup not of ours was removed");
}

/// Round 6: an `end` that gives up waiting for a slow rebuild's lock must
/// not leave the rebuilt jail running: it marks the session ended, and the
/// rebuild, seeing the mark after it recorded its holder, stops it.
#[test]
fn an_end_racing_a_slow_rebuild_leaves_no_jail() {
    for remove in [false, true] {
        end_racing_a_slow_rebuild(remove);
    }
}

fn end_racing_a_slow_rebuild(remove: bool) {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    sb.exec(&id, "true");
    sb.kill_holder(&id);
    let marker = unique_sleep_arg();
    let mut c = sb.command();
    c.args(["exec", &id])
        .env("DELTA_SESSIONS_FAULT", "exec:slow-rebuild")
        .env("DELTA_SESSIONS_FAULT_PAUSE", "12000")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut exec = c.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = exec.stdin.take().unwrap();
        stdin
            .write_all(format!("sleep {marker} & echo ran-after-end").as_bytes())
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(1000));
    let r = if remove {
        sb.run(&["end", &id, "--remove"], b"")
    } else {
        sb.end(&id)
    };
    assert_eq!(r.status, 0, "{r:?}");
    let out = exec.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains("ran-after-end"),
        "the command ran after end: {stdout}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || procs_with_marker(&marker)
            .is_empty()
            && holders_of(&sb).is_empty()),
        "a rebuilt jail outlived end: {:?}",
        holders_of(&sb)
    );
    if remove {
        assert!(
            !sb.session_dir(&id).exists(),
            "end --remove left the session dir"
        );
    }
}
