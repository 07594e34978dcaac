//! Landlock mode, black-box, on a host made to block user namespaces the way
//! Docker's default seccomp profile does (see
//! [`Sandbox::without_user_namespaces`]): `auto` picks Landlock, `untrusted`
//! fails closed, and each row Landlock mode claims in docs/security.md holds.

mod common;

use common::*;
use std::io::Read;
use std::path::Path;

/// A sandbox on a host without user namespaces, or `None` (with a note) when
/// this kernel has no Landlock to fall back to.
fn host() -> Option<Sandbox> {
    let abi = landlock_abi();
    if abi < 6 {
        eprintln!("skipped: Landlock ABI {abi} (these tests need ABI 6, Linux 6.12)");
        return None;
    }
    Some(Sandbox::without_user_namespaces())
}

fn out(sb: &Sandbox, id: &str, command: &str) -> String {
    let v = sb.exec(id, command);
    format!(
        "{}{}",
        v["stdout"].as_str().unwrap(),
        v["stderr"].as_str().unwrap()
    )
}

/// A session granted a read-only host dir (outside the work dir) holding
/// one file, and that file's path.
fn session_with_a_read_only_file(sb: &Sandbox) -> (String, std::path::PathBuf) {
    let outside = sb.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let data = outside.join("data");
    std::fs::write(&data, "x").unwrap();
    let profile = sb.dir.path().join("ro.toml");
    std::fs::write(
        &profile,
        format!(
            "[filesystem]\nread_only = [{:?}]\n",
            outside.to_str().unwrap()
        ),
    )
    .unwrap();
    (sb.start(&["--profile", profile.to_str().unwrap()]), data)
}

#[test]
fn auto_picks_landlock_and_says_so_everywhere() {
    let Some(sb) = host() else { return };
    let v = sb.start_json(&[]);
    assert_eq!(v["isolation"], "landlock", "{v}");
    let id = v["session_id"].as_str().unwrap().to_string();
    assert_eq!(sb.metadata(&id)["isolation"], "landlock");
    let list = sb.run(&["list"], b"").json();
    assert_eq!(list[0]["isolation"], "landlock", "{list}");
    // A real session: state persists, limits apply.
    assert_eq!(out(&sb, &id, "cd /usr; export A=1; f() { echo f$A; }"), "");
    assert_eq!(out(&sb, &id, "pwd; f; ulimit -u"), "/usr\nf1\n1024\n");
    let doctor = sb.run(&["doctor"], b"");
    assert!(
        doctor.stdout.contains("start picks landlock"),
        "{}",
        doctor.stdout
    );
}

#[test]
fn untrusted_fails_closed_and_nothing_falls_back_to_unconfined() {
    let Some(sb) = host() else { return };
    let r = sb.run(&["start", "--profile", "untrusted"], b"");
    r.assert_error(&["user namespace"]);
    let entries = std::fs::read_dir(&sb.sessions)
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(entries, 0, "a refused start leaves no session");
    for profile in ["default", "network", "readonly", "ci"] {
        let v = sb.start_json(&["--profile", profile]);
        assert_eq!(v["isolation"], "landlock", "{profile}: {v}");
        let id = v["session_id"].as_str().unwrap();
        assert_eq!(sb.end(id).status, 0);
    }
}

#[test]
fn the_filesystem_is_the_work_dir_the_sessions_dirs_and_the_system_read_only() {
    let Some(sb) = host() else { return };
    let secret = sb.dir.path().join("secret");
    std::fs::write(&secret, "host secret\n").unwrap();
    let id = sb.start(&[]);
    let s = secret.display();
    let d = sb.dir.path().display();
    let checks = [
        ("cat /etc/passwd >/dev/null && echo ok", "ok\n"),
        ("ls /usr/bin/env", "/usr/bin/env\n"),
        ("cat /etc/shadow 2>&1 >/dev/null | grep -c denied", "1\n"),
        ("cat /etc/gshadow 2>&1 >/dev/null | grep -c denied", "1\n"),
        ("ls /root 2>&1 | grep -c denied", "1\n"),
        ("ls /home 2>&1 | grep -c denied", "1\n"),
        ("ls /tmp 2>&1 | grep -c denied", "1\n"),
        (&*format!("cat {s} 2>&1 | grep -c denied"), "1\n"),
        (&*format!("touch {d}/planted 2>&1 | grep -c denied"), "1\n"),
        ("touch /usr/planted 2>&1 | grep -c denied", "1\n"),
        ("echo w > made && cat made", "w\n"),
        ("echo t > $TMPDIR/t && cat $TMPDIR/t", "t\n"),
        ("echo h > ~/h && cat ~/h", "h\n"),
        ("echo n > /dev/null && echo dev", "dev\n"),
    ];
    for (command, want) in checks {
        assert_eq!(out(&sb, &id, command), want, "{command}");
    }
    assert!(!sb.dir.path().join("planted").exists());
    assert!(!Path::new("/usr/planted").exists());

    // Its own work dir: this one holds the first session's sessions dir.
    let elsewhere = sb.dir.path().join("ro-sessions");
    let ro_work = sb.dir.path().join("ro-work");
    std::fs::create_dir(&ro_work).unwrap();
    let run = |args: &[&str], stdin: &[u8]| {
        let mut c = sb.command_in(&elsewhere);
        c.args(args);
        run_command(c, stdin)
    };
    let ro = run(
        &[
            "start",
            "--profile",
            "readonly",
            "--work-dir",
            ro_work.to_str().unwrap(),
        ],
        b"",
    )
    .json();
    let ro_id = ro["session_id"].as_str().unwrap();
    let r = run(
        &["exec", ro_id],
        b"touch nope 2>&1 | grep -c denied; echo x > $TMPDIR/x && cat $TMPDIR/x",
    );
    assert_eq!(r.json()["stdout"], "1\nx\n", "{}", r.stdout);
    assert_eq!(run(&["end", ro_id], b"").status, 0);
}

#[test]
fn no_network_means_no_ip_socket_and_no_unix_socket_either_way() {
    let Some(sb) = host() else { return };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let id = sb.start(&[]);
    let py = |code: &str| format!("python3 -c '{code}' 2>&1 | tail -1");
    let tcp = out(
        &sb,
        &id,
        &py(&format!(
            "import socket; socket.create_connection((\"127.0.0.1\", {port}), timeout=2)"
        )),
    );
    assert!(tcp.contains("Errno 97"), "TCP: {tcp}");
    let udp = out(
        &sb,
        &id,
        &py("import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"),
    );
    assert!(udp.contains("Errno 97"), "UDP: {udp}");
    let unix = out(
        &sb,
        &id,
        &py("import socket; socket.socket(socket.AF_UNIX)"),
    );
    assert!(unix.contains("Errno 97"), "unix: {unix}");
    let pair = out(
        &sb,
        &id,
        &py("import socket; socket.socketpair(); print(\"pair\")"),
    );
    assert_eq!(pair, "pair\n");
    let mut buf = [0u8; 1];
    match listener.accept() {
        Ok((mut s, _)) => panic!("a connection arrived: {:?}", s.read(&mut buf)),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock),
    }
}

#[test]
fn with_the_host_network_tcp_works_but_unix_sockets_stay_closed() {
    let Some(sb) = host() else { return };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let id = sb.start(&["--profile", "network"]);
    let v = sb.exec(
        &id,
        &format!("exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected; python3 -c 'import socket; socket.socket(socket.AF_UNIX)' 2>&1 | tail -1"),
    );
    assert_eq!(
        v["stdout"], "connected\nOSError: [Errno 97] Address family not supported by protocol\n",
        "{v}"
    );
}

#[test]
fn host_processes_cannot_be_signalled_execs_can_and_all_dies_at_end() {
    let Some(sb) = host() else { return };
    let id = sb.start(&[]);
    let me = std::process::id();
    let v = sb.exec(
        &id,
        &format!("kill -0 {me} 2>&1; kill -0 1 2>&1; echo sent"),
    );
    let text = v["stdout"].as_str().unwrap();
    assert_eq!(text.matches("Operation not permitted").count(), 2, "{v}");
    assert!(text.ends_with("sent\n"), "{v}");
    // A job of one exec is the session's too: a later exec may stop it.
    sb.exec(&id, "sleep 600 >/dev/null 2>&1 & echo $! > job.pid");
    let v = sb.exec(&id, "kill $(cat job.pid) && echo stopped");
    assert_eq!(v["stdout"], "stopped\n", "{v}");
    let marker = unique_sleep_arg();
    sb.exec(
        &id,
        &format!("sleep {marker} & setsid sleep {marker} & (setsid sh -c 'sleep {marker}' &) ; echo started"),
    );
    assert_eq!(out(&sb, &id, "echo next"), "next\n");
    // Three sleeps (and the `sh` that runs one of them).
    assert!(
        procs_with_marker(&marker).len() >= 3,
        "background jobs survive an exec"
    );
    assert_eq!(sb.end(&id).status, 0);
    assert!(
        wait_until(std::time::Duration::from_secs(5), || procs_with_marker(
            &marker
        )
        .is_empty()),
        "a process outlived end: {:?}",
        procs_with_marker(&marker)
    );
}

#[test]
fn a_landlock_session_never_shares_a_sessions_dir_it_can_read() {
    let Some(sb) = host() else { return };
    let first = sb.start(&[]);
    let r = sb.run(&["start"], b"");
    let e = r.assert_error(&["Landlock", &first, "--sessions-dir"]);
    assert!(e.contains(sb.sessions.to_str().unwrap()), "{e}");
    // Outside the work dir, sessions may share a sessions dir: each is
    // granted only its own tmp and home there.
    let shared = sb.dir.path().join("shared");
    let s = shared.to_str().unwrap();
    let run = |args: &[&str], stdin: &[u8]| {
        let mut c = sb.command_in(&shared);
        c.args(args);
        run_command(c, stdin)
    };
    // (Their work dir may not hold the first session's sessions dir.)
    assert_eq!(sb.end(&first).status, 0);
    std::fs::remove_dir_all(&sb.sessions).unwrap();
    let a = run(&["start"], b"").json()["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = run(&["start"], b"").json()["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let exec = |id: &str, cmd: &[u8]| run(&["exec", id], cmd).json();
    assert_eq!(
        exec(&a, b"echo private > ~/note; echo ok")["stdout"],
        "ok\n"
    );
    let other_home = shared.join(&a).join("home/note");
    let v = exec(
        &b,
        format!(
            "cat {} 2>&1 | grep -c denied; ls {s} 2>&1 | grep -c denied",
            other_home.display()
        )
        .as_bytes(),
    );
    assert_eq!(v["stdout"], "1\n1\n", "{v}");
    for id in [&a, &b] {
        assert_eq!(run(&["end", id], b"").status, 0);
    }
}

#[test]
fn python_sessions_live_in_landlock_mode_too() {
    let Some(sb) = host() else { return };
    if !have_program("python3") {
        return;
    }
    let id = sb.start(&["--", "python3"]);
    assert_eq!(out(&sb, &id, "x = 41"), "");
    assert_eq!(out(&sb, &id, "print(x + 1)"), "42\n");
    let denied = out(&sb, &id, "open('/etc/shadow')");
    assert!(denied.contains("PermissionError"), "{denied}");
}

/// A command that replaces its own `$HOME` by a symlink to the host's `/`
/// gains nothing when the holder is rebuilt: the link is moved aside, never
/// followed into a grant.
#[test]
fn a_symlinked_home_is_moved_aside_at_a_rebuild_not_granted() {
    let Some(sb) = host() else { return };
    let secret = sb.dir.path().join("secret");
    std::fs::write(&secret, "host secret\n").unwrap();
    let id = sb.start(&[]);
    let v = sb.exec(
        &id,
        &format!(
            "cd; H=$HOME; cd /; rm -rf $H && ln -s {} $H && echo swapped",
            sb.dir.path().display()
        ),
    );
    assert_eq!(v["stdout"], "swapped\n", "{v}");
    sb.kill_holder(&id);
    let v = sb.exec(&id, "cat ~/secret 2>&1 | grep -c 'No such'");
    assert_eq!(v["jail_restarted"], true, "{v}");
    assert_eq!(v["stdout"], "1\n", "{v}");
    assert!(v.get("warning").is_none(), "no tmpfs in Landlock mode: {v}");
    let moved = sb.session_dir(&id).join("home.moved-by-delta-sessions");
    assert!(moved.is_symlink(), "the link is kept, aside");
    let v = sb.exec(
        &id,
        &format!("cat {} 2>&1 | grep -c denied", secret.display()),
    );
    assert_eq!(v["stdout"], "1\n", "{v}");
}

/// The other way hosts block user namespaces: `user.max_user_namespaces = 0`
/// (here in a user namespace of our own, where only its children are
/// affected). `auto` picks Landlock there too, and `untrusted` refuses.
#[test]
fn a_host_with_max_user_namespaces_zero_gets_landlock_too() {
    if host().is_none() || !have_program("unshare") {
        return;
    }
    let sb = Sandbox::new();
    let state = sb.dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let run = |args: &[&str], stdin: &[u8]| {
        let mut c = std::process::Command::new("unshare");
        c.args(["-U", "-r", "-m", "sh", "-c"])
            .arg("echo 0 > /proc/sys/user/max_user_namespaces && exec \"$0\" \"$@\"")
            .arg(bin())
            .arg("--sessions-dir")
            .arg(&sb.sessions)
            .args(args)
            .current_dir(&sb.work)
            .env("DELTA_SESSIONS_STATE_DIR", &state);
        run_command(c, stdin)
    };
    let probe = run(&["profiles"], b"");
    if probe.status != 0 {
        eprintln!(
            "skipped: cannot make a user namespace to test in: {}",
            probe.stderr
        );
        return;
    }
    run(&["start", "--profile", "untrusted"], b"").assert_error(&["user namespace"]);
    let v = run(&["start"], b"").json();
    assert_eq!(v["isolation"], "landlock", "{v}");
    let id = v["session_id"].as_str().unwrap();
    let r = run(
        &["exec", id],
        b"cat /etc/shadow 2>&1 | grep -c denied; echo w > f && cat f",
    );
    assert_eq!(r.json()["stdout"], "1\nw\n", "{}", r.stdout);
    assert_eq!(run(&["end", id], b"").status, 0);
}

/// Without a PID namespace, a holder killed from outside leaves the
/// session's background processes to the host's init; where the session has
/// a cgroup, the next exec's rebuild (and `end`) still kills them.
#[test]
fn orphans_of_a_killed_holder_die_with_the_session_where_it_has_a_cgroup() {
    let Some(sb) = host() else { return };
    let id = sb.start(&[]);
    let cgroups = sb.metadata(&id)["holder"]["cgroups"].clone();
    if cgroups.as_array().is_none_or(|c| c.is_empty()) {
        eprintln!("skipped: no session cgroup on this host for this user");
        return;
    }
    let marker = unique_sleep_arg();
    sb.exec(&id, &format!("(setsid sleep {marker} &) ; echo started"));
    assert!(wait_until(std::time::Duration::from_secs(2), || {
        !procs_with_marker(&marker).is_empty()
    }));
    sb.kill_holder(&id);
    assert!(
        !procs_with_marker(&marker).is_empty(),
        "orphaned, still running"
    );
    let v = sb.exec(&id, "echo rebuilt");
    assert_eq!(v["jail_restarted"], true, "{v}");
    assert!(
        wait_until(std::time::Duration::from_secs(5), || procs_with_marker(
            &marker
        )
        .is_empty()),
        "an orphan of the old holder survived the rebuild: {:?}",
        procs_with_marker(&marker)
    );
}

/// Landlock does not confine datagrams to named sockets, extended
/// attributes, or (for root, who owns the system files) mode changes; the
/// Landlock-mode seccomp filter refuses them.
#[test]
fn datagram_pairs_xattrs_and_roots_chmod_are_refused() {
    let Some(sb) = host() else { return };
    let id = sb.start(&[]);
    let dgram = out(
        &sb,
        &id,
        "python3 -c 'import socket; socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)' 2>&1 | tail -1",
    );
    assert!(dgram.contains("Errno 93"), "datagram pair: {dgram}");
    let xattr = out(
        &sb,
        &id,
        "touch x && python3 -c 'import os; os.setxattr(\"x\", \"user.a\", b\"1\")' 2>&1 | tail -1",
    );
    assert!(xattr.contains("Errno 1]"), "xattr: {xattr}");
    let chmod = out(
        &sb,
        &id,
        "touch m && chmod 700 m 2>&1 | grep -c 'not permitted'",
    );
    if is_root() {
        assert_eq!(chmod, "1\n", "root's session changes no mode");
        let before = std::fs::metadata("/etc/passwd").unwrap().permissions();
        assert_eq!(
            out(&sb, &id, "chmod 666 /etc/passwd 2>/dev/null; echo done"),
            "done\n"
        );
        assert_eq!(
            std::fs::metadata("/etc/passwd").unwrap().permissions(),
            before
        );
    } else {
        assert_eq!(chmod, "0\n", "a user's session may chmod its files");
    }
}

/// A Landlock session can write its own records: FIFOs planted under every
/// name the host side's temporary files can take, and as holder.log, must
/// not hang an exec, a rebuild or `end`.
#[test]
fn fifos_planted_in_the_session_dir_hang_nothing() {
    let Some(sb) = host() else { return };
    let id = sb.start(&[]);
    let dir = sb.session_dir(&id);
    std::fs::write(
        sb.work.join("plant.py"),
        "import os\n\
         for n in ('metadata.json', 'state.json'):\n    \
         for p in range(1, 32769):\n        \
         os.mkfifo('.tmp-%s-%d' % (n, p))\n\
         os.rename('holder.log', 'h')\n\
         os.mkfifo('holder.log')\n",
    )
    .unwrap();
    let plant = format!(
        "cd {} && python3 {}/plant.py && echo planted",
        dir.display(),
        sb.work.display()
    );
    assert_eq!(sb.exec(&id, &plant)["stdout"], "planted\n");
    let t = std::time::Instant::now();
    assert_eq!(out(&sb, &id, "echo alive"), "alive\n");
    sb.kill_holder(&id);
    let v = sb.exec(&id, "echo rebuilt");
    assert_eq!(v["stdout"], "rebuilt\n", "{v}");
    assert_eq!(sb.end(&id).status, 0);
    assert!(t.elapsed() < std::time::Duration::from_secs(20));
}

/// `host_unix_sockets = true` lets a Landlock session open Unix sockets, and
/// so reach the host's socket files, as docs/profiles.md warns; without it
/// (the default) the same connect fails.
#[test]
fn host_unix_sockets_is_the_only_way_to_a_host_socket_file() {
    let Some(sb) = host() else { return };
    let path = sb.dir.path().join("host.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    listener.set_nonblocking(true).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let profile = sb.dir.path().join("unix.toml");
    std::fs::write(&profile, "host_unix_sockets = true\n").unwrap();
    let connect = format!(
        "python3 -c 'import socket; s = socket.socket(socket.AF_UNIX); s.connect(\"{}\"); print(\"connected\")' 2>&1 | tail -1",
        path.display()
    );
    let id = sb.start(&[]);
    assert!(out(&sb, &id, &connect).contains("Errno 97"));
    assert_eq!(sb.end(&id).status, 0);
    std::fs::remove_dir_all(&sb.sessions).unwrap();
    let id = sb.start(&["--profile", profile.to_str().unwrap()]);
    assert_eq!(out(&sb, &id, &connect), "connected\n");
    assert!(listener.accept().is_ok(), "the host socket was reached");
}

/// Re-attack B1: an exec that swaps its own session dir for a symlink to
/// another directory (here a host dir it cannot write; it could be another
/// session's) must not make the host write the exec's records there: they
/// go to the directory pinned before the command ran.
#[test]
fn records_are_never_written_through_a_session_dir_swapped_mid_exec() {
    let Some(sb) = host() else { return };
    let victim = sb.dir.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    let id = sb.start(&[]);
    let v = sb.exec(
        &id,
        &format!(
            "export MARK=1; mv .sessions/{id} .sessions/old && ln -s {} .sessions/{id} && echo swapped",
            victim.display()
        ),
    );
    assert_eq!(v["stdout"], "swapped\n", "{v}");
    let planted: Vec<_> = std::fs::read_dir(&victim)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        planted.is_empty(),
        "the host wrote into the symlink's target: {planted:?}"
    );
    let moved = sb.sessions.join("old");
    assert!(std::fs::read_to_string(moved.join("state.json"))
        .unwrap()
        .contains("MARK"));
    // The session is refused now (its directory left its place), and ends.
    let r = sb.run(&["exec", &id], b"true");
    assert_eq!(r.status, 1, "{r:?}");
    assert_eq!(sb.end(&id).status, 0);
}

/// Re-attack B2: a session that moves its sessions dir away (and keeps
/// background processes) is still ended: `end` stops it from the trusted
/// record, and says its records could not be updated.
#[test]
fn end_stops_a_session_whose_directory_was_moved_away() {
    let Some(sb) = host() else { return };
    // Moved away; and moved with a symlink to its new place left behind.
    for hide in [
        "mv .sessions .gone",
        "mv .sessions .s2 && ln -s .s2 .sessions",
    ] {
        let id = sb.start(&[]);
        let marker = unique_sleep_arg();
        sb.exec(
            &id,
            &format!("(setsid sleep {marker} >/dev/null 2>&1 &); {hide}; echo moved"),
        );
        assert!(!procs_with_marker(&marker).is_empty());
        let r = sb.end(&id);
        assert_eq!(r.status, 0, "{hide}: {r:?}");
        let v = r.json();
        assert_eq!(v["status"], "terminated");
        assert!(v["warning"].as_str().unwrap_or("").contains("moved"), "{v}");
        assert!(
            wait_until(std::time::Duration::from_secs(5), || procs_with_marker(
                &marker
            )
            .is_empty()),
            "{hide}: the session outlived end"
        );
        for name in [".sessions", ".gone", ".s2"] {
            let p = sb.work.join(name);
            if p.is_symlink() {
                std::fs::remove_file(&p).unwrap();
            } else if p.exists() {
                std::fs::remove_dir_all(&p).unwrap();
            }
        }
    }
}

/// Re-attack B3: root owns the host's system files, so its Landlock session
/// may not set explicit times on them (a plain `touch`, which asks for
/// "now", still works in the work dir).
#[test]
fn roots_landlock_session_backdates_no_file() {
    let Some(sb) = host() else { return };
    if !is_root() {
        return;
    }
    let id = sb.start(&[]);
    let before = std::fs::metadata("/etc/hostname")
        .map(|m| m.modified().unwrap())
        .ok();
    let v = sb.exec(
        &id,
        "python3 -c 'import os; fd = os.open(\"/etc/hostname\", os.O_RDONLY); os.utime(fd, (1000, 1000))' 2>&1 | tail -1; touch new && echo touched",
    );
    let text = v["stdout"].as_str().unwrap();
    assert!(
        text.contains("Errno 1]") && text.ends_with("touched\n"),
        "{v}"
    );
    let after = std::fs::metadata("/etc/hostname")
        .map(|m| m.modified().unwrap())
        .ok();
    assert_eq!(before, after);
}

/// Re-attack 4: root owns the host's files, so `chown` to itself needs no
/// capability (and strips set-id bits); inode flags need only a readable
/// file. Both are refused in Landlock mode.
#[test]
fn roots_chown_and_inode_flag_ioctls_are_refused() {
    let Some(sb) = host() else { return };
    let (id, data) = session_with_a_read_only_file(&sb);
    // FS_IOC_GETFLAGS, then FS_IOC_SETFLAGS with FS_NODUMP_FL added.
    let ioctl = format!(
        "python3 -c 'import fcntl, struct, os; fd = os.open(\"{}\", os.O_RDONLY); f = struct.unpack(\"l\", fcntl.ioctl(fd, 0x80086601, struct.pack(\"l\", 0)))[0]; fcntl.ioctl(fd, 0x40086602, struct.pack(\"l\", f | 0x40)); print(\"set\")' 2>&1 | tail -1",
        data.display()
    );
    let got = out(&sb, &id, &ioctl);
    assert!(
        got.contains("Errno 1]") || got.contains("Errno 25]"),
        "inode flags: {got}"
    );
    if is_root() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o4755)).unwrap();
        let v = sb.exec(
            &id,
            &format!(
                "chown 0:0 {} 2>&1 | grep -c 'not permitted'",
                data.display()
            ),
        );
        assert_eq!(v["stdout"], "1\n", "{v}");
        let mode = std::fs::metadata(&data).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o4755, "the set-id bit was stripped");
    }
}

/// Round 5: a session that holds its own `meta.lock` for ever, or puts a
/// directory in its place, still ends: `end` stops it before it takes any
/// lock in the session dir, and gives up on the records after a bounded wait.
#[test]
fn a_session_holding_or_breaking_its_own_locks_still_ends() {
    let Some(sb) = host() else { return };
    if !have_program("flock") {
        return;
    }
    for (how, wedge) in [
        ("held", "(setsid flock .sessions/ID/meta.lock sleep 600 </dev/null >/dev/null 2>&1 &); sleep 0.2"),
        ("a directory", "rm .sessions/ID/meta.lock; mkdir .sessions/ID/meta.lock"),
    ] {
        let id = sb.start(&[]);
        let marker = unique_sleep_arg();
        sb.exec(&id, &format!("(setsid sleep {marker} >/dev/null 2>&1 &)"));
        // The exec that takes the lock may itself wait on it; not waited for.
        let mut c = sb.command();
        c.args(["exec", &id]);
        let _ = run_command(c, wedge.replace("ID", &id).as_bytes());
        let t = std::time::Instant::now();
        let r = sb.end(&id);
        assert_eq!(r.status, 0, "{how}: {r:?}");
        assert!(t.elapsed() < std::time::Duration::from_secs(30), "{how}: end took {:?}", t.elapsed());
        assert!(
            wait_until(std::time::Duration::from_secs(5), || procs_with_marker(&marker).is_empty()),
            "{how}: the session outlived end"
        );
    }
}

/// Round 5: ext4's own inode-generation ioctl and read leases on files the
/// session may only read are refused too.
#[test]
fn leases_and_ext4_generation_ioctls_are_refused() {
    let Some(sb) = host() else { return };
    let (id, data) = session_with_a_read_only_file(&sb);
    let py = |code: &str| {
        format!(
            "python3 -c 'import fcntl, struct, os; fd = os.open(\"{}\", os.O_RDONLY); {code}; print(\"done\")' 2>&1 | tail -1",
            data.display()
        )
    };
    let lease = out(&sb, &id, &py("fcntl.fcntl(fd, 1024, fcntl.F_RDLCK)"));
    assert!(lease.contains("Errno 1]"), "lease: {lease}");
    if is_root() {
        let generation = out(
            &sb,
            &id,
            &py("fcntl.ioctl(fd, 0x40086604, struct.pack(\"l\", 12345))"),
        );
        assert!(generation.contains("Errno 1]"), "generation: {generation}");
    }
}

/// A profile whose masks Landlock cannot hold (`auto` resolving to Landlock)
/// is refused at start, not started with the masks silently dropped.
#[test]
fn masks_refuse_an_auto_profile_that_became_landlock() {
    let Some(sb) = host() else { return };
    let profile = sb.dir.path().join("masked.toml");
    std::fs::write(&profile, "[filesystem]\nmasked = [\"/etc/hostname\"]\n").unwrap();
    sb.run(&["start", "--profile", profile.to_str().unwrap()], b"")
        .assert_error(&["Landlock mode", "filesystem.masked"]);
}
