//! SPEC §6: every malformed input gets exit status 1, exactly one line
//! `Error: …` on stderr that names the problem, nothing on stdout, and changes
//! nothing in the sessions dir (compared byte for byte before and after).

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;

/// Runs `args` with `stdin`, asserts an error mentioning every needle, and that
/// the sessions dir is exactly as before. Returns the message.
fn expect_error(sb: &Sandbox, args: &[&str], stdin: &[u8], needles: &[&str]) -> String {
    let before = sb.snapshot();
    let r = sb.run(args, stdin);
    let msg = r.assert_error(needles);
    assert_same(&before, &sb.snapshot(), &format!("{args:?}"));
    msg
}

/// A sandbox with one live session that has run one command.
fn with_session() -> (Sandbox, String) {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    sb.exec(&id, "export A=1");
    (sb, id)
}

#[test]
fn error_shape_checker_can_fail() {
    // assert_error must reject a success and a multi-line message.
    let ok = Run {
        status: 0,
        stdout: "{}".into(),
        stderr: String::new(),
    };
    assert!(std::panic::catch_unwind(|| ok.assert_error(&[])).is_err());
    let two = Run {
        status: 1,
        stdout: String::new(),
        stderr: "Error: a\nmore\n".into(),
    };
    assert!(std::panic::catch_unwind(|| two.assert_error(&[])).is_err());
    let good = Run {
        status: 1,
        stdout: String::new(),
        stderr: "Error: Session sess_x not found\n".into(),
    };
    assert!(std::panic::catch_unwind(|| good.assert_error(&["missing"])).is_err());
    good.assert_error(&["not found"]);
}

#[test]
fn unknown_session_id() {
    let (sb, _id) = with_session();
    let unknown = "sess_000000000000";
    expect_error(&sb, &["exec", unknown], b"echo hi", &[unknown, "not found"]);
    expect_error(&sb, &["end", unknown], b"", &[unknown, "not found"]);
    expect_error(
        &sb,
        &["end", unknown, "--remove"],
        b"",
        &[unknown, "not found"],
    );
    expect_error(&sb, &["exec", unknown, "--raw"], b"echo hi", &["not found"]);
}

#[test]
fn malformed_session_ids() {
    let (sb, id) = with_session();
    let upper = id.to_uppercase();
    let upper_hex = format!("sess_{}", id[5..].to_uppercase());
    let too_long = format!("{id}0");
    // A real directory reachable through the bad id must not be used either.
    std::fs::create_dir(sb.sessions.join("x")).unwrap();
    let dotdot = format!("../.sessions/{id}");
    let abs = sb.session_dir(&id).to_str().unwrap().to_string();
    for bad in [
        "../x",
        "/etc",
        "",
        "sess_XYZ",
        "sess_0123",
        "x",
        upper.as_str(),
        upper_hex.as_str(),
        too_long.as_str(),
        dotdot.as_str(),
        abs.as_str(),
        "sess_0123456789a/",
        "sess_0123456789ab\n",
    ] {
        for cmd in ["exec", "end"] {
            let msg = expect_error(&sb, &[cmd, bad], b"echo hi", &[]);
            let lower = msg.to_lowercase();
            assert!(
                lower.contains("invalid session id") || lower.contains("not found"),
                "{cmd} {bad:?}: {msg}"
            );
        }
    }
}

#[test]
fn missing_sessions_dir() {
    let sb = Sandbox::new();
    assert!(!sb.sessions.exists());
    let id = "sess_0123456789ab";
    expect_error(&sb, &["exec", id], b"echo hi", &["does not exist"]);
    expect_error(&sb, &["end", id], b"", &["does not exist"]);
    expect_error(&sb, &["cleanup"], b"", &["does not exist"]);
    // list: documented as `[]`, and it does not create the directory.
    let r = sb.run(&["list"], b"");
    assert_eq!((r.status, r.stdout.as_str()), (0, "[]\n"), "{r:?}");
    let r = sb.run(&["list", "--all"], b"");
    assert_eq!((r.status, r.stdout.as_str()), (0, "[]\n"), "{r:?}");
    assert!(!sb.sessions.exists(), "list created the sessions dir");
}

/// Runs `f` with the sessions dir at mode 000, restoring it afterwards.
fn with_unreadable_sessions_dir(sb: &Sandbox, f: impl FnOnce()) {
    let set = |mode| {
        std::fs::set_permissions(&sb.sessions, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    set(0o000);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    set(0o700);
    if let Err(e) = r {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn unreadable_sessions_dir_list() {
    if is_root() {
        eprintln!("skipped as root: root reads a mode-000 directory anyway");
        return;
    }
    let (sb, _id) = with_session();
    let before = sb.snapshot();
    with_unreadable_sessions_dir(&sb, || {
        sb.run(&["list"], b"").assert_error(&["permission denied"]);
        sb.run(&["cleanup"], b"")
            .assert_error(&["permission denied"]);
    });
    assert_same(&before, &sb.snapshot(), "unreadable sessions dir");
}

#[test]
fn unreadable_sessions_dir_exec_end() {
    if is_root() {
        eprintln!("skipped as root: root reads a mode-000 directory anyway");
        return;
    }
    let (sb, id) = with_session();
    let before = sb.snapshot();
    with_unreadable_sessions_dir(&sb, || {
        sb.run(&["exec", &id], b"echo hi")
            .assert_error(&["permission denied"]);
        sb.run(&["end", &id], b"")
            .assert_error(&["permission denied"]);
    });
    assert_same(&before, &sb.snapshot(), "unreadable sessions dir");
}

#[test]
fn corrupt_metadata_json() {
    let (sb, id) = with_session();
    let path = sb.session_dir(&id).join("metadata.json");
    let saved = std::fs::read(&path).unwrap();
    for garbage in [&b"{\"session_id\": tru"[..], b"", b"[]", b"{}", b"\xff\xfe"] {
        std::fs::write(&path, garbage).unwrap();
        expect_error(&sb, &["exec", &id], b"echo hi", &["metadata.json", &id]);
        assert_eq!(std::fs::read(&path).unwrap(), garbage, "not overwritten");
    }
    std::fs::write(&path, saved.clone()).unwrap();
    // Restored, the session works again.
    assert_eq!(sb.exec(&id, "echo $A")["stdout"], "1\n");
    // `end` of a corrupt session still stops it (its holder is known from
    // the state dir), says what is wrong, and leaves the file as it is.
    let (pid, st) = sb.holder(&id).unwrap();
    std::fs::write(&path, b"{}").unwrap();
    let r = sb.run(&["end", &id], b"");
    r.assert_error(&["metadata.json", "stopped"]);
    assert_eq!(std::fs::read(&path).unwrap(), b"{}");
    assert!(
        wait_until(std::time::Duration::from_secs(5), || proc_start_time(pid)
            != Some(st)),
        "the corrupt session's holder still runs"
    );
    std::fs::write(&path, saved).unwrap();
    sb.run(&["exec", &id], b"echo hi")
        .assert_error(&[&id, "ended"]);
}

#[test]
fn corrupt_state_json() {
    let (sb, id) = with_session();
    let path = sb.session_dir(&id).join("state.json");
    let saved = std::fs::read(&path).unwrap();
    for garbage in [&b"nope"[..], b"{\"cwd\": 5}", b""] {
        std::fs::write(&path, garbage).unwrap();
        expect_error(&sb, &["exec", &id], b"echo hi", &["state.json"]);
        assert_eq!(std::fs::read(&path).unwrap(), garbage, "not overwritten");
    }
    std::fs::write(&path, saved).unwrap();
    assert_eq!(sb.exec(&id, "echo $A")["stdout"], "1\n");
}

/// profile.json is the readable record only: the session keeps the profile
/// it was started with (kept in the state dir), even across a jail rebuild.
#[test]
fn a_corrupt_or_rewritten_profile_json_changes_nothing() {
    let (sb, id) = with_session();
    let path = sb.session_dir(&id).join("profile.json");
    std::fs::write(&path, b"{\"name\": ").unwrap();
    let v = sb.exec(&id, "echo hi");
    assert_eq!(v["stdout"], "hi\n", "{v}");
    // A profile.json that asks for no jail at all, then a rebuild.
    let mut p: serde_json::Value = serde_json::from_str(
        &String::from_utf8(
            sb.run(&["profiles", "show", "unconfined"], b"")
                .stdout
                .into_bytes(),
        )
        .unwrap(),
    )
    .unwrap();
    p["name"] = "default".into();
    std::fs::write(&path, serde_json::to_vec(&p).unwrap()).unwrap();
    sb.kill_holder(&id);
    let v = sb.exec(&id, "ls -d /root 2>&1; cat /proc/1/comm");
    assert_eq!(v["jail_restarted"], true, "{v}");
    assert_eq!(
        v["stdout"], "ls: cannot access '/root': No such file or directory\nds-holder\n",
        "the rebuilt jail is the one of the profile given at start: {v}"
    );
}

#[test]
fn bad_profile_name() {
    let (sb, _id) = with_session();
    expect_error(
        &sb,
        &["start", "--profile", "nosuch"],
        b"",
        &["nosuch", "profile"],
    );
    expect_error(&sb, &["start", "--profile", ""], b"", &["profile"]);
    expect_error(&sb, &["profiles", "show", "nosuch"], b"", &["nosuch"]);
}

#[test]
fn profile_file_with_unknown_key() {
    let (sb, _id) = with_session();
    let file = sb.dir.path().join("bad-profile.toml");
    std::fs::write(&file, "bogus = 1\n").unwrap();
    let f = file.to_str().unwrap();
    expect_error(
        &sb,
        &["start", "--profile", f],
        b"",
        &["bad-profile.toml", "bogus"],
    );
    expect_error(
        &sb,
        &["profiles", "show", f],
        b"",
        &["bad-profile.toml", "bogus"],
    );
}

#[test]
fn invalid_utf8_on_stdin() {
    let (sb, id) = with_session();
    expect_error(&sb, &["exec", &id], b"echo \xff\xfe", &["utf-8"]);
    expect_error(&sb, &["exec", &id, "--raw"], b"echo \xc3", &["utf-8"]);
}

#[test]
fn nul_byte_in_command() {
    let (sb, id) = with_session();
    expect_error(&sb, &["exec", &id], b"echo a\0b", &["nul"]);
}

#[test]
fn huge_command_on_stdin() {
    let (sb, id) = with_session();
    let mut cmd = b"echo ".to_vec();
    cmd.resize(4 * 1024 * 1024 + 100, b'x');
    expect_error(&sb, &["exec", &id], &cmd, &["too large"]);
    // Just below the limit is accepted (as a comment, so bash has little to do).
    let mut ok = b"true #".to_vec();
    ok.resize(4 * 1024 * 1024 - 16, b'x');
    let r = sb.run(&["exec", &id], &ok);
    assert_eq!(r.status, 0, "a command under 4 MiB runs: {}", r.stderr);
}

#[test]
fn empty_or_blank_stdin() {
    let (sb, id) = with_session();
    for input in [&b""[..], b"\n", b"   \n\t  \n"] {
        expect_error(&sb, &["exec", &id], input, &["no command provided"]);
    }
}

#[test]
fn work_dir_problems() {
    let (sb, _id) = with_session();
    let missing = sb.work.join("does-not-exist");
    let m = missing.to_str().unwrap();
    expect_error(&sb, &["start", "--work-dir", m], b"", &["does-not-exist"]);
    let file = sb.work.join("a-file");
    std::fs::write(&file, "x").unwrap();
    expect_error(
        &sb,
        &["start", "--work-dir", file.to_str().unwrap()],
        b"",
        &["a-file"],
    );
    expect_error(&sb, &["start", "--work-dir", "/"], b"", &["work dir"]);
}

#[test]
fn start_with_missing_command() {
    let (sb, _id) = with_session();
    expect_error(
        &sb,
        &["start", "no-such-program-xyz"],
        b"",
        &["no-such-program-xyz"],
    );
}

#[test]
fn exec_on_ended_session() {
    let (sb, id) = with_session();
    assert_eq!(sb.end(&id).status, 0);
    expect_error(&sb, &["exec", &id], b"echo hi", &[&id, "ended"]);
    expect_error(&sb, &["exec", &id, "--raw"], b"echo hi", &["ended"]);
}

#[test]
fn bad_timeouts() {
    let (sb, id) = with_session();
    for bad in ["0", "abc", "", "1x", "nan", "inf", "99999999999", "0ms"] {
        expect_error(
            &sb,
            &["exec", &id, "--timeout", bad],
            b"echo hi",
            &["timeout"],
        );
    }
    expect_error(
        &sb,
        &["exec", &id, "--timeout=-1"],
        b"echo hi",
        &["timeout"],
    );
    // `--timeout -1` (separate word) is refused too; clap's message names `-1`.
    expect_error(&sb, &["exec", &id, "--timeout", "-1"], b"echo hi", &["-1"]);
}

#[test]
fn bad_env_option() {
    let (sb, _id) = with_session();
    expect_error(&sb, &["start", "--env", "NOEQUALS"], b"", &["NOEQUALS"]);
    expect_error(&sb, &["start", "--env", "=value"], b"", &["env"]);
}

#[test]
fn unknown_subcommand_and_option() {
    let (sb, id) = with_session();
    expect_error(&sb, &["frobnicate"], b"", &["frobnicate"]);
    expect_error(&sb, &["exec", &id, "--bogus"], b"echo hi", &["--bogus"]);
}

/// Issue 11: the smaller input checks.
#[test]
fn a_timeout_with_spaces_is_refused() {
    let (sb, id) = with_session();
    for t in ["1 s", "1s ", " 1s", "1\ts"] {
        expect_error(
            &sb,
            &["exec", &id, "--timeout", t],
            b"true",
            &["--timeout", "no spaces"],
        );
    }
}

#[test]
fn a_profile_description_with_a_control_character_is_refused() {
    let (sb, _id) = with_session();
    let file = sb.dir.path().join("nul.toml");
    std::fs::write(&file, "description = \"a\\u0000b\"\n").unwrap();
    let f = file.to_str().unwrap();
    expect_error(
        &sb,
        &["start", "--profile", f],
        b"",
        &["description", "control"],
    );
    expect_error(&sb, &["profiles", "show", f], b"", &["description"]);
}

#[test]
fn profiles_show_refuses_a_bind_that_start_would_refuse() {
    let (sb, _id) = with_session();
    let file = sb.dir.path().join("bind.toml");
    std::fs::write(
        &file,
        "[filesystem]\nread_only = [\"/nonexistent-ds-bind\"]\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    expect_error(
        &sb,
        &["profiles", "show", f],
        b"",
        &["/nonexistent-ds-bind"],
    );
    expect_error(
        &sb,
        &["start", "--profile", f],
        b"",
        &["/nonexistent-ds-bind"],
    );
}

/// The seed's documented form: global options after `start`'s command.
#[test]
fn sessions_dir_after_the_start_command_is_ours_not_the_commands() {
    let sb = Sandbox::new();
    let dir = sb.dir.path().join("elsewhere");
    let mut c = std::process::Command::new(bin());
    c.current_dir(&sb.work)
        .env_remove("DELTA_SESSIONS_DIR")
        .args(["start", "bash", "--sessions-dir", dir.to_str().unwrap()]);
    let r = run_command(c, b"");
    assert_eq!(r.status, 0, "{r:?}");
    let id = r.json()["session_id"].as_str().unwrap().to_string();
    assert!(dir.join(&id).is_dir(), "not created in --sessions-dir");
    assert!(
        !sb.work.join(".sessions").exists(),
        "created in ./.sessions"
    );
    let mut c = std::process::Command::new(bin());
    c.current_dir(&sb.work).args([
        "end",
        &id,
        "--remove",
        &format!("--sessions-dir={}", dir.display()),
    ]);
    assert_eq!(run_command(c, b"").status, 0);
    // After `--`, it is the command's.
    let r = sb.run(&["start", "--", "bash", "--sessions-dir", "x"], b"");
    assert_eq!(r.status, 0, "{r:?}");
    let id = r.json()["session_id"].as_str().unwrap().to_string();
    assert!(sb.session_dir(&id).is_dir());
    assert_eq!(sb.run(&["end", &id, "--remove"], b"").status, 0);
}

#[test]
fn short_v_prints_the_version_and_a_missing_id_is_named() {
    let sb = Sandbox::new();
    for flag in ["-v", "-V", "--version"] {
        let r = sb.run(&[flag], b"");
        assert_eq!(r.status, 0, "{r:?}");
        assert!(r.stdout.starts_with("delta-sessions "), "{r:?}");
    }
    for cmd in ["exec", "end"] {
        sb.run(&[cmd], b"true").assert_error(&["SESSION_ID"]);
    }
}

/// `doctor` checks the state dir too: one open to others is refused by
/// every command, so doctor says so and what to do.
#[test]
fn doctor_reports_an_unusable_state_dir() {
    let sb = Sandbox::new();
    let open = sb.dir.path().join("open-state");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let mut c = sb.command();
    c.arg("doctor").env("DELTA_SESSIONS_STATE_DIR", &open);
    let r = run_command(c, b"");
    assert_eq!(r.status, 1, "{r:?}");
    assert!(r.stdout.contains("FAIL state dir"), "{r:?}");
    assert!(r.stdout.contains("DELTA_SESSIONS_STATE_DIR"), "{r:?}");
    // And start refuses it, saying the same.
    let mut c = sb.command();
    c.arg("start").env("DELTA_SESSIONS_STATE_DIR", &open);
    run_command(c, b"").assert_error(&["state dir", "closed to others"]);
}

/// A state dir that is a symlink is refused (another user could point a
/// well-known name at a directory of theirs and capture every socket).
#[test]
fn a_state_dir_that_is_a_symlink_is_refused() {
    let sb = Sandbox::new();
    let real = sb.dir.path().join("real-state");
    std::fs::create_dir(&real).unwrap();
    std::fs::set_permissions(&real, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let link = sb.dir.path().join("state-link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let mut c = sb.command();
    c.arg("start").env("DELTA_SESSIONS_STATE_DIR", &link);
    run_command(c, b"").assert_error(&["state dir", "symlink"]);
    assert_eq!(std::fs::read_dir(&real).unwrap().count(), 0);
    assert!(!sb.work.join(".sessions").exists());
}
