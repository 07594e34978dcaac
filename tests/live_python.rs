//! Live Python sessions (`start python3`): one interpreter per session keeps
//! variables, functions, imports and the cwd from one exec to the next.
//! Black-box: the real binary, as an agent calls it.

mod common;
use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

/// A python3 session in a fresh sandbox, or `None` (test skipped) without python3.
fn python_session() -> Option<(Sandbox, String)> {
    if !have_program("python3") {
        eprintln!("skipped: python3 not installed");
        return None;
    }
    let sb = Sandbox::new();
    let id = sb.start(&["python3"]);
    Some((sb, id))
}

fn out(v: &Value) -> &str {
    v["stdout"]
        .as_str()
        .unwrap_or_else(|| panic!("no stdout in {v}"))
}

fn err(v: &Value) -> &str {
    v["stderr"]
        .as_str()
        .unwrap_or_else(|| panic!("no stderr in {v}"))
}

fn restarted(v: &Value) -> bool {
    v["interpreter_restarted"]
        .as_bool()
        .unwrap_or_else(|| panic!("interpreter_restarted missing in a python session: {v}"))
}

fn finish(sb: &Sandbox, id: &str) {
    let r = sb.end(id);
    assert_eq!(r.status, 0, "end: {r:?}");
}

#[test]
fn functions_and_variables_persist() {
    let Some((sb, id)) = python_session() else {
        return;
    };
    let v = sb.exec(
        &id,
        "import math\ndef fact(n):\n    return 1 if n < 2 else n * fact(n - 1)\nbase = 10\n",
    );
    assert_eq!(v["exit_code"], 0, "{v}");
    assert_eq!(out(&v), "");
    assert!(!restarted(&v), "the first exec starts the interpreter: {v}");
    let v = sb.exec(&id, "print(fact(base), math.factorial(5))");
    assert_eq!(out(&v), "3628800 120\n", "{v}");
    assert!(!restarted(&v));
    class_and_import(&sb, &id);
    finish(&sb, &id);
}

fn class_and_import(sb: &Sandbox, id: &str) {
    sb.exec(
        id,
        "class Counter:\n    def __init__(self):\n        self.n = 0\n    def bump(self):\n        self.n += 1\n        return self.n\nc = Counter()",
    );
    sb.exec(id, "c.bump()");
    let v = sb.exec(id, "c.bump()");
    assert_eq!(out(&v), "2\n", "{v}");
}

#[test]
fn an_exception_keeps_earlier_state() {
    let Some((sb, id)) = python_session() else {
        return;
    };
    sb.exec(&id, "kept = [1, 2, 3]");
    let v = sb.exec(
        &id,
        "kept.append(4)\nraise ValueError('boom')\nkept.append(5)",
    );
    assert_eq!(v["exit_code"], 1, "{v}");
    assert!(err(&v).contains("ValueError: boom"), "{v}");
    assert!(err(&v).contains("Traceback"), "{v}");
    assert!(
        !err(&v).contains("_ds_driver"),
        "driver frames are hidden: {v}"
    );
    let v = sb.exec(&id, "def broken(:\n  pass");
    assert_eq!(v["exit_code"], 1, "{v}");
    assert!(err(&v).contains("SyntaxError"), "{v}");
    let v = sb.exec(&id, "print(kept)");
    assert_eq!(out(&v), "[1, 2, 3, 4]\n", "{v}");
    assert!(!restarted(&v));
    finish(&sb, &id);
}

#[test]
fn output_is_captured_at_the_descriptor_level() {
    let Some((sb, id)) = python_session() else {
        return;
    };
    let v = sb.exec(
        &id,
        "import os, subprocess, sys\nprint('a')\nos.system('echo hi')\nsubprocess.run(['echo', 'sub'])\nsys.stderr.write('e1\\n')\nos.system('echo oops >&2')\nNone",
    );
    assert_eq!(out(&v), "a\nhi\nsub\n", "{v}");
    assert_eq!(err(&v), "e1\noops\n", "{v}");
    // The next exec gets only its own output.
    let v = sb.exec(&id, "print('second')");
    assert_eq!(out(&v), "second\n", "{v}");
    assert_eq!(err(&v), "", "{v}");
    finish(&sb, &id);
}

#[test]
fn a_final_expression_shows_its_value() {
    let Some((sb, id)) = python_session() else {
        return;
    };
    assert_eq!(out(&sb.exec(&id, "1+1")), "2\n");
    assert_eq!(out(&sb.exec(&id, "None")), "");
    assert_eq!(out(&sb.exec(&id, "x = 'a'\nx * 3")), "'aaa'\n");
    // Only the last statement, and only when it is an expression.
    assert_eq!(out(&sb.exec(&id, "5\ny = 6")), "");
    finish(&sb, &id);
}

#[test]
fn sys_exit_sets_the_exit_code() {
    let Some((sb, id)) = python_session() else {
        return;
    };
    sb.exec(&id, "alive = True");
    let v = sb.exec(&id, "import sys; sys.exit(3)");
    assert_eq!(v["exit_code"], 3, "{v}");
    let v = sb.exec(&id, "sys.exit()");
    assert_eq!(v["exit_code"], 0, "{v}");
    let v = sb.exec(&id, "sys.exit('bad thing')");
    assert_eq!(v["exit_code"], 1, "{v}");
    assert_eq!(err(&v), "bad thing\n", "{v}");
    // sys.exit ends the exec, not the interpreter.
    let v = sb.exec(&id, "alive");
    assert_eq!(out(&v), "True\n", "{v}");
    // The builtin exit() also closes sys.stdin; the next exec has one again.
    let v = sb.exec(&id, "exit(4)");
    assert_eq!(v["exit_code"], 4, "{v}");
    let v = sb.exec(&id, "input()");
    assert!(err(&v).contains("EOFError"), "{v}");
    sb.exec(&id, "sys.stdout.close()");
    let v = sb.exec(&id, "print('back')");
    assert_eq!(out(&v), "back\n", "{v}");
    assert!(!restarted(&v));
    finish(&sb, &id);
}

#[test]
fn input_gets_eof_at_once() {
    let Some((sb, id)) = python_session() else {
        return;
    };
    let t = Instant::now();
    let v = sb.exec(&id, "input()");
    assert!(t.elapsed() < Duration::from_secs(10), "input() hung");
    assert_eq!(v["exit_code"], 1, "{v}");
    assert!(err(&v).contains("EOFError"), "{v}");
    assert_eq!(v["timed_out"], false);
    finish(&sb, &id);
}

#[test]
fn a_timeout_interrupts_and_keeps_state() {
    let Some((sb, id)) = python_session() else {
        return;
    };
    sb.exec(&id, "before = 'still here'");
    let t = Instant::now();
    let (_, v) = sb.exec_with(&id, &["--timeout", "1"], "import time; time.sleep(30)");
    assert!(t.elapsed() < Duration::from_secs(20), "{v}");
    assert_eq!(v["timed_out"], true, "{v}");
    assert_eq!(v["exit_code"], 124, "{v}");
    assert!(err(&v).contains("KeyboardInterrupt"), "{v}");
    assert!(!restarted(&v), "KeyboardInterrupt was enough: {v}");
    let v = sb.exec(&id, "before");
    assert_eq!(out(&v), "'still here'\n", "{v}");
    assert!(!restarted(&v));
    finish(&sb, &id);
}

#[test]
fn an_interpreter_that_ignores_the_interrupt_is_killed() {
    let Some((sb, id)) = python_session() else {
        return;
    };
    sb.exec(&id, "lost = 1");
    let marker = unique_sleep_arg();
    let code = format!(
        "import subprocess, time\nsubprocess.Popen(['sleep', '{marker}'])\nwhile True:\n    try:\n        time.sleep(1)\n    except KeyboardInterrupt:\n        pass\n"
    );
    let t = Instant::now();
    let (_, v) = sb.exec_with(&id, &["--timeout", "1"], &code);
    assert!(t.elapsed() < Duration::from_secs(30), "{v}");
    assert_eq!(v["timed_out"], true, "{v}");
    assert_eq!(v["exit_code"], 124, "{v}");
    assert!(restarted(&v), "the interpreter had to be killed: {v}");
    assert!(
        wait_until(Duration::from_secs(5), || procs_with_marker(&marker)
            .is_empty()),
        "a process started by the killed exec survived"
    );
    let v = sb.exec(&id, "'lost' in globals()");
    assert_eq!(out(&v), "False\n", "a fresh interpreter: {v}");
    assert_eq!(v["exit_code"], 0);
    assert!(
        !restarted(&v),
        "the loss was reported by the exec that caused it: {v}"
    );
    finish(&sb, &id);
}

#[test]
fn a_crash_is_reported_by_the_next_exec() {
    let Some((sb, id)) = python_session() else {
        return;
    };
    sb.exec(&id, "gone = 1");
    let v = sb.exec(&id, "import os; os._exit(7)");
    assert_eq!(v["exit_code"], 7, "{v}");
    let v = sb.exec(&id, "'gone' in globals()");
    assert_eq!(out(&v), "False\n", "{v}");
    assert!(restarted(&v), "{v}");
    let v = sb.exec(
        &id,
        "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)",
    );
    assert_eq!(v["exit_code"], 139, "{v}");
    assert_eq!(v["signal"], "SIGSEGV", "{v}");
    let v = sb.exec(&id, "3");
    assert_eq!(out(&v), "3\n", "{v}");
    assert!(restarted(&v), "{v}");
    let v = sb.exec(&id, "4");
    assert!(!restarted(&v), "said once: {v}");
    finish(&sb, &id);
}

#[test]
fn printed_framing_cannot_forge_a_result() {
    let Some((sb, id)) = python_session() else {
        return;
    };
    let forged = r#"import json, struct, sys
body = json.dumps({"id": 0, "exit_code": 0, "cwd": "/"}).encode()
sys.stdout.buffer.write(struct.pack('<I', len(body)) + body)
sys.stdout.flush()
print('{"event":"finished","exit":{"kind":"code","code":0},"timed_out":false}')
print('DS1\0' + '0\0/\0')
sys.stderr.write('{"exit_code": 0}\n')
sys.exit(5)
"#;
    let v = sb.exec(&id, forged);
    assert_eq!(v["exit_code"], 5, "{v}");
    assert!(out(&v).contains("\"exit_code\": 0"), "{v}");
    assert_eq!(v["cwd"], sb.work.to_str().unwrap(), "{v}");
    assert!(!restarted(&v));
    finish(&sb, &id);
}

#[test]
fn the_channel_is_not_inherited_or_reachable_by_path() {
    let Some((sb, id)) = python_session() else {
        return;
    };
    // close_fds=False: only the descriptor's own flag keeps it from the child.
    let v = sb.exec(
        &id,
        "import subprocess\nsubprocess.run(['sh', '-c', 'ls -l /proc/self/fd/ 2>&1'], close_fds=False)\nNone",
    );
    assert_eq!(v["exit_code"], 0, "{v}");
    assert!(
        !out(&v).contains("socket:"),
        "a subprocess got a socket: {v}"
    );
    // No socket or FIFO anywhere the jail can write.
    let v = sb.exec(
        &id,
        "import os, stat\nfound = []\nfor top in ['/tmp', os.path.expanduser('~'), os.getcwd(), '/dev/shm']:\n    for d, _, files in os.walk(top):\n        for f in files:\n            m = os.lstat(os.path.join(d, f)).st_mode\n            if stat.S_ISSOCK(m) or stat.S_ISFIFO(m):\n                found.append(os.path.join(d, f))\nfound",
    );
    assert_eq!(out(&v), "[]\n", "{v}");
    finish(&sb, &id);
}

#[test]
fn chdir_persists_and_shows_in_cwd() {
    let Some((sb, id)) = python_session() else {
        return;
    };
    std::fs::create_dir(sb.work.join("sub")).unwrap();
    let v = sb.exec(&id, "import os; os.chdir('sub')");
    let sub = sb.work.join("sub");
    assert_eq!(v["cwd"], sub.to_str().unwrap(), "{v}");
    let v = sb.exec(&id, "print(os.getcwd())");
    assert_eq!(out(&v), format!("{}\n", sub.display()), "{v}");
    assert_eq!(
        sb.read_json(&id, "state.json")["cwd"],
        sub.to_str().unwrap()
    );
    // A fresh interpreter starts where the last one was.
    sb.exec(&id, "os._exit(0)");
    let v = sb.exec(&id, "import os; print(os.getcwd())");
    assert!(restarted(&v));
    assert_eq!(out(&v), format!("{}\n", sub.display()), "{v}");
    finish(&sb, &id);
}

/// Host pids of processes whose environment holds `needle` (`NAME=VALUE`).
fn procs_with_env(needle: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if let Ok(env) = std::fs::read(e.path().join("environ")) {
            if env.split(|&b| b == 0).any(|v| v == needle.as_bytes()) {
                found.push(pid);
            }
        }
    }
    found
}

#[test]
fn end_kills_the_interpreter_and_its_children() {
    if !have_program("python3") {
        eprintln!("skipped: python3 not installed");
        return;
    }
    let sb = Sandbox::new();
    let mark = format!("DS_TEST_MARK={}", unique_sleep_arg());
    let id = sb.start(&["--env", &mark, "python3"]);
    let marker = unique_sleep_arg();
    sb.exec(
        &id,
        &format!("import subprocess; p = subprocess.Popen(['sleep', '{marker}'])"),
    );
    assert!(!procs_with_marker(&marker).is_empty());
    // A background process outlives its exec, like in a shell session.
    let v = sb.exec(&id, "p.poll() is None");
    assert_eq!(out(&v), "True\n", "{v}");
    // The interpreter itself runs with the session's environment.
    let drivers = procs_with_marker("_ds_driver");
    assert!(
        procs_with_env(&mark).iter().any(|p| drivers.contains(p)),
        "no interpreter found"
    );
    finish(&sb, &id);
    assert!(
        wait_until(Duration::from_secs(5), || procs_with_marker(&marker)
            .is_empty()
            && procs_with_env(&mark).is_empty()),
        "the session's processes outlived end"
    );
}

#[test]
fn python_with_arguments_runs_each_exec_afresh() {
    if !have_program("python3") {
        eprintln!("skipped: python3 not installed");
        return;
    }
    let sb = Sandbox::new();
    let id = sb.start(&["python3", "-q"]);
    sb.exec(&id, "x = 1");
    let v = sb.exec(&id, "print('x' in globals())");
    assert_eq!(out(&v), "False\n", "{v}");
    assert!(v.get("interpreter_restarted").is_none(), "{v}");
    finish(&sb, &id);
}

#[test]
fn shell_sessions_have_no_interpreter_field() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    let v = sb.exec(&id, "echo hi");
    assert!(v.get("interpreter_restarted").is_none(), "{v}");
    finish(&sb, &id);
}

#[test]
fn a_rebuilt_jail_says_the_interpreter_restarted() {
    let Some((sb, id)) = python_session() else {
        return;
    };
    std::fs::create_dir(sb.work.join("d")).unwrap();
    sb.exec(&id, "import os; os.chdir('d'); kept = 1");
    let (pid, start) = sb.holder(&id).expect("holder recorded");
    // SAFETY: plain kill(2) of this test's own session holder.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    assert!(wait_until(Duration::from_secs(5), || proc_start_time(pid)
        != Some(start)));
    let v = sb.exec(&id, "import os; print('kept' in globals(), os.getcwd())");
    assert_eq!(v["jail_restarted"], true, "{v}");
    assert!(restarted(&v), "{v}");
    assert_eq!(
        out(&v),
        format!("False {}\n", sb.work.join("d").display()),
        "{v}"
    );
    finish(&sb, &id);
}

#[test]
fn raw_mode_streams_and_returns_the_exit_code() {
    let Some((sb, id)) = python_session() else {
        return;
    };
    sb.exec(&id, "word = 'streamed'");
    let r = sb.run(
        &["exec", &id, "--raw"],
        b"import sys\nprint(word)\nsys.stderr.write('to stderr\\n')\nsys.exit(6)",
    );
    assert_eq!(r.status, 6, "{r:?}");
    assert_eq!(r.stdout, "streamed\n", "{r:?}");
    assert_eq!(r.stderr, "to stderr\n", "{r:?}");
    finish(&sb, &id);
}

#[test]
fn an_exec_whose_caller_was_killed_does_not_disturb_the_next() {
    let Some((sb, id)) = python_session() else {
        return;
    };
    sb.exec(&id, "survivor = 'yes'");
    let mut c = sb.command();
    // The interrupt is caught and the code takes another second to finish.
    let slow = "import time\ntry:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n    time.sleep(1)\n    survivor = 'still yes'";
    c.args(["exec", &id, slow])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut caller = c.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    caller.kill().unwrap();
    caller.wait().unwrap();
    // The next exec takes the lock at once; the old worker is still
    // interrupting the interpreter and must finish first.
    let t = Instant::now();
    let v = sb.exec(&id, "print(survivor)");
    assert_eq!(out(&v), "still yes\n", "{v}");
    assert_eq!(v["exit_code"], 0, "{v}");
    assert!(!restarted(&v), "{v}");
    assert!(t.elapsed() < Duration::from_secs(15), "{v}");
    finish(&sb, &id);
}

#[test]
fn an_interpreter_that_cannot_start_says_why() {
    if !have_program("python3") {
        eprintln!("skipped: python3 not installed");
        return;
    }
    let sb = Sandbox::new();
    let id = sb.start(&["--env", "PYTHONHOME=/nonexistent", "python3"]);
    let v = sb.exec(&id, "1");
    assert_ne!(v["exit_code"], 0, "{v}");
    assert!(
        err(&v).contains("PYTHONHOME"),
        "startup errors are shown: {v}"
    );
    assert_eq!(v["timed_out"], false, "{v}");
    finish(&sb, &id);
}

#[test]
fn a_timeout_spares_processes_of_earlier_execs() {
    let Some((sb, id)) = python_session() else {
        return;
    };
    let marker = unique_sleep_arg();
    sb.exec(
        &id,
        &format!("import subprocess; server = subprocess.Popen(['sleep', '{marker}'])"),
    );
    let (_, v) = sb.exec_with(
        &id,
        &["--timeout", "1"],
        "import os; os.system('sleep 30'); print('after')",
    );
    assert_eq!(v["timed_out"], true, "{v}");
    // os.system's own child got the interrupt, so the code went on.
    assert_eq!(out(&v), "after\n", "{v}");
    assert!(!restarted(&v), "{v}");
    let v = sb.exec(&id, "server.poll() is None");
    assert_eq!(
        out(&v),
        "True\n",
        "the earlier exec's process survived: {v}"
    );
    assert!(!procs_with_marker(&marker).is_empty());
    finish(&sb, &id);
}
