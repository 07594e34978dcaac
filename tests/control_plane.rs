//! The control plane out of every jail's reach (issue 10, critical 1): each
//! test performs, from inside a jail or by preparing the layout a hostile
//! repository could ship, an attack that reached other sessions' files, the
//! holder's socket or the host on an earlier main, and checks from the host
//! that it no longer works. Runs as root and unprivileged.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The binary run in `cwd` with `--sessions-dir` (when given) and `args`.
fn run_at(cwd: &Path, sessions: Option<&Path>, args: &[&str], stdin: &[u8]) -> Run {
    let mut c = Command::new(bin());
    c.current_dir(cwd).env_remove("DELTA_SESSIONS_DIR");
    // Tests that move dirs or mount in private namespaces keep their
    // sessions in a state dir of their own, so that the starts of tests
    // running beside them do not end those sessions (see scan_registry).
    if let Some(state) = PRIVATE_STATE.with(|s| s.borrow().clone()) {
        c.env("DELTA_SESSIONS_STATE_DIR", state);
    }
    if let Some(s) = sessions {
        c.arg("--sessions-dir").arg(s);
    }
    c.args(args);
    run_command(c, stdin)
}

thread_local! {
    static PRIVATE_STATE: std::cell::RefCell<Option<PathBuf>> = const { std::cell::RefCell::new(None) };
}

/// Makes this test's commands use a state dir of their own under `sb`.
fn private_state(sb: &Sandbox) -> PathBuf {
    let dir = sb.dir.path().join("state");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    PRIVATE_STATE.with(|s| *s.borrow_mut() = Some(dir.clone()));
    dir
}

/// Ends (and removes) a session started outside the Sandbox's bookkeeping.
struct Ended(PathBuf, Option<PathBuf>, String);

impl Drop for Ended {
    fn drop(&mut self) {
        let _ = run_at(
            &self.0,
            self.1.as_deref(),
            &["end", &self.2, "--remove"],
            b"",
        );
    }
}

fn start_at(cwd: &Path, sessions: Option<&Path>, args: &[&str]) -> (String, Ended) {
    let mut full = vec!["start"];
    full.extend_from_slice(args);
    let r = run_at(cwd, sessions, &full, b"");
    assert_eq!(r.status, 0, "start in {cwd:?}: {r:?}");
    let id = r.json()["session_id"].as_str().unwrap().to_string();
    (
        id.clone(),
        Ended(cwd.to_path_buf(), sessions.map(Path::to_path_buf), id),
    )
}

fn exec_at(cwd: &Path, sessions: Option<&Path>, id: &str, script: &str) -> Value {
    let r = run_at(cwd, sessions, &["exec", id], script.as_bytes());
    assert!(r.stdout.starts_with('{'), "exec {script:?}: {r:?}");
    r.json()
}

fn sockets_below(dir: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_socket() {
                found.push(e.path());
            }
        }
    }
    found
}

#[test]
fn no_holder_socket_lies_in_the_sessions_dir() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    assert_eq!(sb.exec(&id, "true")["exit_code"], 0);
    assert_eq!(
        sockets_below(&sb.sessions),
        Vec::<PathBuf>::new(),
        "a socket in the sessions dir could be reached by any jail that sees it"
    );
}

/// A session started from `W/sub` while another session's jail sees `W`:
/// its sessions dir would lie in that jail's view (its state.json, its
/// holder). Refused, and nothing is created.
#[test]
fn a_sessions_dir_inside_a_live_jails_work_dir_is_refused() {
    let sb = Sandbox::new();
    let outer = sb.start(&[]);
    let sub = sb.work.join("sub");
    std::fs::create_dir(&sub).unwrap();
    let r = run_at(&sub, None, &["start"], b"");
    r.assert_error(&["sessions dir", &outer]);
    assert!(
        !sub.join(".sessions").exists(),
        "a refused start created its sessions dir"
    );
    // And the outer jail finds nothing to read there.
    let v = sb.exec(&outer, "ls -A sub; echo end");
    assert_eq!(v["stdout"], "end\n", "{v}");
}

/// The other way round: a session whose work dir would contain an existing
/// session's sessions dir (ended or not: its files hold exported secrets).
#[test]
fn a_work_dir_containing_another_sessions_dir_is_refused() {
    let sb = Sandbox::new();
    let inner = sb.work.join("inner");
    std::fs::create_dir(&inner).unwrap();
    let (id, _guard) = start_at(&inner, None, &[]);
    let r = run_at(
        &sb.work,
        Some(&sb.dir.path().join("elsewhere")),
        &["start"],
        b"",
    );
    r.assert_error(&["sessions dir", &id]);
    // Ended, its files are still there: still refused.
    assert_eq!(run_at(&inner, None, &["end", &id], b"").status, 0);
    let r = run_at(
        &sb.work,
        Some(&sb.dir.path().join("elsewhere")),
        &["start"],
        b"",
    );
    r.assert_error(&["sessions dir", &id]);
    // Through a read-only bind of the profile, too.
    let profile = sb.dir.path().join("ro.toml");
    std::fs::write(
        &profile,
        format!(
            "[filesystem]\nread_only = [{:?}]\n",
            sb.work.to_str().unwrap()
        ),
    )
    .unwrap();
    let other_work = sb.dir.path().join("w2");
    std::fs::create_dir(&other_work).unwrap();
    let r = run_at(
        &other_work,
        None,
        &["start", "--profile", profile.to_str().unwrap()],
        b"",
    );
    r.assert_error(&["sessions dir", &id]);
    // Once removed, the layout is fine again.
    assert_eq!(run_at(&inner, None, &["cleanup"], b"").status, 0);
    let (_id2, _g2) = start_at(&sb.work, Some(&sb.dir.path().join("elsewhere")), &[]);
}

/// `start --work-dir W` run from `W/sub`: the jail could rename `W/sub` (the
/// mask moves with it) and plant a fresh `W/sub/.sessions/<id>/`.
#[test]
fn own_sessions_dir_below_the_work_dir_is_refused() {
    let sb = Sandbox::new();
    let sub = sb.work.join("sub");
    std::fs::create_dir(&sub).unwrap();
    let r = run_at(
        &sub,
        None,
        &["start", "--work-dir", sb.work.to_str().unwrap()],
        b"",
    );
    r.assert_error(&["rename", "sessions dir"]);
    assert!(!sub.join(".sessions").exists());
}

/// A repository ships `.sessions -> sub/real`: the real dir would land below
/// a directory the jail can rename.
#[test]
fn a_sessions_symlink_into_the_work_dir_is_refused() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.work.join("sub/real")).unwrap();
    std::os::unix::fs::symlink("sub/real", sb.work.join(".sessions")).unwrap();
    let r = run_at(&sb.work, None, &["start"], b"");
    r.assert_error(&["sessions dir"]);
    assert_eq!(
        std::fs::read_dir(sb.work.join("sub/real")).unwrap().count(),
        0
    );
}

/// `.sessions` is a symlink to a directory outside the work dir (allowed:
/// the jail cannot reach it). The jail re-points the link at a directory of
/// its own, with a planted session that asks for no jail and a payload:
/// the next exec must refuse, and nothing runs on the host.
#[test]
fn a_sessions_symlink_repointed_by_the_jail_is_refused() {
    let sb = Sandbox::new();
    let real = sb.dir.path().join("real-sessions");
    std::fs::create_dir(&real).unwrap();
    std::os::unix::fs::symlink(&real, sb.work.join(".sessions")).unwrap();
    let (id, _guard) = start_at(&sb.work, None, &[]);
    let marker = sb.dir.path().join("PWNED");
    let unconfined = String::from_utf8(
        run_at(&sb.work, None, &["profiles", "show", "unconfined"], b"")
            .stdout
            .into_bytes(),
    )
    .unwrap()
    .replace('\n', " ");
    let script = format!(
        "set -e; mkdir -p fake/{id}/tmp fake/{id}/home; cd fake/{id}; \
         cp /dev/null history.log; \
         printf '%s' '{unconfined}' > profile.json; \
         printf '%s' '{{\"cwd\":\"/\",\"env\":{{\"PATH\":\"/usr/bin:/bin\"}},\"shell\":{{\"functions\":\"touch {marker}\",\"aliases\":\"\"}}}}' > state.json; \
         printf '%s' '{{\"session_id\":\"{id}\",\"command\":\"bash\",\"created_at\":\"2026-01-01T00:00:00Z\",\"last_executed_at\":null,\"status\":\"active\",\"work_dir\":\"/\",\"execution_count\":0,\"profile\":\"unconfined\",\"holder\":null}}' > metadata.json; \
         cd {work}; ln -sfn fake .sessions; echo planted",
        marker = marker.display(),
        work = sb.work.display()
    );
    let v = exec_at(&sb.work, None, &id, &script);
    assert_eq!(v["stdout"], "planted\n", "{v}");
    let r = run_at(&sb.work, None, &["exec", &id], b"touch /tmp/x; echo ran");
    r.assert_error(&[&id, "not the directory"]);
    assert!(!marker.exists(), "the planted payload ran on the host");
    // The real session is untouched and answers through its real path.
    let v = exec_at(&sb.work, Some(&real), &id, "echo alive");
    assert_eq!(v["stdout"], "alive\n", "{v}");
}

/// The mask over the session's own sessions dir is a mount point: it can be
/// neither renamed nor removed from inside, so it cannot be swapped.
#[test]
fn the_jail_cannot_move_its_masked_sessions_dir() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    let v = sb.exec(
        &id,
        "mv .sessions moved 2>/dev/null && echo MOVED; rmdir .sessions 2>/dev/null && echo REMOVED; \
         mv . ../x 2>/dev/null && echo WORKDIR; ls -A; echo end",
    );
    assert_eq!(v["stdout"], ".sessions\nend\n", "{v}");
    assert_eq!(sb.exec(&id, "echo ok")["stdout"], "ok\n");
}

/// A masked file whose parent the jail renamed: inside the live jail the
/// mask moved with it; a rebuild would put the mask on the old path and show
/// the file under the new one, so the rebuild is refused.
#[test]
fn a_masked_path_moved_by_the_jail_is_never_exposed_by_a_rebuild() {
    let sb = Sandbox::new();
    let secret_dir = sb.work.join("conf");
    std::fs::create_dir(&secret_dir).unwrap();
    let secret = secret_dir.join("key.txt");
    let value = format!("secret-{}", unique_sleep_arg());
    std::fs::write(&secret, &value).unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let profile = sb.dir.path().join("masked.toml");
    std::fs::write(
        &profile,
        format!("[filesystem]\nmasked = [{:?}]\n", secret.to_str().unwrap()),
    )
    .unwrap();
    let id = sb.start(&["--profile", profile.to_str().unwrap()]);
    let v = sb.exec(&id, "mv conf moved && cat moved/key.txt; echo end");
    assert_eq!(v["stdout"], "end\n", "{v}");
    sb.kill_holder(&id);
    let r = sb.run(&["exec", &id], b"cat moved/key.txt");
    assert!(!r.stdout.contains(&value), "mask lost on rebuild: {r:?}");
    r.assert_error(&["masked path", "moved or replaced"]);
    // Put back, the session works again.
    std::fs::rename(sb.work.join("moved"), &secret_dir).unwrap();
    let v = sb.exec(&id, "cat conf/key.txt; echo end");
    assert_eq!(v["jail_restarted"], true, "{v}");
    assert_eq!(v["stdout"], "end\n", "{v}");
}

/// A FIFO planted as a record must not hang `list` or `cleanup`.
#[test]
fn a_fifo_as_metadata_does_not_hang_list_or_cleanup() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    let meta = sb.session_dir(&id).join("metadata.json");
    let saved = std::fs::read(&meta).unwrap();
    std::fs::remove_file(&meta).unwrap();
    nix_mkfifo(&meta);
    let t = Instant::now();
    let r = sb.run(&["list"], b"");
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.stdout.contains("corrupt"), "{r:?}");
    let r = sb.run(&["cleanup"], b"");
    assert_eq!(r.status, 0, "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "list or cleanup hung");
    std::fs::remove_file(&meta).unwrap();
    std::fs::write(&meta, saved).unwrap();
}

fn nix_mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// Files left by a jail with modes that lock their owner out (a mode-000
/// directory in /tmp or $HOME) do not stop `end --remove` or `cleanup`.
#[test]
fn end_remove_and_cleanup_remove_what_the_jail_locked() {
    let sb = Sandbox::new();
    let a = sb.start(&[]);
    let b = sb.start(&[]);
    for id in [&a, &b] {
        let v = sb.exec(
            id,
            "mkdir -p /tmp/d/e ~/h/i && touch /tmp/d/e/f ~/h/i/j && chmod 000 /tmp/d/e /tmp/d ~/h && echo ok",
        );
        assert_eq!(v["stdout"], "ok\n", "{v}");
    }
    let r = sb.run(&["end", &a, "--remove"], b"");
    assert_eq!(r.status, 0, "{r:?}");
    assert!(!sb.session_dir(&a).exists());
    assert_eq!(sb.end(&b).status, 0);
    let r = sb.run(&["cleanup"], b"");
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.stdout.contains(&b), "{r:?}");
    assert!(!sb.session_dir(&b).exists());
}

/// The host paths of the sessions dir do not show in the jail's
/// `/proc/1/cmdline`.
#[test]
fn the_holders_command_line_shows_no_host_path() {
    let sb = Sandbox::new();
    let id = sb.start(&[]);
    let v = sb.exec(&id, "tr '\\0' ' ' < /proc/1/cmdline");
    let out = v["stdout"].as_str().unwrap();
    assert!(
        !out.contains(sb.sessions.to_str().unwrap()),
        "cmdline shows the sessions dir: {out}"
    );
}

/// Attack review F1: the masked file's parent is moved and replaced by a
/// symlink to where it went, so the pinned file is still "there" through
/// the link; the rebuild must not follow it (and so lose the mask).
#[test]
fn a_masked_paths_parent_replaced_by_a_symlink_never_exposes_it() {
    let sb = Sandbox::new();
    let dir = sb.work.join("conf/secrets");
    std::fs::create_dir_all(&dir).unwrap();
    let value = format!("secret-{}", unique_sleep_arg());
    std::fs::write(dir.join("key"), &value).unwrap();
    let profile = sb.dir.path().join("masked.toml");
    std::fs::write(
        &profile,
        format!("[filesystem]\nmasked = [{:?}]\n", dir.to_str().unwrap()),
    )
    .unwrap();
    let id = sb.start(&["--profile", profile.to_str().unwrap()]);
    let v = sb.exec(
        &id,
        &format!(
            "mv conf conf2 && ln -s {}/conf2 conf && cat conf2/secrets/key; echo end",
            sb.work.display()
        ),
    );
    assert_eq!(v["stdout"], "end\n", "{v}");
    sb.kill_holder(&id);
    let r = sb.run(&["exec", &id], b"cat conf2/secrets/key conf/secrets/key");
    assert!(!r.stdout.contains(&value), "mask lost on rebuild: {r:?}");
    r.assert_error(&["masked path"]);
}

/// Attack review F3: `list` and `cleanup` in a directory that a jail
/// writes (here the work dir's `.sessions` of a session kept elsewhere) do
/// not report or act on what the jail planted there.
#[test]
fn list_and_cleanup_refuse_a_sessions_dir_no_start_made() {
    let sb = Sandbox::new();
    let elsewhere = sb.dir.path().join("real");
    let (id, _guard) = start_at(&sb.work, Some(&elsewhere), &[]);
    let target = sb.dir.path().join("ROOT-CREATED");
    let v = exec_at(
        &sb.work,
        Some(&elsewhere),
        &id,
        &format!(
            "mkdir -p .sessions/sess_aaaaaaaaaaaa && touch -d 2020-01-01 .sessions/sess_aaaaaaaaaaaa && \
             ln -s {} .sessions/sess_aaaaaaaaaaaa/meta.lock && \
             echo '{{\"session_id\":\"sess_aaaaaaaaaaaa\",\"status\":\"terminated\"}}' > .sessions/sess_aaaaaaaaaaaa/metadata.json && echo ok",
            target.display()
        ),
    );
    assert_eq!(v["stdout"], "ok\n", "{v}");
    for cmd in ["list", "cleanup"] {
        run_at(&sb.work, None, &[cmd], b"").assert_error(&["not a sessions dir"]);
    }
    assert!(
        !target.exists(),
        "a lock was taken through the jail's symlink"
    );
    assert!(sb.work.join(".sessions/sess_aaaaaaaaaaaa").exists());
}

/// Runs `script` with `sh` in a private mount namespace (its bind mounts
/// never reach the host), with the state dir `state`.
fn in_private_mount_ns(state: &Path, script: &str) -> std::process::Output {
    Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script])
        .env_remove("DELTA_SESSIONS_DIR")
        .env("DELTA_SESSIONS_STATE_DIR", state)
        .output()
        .unwrap()
}

/// For the root-only mount tests: a sandbox with `shared/` (a volume),
/// `wb/` (another work dir) and the mount point `work/data/`, and its own
/// state dir. `None` (skipped) unless root.
fn shared_volume_layout() -> Option<(Sandbox, PathBuf)> {
    if !is_root() {
        eprintln!("skipped: bind mounts need root");
        return None;
    }
    let sb = Sandbox::new();
    let state = private_state(&sb);
    for d in ["shared", "wb", "work/data"] {
        std::fs::create_dir_all(sb.dir.path().join(d)).unwrap();
    }
    Some((sb, state))
}

/// A session started in `work/proj` (own state dir), then `proj` renamed to
/// `proj.old`: (id, its guard, proj, proj.old).
fn moved_session(sb: &Sandbox) -> (String, Ended, PathBuf, PathBuf) {
    private_state(sb);
    let proj = sb.work.join("proj");
    std::fs::create_dir(&proj).unwrap();
    let (id, guard) = start_at(&proj, None, &[]);
    let moved = sb.work.join("proj.old");
    std::fs::rename(&proj, &moved).unwrap();
    (id, guard, proj, moved)
}

/// Attack review F5: a sessions dir moved away no longer lies where the
/// layout check looks for it, so it is refused, not used.
#[test]
fn a_moved_sessions_dir_is_refused() {
    let sb = Sandbox::new();
    let (id, _guard, proj, moved) = moved_session(&sb);
    let r = run_at(&moved, None, &["exec", &id], b"echo hi");
    r.assert_error(&[&id, "not the directory"]);
    std::fs::rename(&moved, &proj).unwrap();
    assert_eq!(exec_at(&proj, None, &id, "echo back")["stdout"], "back\n");
}

/// Attack review F4 (root: needs a bind mount): a bind mount of a
/// subdirectory of a work dir shows a sessions dir under a second path,
/// whose own ancestors do not include the work dir. Run in a private mount
/// namespace so nothing leaks onto the host.
#[test]
fn a_sessions_dir_behind_a_bind_mount_of_a_subdirectory_is_refused() {
    if !is_root() {
        eprintln!("skipped: bind mounts need root");
        return;
    }
    let sb = Sandbox::new();
    let state = private_state(&sb);
    let root = sb.dir.path();
    std::fs::create_dir_all(sb.work.join("sub")).unwrap();
    std::fs::create_dir_all(root.join("alias")).unwrap();
    std::fs::create_dir_all(root.join("wb")).unwrap();
    let script = format!(
        "set -u; mount --bind {w}/sub {r}/alias || exit 99; cd {w}; \
         a=$({b} start | sed 's/.*\"session_id\":\"\\([^\"]*\\)\".*/\\1/'); \
         {b} start --work-dir {r}/wb --sessions-dir {r}/alias/.sessions 2>&1; echo \"rc=$?\"; \
         {b} end \"$a\" --remove >/dev/null; \
         cd {r}; {b} start --work-dir {r}/wb --sessions-dir {r}/alias/.sessions 2>&1 >/dev/null && echo second-started; \
         {b} start --work-dir {w} --sessions-dir {r}/other 2>&1; echo \"rc=$?\"; \
         for s in $(ls {r}/alias/.sessions 2>/dev/null); do {b} end $s --remove --sessions-dir {r}/alias/.sessions >/dev/null; done; \
         for s in $(ls {r}/other 2>/dev/null | grep sess_); do {b} end $s --remove --sessions-dir {r}/other >/dev/null; done",
        w = sb.work.display(),
        r = root.display(),
        b = bin().display()
    );
    let out = in_private_mount_ns(&state, &script);
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 4, "{text}");
    assert!(
        lines[0].starts_with("Error: ") && lines[0].contains("sess_"),
        "{text}"
    );
    assert_eq!(lines[1], "rc=1", "{text}");
    assert_eq!(lines[2], "second-started", "{text}");
    assert!(
        lines[3].starts_with("Error: ") && lines[3].contains("sess_"),
        "{text}"
    );
    assert_eq!(lines[4], "rc=1", "{text}");
}

/// Second review NEW-3: moved away, a start over its parent ends it; moved
/// back, it stays ended (another jail may have written its files meanwhile).
#[test]
fn a_session_ended_while_moved_stays_ended_when_moved_back() {
    let sb = Sandbox::new();
    let (id, _guard, proj, moved) = moved_session(&sb);
    let (_c, _g2) = start_at(&sb.work, Some(&sb.dir.path().join("c")), &[]);
    std::fs::rename(&moved, &proj).unwrap();
    run_at(&proj, None, &["exec", &id], b"echo hi").assert_error(&[&id, "ended"]);
    // Listed as ended, and cleanup removes it (third review N6).
    let list = run_at(&proj, None, &["list", "--all"], b"").json();
    assert_eq!(list[0]["status"], "terminated", "{list}");
    let r = run_at(&proj, None, &["cleanup"], b"");
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.stdout.contains(&id), "{r:?}");
    assert!(!proj.join(".sessions").join(&id).exists());
}

/// Second review NEW-1: a mount inside a work dir shows another session's
/// sessions dir (a shared volume mounted into a project): refused in both
/// orders. Root only (bind mounts), in a private mount namespace.
#[test]
fn a_sessions_dir_shown_by_a_mount_inside_the_work_dir_is_refused() {
    let Some((sb, state)) = shared_volume_layout() else {
        return;
    };
    let r = sb.dir.path();
    let script = format!(
        "mount --bind {r}/shared {r}/work/data || exit 99; cd {r}/work; \
         {b} start >/dev/null 2>&1 && echo a-started; \
         cd {r}; {b} start --work-dir {r}/wb --sessions-dir {r}/shared/.sessions 2>&1 | cut -c1-7; \
         for s in $(ls {r}/work/.sessions | grep sess_); do {b} end $s --remove --sessions-dir {r}/work/.sessions >/dev/null; done; \
         {b} start --work-dir {r}/wb --sessions-dir {r}/shared/.sessions >/dev/null 2>&1 && echo b-started; \
         cd {r}/work; {b} start 2>&1 | cut -c1-7; \
         for s in $(ls {r}/shared/.sessions | grep sess_); do {b} end $s --remove --sessions-dir {r}/shared/.sessions >/dev/null; done",
        r = r.display(),
        b = bin().display()
    );
    let out = in_private_mount_ns(&state, &script);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "a-started\nError: \nb-started\nError: \n",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Second review NEW-2: every jail sees the system directories; a state dir
/// there would put every holder's socket within reach. Root only (/opt).
#[test]
fn a_state_dir_in_a_system_directory_is_refused() {
    if !is_root() || !Path::new("/opt").is_dir() {
        eprintln!("skipped: needs root and /opt");
        return;
    }
    let sb = Sandbox::new();
    let state = tempfile::Builder::new()
        .prefix("ds-test-state-")
        .tempdir_in("/opt")
        .unwrap();
    std::fs::set_permissions(
        state.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let mut c = Command::new(bin());
    c.current_dir(&sb.work)
        .env("DELTA_SESSIONS_STATE_DIR", state.path())
        .arg("start");
    run_command(c, b"").assert_error(&["jail would see", "state dir"]);
    assert!(!sb.work.join(".sessions").exists());
}

/// Second review NEW-6: a sessions dir whose sessions are all removed is no
/// longer trusted once a later start has run; what a jail plants there is
/// not listed or acted on.
#[test]
fn a_vacated_sessions_dir_is_not_trusted_any_more() {
    let sb = Sandbox::new();
    private_state(&sb);
    let (first, _g) = start_at(&sb.work, None, &[]);
    assert_eq!(
        run_at(&sb.work, None, &["end", &first, "--remove"], b"").status,
        0
    );
    let elsewhere = sb.dir.path().join("real");
    let (id, _g2) = start_at(&sb.work, Some(&elsewhere), &[]);
    let v = exec_at(
        &sb.work,
        Some(&elsewhere),
        &id,
        "mkdir -p .sessions/sess_bbbbbbbbbbbb && \
         echo '{\"session_id\":\"sess_bbbbbbbbbbbb\",\"status\":\"terminated\"}' > .sessions/sess_bbbbbbbbbbbb/metadata.json && echo ok",
    );
    assert_eq!(v["stdout"], "ok\n", "{v}");
    for cmd in ["list", "cleanup"] {
        run_at(&sb.work, None, &[cmd], b"").assert_error(&["not a sessions dir"]);
    }
    assert!(sb.work.join(".sessions/sess_bbbbbbbbbbbb").exists());
}

/// Third review N1: a mount inside the work dir that shows the work dir's
/// own `.sessions` (its mask covers only that path). Root only, in a private
/// mount namespace.
#[test]
fn a_mount_inside_the_work_dir_showing_its_own_sessions_dir_is_refused() {
    if !is_root() {
        eprintln!("skipped: bind mounts need root");
        return;
    }
    let sb = Sandbox::new();
    let state = private_state(&sb);
    std::fs::create_dir_all(sb.work.join(".sessions")).unwrap();
    std::fs::create_dir_all(sb.work.join("view")).unwrap();
    let script = format!(
        "mount --bind {w}/.sessions {w}/view || exit 99; cd {w}; {b} start 2>&1 | cut -c1-7",
        w = sb.work.display(),
        b = bin().display()
    );
    let out = in_private_mount_ns(&state, &script);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Error: \n");
}

/// Third review: a mount made after a session started, showing another
/// session's sessions dir in its view, is checked when its jail is rebuilt
/// (the rebuilt jail would see it). Root only, in a private mount namespace.
#[test]
fn a_rebuild_checks_the_layout_again() {
    let Some((sb, state)) = shared_volume_layout() else {
        return;
    };
    let r = sb.dir.path();
    let script = format!(
        "cd {r}/work; a=$({b} start | sed 's/.*\"session_id\":\"\\([^\"]*\\)\".*/\\1/'); \
         cd {r}; {b} start --work-dir {r}/wb --sessions-dir {r}/shared/.sessions >/dev/null && echo b-started; \
         mount --bind {r}/shared {r}/work/data || exit 99; \
         kill -9 $(sed -n 's/.*\"pid\": *\\([0-9]*\\).*/\\1/p' $DELTA_SESSIONS_STATE_DIR/sessions/$a/holder.json); sleep 0.3; \
         cd {r}/work; echo 'echo hi' | {b} exec $a 2>&1 | cut -c1-7; \
         {b} end $a --remove >/dev/null; \
         for s in $(ls {r}/shared/.sessions | grep sess_); do {b} end $s --remove --sessions-dir {r}/shared/.sessions >/dev/null; done",
        r = r.display(),
        b = bin().display()
    );
    let out = in_private_mount_ns(&state, &script);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "b-started\nError: \n",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
