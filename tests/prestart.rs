//! Black-box tests that every bash exec behaves like a fresh `bash` started at
//! exec time, from the state the previous exec left.
//!
//! They pin the behaviour of a shell started for each exec, so that a shell
//! started ahead of time (before the exec arrives) is caught when it differs:
//! started from an older state, in a directory that was replaced or can no
//! longer be entered, with a clock, `BASH_ENV`, `OLDPWD`, `TMOUT`, limits or
//! a program of its own, or left over after a timeout or a killed caller.
//! Changes "between execs" are made either by a background job of the
//! session, after a short delay, or by the test after [`settle`], so that
//! they land after a shell for the next exec could have been started.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// `exec ID` that must succeed (exit 0, no timeout); returns the JSON.
fn ok(sb: &Sandbox, id: &str, cmd: &str) -> Value {
    let v = sb.exec(id, cmd);
    assert_eq!(v["exit_code"], 0, "{cmd:?} failed: {v}");
    assert_eq!(v["timed_out"], false, "{cmd:?}: {v}");
    v
}

/// The stdout of an `exec` that must succeed.
fn out(sb: &Sandbox, id: &str, cmd: &str) -> String {
    ok(sb, id, cmd)["stdout"].as_str().unwrap().to_string()
}

/// `exec ID --timeout SECS` of a command that must time out.
fn exec_timing_out(sb: &Sandbox, id: &str, secs: &str, cmd: &str) -> Value {
    let (status, v) = sb.exec_with(id, &["--timeout", secs], cmd);
    assert_eq!(status, 124, "{v}");
    assert_eq!(v["timed_out"], true, "{v}");
    assert_eq!(v["exit_code"], 124, "{v}");
    v
}

/// Waits (up to 10 s) for a file that a background process of the session
/// creates once it has done its work.
fn wait_for_file(path: &Path) {
    assert!(
        wait_until(Duration::from_secs(10), || path.exists()),
        "{path:?} never appeared"
    );
}

/// Gives a shell that may be started ahead of time for the next exec (right
/// after an exec returns) time to get ready, so that a change the test makes
/// next happens between that start and the next exec.
fn settle() {
    std::thread::sleep(Duration::from_millis(200));
}

fn work(sb: &Sandbox) -> String {
    sb.work.to_str().unwrap().to_string()
}

fn cwd_reset(v: &Value) -> bool {
    v.get("cwd_reset").and_then(Value::as_bool).unwrap_or(false)
}

/// Prints A, HOME_X, whether f and ll exist (and what they print), and pwd.
const SHOW_STATE: &str = r#"echo "A=${A-unset} HX=${HOME_X-unset}"
if declare -F f >/dev/null; then f; else echo no-f; fi
if alias ll >/dev/null 2>&1; then ll; else echo no-ll; fi
pwd"#;

#[test]
fn state_changes_are_seen_by_the_very_next_exec_round_after_round() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    let w = work(&sb);
    ok(&sb, &id, "export HOME_X=initial");
    for round in 0..4 {
        // Set everything.
        let set = format!(
            "export A={round}; unset HOME_X; f(){{ echo fn{round}; }}; alias ll='echo al{round}'; \
             mkdir -p sub{round}; cd sub{round}"
        );
        ok(&sb, &id, &set);
        assert_eq!(
            out(&sb, &id, SHOW_STATE),
            format!("A={round} HX=unset\nfn{round}\nal{round}\n{w}/sub{round}\n"),
            "round {round}: the exec after the one that set the state"
        );
        // Change everything again.
        let change =
            format!("export A=x{round}; export HOME_X=hx{round}; unset -f f; unalias ll; cd ..");
        ok(&sb, &id, &change);
        assert_eq!(
            out(&sb, &id, SHOW_STATE),
            format!("A=x{round} HX=hx{round}\nno-f\nno-ll\n{w}\n"),
            "round {round}: the exec after the one that changed the state"
        );
        // Twice in a row: the second reader sees the same (nothing was changed).
        assert_eq!(
            out(&sb, &id, SHOW_STATE),
            format!("A=x{round} HX=hx{round}\nno-f\nno-ll\n{w}\n"),
            "round {round}: an exec that changed nothing keeps the state"
        );
    }
}

#[test]
fn state_of_an_exec_that_called_exit_is_not_carried_but_a_failing_one_is() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    let w = work(&sb);
    ok(&sb, &id, "export A=keep; f(){ echo keep-fn; }");
    let v = sb.exec(
        &id,
        "export A=lost; f(){ echo lost-fn; }; mkdir -p sub; cd sub; exit 3",
    );
    assert_eq!(v["exit_code"], 3, "{v}");
    assert_eq!(
        out(&sb, &id, "echo $A; f; pwd"),
        format!("keep\nkeep-fn\n{w}\n")
    );
    // A command that replaces the shell or kills it leaves no state either.
    let v = sb.exec(&id, "export A=lost2; cd sub; exec true");
    assert_eq!(v["exit_code"], 0, "{v}");
    assert_eq!(out(&sb, &id, "echo $A; pwd"), format!("keep\n{w}\n"));
    let v = sb.exec(&id, "export A=lost3; cd sub; kill -9 $$");
    assert_eq!(v["exit_code"], 137, "{v}");
    assert_eq!(out(&sb, &id, "echo $A; pwd"), format!("keep\n{w}\n"));
    let v = sb.exec(&id, "export A=failed; cd sub; false");
    assert_eq!(v["exit_code"], 1, "{v}");
    assert_eq!(out(&sb, &id, "echo $A; pwd"), format!("failed\n{w}/sub\n"));
}

/// Asserts two multi-line outputs are equal, naming the first line that differs.
fn assert_same_lines(got: &str, want: &str, what: &str) {
    for (n, (g, w)) in got.lines().zip(want.lines()).enumerate() {
        assert_eq!(g, w, "{what}: line {} differs\nwhole output:\n{got}", n + 1);
    }
    assert_eq!(got, want, "{what}: different length");
}

/// What one shell process has of its own, printed from inside the command.
/// `$_` comes first: at the start of the command it still holds the last
/// word the session's wrapper ran.
const SHELL_CONTEXT: &str = r#"echo "underscore=[$_]"
umask; echo "flags=$-"; shopt -p; set +o
trap -p; echo "V=${V-unset} W=${W-unset}"; echo "lineno=$LINENO shlvl=$SHLVL zero=$0 args=$#"
dirs -p; ulimit -S -a; nice; compgen -v
echo fds:; ls /proc/$$/fd; echo :fds; readlink /proc/$$/fd/0
# builtins only: a forked grep could read bash's mask while bash forks it
while IFS= read -r l; do case $l in SigBlk:*|SigIgn:*|Cap[IPEBA]??:*|NoNewPrivs:*|Seccomp:*) echo "$l";; esac; done < /proc/$$/status
cat /proc/$$/cgroup"#;

#[test]
fn what_a_fresh_bash_does_not_keep_is_not_kept() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    // The first exec of a session always starts a shell of its own.
    let baseline = out(&sb, &id, SHELL_CONTEXT);
    let fds: Vec<&str> = baseline
        .lines()
        .skip_while(|l| *l != "fds:")
        .skip(1)
        .take_while(|l| *l != ":fds")
        .collect();
    for std in ["0", "1", "2"] {
        assert!(fds.contains(&std), "fd {std} is open: {baseline}");
    }
    assert!(
        baseline.contains("\n/dev/null\n"),
        "stdin is /dev/null: {baseline}"
    );
    for internal in ["3", "4", "5", "6"] {
        assert!(
            !fds.contains(&internal),
            "the command does not see the wrapper's fd {internal}: {baseline}"
        );
    }
    assert_same_lines(
        &out(&sb, &id, SHELL_CONTEXT),
        &baseline,
        "the second exec starts like the first",
    );
    for round in 0..3 {
        ok(
            &sb,
            &id,
            "umask 077; set -f; set -u; shopt -s nullglob extglob; trap 'echo t' USR1; \
             V=unexported; declare -i W=3; pushd -n /tmp >/dev/null; ulimit -S -n 100; \
             renice -n 5 -p $$ >/dev/null; set -- a b c",
        );
        assert_eq!(out(&sb, &id, SHELL_CONTEXT), baseline, "round {round}");
        // And after an exec that changed nothing at all.
        assert_eq!(
            out(&sb, &id, SHELL_CONTEXT),
            baseline,
            "round {round}, again"
        );
    }
}

#[test]
fn tmout_does_not_cut_the_wait_for_the_next_command() {
    // TMOUT is the default timeout of `read`: a shell waiting for its command
    // must not give up, however long the caller takes. A shell whose wait
    // ends just as the command arrives runs nothing; that moment is narrow
    // (a millisecond or two), so the pauses between execs sweep, in steps of
    // half a millisecond, across the time TMOUT runs out after an exec.
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    ok(&sb, &id, "export TMOUT=0.05");
    let pauses = [0, 120_000]
        .into_iter()
        .chain((30_000..=70_000).step_by(500));
    let mut failed = Vec::new();
    for (round, pause_us) in pauses.enumerate() {
        std::thread::sleep(Duration::from_micros(pause_us));
        let v = sb.exec(&id, &format!("echo r{round} $TMOUT"));
        if v["stdout"] != format!("r{round} 0.05\n").as_str() || v["exit_code"] != 0 {
            failed.push(format!("after {pause_us} us: {v}"));
        }
    }
    assert!(
        failed.is_empty(),
        "the command did not run:\n{}",
        failed.join("\n")
    );
}

#[test]
fn a_cwd_that_cannot_be_entered_any_more_falls_back_to_the_work_dir() {
    // As for a deleted cwd (issue 10: no command may strand its session):
    // the pre-started shell must not run in it either.
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    let w = work(&sb);
    let p = sb.work.join("p");
    for round in 0..2 {
        // Made unenterable by the session itself, after the exec returned.
        ok(
            &sb,
            &id,
            &format!(
                "export P={round}; mkdir -p p; cd p; (sleep 0.3; chmod 000 {w}/p; \
                 touch {w}/chmod-{round}) >/dev/null 2>&1 &"
            ),
        );
        wait_for_file(&sb.work.join(format!("chmod-{round}")));
        let v = sb.exec(&id, "echo \"ran $P\"; pwd");
        assert_eq!(v["exit_code"], 0, "round {round}: {v}");
        assert_eq!(v["cwd_reset"], true, "{v}");
        assert_eq!(v["stdout"], format!("ran {round}\n{w}\n"), "{v}");
        settle();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(out(&sb, &id, "pwd"), format!("{w}\n"));
    }
}

#[test]
fn oldpwd_is_checked_when_the_exec_starts() {
    // bash keeps an inherited OLDPWD only when it names a directory at the
    // moment bash starts; otherwise OLDPWD is exported but unset.
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    let w = work(&sb);
    let od = sb.work.join("od");
    let show = r#"echo "[${OLDPWD-unset}]""#;
    for round in 0..2 {
        assert_eq!(
            out(&sb, &id, "mkdir -p od; cd od; cd ..; echo \"[$OLDPWD]\""),
            format!("[{w}/od]\n")
        );
        // Removed between execs: from the host, then by a background job.
        if round == 0 {
            settle();
            std::fs::remove_dir(&od).unwrap();
        } else {
            ok(
                &sb,
                &id,
                &format!("(sleep 0.3; rmdir {w}/od; touch {w}/od-gone) >/dev/null 2>&1 &"),
            );
            wait_for_file(&sb.work.join("od-gone"));
        }
        assert_eq!(out(&sb, &id, show), "[unset]\n", "round {round}");
        let v = sb.exec(&id, "cd -");
        assert_eq!(v["exit_code"], 1, "{v}");
        assert_eq!(v["stderr"], "bash: line 1: cd: OLDPWD not set\n", "{v}");
        // (An OLDPWD found unset is not saved: it stays unset.)
        settle();
        std::fs::create_dir(&od).unwrap();
        assert_eq!(out(&sb, &id, show), "[unset]\n", "round {round}");
        std::fs::remove_dir(&od).unwrap();
        // Missing when the exec that set it ended, made between execs: kept.
        assert_eq!(
            out(
                &sb,
                &id,
                "mkdir od; cd od; cd ..; rmdir od; echo \"[$OLDPWD]\""
            ),
            format!("[{w}/od]\n")
        );
        settle();
        std::fs::create_dir(&od).unwrap();
        assert_eq!(out(&sb, &id, show), format!("[{w}/od]\n"), "round {round}");
        settle();
        std::fs::remove_dir(&od).unwrap();
        assert_eq!(out(&sb, &id, show), "[unset]\n", "round {round}");
    }
}

#[test]
fn the_shell_is_looked_up_on_the_session_path_at_each_exec() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    let bash = out(&sb, &id, "type -P bash");
    let bash = bash.trim();
    assert!(bash.starts_with('/'), "{bash:?}");
    assert_eq!(
        out(
            &sb,
            &id,
            "mkdir -p \"$PWD/bin\"; export PATH=\"$PWD/bin:$PATH\"; echo set"
        ),
        "set\n"
    );
    // In the work dir: the host can write there between execs.
    let fake = sb.work.join("bin/bash");
    for round in 0..2 {
        // A `bash` put first on the session's PATH between execs runs the next exec.
        settle();
        std::fs::write(
            &fake,
            format!("#!/bin/sh\necho wrapped{round} >&2\nexec {bash} \"$@\"\n"),
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let v = ok(&sb, &id, &format!("echo cmd{round}; export Q={round}"));
        assert_eq!(v["stdout"], format!("cmd{round}\n"), "{v}");
        assert_eq!(v["stderr"], format!("wrapped{round}\n"), "{v}");
        settle();
        std::fs::remove_file(&fake).unwrap();
        let v = ok(&sb, &id, "echo $Q");
        assert_eq!(v["stdout"], format!("{round}\n"), "{v}");
        assert_eq!(v["stderr"], "", "the real bash again: {v}");
    }
}

#[test]
fn late_output_of_background_jobs_reaches_no_later_exec() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    for round in 0..3 {
        let t = Instant::now();
        // Not redirected: the job holds the exec's stdout and stderr.
        let v = ok(
            &sb,
            &id,
            &format!(
                "(sleep 0.3; echo late-out{round}; echo late-err{round} >&2) & echo now{round}"
            ),
        );
        assert_eq!(v["stdout"], format!("now{round}\n"), "{v}");
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "the job does not hold exec up"
        );
        std::thread::sleep(Duration::from_millis(600));
        let v = ok(&sb, &id, &format!("echo next{round}"));
        assert_eq!(v["stdout"], format!("next{round}\n"), "{v}");
        assert_eq!(v["stderr"], "", "{v}");
    }
}

#[test]
fn a_long_command_then_a_short_one() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    for round in 0..3 {
        let long = format!(
            "echo long{round} # {}\n: {}",
            "x".repeat(300_000),
            "y".repeat(300_000)
        );
        assert_eq!(out(&sb, &id, &long), format!("long{round}\n"));
        assert_eq!(
            out(&sb, &id, "echo short"),
            "short\n",
            "nothing of the long one trails"
        );
        let v = sb.exec(&id, "exit 7");
        assert_eq!(v["exit_code"], 7);
    }
}

#[test]
fn a_restarted_jail_starts_its_shells_from_the_saved_state() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    let w = work(&sb);
    for round in 0..2 {
        ok(
            &sb,
            &id,
            &format!("export J={round}; f(){{ echo jf{round}; }}; mkdir -p j{round}; cd j{round}"),
        );
        sb.kill_holder(&id);
        let v = ok(&sb, &id, "echo $J; f; pwd; cd ..");
        assert_eq!(v["jail_restarted"], true, "{v}");
        assert_eq!(
            v["stdout"],
            format!("{round}\njf{round}\n{w}/j{round}\n"),
            "{v}"
        );
        let v = ok(&sb, &id, "echo $J; f; pwd");
        assert_eq!(v["jail_restarted"], false, "{v}");
        assert_eq!(v["stdout"], format!("{round}\njf{round}\n{w}\n"), "{v}");
    }
}

#[test]
fn a_work_dir_replaced_between_execs_is_entered_afresh() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    let w = work(&sb);
    let d = sb.work.join("d");
    for round in 0..2 {
        let flag = sb.work.join(format!("d-replaced-{round}"));
        let v = ok(
            &sb,
            &id,
            &format!(
                "mkdir -p d; cd d; (sleep 0.4; cd /; rm -rf {w}/d; mkdir {w}/d; \
                 touch {w}/d-replaced-{round}) >/dev/null 2>&1 &"
            ),
        );
        assert_eq!(v["cwd"], format!("{w}/d"), "{v}");
        wait_for_file(&flag);
        let v = ok(&sb, &id, &format!("touch here{round}; pwd"));
        assert_eq!(v["stdout"], format!("{w}/d\n"), "{v}");
        assert_eq!(v["cwd"], format!("{w}/d"), "{v}");
        assert!(!cwd_reset(&v), "the directory exists again: {v}");
        assert!(
            d.join(format!("here{round}")).is_file(),
            "the command ran in the new {d:?}, not in the deleted one"
        );
        ok(&sb, &id, "cd ..");
    }
    // The same, replaced from the host.
    ok(&sb, &id, "cd d");
    settle();
    std::fs::remove_dir_all(&d).unwrap();
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
    let v = ok(&sb, &id, "touch host-replaced; pwd");
    assert_eq!(v["stdout"], format!("{w}/d\n"), "{v}");
    assert!(d.join("host-replaced").is_file());
}

#[test]
fn a_saved_cwd_deleted_between_execs_resets_to_the_work_dir() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    let w = work(&sb);
    for round in 0..2 {
        let v = ok(
            &sb,
            &id,
            &format!(
                "export R={round}; mkdir -p gone; cd gone; (sleep 0.3; cd /; rm -rf {w}/gone; \
                 touch {w}/gone-{round}) >/dev/null 2>&1 &"
            ),
        );
        assert_eq!(v["cwd"], format!("{w}/gone"), "{v}");
        wait_for_file(&sb.work.join(format!("gone-{round}")));
        let v = ok(&sb, &id, &format!("pwd; echo $R; touch reset-{round}"));
        assert_eq!(v["stdout"], format!("{w}\n{round}\n"), "{v}");
        assert_eq!(v["cwd"], w.as_str(), "{v}");
        assert!(cwd_reset(&v), "cwd_reset is reported: {v}");
        assert!(sb.work.join(format!("reset-{round}")).is_file());
        assert!(!sb.work.join("gone").exists());
        // The next exec starts normally in the work dir.
        let v = ok(&sb, &id, "pwd");
        assert_eq!(v["stdout"], format!("{w}\n"), "{v}");
        assert!(!cwd_reset(&v), "reported once: {v}");
    }
}

#[test]
fn seconds_count_from_the_start_of_the_exec() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    for round in 0..2 {
        ok(&sb, &id, "true");
        std::thread::sleep(Duration::from_millis(3000));
        let s = out(&sb, &id, "echo $SECONDS");
        let n: u64 = s.trim().parse().unwrap_or_else(|_| panic!("{s:?}"));
        assert!(
            n < 2,
            "round {round}: $SECONDS is {n} at the start of an exec"
        );
    }
}

#[test]
fn bash_env_is_passed_on_but_never_read_by_the_sessions_own_shell() {
    // A BASH_ENV that exits would otherwise end every later exec before
    // its command (issue 10): the session's shell skips it, the programs
    // it starts read it, whether the shell was pre-started or not.
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    assert_eq!(
        out(
            &sb,
            &id,
            "export BASH_ENV=$HOME/env.sh; echo 'echo from-bash-env' > $HOME/env.sh; echo set"
        ),
        "set\n"
    );
    for _ in 0..2 {
        assert_eq!(out(&sb, &id, "echo cmd"), "cmd\n");
        settle();
    }
    assert_eq!(
        out(&sb, &id, "echo \"$BASH_ENV\" | sed 's,.*/,,'"),
        "env.sh\n"
    );
    assert_eq!(out(&sb, &id, "bash -c 'echo sub'"), "from-bash-env\nsub\n");
    // Quoting survives the prelude.
    ok(
        &sb,
        &id,
        "export BASH_ENV=\"$HOME/it's here.sh\"; echo 'echo quoted' > \"$BASH_ENV\"",
    );
    settle();
    assert_eq!(out(&sb, &id, "bash -c 'echo sub'"), "quoted\nsub\n");
    assert_eq!(out(&sb, &id, "unset BASH_ENV; bash -c 'echo sub'"), "sub\n");
}

#[test]
fn stdin_of_the_command_is_at_eof() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    for round in 0..3 {
        let t = Instant::now();
        let (status, v) = sb.exec_with(
            &id,
            &["--timeout", "10"],
            "cat; read -r x || echo eof; echo done",
        );
        assert_eq!(status, 0, "{v}");
        assert_eq!(v["stdout"], "eof\ndone\n", "round {round}: {v}");
        assert_eq!(v["timed_out"], false, "{v}");
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "round {round}: returned at once"
        );
        ok(&sb, &id, &format!("export R={round}"));
    }
}

#[test]
fn large_output_is_captured_in_full_or_cut_as_the_cap_says() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    // The default profile keeps 1 MiB per stream.
    const CAP: usize = 1 << 20;
    for (round, (o, e)) in [('a', 'e'), ('b', 'f'), ('c', 'g')].into_iter().enumerate() {
        let v = ok(
            &sb,
            &id,
            &format!(
                "head -c 1000000 /dev/zero | tr '\\0' {o}; head -c 200000 /dev/zero | tr '\\0' {e} >&2"
            ),
        );
        let stdout = v["stdout"].as_str().unwrap();
        let stderr = v["stderr"].as_str().unwrap();
        assert_eq!(stdout.len(), 1_000_000, "round {round}");
        assert!(stdout.bytes().all(|b| b == o as u8), "round {round}");
        assert_eq!(stderr.len(), 200_000, "round {round}");
        assert!(stderr.bytes().all(|b| b == e as u8), "round {round}");
        assert_eq!(v["truncated"], false);
        assert_eq!(v["stdout_dropped_bytes"], 0);
        assert_eq!(v["stderr_dropped_bytes"], 0);

        // 2 MB: the first and last halves of the cap are kept.
        let v = ok(
            &sb,
            &id,
            &format!(
                "head -c 1000000 /dev/zero | tr '\\0' {o}; head -c 1000000 /dev/zero | tr '\\0' {e}"
            ),
        );
        let dropped = 2_000_000 - CAP;
        let expected = format!(
            "{}\n[... delta-sessions dropped {dropped} bytes of output here ...]\n{}",
            o.to_string().repeat(CAP / 2),
            e.to_string().repeat(CAP / 2)
        );
        assert!(
            v["stdout"] == expected.as_str(),
            "round {round}: cut output"
        );
        assert_eq!(v["truncated"], true);
        assert_eq!(v["stdout_dropped_bytes"], dropped);
        assert_eq!(v["stderr"], "");
    }
}

/// Processes of the session other than the holder's and the shell running
/// the probe, from /proc inside the jail, with builtins only (nothing forks).
const OTHER_PROCS: &str = r#"for p in /proc/[0-9]*; do
  pid=${p#/proc/}; [ "$pid" = "$$" ] && continue
  read -r c < "$p/comm" 2>/dev/null || continue
  [ "$c" = ds-holder ] && continue
  echo "$pid $c"
done"#;

#[test]
fn a_timed_out_exec_keeps_the_earlier_state_and_leaves_nothing_behind() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    let w = work(&sb);
    for round in 0..2 {
        ok(
            &sb,
            &id,
            &format!(
                "export T=before{round}; f(){{ echo f{round}; }}; mkdir -p s{round}; cd s{round}"
            ),
        );
        let t = Instant::now();
        exec_timing_out(
            &sb,
            &id,
            "1",
            "export T=during; f(){ echo during; }; cd ..; sleep 30; echo after",
        );
        assert!(t.elapsed() < Duration::from_secs(10));
        let v = ok(&sb, &id, &format!("echo $T; f; pwd; {OTHER_PROCS}"));
        assert_eq!(
            v["stdout"],
            format!("before{round}\nf{round}\n{w}/s{round}\n"),
            "round {round}: state from before the timed-out exec, and no stray process: {v}"
        );
        ok(&sb, &id, "cd ..");
    }
}

#[test]
fn a_background_process_survives_a_later_timeout() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    let marker = unique_sleep_arg();
    let v = ok(
        &sb,
        &id,
        &format!("sleep {marker} >/dev/null 2>&1 & echo $!"),
    );
    let pid: i32 = v["stdout"]
        .as_str()
        .unwrap()
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{v}"));
    exec_timing_out(&sb, &id, "1", "sleep 30");
    let v = ok(
        &sb,
        &id,
        &format!("kill -0 {pid} && echo alive; read -r -d '' c < /proc/{pid}/cmdline; echo $c"),
    );
    assert_eq!(v["stdout"], "alive\nsleep\n", "{v}");
    assert!(
        !procs_with_marker(&marker).is_empty(),
        "the background sleep still runs"
    );
}

#[test]
fn raw_execs_carry_state_both_ways() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    let w = work(&sb);
    for round in 0..3 {
        ok(
            &sb,
            &id,
            &format!("export A=n{round}; f(){{ echo nf{round}; }}; mkdir -p n{round}"),
        );
        let r = sb.run(
            &["exec", &id, "--raw"],
            format!(
                "echo $A; f; echo err >&2; export A=r{round}; f(){{ echo rf{round}; }}; cd n{round}"
            )
            .as_bytes(),
        );
        assert_eq!(r.status, 0, "{r:?}");
        assert_eq!(r.stdout, format!("n{round}\nnf{round}\n"), "{r:?}");
        assert_eq!(r.stderr, "err\n", "{r:?}");
        assert_eq!(
            out(&sb, &id, "echo $A; f; pwd; cd .."),
            format!("r{round}\nrf{round}\n{w}/n{round}\n")
        );
        // Two raw execs in a row.
        let r = sb.run(&["exec", &id, "--raw"], b"echo $A; export A=raw2");
        assert_eq!(r.stdout, format!("r{round}\n"), "{r:?}");
        let r = sb.run(&["exec", &id, "--raw"], b"echo $A; pwd");
        assert_eq!(r.stdout, format!("raw2\n{w}\n"), "{r:?}");
    }
}

#[test]
fn an_exec_whose_caller_is_killed_leaves_the_session_working() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    let w = work(&sb);
    ok(&sb, &id, "export K=before; mkdir -p k; cd k");
    for round in 0..2 {
        let marker = unique_sleep_arg();
        let mut child = sb.spawn_exec(&id, &format!("export K=during; cd ..; sleep {marker}"));
        assert!(
            wait_until(Duration::from_secs(10), || !procs_with_marker(&marker)
                .is_empty()),
            "round {round}: the command never started"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            wait_until(Duration::from_secs(10), || procs_with_marker(&marker)
                .is_empty()),
            "round {round}: the command of the killed exec is stopped"
        );
        let v = ok(&sb, &id, &format!("echo $K; pwd; {OTHER_PROCS}"));
        assert_eq!(
            v["stdout"],
            format!("before\n{w}/k\n"),
            "round {round}: {v}"
        );
    }
}

#[test]
fn parallel_execs_on_one_session_run_one_at_a_time() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    ok(&sb, &id, "export A=100");
    let count = |sb: &Sandbox| {
        let r = sb.run(&["list"], b"");
        assert_eq!(r.status, 0, "{r:?}");
        let list = r.json();
        let entry = list
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["session_id"] == id.as_str())
            .unwrap_or_else(|| panic!("{id} not listed: {list}"))
            .clone();
        entry["execution_count"].as_u64().unwrap()
    };
    let before = count(&sb);
    assert_eq!(sb.metadata(&id)["execution_count"], before);
    let seen: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..10)
            .map(|_| {
                s.spawn(|| {
                    let v = sb.exec(&id, "echo $A; sleep 0.05; export A=$((A+1))");
                    assert_eq!(v["exit_code"], 0, "{v}");
                    v["stdout"].as_str().unwrap().trim().parse::<u64>().unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let seen: BTreeSet<u64> = seen.into_iter().collect();
    assert_eq!(
        seen,
        (100..110).collect::<BTreeSet<u64>>(),
        "each exec saw the state of the one before"
    );
    assert_eq!(count(&sb), before + 10);
    assert_eq!(sb.metadata(&id)["execution_count"], before + 10);
    assert_eq!(out(&sb, &id, "echo $A"), "110\n");
}

#[test]
fn resource_limits_are_the_same_in_every_exec() {
    let sb = Sandbox::new();
    let probe = "ulimit -n; ulimit -u; ulimit -v; ulimit -S -a; ulimit -H -a";
    // default: 1024 open files, 1024 processes, 4 GiB; untrusted: 256, 128, 1 GiB.
    for (profile, limits) in [
        ("default", ["1024", "1024", "4194304"]),
        ("untrusted", ["256", "128", "1048576"]),
    ] {
        let id = sb.start(&["--profile", profile]);
        let first = out(&sb, &id, probe);
        let head: Vec<&str> = first.lines().take(3).collect();
        assert_eq!(head, limits, "{profile}: {first}");
        for round in 0..3 {
            assert_eq!(out(&sb, &id, probe), first, "{profile} round {round}");
            // Lowered in one exec: gone in the next.
            ok(
                &sb,
                &id,
                "ulimit -S -n 64; ulimit -S -v 500000; ulimit -S -u 50",
            );
            assert_eq!(
                out(&sb, &id, probe),
                first,
                "{profile} round {round}, after lowering"
            );
        }
    }
}

#[test]
fn error_messages_number_lines_from_the_command() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    for round in 0..3 {
        let v = sb.exec(&id, "true\nnosuchcmd_xyz");
        assert_eq!(v["exit_code"], 127, "{v}");
        assert_eq!(
            v["stderr"], "bash: line 2: nosuchcmd_xyz: command not found\n",
            "round {round}: {v}"
        );
        assert_eq!(out(&sb, &id, "\n\necho $LINENO"), "3\n", "round {round}");
    }
}

#[test]
fn every_exec_is_a_new_shell_process() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    let mut pids = BTreeSet::new();
    let mut ppids = BTreeSet::new();
    for round in 0..4 {
        let s = out(&sb, &id, "echo $$ $PPID $BASHPID");
        let f: Vec<i64> = s
            .split_whitespace()
            .map(|x| x.parse().unwrap_or_else(|_| panic!("{s:?}")))
            .collect();
        assert_eq!(f.len(), 3, "{s:?}");
        assert_eq!(f[0], f[2], "round {round}: $BASHPID is $$: {s:?}");
        assert_ne!(f[0], f[1], "{s:?}");
        assert!(pids.insert(f[0]), "round {round}: $$ {} seen before", f[0]);
        assert!(
            ppids.insert(f[1]),
            "round {round}: $PPID {} seen before (each exec's shell has its own parent)",
            f[1]
        );
    }
}

/// Whether `pid` descends from `ancestor` (host pids).
fn descends_from(mut pid: i32, ancestor: i32) -> bool {
    for _ in 0..64 {
        if pid == ancestor {
            return true;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
        else {
            return false;
        };
        if ppid <= 1 {
            return false;
        }
        pid = ppid;
    }
    false
}

/// How a command can tell which wrapper runs it: the pre-started one waits
/// for `__ds_go`.
const RUNS_PRESTARTED: &str = "tr '\\0' '\\n' </proc/$$/cmdline | grep -c __ds_go || true";

#[test]
fn start_and_every_exec_leave_the_next_shell_waiting() {
    // The speed of exec depends on this: after `start` and after each exec
    // the next exec's bash is already running in the session.
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    let (holder, _) = sb.holder(&id).unwrap();
    let waiting = || {
        procs_with_marker("__ds_go")
            .into_iter()
            .any(|pid| descends_from(pid, holder))
    };
    assert!(
        wait_until(Duration::from_secs(5), waiting),
        "start pre-starts the first exec's shell"
    );
    for round in 0..3 {
        assert_eq!(
            out(&sb, &id, RUNS_PRESTARTED),
            "1\n",
            "exec {round} ran in a pre-started shell"
        );
    }
    // --raw needs the caller's own descriptors: a shell of its own.
    let r = sb.run(&["exec", &id, "--raw"], RUNS_PRESTARTED.as_bytes());
    assert_eq!((r.status, r.stdout.as_str()), (0, "0\n"), "{r:?}");
    sb.end(&id);
}

#[test]
fn a_shell_program_replaced_between_execs_is_the_one_that_runs() {
    // Same path on PATH, new file: a fresh exec runs the new one, so a shell
    // pre-started from the old file must not be used.
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    ok(
        &sb,
        &id,
        "mkdir -p bin && cp /bin/bash bin/bash && export PATH=$PWD/bin:$PATH",
    );
    assert_eq!(out(&sb, &id, "echo old"), "old\n");
    // Give the next shell time to be pre-started from the old file.
    std::thread::sleep(Duration::from_millis(200));
    let bin = sb.work.join("bin");
    std::fs::write(bin.join("bash.new"), "#!/bin/sh\necho replaced\n").unwrap();
    std::fs::set_permissions(bin.join("bash.new"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(bin.join("bash.new"), bin.join("bash")).unwrap();
    let v = sb.exec(&id, "echo new");
    assert_eq!(v["stdout"], "replaced\n", "{v}");
    sb.end(&id);
}
