//! No command run in a session can make that session unusable (issue 10):
//! the next exec works, or says exactly why. Each test breaks the session the
//! way a careless or hostile command would, then checks the next exec.

mod common;

use common::*;
use std::time::{Duration, Instant};

#[test]
fn a_path_without_the_shell_does_not_break_later_execs() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    let v = sb.exec(&id, "export PATH=/nonexistent; cd /tmp");
    assert_eq!(v["exit_code"], 0, "{v}");
    let v = sb.exec(&id, "echo \"$PATH\"; pwd");
    assert_eq!(v["stdout"], "/nonexistent\n/tmp\n", "{v}");
    // The same after a rebuild of the jail.
    sb.kill_holder(&id);
    let v = sb.exec(&id, "export PATH=/usr/bin:/bin; echo back");
    assert_eq!(v["stdout"], "back\n", "{v}");
}

#[test]
fn a_variable_too_big_to_replay_is_reported_and_not_saved() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    sb.exec(&id, "export KEEP=before; cd /tmp");
    let v = sb.exec(
        &id,
        "export BIG=$(head -c 200000 /dev/zero | tr '\\0' x); export KEEP=after; cd /; echo ${#BIG}",
    );
    assert_eq!(v["stdout"], "200000\n", "{v}");
    let warning = v["warning"].as_str().unwrap_or_default();
    assert!(
        warning.contains("BIG") && warning.contains("not saved"),
        "{v}"
    );
    let v = sb.exec(&id, "echo \"[${#BIG}] $KEEP $(pwd)\"");
    assert_eq!(v["stdout"], "[0] before /tmp\n", "{v}");
    assert!(v.get("warning").is_none(), "{v}");
}

/// Code in a live interpreter writes half a frame on its channel to the
/// driver and sleeps: the exec still ends at its timeout, and the next exec
/// runs in a fresh interpreter (said by the JSON of the one that broke it).
#[test]
fn half_a_frame_on_a_live_interpreters_channel_cannot_stall_or_wedge_it() {
    let sb = Sandbox::new();
    let id = sb.start(&["python3"]);
    sb.exec(&id, "x = 5");
    let t = Instant::now();
    let (_, v) = sb.exec_with(
        &id,
        &["--timeout", "2"],
        "import os, time\nos.write(3, b'\\x10\\x00\\x00\\x00{')\ntime.sleep(30)",
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "the timeout was stretched: {v}"
    );
    assert_eq!(v["timed_out"], true, "{v}");
    assert_eq!(v["interpreter_restarted"], true, "{v}");
    let t = Instant::now();
    let v = sb.exec(&id, "print(6 * 7)");
    assert!(t.elapsed() < Duration::from_secs(5), "wedged: {v}");
    assert_eq!(v["stdout"], "42\n", "{v}");
}

#[test]
fn a_bash_env_that_exits_does_not_break_later_execs() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    sb.exec(&id, "echo 'exit 3' > /tmp/x; export BASH_ENV=/tmp/x");
    let v = sb.exec(&id, "echo \"next $BASH_ENV\"");
    assert_eq!(v["stdout"], "next /tmp/x\n", "{v}");
    assert_eq!(v["exit_code"], 0, "{v}");
    // Programs the command starts still see it.
    let v = sb.exec(&id, "bash -c 'echo unreachable'; echo $?");
    assert_eq!(v["stdout"], "3\n", "{v}");
}

#[test]
fn a_cwd_made_unenterable_falls_back_to_the_work_dir() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    sb.exec(&id, "mkdir /tmp/d && cd /tmp/d && chmod 000 /tmp/d");
    let v = sb.exec(&id, "pwd");
    assert_eq!(v["cwd_reset"], true, "{v}");
    assert_eq!(v["stdout"], format!("{}\n", sb.work.display()), "{v}");
}

/// Attack review F6: a rebuild that cannot be done (here a read-write bind
/// whose parent the jail replaced by a symlink, for root's idmapped mount)
/// fails with an error, at once, and leaves the session endable; before, it
/// hung forever holding the session's locks.
#[test]
fn a_rebuild_that_fails_does_not_hang_the_session() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.work.join("x/build")).unwrap();
    let profile = sb.dir.path().join("rw.toml");
    std::fs::write(
        &profile,
        format!(
            "[filesystem]\nread_write = [{:?}]\n",
            sb.work.join("x/build").to_str().unwrap()
        ),
    )
    .unwrap();
    let id = sb.start(&["--profile", profile.to_str().unwrap()]);
    let v = sb.exec(&id, "mv x x2 && ln -s x2 x && echo moved");
    assert_eq!(v["stdout"], "moved\n", "{v}");
    sb.kill_holder(&id);
    let t = Instant::now();
    let r = sb.run(&["exec", &id], b"echo hi");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "the rebuild hung: {r:?}"
    );
    r.assert_error(&[]);
    let t = Instant::now();
    assert_eq!(sb.end(&id).status, 0);
    assert!(t.elapsed() < Duration::from_secs(10));
}

/// Attack review F7: with the work dir below /tmp, the directories that lead
/// to its mount point lie in the session's own /tmp; one replaced by a
/// symlink must not make every later rebuild fail. (With a disk budget, /tmp
/// is a tmpfs that a rebuild starts afresh; on the host disk it persists.)
#[test]
fn a_symlink_in_the_way_of_the_work_dirs_mount_point_is_moved_aside() {
    let sb = Sandbox::new();
    let w = sb.work.to_str().unwrap().to_string();
    let Some(first) = w.strip_prefix("/tmp/").and_then(|r| r.split('/').next()) else {
        eprintln!("skipped: the work dir is not below /tmp");
        return;
    };
    let first = first.to_string();
    let on_disk = sb.dir.path().join("on-disk.toml");
    std::fs::write(&on_disk, "[limits]\ndisk = \"unlimited\"\n").unwrap();
    for (profile, moved) in [
        (
            on_disk.to_str().unwrap(),
            format!("/tmp/{first}.moved-by-delta-sessions\n/tmp/zz\n"),
        ),
        ("default", String::new()),
    ] {
        let id = sb.start(&["--profile", profile]);
        let v = sb.exec(
            &id,
            &format!("cd /; mv /tmp/{first} /tmp/zz && ln -s / /tmp/{first} && echo swapped"),
        );
        assert_eq!(v["stdout"], "swapped\n", "{v}");
        sb.kill_holder(&id);
        let v = sb.exec(
            &id,
            "echo alive; ls -d /tmp/*moved-by-delta-sessions* /tmp/zz 2>/dev/null",
        );
        assert_eq!(v["jail_restarted"], true, "{v}");
        assert_eq!(v["stdout"], format!("alive\n{moved}"), "{profile}: {v}");
        assert_eq!(sb.end(&id).status, 0);
    }
}

/// Second review NEW-5: loader variables that break every program, the
/// session's own shell included, are kept out of that shell's start.
#[test]
fn a_broken_ld_library_path_does_not_break_later_execs() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    sb.exec(
        &id,
        "mkdir -p /tmp/l && cp /bin/true /tmp/l/libc.so.6; export LD_LIBRARY_PATH=/tmp/l",
    );
    let v = sb.exec(&id, "echo \"still $LD_LIBRARY_PATH\"");
    assert_eq!(v["stdout"], "still /tmp/l\n", "{v}");
    let v = sb.exec(&id, "unset LD_LIBRARY_PATH; ls -d /");
    assert_eq!(v["stdout"], "/\n", "{v}");
}

/// Second review NEW-7: a locked directory deep in /tmp (unprivileged
/// callers cannot remove it without opening it up) does not stop removal.
#[test]
fn a_deep_locked_tree_does_not_stop_end_remove() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    let v = sb.exec(
        &id,
        "cd /tmp && for i in $(seq 300); do mkdir a && cd a; done && mkdir x && touch x/f && chmod 000 x && echo ok",
    );
    assert_eq!(v["stdout"], "ok\n", "{v}");
    let r = sb.run(&["end", &id, "--remove"], b"");
    assert_eq!(r.status, 0, "{r:?}");
    assert!(!sb.session_dir(&id).exists());
}

/// Third review N2: names the wrapper relies on, redefined by the session.
#[test]
fn aliases_and_functions_named_like_the_wrappers_steps_do_not_break_it() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    for define in [
        "alias builtin='exit 7;'",
        "exec() { exit 7; }",
        "export LD_TRACE_LOADED_OBJECTS=1",
        "export GLIBC_TUNABLES=glibc.rtld.optional_static_tls=99999999999",
    ] {
        sb.exec(&id, define);
        let v = sb.exec(&id, "echo alive");
        assert_eq!(v["stdout"], "alive\n", "after {define:?}: {v}");
        let v = sb.exec(
            &id,
            "unalias builtin 2>/dev/null; unset LD_TRACE_LOADED_OBJECTS GLIBC_TUNABLES; echo ok",
        );
        assert_eq!(v["stdout"], "ok\n", "after {define:?}: {v}");
    }
}

/// Disk-budget review E: with the work dir below /tmp, `chmod 000 /tmp`
/// made the work dir unenterable too, and every later exec failed ("cannot
/// enter the working directory"), even the `chmod` that would undo it. The
/// command now starts in `/` and can repair it.
#[test]
fn a_cwd_and_work_dir_nobody_can_enter_fall_back_to_the_root() {
    let sb = Sandbox::new();
    if !sb.work.starts_with("/tmp") {
        eprintln!("skipped: the work dir is not below /tmp");
        return;
    }
    let id = sb.start(&[]);
    let v = sb.exec(&id, "chmod 000 /tmp; echo locked");
    assert_eq!(v["stdout"], "locked\n", "{v}");
    let v = sb.exec(&id, "pwd; chmod 700 /tmp; echo fixed");
    assert_eq!(v["exit_code"], 0, "{v}");
    assert_eq!(v["stdout"], "/\nfixed\n", "{v}");
    assert_eq!(v["cwd_reset"], true, "{v}");
    let v = sb.exec(&id, "cd; echo ok");
    assert_eq!(v["stdout"], "ok\n", "{v}");
}
