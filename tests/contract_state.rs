//! Black-box contract of `end`, `list`, `cleanup` and of crash recovery
//! (SPEC §2, §3, §4): sessions live in plain files that survive killed processes.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

fn ids_of(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .unwrap_or_else(|| panic!("list prints an array: {list}"))
        .iter()
        .map(|e| e["session_id"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

/// Sets a directory's mtime ten minutes into the past.
fn make_old(dir: &std::path::Path) {
    let t = std::time::SystemTime::now() - Duration::from_secs(600);
    std::fs::File::open(dir).unwrap().set_modified(t).unwrap();
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn list(sb: &Sandbox, all: bool) -> Value {
    let r = if all {
        sb.run(&["list", "--all"], b"")
    } else {
        sb.run(&["list"], b"")
    };
    assert_eq!(r.status, 0, "{r:?}");
    r.json()
}

/// Every file in the session dir whose name ends in `.json` parses.
fn assert_json_files_parse(sb: &Sandbox, id: &str) {
    let mut n = 0;
    for e in std::fs::read_dir(sb.session_dir(id)).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") {
            let text = std::fs::read_to_string(e.path()).unwrap();
            serde_json::from_str::<Value>(&text)
                .unwrap_or_else(|err| panic!("{name} is torn ({err}): {text:?}"));
            n += 1;
        }
    }
    assert!(n >= 3, "metadata, state and profile json files: {n}");
    sb.history(id); // every line parses
}

#[test]
fn list_shows_active_and_all_shows_ended() {
    let sb = Sandbox::new();
    assert_eq!(list(&sb, false), Value::Array(vec![]), "no sessions: []");
    let a = sb.start(&[]);
    let b = sb.start(&[]);
    sb.exec(&a, "true");
    let l = list(&sb, false);
    assert_eq!(ids_of(&l), sorted(vec![a.clone(), b.clone()]));
    let entry = l
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["session_id"] == a.as_str())
        .unwrap();
    for key in [
        "session_id",
        "command",
        "work_dir",
        "status",
        "profile",
        "created_at",
        "last_executed_at",
        "execution_count",
    ] {
        assert!(entry.get(key).is_some(), "{key} in {entry}");
    }
    assert_eq!(entry["status"], "active");
    assert_eq!(entry["execution_count"], 1);
    assert_eq!(entry["command"], "bash");
    assert_eq!(entry["work_dir"], sb.work.to_str().unwrap());

    let r = sb.end(&b);
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(ids_of(&list(&sb, false)), vec![a.clone()]);
    let all = list(&sb, true);
    assert_eq!(ids_of(&all), sorted(vec![a.clone(), b.clone()]));
    let eb = all
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["session_id"] == b.as_str())
        .unwrap();
    assert_eq!(eb["status"], "terminated");
}

#[test]
fn list_survives_corrupt_metadata() {
    let sb = Sandbox::new();
    let good = sb.start(&[]);
    let bad = sb.start(&[]);
    let meta = sb.session_dir(&bad).join("metadata.json");
    let saved = std::fs::read(&meta).unwrap();
    std::fs::write(&meta, b"{\"session_id\": tru").unwrap();
    // Stray entries that are not sessions must not break the listing either.
    std::fs::create_dir(sb.sessions.join("not-a-session")).unwrap();
    std::fs::write(sb.sessions.join("README"), "x").unwrap();

    let all = list(&sb, true);
    assert_eq!(
        ids_of(&all),
        sorted(vec![good.clone(), bad.clone()]),
        "{all}"
    );
    let eb = all
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["session_id"] == bad.as_str())
        .unwrap();
    assert_eq!(eb["status"], "corrupt");
    let active = list(&sb, false);
    assert!(ids_of(&active).contains(&good));
    assert_eq!(
        std::fs::read(&meta).unwrap(),
        b"{\"session_id\": tru",
        "list does not rewrite a corrupt file"
    );
    // Restore so the fixture can end it.
    std::fs::write(&meta, saved).unwrap();
}

#[test]
fn cleanup_removes_terminated_and_corrupt_only() {
    let sb = Sandbox::new();
    let active = sb.start(&[]);
    let ended = sb.start(&[]);
    let corrupt = sb.start(&[]);
    assert_eq!(sb.end(&ended).status, 0);
    // A corrupt session whose holder is already gone (as after a reboot).
    assert_eq!(sb.end(&corrupt).status, 0);
    std::fs::write(sb.session_dir(&corrupt).join("metadata.json"), "garbage").unwrap();
    // cleanup leaves corrupt sessions younger than a minute alone (one being
    // created has no metadata yet): age this one.
    make_old(&sb.session_dir(&corrupt));

    let r = sb.run(&["cleanup"], b"");
    assert_eq!(r.status, 0, "{r:?}");
    let removed: Vec<String> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        sorted(removed),
        sorted(vec![ended.clone(), corrupt.clone()])
    );
    assert!(!sb.session_dir(&ended).exists());
    assert!(!sb.session_dir(&corrupt).exists());
    assert!(sb.session_dir(&active).join("metadata.json").is_file());
    assert_eq!(sb.exec(&active, "echo alive")["stdout"], "alive\n");

    // Nothing left to clean: [].
    let r = sb.run(&["cleanup"], b"");
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(r.json(), Value::Array(vec![]));
}

#[test]
fn end_prints_json_marks_terminated_and_twice_is_an_error() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    let r = sb.end(&id);
    assert_eq!(r.status, 0, "{r:?}");
    let v = r.json();
    assert_eq!(v["session_id"], id.as_str());
    assert_eq!(v["status"], "terminated");
    assert_eq!(r.stderr, "");
    let m = sb.metadata(&id);
    assert_eq!(m["status"], "terminated");

    let before = sb.snapshot();
    let r = sb.end(&id);
    r.assert_error(&[&id, "ended"]);
    assert_same(&before, &sb.snapshot(), "second end");
    // end --remove of an ended session: an error too, and nothing removed.
    let r = sb.run(&["end", &id, "--remove"], b"");
    assert_eq!(r.status, 1, "{r:?}");
    assert!(sb.session_dir(&id).exists());
}

#[test]
fn end_remove_deletes_the_directory() {
    let sb = Sandbox::new();
    let keep = sb.start(&[]);
    let id = sb.start(&[]);
    sb.exec(&id, "export A=1");
    let holder = sb.holder(&id).unwrap();
    let r = sb.run(&["end", &id, "--remove"], b"");
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(r.json()["status"], "terminated");
    assert!(!sb.session_dir(&id).exists(), "directory removed");
    assert!(
        wait_until(Duration::from_secs(5), || proc_start_time(holder.0)
            != Some(holder.1)),
        "holder {} still runs",
        holder.0
    );
    // The other session is untouched.
    assert_eq!(ids_of(&list(&sb, true)), vec![keep.clone()]);
    let r = sb.end(&id);
    r.assert_error(&["not found"]);
}

#[test]
fn end_kills_every_process_of_the_session() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    let a = unique_sleep_arg();
    let b = unique_sleep_arg();
    // A plain background job and a setsid'd, double-forked daemon.
    sb.exec(
        &id,
        &format!("sleep {a} &\n( setsid sh -c 'sleep {b} & ' & ) ; sleep 0.1"),
    );
    assert!(
        wait_until(Duration::from_secs(5), || {
            !procs_with_marker(&a).is_empty() && !procs_with_marker(&b).is_empty()
        }),
        "both background sleeps started"
    );
    let holder = sb.holder(&id).unwrap();
    assert_eq!(sb.end(&id).status, 0);
    assert!(
        wait_until(Duration::from_secs(5), || {
            procs_with_marker(&a).is_empty() && procs_with_marker(&b).is_empty()
        }),
        "processes left after end: {:?} {:?}",
        procs_with_marker(&a),
        procs_with_marker(&b)
    );
    assert_ne!(proc_start_time(holder.0), Some(holder.1), "holder gone");
}

#[test]
fn killed_exec_client_leaves_consistent_files() {
    let sb = Sandbox::new();
    std::fs::create_dir(sb.work.join("sub")).unwrap();
    let id = sb.start(&[]);
    sb.exec(&id, "cd sub; export KEEP=yes");
    let count = sb.metadata(&id)["execution_count"].as_u64().unwrap();

    let arg = unique_sleep_arg();
    let mut child = sb.spawn_exec(&id, &format!("cd ..; export KEEP=no; sleep {arg}"));
    assert!(
        wait_until(Duration::from_secs(10), || !procs_with_marker(&arg)
            .is_empty()),
        "the command started"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    assert_json_files_parse(&sb, &id);
    let v = sb.exec(&id, "pwd; echo $KEEP");
    assert_eq!(
        v["stdout"].as_str().unwrap(),
        format!("{}\nyes\n", sb.work.join("sub").display()),
        "the killed exec did not change the state: {v}"
    );
    assert_json_files_parse(&sb, &id);
    let m = sb.metadata(&id);
    let after = m["execution_count"].as_u64().unwrap();
    assert!(
        after == count + 1 || after == count + 2,
        "execution_count {count} -> {after}"
    );
    assert_eq!(m["status"], "active");
}

#[test]
fn killed_holder_restarts_the_jail_with_state_kept() {
    let sb = Sandbox::new();
    std::fs::create_dir(sb.work.join("sub")).unwrap();
    let id = sb.start(&[]);
    let v = sb.exec(&id, "cd sub; export KEEP=yes; f() { echo fn; }");
    assert_eq!(v["jail_restarted"], false);
    let (pid, st) = sb.kill_holder(&id);

    // list still shows it active.
    let l = list(&sb, false);
    assert_eq!(ids_of(&l), vec![id.clone()]);
    assert_eq!(l[0]["status"], "active");

    let v = sb.exec(&id, "pwd; echo $KEEP; f");
    assert_eq!(v["jail_restarted"], true, "{v}");
    assert_eq!(
        v["stdout"].as_str().unwrap(),
        format!("{}\nyes\nfn\n", sb.work.join("sub").display())
    );
    let (pid2, st2) = sb.holder(&id).unwrap();
    assert!((pid2, st2) != (pid, st), "a new holder is recorded");
    assert_eq!(proc_start_time(pid2), Some(st2), "new holder runs");
    let v = sb.exec(&id, "echo again");
    assert_eq!(v["jail_restarted"], false, "only the first exec restarts");
    assert_json_files_parse(&sb, &id);
    // end still works on the rebuilt jail.
    assert_eq!(sb.end(&id).status, 0);
    assert!(wait_until(Duration::from_secs(5), || proc_start_time(pid2)
        != Some(st2)));
}

#[test]
fn state_files_hold_no_caller_secrets() {
    let sb = Sandbox::new();
    let start = || {
        let mut c = sb.command();
        c.args(["start"])
            .env("DS_TEST_SECRET_TOKEN", "hunter2-secret");
        run_command(c, b"")
    };
    let r = start();
    assert_eq!(r.status, 0, "{r:?}");
    let id = r.json()["session_id"].as_str().unwrap().to_string();
    let v = sb.exec(&id, "echo \"[${DS_TEST_SECRET_TOKEN-}]\"");
    assert_eq!(v["stdout"], "[]\n", "caller env not copied into the jail");
    for f in ["metadata.json", "state.json", "profile.json", "history.log"] {
        let text = std::fs::read_to_string(sb.session_dir(&id).join(f)).unwrap();
        assert!(
            !text.contains("hunter2-secret"),
            "{f} holds the caller's secret"
        );
    }
    assert_eq!(sb.end(&id).status, 0);
}

#[test]
fn cleanup_of_a_corrupt_live_session_leaves_no_holder() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    let (pid, st) = sb.holder(&id).unwrap();
    // Where the host gave the session cgroups, they must go too.
    let cgroups: Vec<std::path::PathBuf> = sb.metadata(&id)["holder"]["cgroups"]
        .as_array()
        .map(|a| a.iter().map(|p| p.as_str().unwrap().into()).collect())
        .unwrap_or_default();
    std::fs::write(sb.session_dir(&id).join("metadata.json"), "garbage").unwrap();
    make_old(&sb.session_dir(&id));
    let r = sb.run(&["cleanup"], b"");
    assert_eq!(r.status, 0, "{r:?}");
    if !sb.session_dir(&id).exists() {
        assert!(
            wait_until(Duration::from_secs(5), || proc_start_time(pid) != Some(st)),
            "holder {pid} of removed session {id} still runs"
        );
        for dir in cgroups {
            assert!(!dir.exists(), "{} outlived the session", dir.display());
        }
    }
}

#[test]
fn parallel_starts_never_fail() {
    let sb = Sandbox::new();
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..25 {
                    let r = sb.run(&["start"], b"");
                    if r.status == 0 {
                        let id = r.json()["session_id"].as_str().unwrap().to_string();
                        sb.end(&id);
                    } else {
                        failures.lock().unwrap().push(r.stderr);
                    }
                }
            });
        }
    });
    let f = failures.into_inner().unwrap();
    assert!(
        f.is_empty(),
        "{} of 100 starts failed: {:?}",
        f.len(),
        f.first()
    );
}

#[test]
fn functions_named_like_the_wrappers_builtins_do_not_break_the_session() {
    // The wrapper reads the command, runs it and reports the state with
    // builtins; a session's functions of the same names must not replace them.
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    let v = sb.exec(
        &id,
        "read() { echo fake-read; }; printf() { :; }; exit() { :; }; eval() { :; }; \
         unset() { :; }; declare() { :; }; export() { :; }; alias() { :; }; \
         builtin export Z=1",
    );
    assert_eq!(v["exit_code"], 0, "{v}");
    for round in 2..5 {
        let v = sb.exec(
            &id,
            &format!("echo \"$Z $(type -t read)\"; builtin export Z={round}"),
        );
        assert_eq!(v["exit_code"], 0, "{v}");
        assert_eq!(v["stdout"], format!("{} function\n", round - 1), "{v}");
    }
    sb.end(&id);
}

#[test]
fn tracing_shows_the_command_only_and_the_state_is_still_saved() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    for (command, expected_stderr) in [
        ("set -x; export T=1; true", None),
        ("set -v; export V=1", Some("")),
        ("set -u; export U=1", Some("")),
    ] {
        let v = sb.exec(&id, command);
        assert_eq!(v["exit_code"], 0, "{command}: {v}");
        let stderr = v["stderr"].as_str().unwrap();
        assert!(
            !stderr.contains("__ds") && !stderr.contains("DS1") && !stderr.contains("builtin"),
            "the wrapper shows in the trace of {command:?}: {stderr:?}"
        );
        if let Some(expected) = expected_stderr {
            assert_eq!(stderr, expected, "{command}");
        } else {
            assert!(stderr.contains("true"), "{command}: {stderr:?}");
        }
    }
    let v = sb.exec(&id, "echo $T$V$U");
    assert_eq!(v["stdout"], "111\n", "{v}");
    sb.end(&id);
}

#[test]
fn the_saved_cwd_is_where_the_shell_is_not_what_pwd_says() {
    // `PWD` is an ordinary variable a command can set or unset; the saved
    // working directory must still be the one the shell was really in.
    let sb = Sandbox::new();
    std::fs::create_dir(sb.work.join("sub")).unwrap();
    let id = sb.start(&[]);
    let sub = sb.work.join("sub").display().to_string();
    for (command, kept) in [
        ("cd sub; PWD=/etc; export K=1", "1"),
        ("PWD=/; export K=2", "2"),
        ("unset PWD; export K=3", "3"),
    ] {
        let v = sb.exec(&id, command);
        assert_eq!(v["cwd"], sub.as_str(), "{command}: {v}");
        let v = sb.exec(&id, "pwd; echo $K");
        assert_eq!(
            v["stdout"],
            format!("{sub}\n{kept}\n"),
            "after {command}: {v}"
        );
    }
    sb.end(&id);
}
