//! The built-in profiles, black-box: each starts and runs a command, and the
//! jail settings that set them apart (network, read-only work dir, no jail)
//! reach the session.

mod common;

use common::*;
use std::net::TcpListener;

fn start_with(sb: &Sandbox, profile: &str) -> String {
    sb.start(&["--profile", profile])
}

#[test]
fn every_builtin_profile_starts_runs_and_is_recorded() {
    let sb = Sandbox::new();
    let r = sb.run(&["profiles"], b"");
    assert_eq!(r.status, 0, "{r:?}");
    for name in [
        "default",
        "untrusted",
        "network",
        "readonly",
        "ci",
        "unconfined",
    ] {
        assert!(
            r.stdout.lines().any(|l| l.starts_with(name)),
            "`profiles` lists {name}: {}",
            r.stdout
        );
        let id = start_with(&sb, name);
        let v = sb.exec(&id, "echo ran");
        assert_eq!(v["stdout"], "ran\n", "{name}: {v}");
        assert_eq!(sb.read_json(&id, "profile.json")["name"], name);
        let listed = sb.run(&["list"], b"").json();
        let entry = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["session_id"] == id.as_str())
            .cloned()
            .unwrap();
        assert_eq!(entry["profile"], name, "list shows the profile");
        let shown = sb.run(&["profiles", "show", name], b"").json();
        assert_eq!(shown["name"], name);
        assert_eq!(sb.end(&id).status, 0);
    }
}

#[test]
fn readonly_profile_keeps_the_work_dir_unchanged() {
    let sb = Sandbox::new();
    std::fs::write(sb.work.join("existing"), "old\n").unwrap();
    let id = start_with(&sb, "readonly");
    let v = sb.exec(
        &id,
        "cat existing; echo new > existing 2>/dev/null || echo refused; \
         touch created 2>/dev/null || echo refused; echo tmp > /tmp/ok && cat /tmp/ok",
    );
    assert_eq!(v["stdout"], "old\nrefused\nrefused\ntmp\n", "{v}");
    assert_eq!(
        std::fs::read_to_string(sb.work.join("existing")).unwrap(),
        "old\n"
    );
    assert!(!sb.work.join("created").exists());
    assert_eq!(sb.end(&id).status, 0);
}

#[test]
fn network_profile_reaches_the_hosts_loopback() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sb = Sandbox::new();
    let id = start_with(&sb, "network");
    let v = sb.exec(
        &id,
        &format!("(echo hello > /dev/tcp/127.0.0.1/{port}) && echo CONNECTED"),
    );
    assert_eq!(v["stdout"], "CONNECTED\n", "{v}");
    let (mut conn, _) = listener.accept().unwrap();
    let mut got = String::new();
    std::io::Read::read_to_string(&mut conn, &mut got).unwrap();
    assert_eq!(got, "hello\n");
    // The rest of the jail still holds: no host secrets, own processes only.
    let v = sb.exec(&id, "cat /etc/shadow | wc -c; ls /proc | grep -c '^[0-9]'");
    let lines: Vec<&str> = v["stdout"].as_str().unwrap().lines().collect();
    assert_eq!(lines[0], "0", "{v}");
    assert!(lines[1].parse::<u32>().unwrap() < 10, "{v}");
    assert_eq!(sb.end(&id).status, 0);
}

#[test]
fn unconfined_profile_runs_on_the_host_as_it_is() {
    let sb = Sandbox::new();
    let id = start_with(&sb, "unconfined");
    let v = sb.exec(&id, "echo $$ > pid; ls /proc | grep -c '^[0-9]'");
    let count: u32 = v["stdout"].as_str().unwrap().trim().parse().unwrap();
    assert!(count > 10, "unconfined sees the host's processes: {v}");
    assert_eq!(sb.metadata(&id)["holder"]["jailed"], false);
    assert_eq!(sb.end(&id).status, 0);
}
