use super::*;
use std::io::Write;

fn user(text: &str) -> (tempfile::TempDir, String, Result<Profile, String>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let label = path.display().to_string();
    let result = Profile::load(&label);
    (dir, label, result)
}

/// The error of a user file, checked to start with `profile PATH: ` and be one line.
fn user_err(text: &str) -> String {
    let (_dir, label, result) = user(text);
    let err = result.expect_err(text);
    let prefix = format!("profile {label}: ");
    assert!(err.starts_with(&prefix), "{err}");
    assert!(!err.contains('\n'), "{err}");
    err[prefix.len()..].to_string()
}

#[test]
fn every_builtin_parses() {
    for name in Profile::builtin_names() {
        let p = Profile::load(name).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.name, *name);
        assert_eq!(p.source, None);
        assert!(!p.description.is_empty());
        assert!(p.limits.output_bytes <= MAX_OUTPUT_BYTES);
        assert!(!p.summary().contains('\n'));
        // Each built-in is written out in full: it equals itself without the overlay.
        let raw = raw::parse(builtin::text(name).unwrap()).unwrap();
        assert!(raw.filesystem.is_some() && raw.limits.is_some() && raw.env.is_some());
        let l = raw.limits.unwrap();
        assert!(l.timeout.is_some() && l.cpu.is_some() && l.output.is_some());
    }
}

#[test]
fn builtins_match_the_spec_table() {
    use Access::*;
    let expect = [
        ("default", Isolation::Auto, ReadWrite, Network::None),
        ("untrusted", Isolation::Jail, ReadWrite, Network::None),
        ("network", Isolation::Auto, ReadWrite, Network::Host),
        ("readonly", Isolation::Auto, ReadOnly, Network::None),
        ("ci", Isolation::Auto, ReadWrite, Network::Host),
        ("unconfined", Isolation::None, ReadWrite, Network::Host),
    ];
    assert_eq!(
        Profile::builtin_names(),
        expect.iter().map(|e| e.0).collect::<Vec<_>>()
    );
    for (name, iso, access, net) in expect {
        let p = Profile::load(name).unwrap();
        assert_eq!(
            (p.isolation, p.filesystem.work_dir, p.network),
            (iso, access, net),
            "{name}"
        );
    }
    let d = Profile::load("default").unwrap().limits;
    let u = Profile::load("untrusted").unwrap().limits;
    let ci = Profile::load("ci").unwrap().limits;
    assert!(u.timeout_ms < d.timeout_ms && d.timeout_ms < ci.timeout_ms);
    assert!(u.memory_bytes < d.memory_bytes);
    assert!(u.processes < d.processes);
    assert_eq!(u.timeout_ms, 60_000);
    assert_eq!(u.memory_bytes, Some(1 << 30));
    assert_eq!(u.processes, Some(128));
    assert_eq!(u.file_size_bytes, Some(256 << 20));
    assert_eq!(u.open_files, Some(256));
    assert_eq!(u.cpu_seconds, Some(60));
    assert_eq!(ci.timeout_ms, 3_600_000);
    // Every jailed built-in bounds its private dirs, below its memory limit
    // (the tmpfs is counted against it); unconfined has none to bound.
    for name in Profile::builtin_names() {
        let p = Profile::load(name).unwrap();
        match (p.isolation, p.limits.disk_bytes, p.limits.memory_bytes) {
            (Isolation::None, None, _) => {}
            (Isolation::Jail | Isolation::Auto, Some(disk), Some(memory)) => {
                assert!(disk < memory, "{name}")
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    assert_eq!(u.disk_bytes, Some(256 << 20));
}

#[test]
fn default_values() {
    let p = Profile::load("default").unwrap();
    assert_eq!(p.hostname, "sandbox");
    assert_eq!(
        p.limits,
        Limits {
            timeout_ms: 300_000,
            kill_grace_ms: 2_000,
            cpu_seconds: Some(600),
            memory_bytes: Some(4 << 30),
            processes: Some(1024),
            file_size_bytes: Some(2 << 30),
            open_files: Some(1024),
            output_bytes: 1 << 20,
            disk_bytes: Some(1 << 30),
        }
    );
    assert!(p.filesystem.read_only.is_empty() && p.env.set.is_empty());
}

#[test]
fn empty_user_file_is_default() {
    let (_dir, label, result) = user("# nothing\n");
    let p = result.unwrap();
    let d = Profile::load("default").unwrap();
    assert_eq!(p.name, "p");
    assert_eq!(p.source.as_deref(), Some(Path::new(&label)));
    assert_eq!(p.description, format!("user profile {label}"));
    assert_eq!(p.limits, d.limits);
    assert_eq!(p.filesystem, d.filesystem);
    assert_eq!((p.isolation, p.network), (d.isolation, d.network));
    assert_eq!(p.env, d.env);
    assert_eq!(p.hostname, d.hostname);
}

#[test]
fn user_file_overrides_some_keys() {
    let (_d, _l, r) = user(
        r#"
description = "mine"
network = "host"
hostname = "box-1.local"
[filesystem]
work_dir = "ro"
read_only = ["/opt/tools/", "/srv//data"]
masked = ["/etc/hosts"]
[limits]
timeout = "90s"
cpu = "unlimited"
memory = 536870912
processes = "64"
file_size = "1.5GiB"
output = "64KiB"
[env]
set = { LANG = "C.UTF-8", _X1 = "a b" }
pass = ["TERM"]
"#,
    );
    let p = r.unwrap();
    assert_eq!(p.description, "mine");
    assert_eq!(p.network, Network::Host);
    assert_eq!(p.hostname, "box-1.local");
    assert_eq!(p.filesystem.work_dir, Access::ReadOnly);
    assert_eq!(
        p.filesystem.read_only,
        [PathBuf::from("/opt/tools"), PathBuf::from("/srv/data")]
    );
    assert_eq!(p.filesystem.masked, [PathBuf::from("/etc/hosts")]);
    assert_eq!(p.limits.timeout_ms, 90_000);
    assert_eq!(p.limits.kill_grace_ms, 2_000);
    assert_eq!(p.limits.cpu_seconds, None);
    assert_eq!(p.limits.memory_bytes, Some(512 << 20));
    // The budget the file did not set: half of the memory it lowered.
    assert_eq!(p.limits.disk_bytes, Some(256 << 20));
    assert_eq!(p.limits.processes, Some(64));
    assert_eq!(p.limits.file_size_bytes, Some(3 << 29));
    assert_eq!(p.limits.open_files, Some(1024));
    assert_eq!(p.limits.output_bytes, 64 << 10);
    assert_eq!(p.env.set["LANG"], "C.UTF-8");
    assert_eq!(p.env.pass, ["TERM"]);
}

#[test]
fn cpu_rounds_up_to_whole_seconds() {
    let (_d, _l, r) = user("[limits]\ncpu = \"1500ms\"\n");
    assert_eq!(r.unwrap().limits.cpu_seconds, Some(2));
    let (_d, _l, r) = user("[limits]\ncpu = 30\n");
    assert_eq!(r.unwrap().limits.cpu_seconds, Some(30));
}

#[test]
fn bad_values_name_the_key_and_reason() {
    let cases: &[(&str, &str)] = &[
        (
            "[limits]\nmemory = \"12 parsecs\"",
            "limits.memory: \"12 parsecs\" is not a size (use e.g. \"512MiB\"",
        ),
        (
            "[limits]\ntimeout = \"0s\"",
            "limits.timeout: must be more than 0s and at most 7d",
        ),
        (
            "[limits]\ntimeout = 0",
            "limits.timeout: must be more than 0s",
        ),
        (
            "[limits]\ntimeout = \"8d\"",
            "limits.timeout: must be more than 0s and at most 7d",
        ),
        (
            "[limits]\ntimeout = \"soon\"",
            "limits.timeout: \"soon\" is not a duration",
        ),
        (
            "[limits]\ntimeout = \"unlimited\"",
            "limits.timeout: \"unlimited\" is not allowed here",
        ),
        (
            "[limits]\nkill_grace = \"2m\"",
            "limits.kill_grace: must be at most 1m",
        ),
        ("[limits]\ncpu = \"0s\"", "limits.cpu: must be more than 0s"),
        ("[limits]\ncpu = -5", "limits.cpu: -5 is negative"),
        (
            "[limits]\noutput = \"5MiB\"",
            "limits.output: 5MiB is out of range (1KiB to 4MiB",
        ),
        (
            "[limits]\noutput = \"unlimited\"",
            "limits.output: cannot be unlimited",
        ),
        (
            "[limits]\noutput = 10",
            "limits.output: 10B is out of range",
        ),
        (
            "[limits]\nprocesses = 0",
            "limits.processes: 0 is out of range (1 to ",
        ),
        (
            "[limits]\nprocesses = \"many\"",
            "limits.processes: \"many\" is not a whole number",
        ),
        (
            "[limits]\nopen_files = 3",
            "limits.open_files: 3 is out of range (16 to 1048576",
        ),
        (
            "[limits]\nmemory = \"1MiB\"",
            "limits.memory: 1MiB is too small",
        ),
        (
            "[limits]\nfile_size = 0",
            "limits.file_size: must be more than 0",
        ),
        ("[limits]\nmemory = -1", "limits.memory: -1 is negative"),
        (
            "[limits]\nmemory = 1.5",
            "limits.memory: invalid type: floating point",
        ),
        (
            "[filesystem]\nread_only = [\"relative/dir\"]",
            "filesystem.read_only: \"relative/dir\" is not an absolute path",
        ),
        (
            "[filesystem]\nread_write = [\"/a/../etc\"]",
            "filesystem.read_write: \"/a/../etc\" contains \"..\"",
        ),
        (
            "[filesystem]\nmasked = [\"/\"]",
            "filesystem.masked: \"/\" is the whole file system",
        ),
        (
            "[filesystem]\nmasked = [\"/a\", \"/a/\"]",
            "filesystem.masked: \"/a/\" is listed twice",
        ),
        (
            "[filesystem]\nwork_dir = \"rwx\"",
            "filesystem.work_dir: \"rwx\" is not one of \"rw\", \"ro\"",
        ),
        (
            "isolation = \"chroot\"",
            "isolation: \"chroot\" is not one of \"auto\", \"jail\", \"landlock\", \"none\"",
        ),
        (
            "network = \"lan\"",
            "network: \"lan\" is not one of \"none\", \"host\"",
        ),
        ("network = true", "network: invalid type: boolean"),
        (
            "isolation = \"none\"",
            "network: \"none\" needs isolation = \"jail\"",
        ),
        (
            "isolation = \"none\"\nnetwork = \"host\"\n[filesystem]\nwork_dir = \"ro\"",
            "filesystem.work_dir: \"ro\" needs isolation = \"jail\"",
        ),
        (
            "isolation = \"none\"\nnetwork = \"host\"\n[filesystem]\nmasked = [\"/x\"]",
            "filesystem.masked: needs isolation = \"jail\"",
        ),
        (
            "hostname = \"\"",
            "hostname: \"\" is not a host name (1 to 64",
        ),
        ("hostname = \"a b\"", "hostname: \"a b\" is not a host name"),
        ("hostname = \"a_b\"", "hostname: \"a_b\" is not a host name"),
        (
            "description = \"two\\nlines\"",
            "description: must be one line",
        ),
        (
            "isolation = \"landlock\"\n[filesystem]\nmasked = [\"/x\"]",
            "filesystem.masked: needs isolation = \"jail\" (Landlock grants whole",
        ),
        (
            "[limits]\ndisk = \"512KiB\"",
            "limits.disk: 512KiB is out of range (1MiB to 1TiB",
        ),
        ("[limits]\ndisk = 0", "limits.disk: 0B is out of range"),
        ("[limits]\ndisk = \"lots\"", "limits.disk: "),
        (
            "isolation = \"none\"\nnetwork = \"host\"\n[limits]\ndisk = \"1GiB\"",
            "limits.disk: a budget needs isolation = \"jail\"",
        ),
        (
            "[limits]\nmemory = \"512MiB\"\ndisk = \"512MiB\"",
            "limits.disk: 512MiB must be below limits.memory (512MiB)",
        ),
        (
            "[env]\nset = { \"1X\" = \"a\" }",
            "env.set: \"1X\" is not a variable name",
        ),
        (
            "[env]\nset = { \"A-B\" = \"a\" }",
            "env.set: \"A-B\" is not a variable name",
        ),
        (
            "[env]\nset = { A = \"a\\u0000b\" }",
            "env.set.A: contains a NUL character",
        ),
        (
            "[env]\npass = [\"\"]",
            "env.pass: \"\" is not a variable name",
        ),
        (
            "[env]\npass = [\"PATH=x\"]",
            "env.pass: \"PATH=x\" is not a variable name",
        ),
    ];
    for (text, want) in cases {
        let err = user_err(text);
        assert!(err.starts_with(want), "{text:?}\n got: {err}\nwant: {want}");
    }
    let long = format!("hostname = \"{}\"", "a".repeat(65));
    assert!(user_err(&long).starts_with("hostname: "));
}

#[test]
fn unknown_keys_are_named() {
    let err = user_err("[limits]\nmemroy = \"1GiB\"\n");
    assert!(
        err.starts_with(
            "unknown key \"limits.memroy\" (known keys here: timeout, kill_grace, cpu, memory"
        ),
        "{err}"
    );
    let err = user_err("[limit]\n");
    assert!(err.starts_with("unknown key \"limit\""), "{err}");
    let err = user_err("[env]\nset = {}\npas = []\n");
    assert!(err.starts_with("unknown key \"env.pas\""), "{err}");
    let err = user_err("[filesystem.work_dir]\n");
    assert!(
        err.starts_with("filesystem.work_dir: invalid type"),
        "{err}"
    );
}

#[test]
fn syntax_errors_are_one_line_with_position() {
    let err = user_err("[limits]\ntimeout = 5s\n");
    assert!(err.starts_with("line 2, column "), "{err}");
}

#[test]
fn unknown_builtin_lists_the_builtins() {
    let err = Profile::load("defualt").unwrap_err();
    assert_eq!(
        err,
        "unknown profile \"defualt\" (built-in: default, untrusted, network, readonly, ci, unconfined; or give a path to a .toml file)"
    );
}

#[test]
fn unreadable_files_give_the_os_reason() {
    let err = Profile::load("/nonexistent/dir/p.toml").unwrap_err();
    assert_eq!(
        err,
        "profile /nonexistent/dir/p.toml: cannot read: No such file or directory"
    );
    let dir = tempfile::tempdir().unwrap();
    let label = format!("{}/", dir.path().display());
    let err = Profile::load(&label).unwrap_err();
    assert_eq!(err, format!("profile {label}: cannot read: is a directory"));
    // Relative names ending in .toml are paths too.
    let err = Profile::load("no-such-profile.toml").unwrap_err();
    assert!(
        err.starts_with("profile no-such-profile.toml: cannot read: "),
        "{err}"
    );
}

#[test]
fn huge_and_binary_files_are_refused() {
    let err = user_err(&"#".repeat(2 << 20));
    assert!(err.starts_with("is larger than 1MiB"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bin.toml");
    std::fs::write(&path, b"a = \"\xff\"").unwrap();
    let err = Profile::load(path.to_str().unwrap()).unwrap_err();
    assert!(err.ends_with(": is not UTF-8 text"), "{err}");
}

#[test]
fn path_or_name() {
    assert!(is_path("./p"));
    assert!(is_path("p.toml"));
    assert!(is_path("/etc/x"));
    assert!(!is_path("default"));
    assert!(!is_path(""));
}

#[test]
fn json_round_trip_and_old_enum_names() {
    for name in Profile::builtin_names() {
        let p = Profile::load(name).unwrap();
        let json = serde_json::to_string(&p).unwrap();
        assert!(!json.contains("\"source\""));
        let back: Profile = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
    }
    let (_d, _l, r) = user("");
    let p = r.unwrap();
    let back: Profile = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
    assert_eq!(back, p);
    let v = serde_json::to_value(Profile::load("readonly").unwrap()).unwrap();
    assert_eq!(v["isolation"], "auto");
    assert_eq!(v["network"], "none");
    assert_eq!(v["filesystem"]["work_dir"], "ro");
    // profile.json written by earlier builds.
    let mut old = v.clone();
    old["isolation"] = "Jail".into();
    old["network"] = "None".into();
    old["filesystem"]["work_dir"] = "ReadOnly".into();
    let back: Profile = serde_json::from_value(old).unwrap();
    let mut want = Profile::load("readonly").unwrap();
    want.isolation = Isolation::Jail;
    assert_eq!(back, want);
}

#[test]
fn summary_is_one_line_with_limits() {
    let s = Profile::load("default").unwrap().summary();
    assert_eq!(
        s,
        "agent tool calls: work dir rw, no network, moderate limits \
         [timeout 5m, cpu 10m, memory 4GiB, processes 1024, output 1MiB, disk 1GiB]"
    );
    let s = Profile::load("unconfined").unwrap().summary();
    assert!(s.contains("processes unlimited"), "{s}");
}

#[test]
fn binds_must_exist_and_be_real_paths() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let with = |key: &str, path: &std::path::Path| {
        let (_d, _label, result) =
            user(&format!("[filesystem]\n{key} = [\"{}\"]\n", path.display()));
        result.unwrap().check_binds()
    };
    let real = std::fs::canonicalize(&real).unwrap();
    assert_eq!(with("read_only", &real), Ok(()));
    assert_eq!(with("read_write", &real), Ok(()));
    let err = with("read_only", &dir.path().join("missing")).unwrap_err();
    assert!(
        err.contains("filesystem.read_only") && err.contains("No such file"),
        "{err}"
    );
    let err = with("read_write", &link).unwrap_err();
    assert!(
        err.contains("filesystem.read_write") && err.contains("symlink"),
        "{err}"
    );
    assert!(err.contains(&real.display().to_string()), "{err}");
}

#[test]
fn an_unasked_disk_budget_adapts_to_the_file() {
    let (_d, _l, r) = user("isolation = \"none\"\nnetwork = \"host\"\n");
    assert_eq!(r.unwrap().limits.disk_bytes, None, "no jail, no budget");
    let (_d, _l, r) = user("[limits]\nmemory = \"8GiB\"\n");
    assert_eq!(
        r.unwrap().limits.disk_bytes,
        Some(1 << 30),
        "default's budget fits"
    );
    let (_d, _l, r) = user("[limits]\nmemory = \"unlimited\"\n");
    assert_eq!(r.unwrap().limits.disk_bytes, Some(1 << 30));
}
