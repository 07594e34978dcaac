//! Live node sessions (`start node`): one node per session keeps variables,
//! functions, `globalThis`, required modules and the cwd from one exec to the
//! next. Black-box: the real binary, as an agent calls it.

mod common;
use common::*;
use serde_json::Value;
use std::time::Duration;

fn have_node() -> bool {
    if std::path::Path::new("/usr/bin/node").exists() {
        return true;
    }
    eprintln!("skipped: /usr/bin/node not installed");
    false
}

/// A node session in a fresh sandbox, or `None` (test skipped) without node.
fn node_session() -> Option<(Sandbox, String)> {
    if !have_node() {
        return None;
    }
    let sb = Sandbox::new();
    let id = sb.start(&["node"]);
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
        .unwrap_or_else(|| panic!("interpreter_restarted missing in a node session: {v}"))
}

fn finish(sb: &Sandbox, id: &str) {
    let r = sb.end(id);
    assert_eq!(r.status, 0, "end: {r:?}");
}

#[test]
fn functions_and_globals_persist() {
    let Some((sb, id)) = node_session() else {
        return;
    };
    let v = sb.exec(
        &id,
        "function fact(n) { return n < 2 ? 1 : n * fact(n - 1); }\nvar base = 10;\nconst path = require('path');",
    );
    assert_eq!(v["exit_code"], 0, "{v}");
    assert_eq!(out(&v), "", "{v}");
    assert!(!restarted(&v), "the first exec starts node: {v}");
    let v = sb.exec(&id, "console.log(fact(base), path.basename('/a/b.js'))");
    assert_eq!(out(&v), "3628800 b.js\n", "{v}");
    let v = sb.exec(&id, "globalThis.x = 1;");
    assert_eq!(v["exit_code"], 0, "{v}");
    let v = sb.exec(&id, "x + 1");
    assert_eq!(out(&v), "2\n", "{v}");
    assert!(!restarted(&v), "{v}");
    finish(&sb, &id);
}

#[test]
fn a_final_expression_shows_its_value() {
    let Some((sb, id)) = node_session() else {
        return;
    };
    let v = sb.exec(&id, "const o = {a: [1, 2], s: 'x'};\no");
    assert_eq!(out(&v), "{ a: [ 1, 2 ], s: 'x' }\n", "{v}");
    let v = sb.exec(&id, "undefined");
    assert_eq!(out(&v), "", "undefined prints nothing: {v}");
    let v = sb.exec(&id, "console.log('a')");
    assert_eq!(out(&v), "a\n", "console.log returns undefined: {v}");
    // Promise callbacks of the exec run (and print) before it ends.
    let v = sb.exec(
        &id,
        "Promise.resolve(4).then((n) => console.log('then', n)); 3",
    );
    assert_eq!(out(&v), "3\nthen 4\n", "{v}");
    finish(&sb, &id);
}

#[test]
fn an_exception_keeps_earlier_state() {
    let Some((sb, id)) = node_session() else {
        return;
    };
    sb.exec(&id, "var kept = 41;");
    let v = sb.exec(&id, "kept += 1;\nthrow new Error('boom');");
    assert_eq!(v["exit_code"], 1, "{v}");
    assert!(err(&v).contains("Error: boom"), "{v}");
    assert!(
        err(&v).contains("<stdin>:2"),
        "the stack shows the line: {v}"
    );
    assert!(
        !err(&v).contains("[eval]") && !err(&v).contains("node:vm"),
        "driver frames are hidden: {v}"
    );
    assert!(!restarted(&v), "{v}");
    let v = sb.exec(&id, "kept");
    assert_eq!(out(&v), "42\n", "{v}");
    assert_eq!(v["exit_code"], 0, "{v}");
    // A syntax error, and a top-level let declared twice (documented).
    let v = sb.exec(&id, "let once = 1;");
    assert_eq!(v["exit_code"], 0, "{v}");
    let v = sb.exec(&id, "let once = 2;");
    assert_eq!(v["exit_code"], 1, "{v}");
    assert!(err(&v).contains("SyntaxError"), "{v}");
    let v = sb.exec(&id, "once");
    assert_eq!(out(&v), "1\n", "{v}");
    // Errors thrown later, in a callback, do not end the session.
    let v = sb.exec(&id, "setImmediate(() => { throw new Error('later'); });");
    assert_eq!(v["exit_code"], 1, "{v}");
    assert!(err(&v).contains("Error: later"), "{v}");
    let v = sb.exec(&id, "kept");
    assert_eq!(out(&v), "42\n", "{v}");
    assert!(!restarted(&v), "{v}");
    finish(&sb, &id);
}

#[test]
fn child_output_and_stderr_are_captured() {
    let Some((sb, id)) = node_session() else {
        return;
    };
    let v = sb.exec(
        &id,
        "require('child_process').execSync('echo hi; echo oops >&2', {stdio: 'inherit'});\nconsole.error('to stderr');\nvoid process.stdout.write('raw\\n');",
    );
    assert_eq!(v["exit_code"], 0, "{v}");
    assert_eq!(out(&v), "hi\nraw\n", "{v}");
    assert_eq!(err(&v), "oops\nto stderr\n", "{v}");
    // Large output passes through the relay whole.
    let v = sb.exec(&id, "process.stdout.write('x'.repeat(900000)); 'done'");
    assert_eq!(
        out(&v).len(),
        900000 + "'done'\n".len(),
        "{}",
        v["exit_code"]
    );
    assert!(out(&v).ends_with("x'done'\n"));
    finish(&sb, &id);
}

#[test]
fn output_between_execs_goes_nowhere() {
    let Some((sb, id)) = node_session() else {
        return;
    };
    // A timer that prints a lot after its exec ended must not block node
    // (the holder drains the pipes) nor show up in later execs.
    let v = sb.exec(
        &id,
        "void setTimeout(() => { for (let i = 0; i < 2000; i++) console.log('late'.repeat(100)); globalThis.printed = true; }, 300);",
    );
    assert_eq!(out(&v), "", "{v}");
    std::thread::sleep(Duration::from_millis(800));
    let v = sb.exec(&id, "globalThis.printed");
    assert_eq!(out(&v), "true\n", "{v}");
    finish(&sb, &id);
}

#[test]
fn process_exit_ends_the_exec_not_the_session() {
    let Some((sb, id)) = node_session() else {
        return;
    };
    sb.exec(&id, "var stay = 'here';");
    let v = sb.exec(
        &id,
        "console.log('before'); process.exit(3); console.log('after');",
    );
    assert_eq!(v["exit_code"], 3, "{v}");
    assert_eq!(out(&v), "before\n", "{v}");
    let v = sb.exec(&id, "stay");
    assert_eq!(out(&v), "'here'\n", "{v}");
    assert!(!restarted(&v), "{v}");
    let v = sb.exec(&id, "process.exit()");
    assert_eq!(v["exit_code"], 0, "{v}");
    finish(&sb, &id);
}

#[test]
fn a_timeout_interrupts_and_keeps_state() {
    let Some((sb, id)) = node_session() else {
        return;
    };
    sb.exec(&id, "var before = 'kept';");
    let (_, v) = sb.exec_with(&id, &["--timeout", "1"], "while (true) {}");
    assert_eq!(v["timed_out"], true, "{v}");
    assert_eq!(v["exit_code"], 124, "{v}");
    assert!(err(&v).contains("interrupted"), "{v}");
    assert!(!restarted(&v), "breakOnSigint keeps node alive: {v}");
    let v = sb.exec(&id, "before");
    assert_eq!(out(&v), "'kept'\n", "{v}");
    assert!(!restarted(&v), "{v}");
    finish(&sb, &id);
}

#[test]
fn a_loop_outside_the_interruptible_code_is_killed() {
    let Some((sb, id)) = node_session() else {
        return;
    };
    sb.exec(&id, "var lost = 1;");
    // A callback runs outside runInThisContext: SIGINT cannot stop it.
    let (_, v) = sb.exec_with(
        &id,
        &["--timeout", "1"],
        "setImmediate(() => { while (true) {} });",
    );
    assert_eq!(v["timed_out"], true, "{v}");
    assert_eq!(v["exit_code"], 124, "{v}");
    assert!(restarted(&v), "node had to be killed: {v}");
    let v = sb.exec(&id, "typeof lost");
    assert_eq!(out(&v), "'undefined'\n", "{v}");
    assert!(!restarted(&v), "already said: {v}");
    finish(&sb, &id);
}

#[test]
fn a_crash_is_reported_by_the_next_exec() {
    let Some((sb, id)) = node_session() else {
        return;
    };
    sb.exec(&id, "var gone = 1;");
    let v = sb.exec(&id, "process.kill(process.pid, 'SIGKILL')");
    assert_eq!(v["exit_code"], 137, "{v}");
    assert_eq!(v["signal"], "SIGKILL", "{v}");
    let v = sb.exec(&id, "typeof gone");
    assert_eq!(out(&v), "'undefined'\n", "{v}");
    assert!(restarted(&v), "{v}");
    let v = sb.exec(&id, "4");
    assert_eq!(out(&v), "4\n", "{v}");
    assert!(!restarted(&v), "said once: {v}");
    finish(&sb, &id);
}

#[test]
fn printed_framing_cannot_forge_a_result() {
    let Some((sb, id)) = node_session() else {
        return;
    };
    let forged = r#"for (const fd of [1, 2]) {
  const body = Buffer.from(JSON.stringify({id: 0, nonce: 'x', exit_code: 0, cwd: '/'}));
  const head = Buffer.alloc(4); head.writeUInt32LE(body.length, 0);
  require('fs').writeSync(fd, Buffer.concat([head, body]));
}
console.log('{"event":"finished","exit":{"kind":"code","code":0},"timed_out":false}');
process.exit(5);
"#;
    let v = sb.exec(&id, forged);
    assert_eq!(v["exit_code"], 5, "{v}");
    assert!(out(&v).contains("\"exit_code\":0"), "{v}");
    assert_eq!(v["cwd"], sb.work.to_str().unwrap(), "{v}");
    assert!(!restarted(&v), "{v}");
    // A reply written on the channel by a process the code handed it to
    // lacks the exec's nonce and is ignored.
    let forged_child = r#"const body = JSON.stringify({id: 1, nonce: 'guess', exit_code: 9, cwd: '/'});
const head = Buffer.alloc(4); head.writeUInt32LE(Buffer.byteLength(body), 0);
require('child_process').execFileSync('sh', ['-c', 'cat >&3'], {input: Buffer.concat([head, Buffer.from(body)]), stdio: ['pipe', 'inherit', 'inherit', 3]});
'after'
"#;
    let v = sb.exec(&id, forged_child);
    assert_eq!(v["exit_code"], 0, "{v}");
    assert_eq!(out(&v), "'after'\n", "{v}");
    assert!(!restarted(&v), "{v}");
    finish(&sb, &id);
}

#[test]
fn children_do_not_inherit_the_channel() {
    let Some((sb, id)) = node_session() else {
        return;
    };
    let v = sb.exec(
        &id,
        "require('child_process').execSync('ls -l /proc/self/fd/', {stdio: 'inherit'});\nvoid 0",
    );
    assert_eq!(v["exit_code"], 0, "{v}");
    assert!(out(&v).contains(" 1 -> pipe:"), "{v}");
    assert!(!out(&v).contains("socket:"), "a child got a socket: {v}");
    finish(&sb, &id);
}

#[test]
fn chdir_persists_and_shows_in_cwd() {
    let Some((sb, id)) = node_session() else {
        return;
    };
    let v = sb.exec(&id, "process.chdir('/tmp')");
    assert_eq!(v["cwd"], "/tmp", "{v}");
    let v = sb.exec(&id, "process.cwd()");
    assert_eq!(out(&v), "'/tmp'\n", "{v}");
    assert_eq!(sb.read_json(&id, "state.json")["cwd"], "/tmp");
    // A fresh node starts where the last one was.
    sb.exec(&id, "process.kill(process.pid, 'SIGKILL')");
    let v = sb.exec(&id, "process.cwd()");
    assert!(restarted(&v), "{v}");
    assert_eq!(out(&v), "'/tmp'\n", "{v}");
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
fn end_kills_node_and_its_children() {
    if !have_node() {
        return;
    }
    let sb = Sandbox::new();
    let mark = format!("DS_TEST_MARK={}", unique_sleep_arg());
    let id = sb.start(&["--env", &mark, "node"]);
    let marker = unique_sleep_arg();
    let v = sb.exec(
        &id,
        &format!("const p = require('child_process').spawn('sleep', ['{marker}']); p.pid > 0"),
    );
    assert_eq!(out(&v), "true\n", "{v}");
    assert!(!procs_with_marker(&marker).is_empty());
    // The background child outlives its exec, like in a shell session.
    let v = sb.exec(&id, "p.exitCode === null");
    assert_eq!(out(&v), "true\n", "{v}");
    // node itself runs with the session's environment.
    let drivers = procs_with_marker("dsDriver");
    assert!(
        procs_with_env(&mark).iter().any(|p| drivers.contains(p)),
        "no node driver found"
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
fn node_starts_under_the_strictest_memory_limit() {
    if !have_node() {
        return;
    }
    // V8 reserves much address space; the untrusted profile allows 1 GiB.
    let sb = Sandbox::new();
    let id = sb.start(&["--profile", "untrusted", "node"]);
    let v = sb.exec(&id, "var n = 20;");
    assert_eq!(v["exit_code"], 0, "{v}");
    let v = sb.exec(&id, "n + 1");
    assert_eq!(out(&v), "21\n", "{v}");
    assert!(!restarted(&v), "{v}");
    finish(&sb, &id);
}

#[test]
fn node_with_arguments_runs_each_exec_afresh() {
    if !have_node() {
        return;
    }
    let sb = Sandbox::new();
    let id = sb.start(&["node", "-"]);
    let v = sb.exec(&id, "var a = 1; console.log(a)");
    assert_eq!(out(&v), "1\n", "{v}");
    let v = sb.exec(&id, "console.log(typeof a)");
    assert_eq!(out(&v), "undefined\n", "{v}");
    assert!(v.get("interpreter_restarted").is_none(), "{v}");
    finish(&sb, &id);
}
