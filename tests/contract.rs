//! Black-box contract of `start` and `exec` (SPEC §2, §3): the real binary, the
//! command on stdin, JSON on stdout.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn is_session_id(s: &str) -> bool {
    s.len() == 17
        && s.starts_with("sess_")
        && s[5..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_rfc3339_utc(s: &str) -> bool {
    // 2026-11-25T06:47:24Z, optionally with fractional seconds.
    let b = s.as_bytes();
    b.len() >= 20
        && s.ends_with('Z')
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
            .iter()
            .all(|&i| b[i].is_ascii_digit())
}

fn stdout_of(v: &Value) -> &str {
    v["stdout"]
        .as_str()
        .unwrap_or_else(|| panic!("no stdout in {v}"))
}

#[test]
fn session_id_checker_rejects_bad_ids() {
    // The helper the other tests rely on must be able to say no.
    assert!(is_session_id("sess_0123456789ab"));
    for bad in [
        "sess_0123456789AB",
        "sess_0123456789a",
        "sess_0123456789abc",
        "ses_0123456789abc",
        "sess_0123456789ag",
    ] {
        assert!(!is_session_id(bad), "{bad}");
    }
    assert!(is_rfc3339_utc("2026-11-25T06:47:24Z"));
    assert!(!is_rfc3339_utc("2026-11-25 06:47:24"));
}

#[test]
fn start_prints_json_and_creates_files() {
    let sb = Sandbox::new();
    let v = sb.start_json(&[]);
    let id = v["session_id"].as_str().unwrap();
    assert!(is_session_id(id), "session id {id:?}");
    assert_eq!(v["status"], "active");
    assert_eq!(v["command"], "bash");
    assert_eq!(v["profile"], "default");
    assert_eq!(v["work_dir"], sb.work.to_str().unwrap());

    let dir = sb.session_dir(id);
    for f in ["metadata.json", "state.json", "profile.json", "history.log"] {
        assert!(dir.join(f).is_file(), "{f} exists in {dir:?}");
    }
    let m = sb.metadata(id);
    assert_eq!(m["session_id"], id);
    assert_eq!(m["command"], "bash");
    assert_eq!(m["status"], "active");
    assert_eq!(m["work_dir"], sb.work.to_str().unwrap());
    assert_eq!(m["execution_count"], 0);
    assert_eq!(m["profile"], "default");
    assert!(
        is_rfc3339_utc(m["created_at"].as_str().unwrap_or("")),
        "created_at: {m}"
    );
    assert!(
        m.get("last_executed_at").is_some(),
        "last_executed_at key: {m}"
    );
    assert!(
        m["holder"]["pid"].as_i64().unwrap_or(0) > 1,
        "holder pid: {m}"
    );

    let st = sb.read_json(id, "state.json");
    assert_eq!(st["cwd"], sb.work.to_str().unwrap());
    assert!(st["env"].is_object(), "state env: {st}");
    assert_eq!(st["env"]["DELTA_SESSION_ID"], id);

    let p = sb.read_json(id, "profile.json");
    assert_eq!(p["name"], "default");
    assert_eq!(sb.history(id).len(), 0, "no exec yet, no history");
}

#[test]
fn start_ids_are_unique() {
    let sb = Sandbox::new();
    let a = sb.start(&[]);
    let b = sb.start(&[]);
    assert_ne!(a, b);
}

#[test]
fn start_env_and_work_dir_options() {
    let sb = Sandbox::new();
    let wd = sb.work.join("proj");
    std::fs::create_dir(&wd).unwrap();
    let v = sb.start_json(&[
        "--work-dir",
        wd.to_str().unwrap(),
        "--env",
        "GREETING=hello world",
        "--env",
        "EMPTY=",
    ]);
    assert_eq!(v["work_dir"], wd.to_str().unwrap());
    let id = v["session_id"].as_str().unwrap();
    let r = sb.exec(id, "pwd; echo \"$GREETING\"; echo \"[${EMPTY-unset}]\"");
    assert_eq!(
        stdout_of(&r),
        format!("{}\nhello world\n[]\n", wd.display())
    );
}

#[test]
fn exec_json_shape_stdout_stderr_exit_code() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    let (status, v) = sb.exec_with(&id, &[], "echo out; echo err >&2");
    assert_eq!(status, 0);
    for key in [
        "stdout",
        "stderr",
        "exit_code",
        "execution_time_ms",
        "cwd",
        "timed_out",
        "truncated",
        "signal",
        "stdout_dropped_bytes",
        "stderr_dropped_bytes",
        "jail_restarted",
    ] {
        assert!(v.get(key).is_some(), "{key} in {v}");
    }
    assert_eq!(v["stdout"], "out\n");
    assert_eq!(v["stderr"], "err\n");
    assert_eq!(v["exit_code"], 0);
    assert_eq!(v["timed_out"], false);
    assert_eq!(v["truncated"], false);
    assert_eq!(v["jail_restarted"], false);
    assert!(v["signal"].is_null());
    assert!(v["execution_time_ms"].is_u64());
    assert_eq!(v["cwd"], sb.work.to_str().unwrap());

    let (status, v) = sb.exec_with(&id, &[], "echo partial; exit 3");
    assert_eq!(v["exit_code"], 3);
    assert_eq!(status, 3);
    assert_eq!(v["stdout"], "partial\n");
}

#[test]
fn exec_accepts_no_trailing_newline_multiline_and_positional_command() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    let v = sb.exec(&id, "echo a\necho b\nfor i in 1 2; do echo $i; done");
    assert_eq!(v["stdout"], "a\nb\n1\n2\n");
    let r = sb.run(&["exec", &id, "echo positional"], b"");
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(r.json()["stdout"], "positional\n");
}

#[test]
fn exec_invalid_utf8_output_is_lossy_not_an_error() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    let v = sb.exec(&id, "printf 'a\\377b\\n'");
    assert_eq!(v["exit_code"], 0);
    assert_eq!(v["stdout"], "a\u{FFFD}b\n");
}

#[test]
fn global_options_after_subcommand() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    // `list --sessions-dir DIR` from another directory.
    let mut c = std::process::Command::new(bin());
    c.args(["list", "--sessions-dir", &sb.sessions_arg()])
        .current_dir(sb.dir.path())
        .env_remove("DELTA_SESSIONS_DIR");
    let r = run_command(c, b"");
    assert_eq!(r.status, 0, "{r:?}");
    let arr = r.json();
    assert_eq!(arr.as_array().unwrap().len(), 1, "{arr}");
    assert_eq!(arr[0]["session_id"], id.as_str());
    // exec with DELTA_SESSIONS_DIR from the environment.
    let mut c = std::process::Command::new(bin());
    c.args(["exec", &id])
        .current_dir(sb.dir.path())
        .env("DELTA_SESSIONS_DIR", &sb.sessions);
    let r = run_command(c, b"echo via-env");
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(r.json()["stdout"], "via-env\n");
}

#[test]
fn cwd_persists() {
    let sb = Sandbox::new();
    std::fs::create_dir(sb.work.join("sub")).unwrap();
    let id = sb.start(&[]);
    let v = sb.exec(&id, "cd sub");
    let sub = sb.work.join("sub");
    assert_eq!(v["cwd"], sub.to_str().unwrap());
    let v = sb.exec(&id, "pwd");
    assert_eq!(stdout_of(&v), format!("{}\n", sub.display()));
    assert_eq!(
        sb.read_json(&id, "state.json")["cwd"],
        sub.to_str().unwrap()
    );
}

#[test]
fn env_export_and_unset_persist() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    sb.exec(&id, "export FOO=1; export BAR='two words'");
    let v = sb.exec(&id, "echo \"$FOO|$BAR\"");
    assert_eq!(v["stdout"], "1|two words\n");
    sb.exec(&id, "unset FOO");
    let v = sb.exec(&id, "echo \"[${FOO-gone}]|$BAR\"");
    assert_eq!(v["stdout"], "[gone]|two words\n");
    let st = sb.read_json(&id, "state.json");
    assert!(st["env"].get("FOO").is_none(), "FOO unset in state: {st}");
    assert_eq!(st["env"]["BAR"], "two words");
}

#[test]
fn bash_functions_and_aliases_persist() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    sb.exec(&id, "greet() { echo \"hi $1\"; }\nalias ll='echo aliased'");
    let v = sb.exec(&id, "greet bob; ll");
    assert_eq!(v["stdout"], "hi bob\naliased\n", "{v}");
}

#[test]
fn exit_and_exec_keep_previous_state() {
    let sb = Sandbox::new();
    std::fs::create_dir(sb.work.join("keep")).unwrap();
    let id = sb.start(&[]);
    sb.exec(&id, "cd keep; export KEEP=yes");
    let keep = sb.work.join("keep");

    let v = sb.exec(&id, "cd ..; export KEEP=no LOST=1; exit 5");
    assert_eq!(v["exit_code"], 5);
    let v = sb.exec(&id, "pwd; echo \"$KEEP/${LOST-none}\"");
    assert_eq!(stdout_of(&v), format!("{}\nyes/none\n", keep.display()));

    let v = sb.exec(&id, "cd ..; export KEEP=no; exec true");
    assert_eq!(v["exit_code"], 0);
    let v = sb.exec(&id, "pwd; echo \"$KEEP\"");
    assert_eq!(stdout_of(&v), format!("{}\nyes\n", keep.display()));

    // state.json still parses and still holds the old values.
    let st = sb.read_json(&id, "state.json");
    assert_eq!(st["cwd"], keep.to_str().unwrap());
    assert_eq!(st["env"]["KEEP"], "yes");
}

#[test]
fn background_process_does_not_block_and_end_kills_it() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    let arg = unique_sleep_arg();
    let t = Instant::now();
    let v = sb.exec(&id, &format!("sleep {arg} &\necho started"));
    let took = t.elapsed();
    assert_eq!(v["stdout"], "started\n");
    assert!(took < Duration::from_secs(10), "exec waited {took:?}");
    // The forked job may not have exec'd `sleep` yet when exec returns.
    assert!(
        wait_until(Duration::from_secs(5), || !procs_with_marker(&arg)
            .is_empty()),
        "the background sleep runs after exec returned"
    );
    let pids = procs_with_marker(&arg);
    for pid in pids {
        assert_not_in_host_pid_ns(pid);
    }
    // It survives into the next exec.
    let v = sb.exec(&id, "echo next");
    assert_eq!(v["stdout"], "next\n");
    assert!(!procs_with_marker(&arg).is_empty(), "still running");

    let r = sb.end(&id);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(
        wait_until(Duration::from_secs(5), || procs_with_marker(&arg)
            .is_empty()),
        "background sleep {arg} still runs after end: {:?}",
        procs_with_marker(&arg)
    );
}

#[test]
fn timeout_kills_and_keeps_output() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    let arg = unique_sleep_arg();
    let t = Instant::now();
    let (status, v) = sb.exec_with(
        &id,
        &["--timeout", "1"],
        &format!("echo before; echo err-before >&2; sleep {arg}; echo after"),
    );
    let took = t.elapsed();
    assert_eq!(v["timed_out"], true, "{v}");
    assert_eq!(v["exit_code"], 124, "{v}");
    assert_eq!(status, 124);
    assert_eq!(v["stdout"], "before\n", "output before the timeout is kept");
    assert_eq!(v["stderr"], "err-before\n");
    assert!(
        took < Duration::from_secs(20),
        "a 1 s timeout took {took:?}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || procs_with_marker(&arg)
            .is_empty()),
        "sleep {arg} survived the timeout: {:?}",
        procs_with_marker(&arg)
    );
    let h = sb.history(&id);
    assert_eq!(h.last().unwrap()["timed_out"], true, "{h:?}");
}

#[test]
fn timeout_without_output_is_prompt_and_session_stays_usable() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    sb.exec(&id, "export KEEP=1");
    let arg = unique_sleep_arg();
    let t = Instant::now();
    let (_, v) = sb.exec_with(&id, &["--timeout", "0.5"], &format!("sleep {arg}"));
    let took = t.elapsed();
    assert_eq!(v["timed_out"], true, "{v}");
    assert_eq!(v["exit_code"], 124, "{v}");
    // 0.5 s plus the profile's kill grace (2 s) plus generous slack.
    assert!(took < Duration::from_secs(6), "timeout took {took:?}");
    assert!(wait_until(Duration::from_secs(5), || procs_with_marker(
        &arg
    )
    .is_empty()));
    for i in 0..3 {
        let v = sb.exec(&id, &format!("echo $KEEP-{i}"));
        assert_eq!(v["exit_code"], 0, "exec {i} after a timeout: {v}");
        assert_eq!(stdout_of(&v), format!("1-{i}\n"), "{v}");
    }
}

#[test]
fn timeout_after_output_is_prompt_and_session_stays_usable() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    let arg = unique_sleep_arg();
    let t = Instant::now();
    let (_, v) = sb.exec_with(
        &id,
        &["--timeout", "1"],
        &format!("echo before; sleep {arg}"),
    );
    let took = t.elapsed();
    assert_eq!(v["timed_out"], true, "{v}");
    assert!(
        v.get("error").is_none(),
        "no supervisor error on a plain timeout: {v}"
    );
    assert!(took < Duration::from_secs(5), "1 s timeout took {took:?}");
    for i in 0..3 {
        let v = sb.exec(&id, &format!("echo ok-{i}"));
        assert_eq!(v["exit_code"], 0, "exec {i} after a timeout: {v}");
        assert_eq!(stdout_of(&v), format!("ok-{i}\n"), "{v}");
    }
}

#[test]
fn big_output_is_truncated_head_and_tail_with_marker() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    let limit = sb.read_json(&id, "profile.json")["limits"]["output_bytes"]
        .as_u64()
        .unwrap_or(1 << 20) as usize;
    let total = 3_000_000usize;
    assert!(
        limit < total,
        "the profile's output limit {limit} is below {total}"
    );
    let t = Instant::now();
    let v = sb.exec(
        &id,
        &format!("head -c {total} /dev/zero | tr '\\0' a; echo; echo tail-end"),
    );
    assert!(t.elapsed() < Duration::from_secs(20));
    assert_eq!(v["exit_code"], 0, "{}", v["stderr"]);
    assert_eq!(v["truncated"], true);
    let dropped = v["stdout_dropped_bytes"].as_u64().unwrap() as usize;
    assert!(dropped > 0);
    assert_eq!(v["stderr_dropped_bytes"], 0);
    let out = stdout_of(&v);
    assert!(
        out.len() <= limit + 256,
        "stdout is {} bytes for a limit of {limit}",
        out.len()
    );
    let marker = format!("[... delta-sessions dropped {dropped} bytes of output here ...]");
    assert!(out.contains(&marker), "marker line {marker:?} present");
    assert!(out.starts_with("aaaa"), "head kept");
    assert!(out.ends_with("\ntail-end\n"), "tail kept");
    // The dropped bytes all come from the middle run of "a"s: every "a" is
    // either kept or counted as dropped.
    let body = out.replacen(&marker, "", 1).replace("tail-end", "");
    let kept_a = body.bytes().filter(|&b| b == b'a').count();
    assert_eq!(kept_a + dropped, total, "kept {kept_a} + dropped {dropped}");
    // The session still works after it.
    assert_eq!(sb.exec(&id, "echo fine")["stdout"], "fine\n");
}

#[test]
fn big_stderr_is_truncated_too() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    let v = sb.exec(&id, "head -c 2500000 /dev/zero | tr '\\0' b >&2; echo done");
    assert_eq!(v["stdout"], "done\n");
    assert_eq!(v["truncated"], true);
    assert!(v["stderr_dropped_bytes"].as_u64().unwrap() > 0);
    assert!(v["stderr"].as_str().unwrap().len() < 2_000_000);
}

#[test]
fn raw_streams_everything_and_exits_with_code() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    let r = sb.run(
        &["exec", &id, "--raw"],
        b"echo raw-out; echo raw-err >&2; exit 7",
    );
    assert_eq!(r.status, 7, "{r:?}");
    assert_eq!(r.stdout, "raw-out\n");
    assert_eq!(r.stderr, "raw-err\n");
    // No cap in raw mode: every byte arrives.
    let r = sb.run(
        &["exec", &id, "--raw"],
        b"head -c 3000000 /dev/zero | tr '\\0' a",
    );
    assert_eq!(r.status, 0, "stderr {:?}", r.stderr);
    assert_eq!(r.stdout.len(), 3_000_000);
    assert!(r.stdout.bytes().all(|b| b == b'a'));
    // --raw before the id works as well, and execs are counted.
    let r = sb.run(&["exec", "--raw", &id], b"echo x");
    assert_eq!((r.status, r.stdout.as_str()), (0, "x\n"), "{r:?}");
    assert_eq!(sb.metadata(&id)["execution_count"], 3);
}

#[test]
fn execution_count_and_history() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    sb.exec(&id, "echo one");
    sb.exec(&id, "false");
    let m = sb.metadata(&id);
    assert_eq!(m["execution_count"], 2);
    assert!(
        is_rfc3339_utc(m["last_executed_at"].as_str().unwrap_or("")),
        "{m}"
    );
    let h = sb.history(&id);
    assert_eq!(h.len(), 2);
    for (line, (cmd, code)) in h.iter().zip([("echo one", 0), ("false", 1)]) {
        assert!(
            is_rfc3339_utc(line["timestamp"].as_str().unwrap_or("")),
            "{line}"
        );
        assert_eq!(line["command"].as_str().unwrap().trim_end(), cmd);
        assert_eq!(line["exit_code"], code);
        assert!(line["duration_ms"].is_u64(), "{line}");
        assert_eq!(line["cwd"], sb.work.to_str().unwrap());
        assert_eq!(line["timed_out"], false);
    }
}

#[test]
fn parallel_execs_are_serialized_and_counted() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    sb.exec(&id, "true");
    let before = sb.metadata(&id)["execution_count"].as_u64().unwrap();
    let hist_before = sb.history(&id).len();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..10)
            .map(|i| {
                let sb = &sb;
                let id = &id;
                s.spawn(move || {
                    let v = sb.exec(id, &format!("echo start-{i}; sleep 0.05; echo end-{i}"));
                    assert_eq!(v["exit_code"], 0, "{v}");
                    assert_eq!(
                        stdout_of(&v),
                        format!("start-{i}\nend-{i}\n"),
                        "no interleaving"
                    );
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
    let after = sb.metadata(&id)["execution_count"].as_u64().unwrap();
    assert_eq!(after, before + 10);
    let h = sb.history(&id);
    assert_eq!(h.len(), hist_before + 10);
    let mut cmds: Vec<String> = h[hist_before..]
        .iter()
        .map(|l| l["command"].as_str().unwrap().to_string())
        .collect();
    cmds.sort();
    let mut want: Vec<String> = (0..10)
        .map(|i| format!("echo start-{i}; sleep 0.05; echo end-{i}"))
        .collect();
    want.sort();
    assert_eq!(cmds, want);
}

#[test]
fn python3_session() {
    if !have_program("python3") {
        eprintln!("skipped: python3 not installed");
        return;
    }
    let sb = Sandbox::new();
    let v = sb.start_json(&["python3"]);
    assert_eq!(v["command"], "python3");
    let id = v["session_id"].as_str().unwrap();
    let v = sb.exec(id, "print(1+1)");
    assert_eq!(v["stdout"], "2\n", "{v}");
    assert_eq!(v["exit_code"], 0);
    let v = sb.exec(id, "import sys; sys.exit(4)");
    assert_eq!(v["exit_code"], 4);
    let v = sb.exec(id, "import os; print(os.getcwd())");
    assert_eq!(stdout_of(&v), format!("{}\n", sb.work.display()));
}

#[test]
fn sh_session_persists_env_and_cwd() {
    let sb = Sandbox::new();
    std::fs::create_dir(sb.work.join("sub")).unwrap();
    let v = sb.start_json(&["sh"]);
    assert_eq!(v["command"], "sh");
    let id = v["session_id"].as_str().unwrap();
    sb.exec(id, "cd sub; export SHVAR=42");
    let v = sb.exec(id, "pwd; echo $SHVAR");
    assert_eq!(
        stdout_of(&v),
        format!("{}\n42\n", sb.work.join("sub").display())
    );
}

#[test]
fn jail_reads_host_files_in_work_dir() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    std::fs::write(sb.work.join("from-host.txt"), "host\n").unwrap();
    let v = sb.exec(&id, "cat from-host.txt");
    assert_eq!(v["stdout"], "host\n", "{v}");
}

fn check_jail_writes_work_dir() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    let v = sb.exec(
        &id,
        "echo jail > from-jail.txt && mkdir -p made/deep && echo ok",
    );
    assert_eq!(v["stdout"], "ok\n", "{v}");
    assert_eq!(
        std::fs::read_to_string(sb.work.join("from-jail.txt")).unwrap(),
        "jail\n"
    );
    assert!(sb.work.join("made/deep").is_dir());
}

#[test]
fn jail_writes_work_dir() {
    if is_root() {
        eprintln!("as root: see jail_writes_work_dir_as_root (ignored, known bug)");
        return;
    }
    check_jail_writes_work_dir();
}

#[test]
fn jail_writes_work_dir_as_root() {
    check_jail_writes_work_dir();
}

#[test]
fn bash_errors_read_as_for_bash_c() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    let v = sb.exec(&id, "echo ok\nno-such-command-here\n\necho $LINENO");
    assert_eq!(v["stdout"], "ok\n4\n", "{v}");
    assert_eq!(
        v["stderr"], "bash: line 2: no-such-command-here: command not found\n",
        "line numbers are the command's own and no wrapper path shows: {v}"
    );
    assert_eq!(sb.end(&id).status, 0);
}
