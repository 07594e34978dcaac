//! How a command runs in a fresh shell that starts from the saved state, and
//! how that shell reports its state back.
//!
//! Descriptors of the shell (set up by the jail worker):
//! fd 0 `/dev/null`, fd 1/2 the output pipes, fd 3 a memfd that receives the
//! state report, fd 4 a memfd with the command text, fd 5 (bash) a memfd with
//! the functions and aliases to restore. The command itself runs with fd 3
//! closed, so its output can never be mistaken for the report.
//!
//! The report is NUL-separated: `DS1`, exit status, cwd, functions, aliases,
//! then `NAME=VALUE` for every exported variable, then `DS1-END` (bash). A
//! command that exits, execs another program or is killed never reaches the
//! report, and the previous state is kept.

use crate::store::ShellState;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How the session's command is driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShellKind {
    /// bash: env, cwd, functions and aliases persist; the report uses builtins only.
    Bash,
    /// Other POSIX shells (sh, dash, zsh, ksh): env and cwd persist.
    Posix,
    /// `python3` (or `python`, `python3.X`) without arguments: one live
    /// interpreter per session runs every exec, so variables, imports and
    /// `os.chdir` persist (see [`PYTHON_DRIVER`]).
    Python,
    /// `node` (or `nodejs`) without arguments: one live node per session runs
    /// every exec, so variables, functions, `globalThis`, required modules and
    /// `process.chdir` persist (see [`NODE_DRIVER`]).
    Node,
    /// Anything else (node or python3 with arguments, …): the script arrives on
    /// stdin; cwd and env are those saved at start.
    Script,
}

/// The driver a live Python session runs (`python3 -u -c PYTHON_DRIVER 3`).
pub const PYTHON_DRIVER: &str = include_str!("python_driver.py");

/// The driver a live node session runs (`node -e NODE_DRIVER`).
pub const NODE_DRIVER: &str = include_str!("node_driver.js");

impl ShellKind {
    pub fn of(program: &str) -> ShellKind {
        let base = program.rsplit('/').next().unwrap_or(program);
        match base {
            "bash" => ShellKind::Bash,
            "sh" | "dash" | "zsh" | "ksh" | "mksh" | "ash" | "yash" => ShellKind::Posix,
            _ if is_python(base) => ShellKind::Python,
            "node" | "nodejs" => ShellKind::Node,
            _ => ShellKind::Script,
        }
    }

    /// The kind of a session started as `program args…`. A Python or node
    /// started with arguments (a script, `-m`, options) runs them once per
    /// exec as before: a live interpreter would ignore them.
    pub fn of_session(program: &str, args: &[String]) -> ShellKind {
        match ShellKind::of(program) {
            kind if kind.is_live() && !args.is_empty() => ShellKind::Script,
            kind => kind,
        }
    }

    /// One interpreter per session runs every exec (Python, node).
    pub fn is_live(self) -> bool {
        matches!(self, ShellKind::Python | ShellKind::Node)
    }
}

/// `python`, `python3`, `python3.12`, …
fn is_python(base: &str) -> bool {
    let Some(version) = base.strip_prefix("python") else {
        return false;
    };
    version.is_empty()
        || version == "3"
        || version
            .strip_prefix("3.")
            .is_some_and(|minor| !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit()))
}

const END_MARK: &str = "DS1-END";

/// The part of both bash wrappers after the command: the state report. It
/// is on the same line as the command, which bash has read before the command
/// runs, so that `set -v` does not print it; `set -x` would trace it, so
/// tracing (and `-e`, `-u`, which could stop the report halfway) is turned
/// off first, with its own trace going to `/dev/null`.
macro_rules! bash_report {
    () => {
        concat!(
            r#"; { __ds_rc=$?; builtin set +euxv; } 2>/dev/null; "#,
            r#"{ builtin printf 'DS1\0%s\0' "$__ds_rc"; builtin pwd 2>/dev/null; builtin printf '\0'; "#,
            r#"builtin declare -f; builtin printf '\0'; "#,
            r#"builtin alias -p; builtin printf '\0'; "#,
            r#"builtin export -p; builtin printf '\0DS1-END\0'; } >&3; "#,
            r#"builtin exit "$__ds_rc""#,
            "\n"
        )
    };
}

/// The `-c` script of a bash session. `export -p` lists the environment in
/// one builtin call (see [`bash_export`](super::bash_export)); nothing forks.
/// Every builtin after the prelude is called through `builtin`, so that the
/// session's own functions named `read`, `printf`, `exit`, … cannot stand in
/// for them (`exec` cannot be: its redirections would not last, so a session
/// function named `exec` is unset after the prelude and not kept). The
/// command's own text is evaluated behind `\builtin`, which no alias can
/// replace either: an alias named `builtin` must not make every later exec
/// fail before its command runs.
/// The command is read with the `read` builtin and run with `eval` rather than
/// sourced, so that bash's messages say `bash: …` as for `bash -c`, not
/// `/dev/fd/4: line 1: …`.
pub const BASH_WRAPPER: &str = concat!(
    r#"shopt -s expand_aliases; . /dev/fd/5; builtin unset -f exec; exec 5<&-; IFS= builtin read -r -d '' __ds_cmd </dev/fd/4; exec 4<&-; builtin eval "\\builtin unset __ds_cmd; $__ds_cmd" 3>&-"#,
    bash_report!()
);

/// The `-c` script of a pre-started bash (see `jail::prestart`): it restores
/// the functions and aliases at once, then waits for a line on fd 6 before it
/// reads the command from fd 4; EOF on fd 6 means it is not needed. The wait
/// ignores `TMOUT`, and `SECONDS` restarts from 0, as in a shell started for
/// the command; the command sees the same `$_` as in [`BASH_WRAPPER`].
pub const BASH_PRESTARTED_WRAPPER: &str = concat!(
    r#"shopt -s expand_aliases; . /dev/fd/5; builtin unset -f exec; exec 5<&-; TMOUT= IFS= builtin read -r __ds_go <&6 || builtin exit 0; exec 6<&-; builtin unset __ds_go; SECONDS=0; IFS= builtin read -r -d '' __ds_cmd </dev/fd/4; exec 4<&-; builtin eval "\\builtin unset __ds_cmd; $__ds_cmd" 3>&-"#,
    bash_report!()
);

/// The `-c` script of other POSIX shells: the environment comes from `env -0`.
pub const POSIX_WRAPPER: &str = r#". /dev/fd/4 3>&-
__ds_rc=$?
printf 'DS1\0%s\0%s\0\0\0' "$__ds_rc" "$PWD" >&3
exec env -0 >&3
"#;

/// Variables that act on a program before its first line runs: bash reads
/// `BASH_ENV` before anything else, and the dynamic loader honours the `LD_*`
/// ones before `main`. Exported by a command, any of them could make every
/// later shell of the session die before it runs a command (a `BASH_ENV`
/// that exits, an `LD_PRELOAD` library that exits, an `LD_LIBRARY_PATH` with
/// a broken `libc.so.6`), and nothing could undo it. So the session's own
/// shell starts without them and its prelude exports them again: the
/// command and the programs it starts see them as set.
pub const SHELL_START_VARS: &[&str] = &["BASH_ENV", "GLIBC_TUNABLES"];

/// Whether `name` acts on a program before its first line runs: one of
/// [`SHELL_START_VARS`], or any `LD_*` variable of the dynamic loader
/// (`LD_PRELOAD`, `LD_LIBRARY_PATH`, `LD_AUDIT`, `LD_TRACE_LOADED_OBJECTS`, …).
pub fn acts_at_start(name: &str) -> bool {
    name.starts_with("LD_") || SHELL_START_VARS.contains(&name)
}

/// The text sourced before a bash command: the functions and aliases it
/// left, and the variables it exported that [act at start](acts_at_start).
pub fn bash_prelude(shell: Option<&ShellState>, env: &BTreeMap<String, String>) -> String {
    let mut text = match shell {
        None => String::new(),
        Some(s) => format!("{}\n{}\n", s.functions, s.aliases),
    };
    for (name, v) in env.iter().filter(|(k, _)| acts_at_start(k)) {
        text.push_str(&format!("builtin export {name}={}\n", single_quoted(v)));
    }
    text
}

/// The process environment of a bash session's shell: [`shell_env`]
/// without the variables that [act at start](acts_at_start).
pub fn bash_env(env: &BTreeMap<String, String>, cwd: &Path) -> Vec<String> {
    let mut list = shell_env(env, cwd);
    list.retain(|e| !e.split_once('=').is_some_and(|(k, _)| acts_at_start(k)));
    list
}

/// `text` as one single-quoted shell word.
fn single_quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The environment a shell of the session starts with: the saved variables,
/// then `PWD`.
pub fn shell_env(env: &BTreeMap<String, String>, cwd: &Path) -> Vec<String> {
    let mut list: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    list.push(format!("PWD={}", cwd.display()));
    list
}

/// The kernel refuses to start a program whose environment holds one string
/// over `MAX_ARG_STRLEN` (32 pages, its NUL included) or whose strings and
/// pointers together pass a quarter of the stack limit. A state past these
/// could never be replayed: every later exec would fail.
const MAX_ENV_STRING: usize = 32 * 4096;
/// Well under the quarter of an 8 MiB stack, leaving room for argv.
const MAX_ENV_TOTAL: usize = 1 << 20;

/// Whether an environment captured after an exec can start the next one;
/// the error names the variable and the limit.
pub fn replayable(env: &BTreeMap<String, String>) -> Result<(), String> {
    let mut total = 0usize;
    for (k, v) in env {
        let len = k.len() + 1 + v.len() + 1;
        if len > MAX_ENV_STRING {
            return Err(format!(
                "the variable {k} holds {} bytes, over the kernel's limit of {} bytes for one \
                 variable, so no program could start with it",
                v.len(),
                MAX_ENV_STRING - k.len() - 2
            ));
        }
        total += len + std::mem::size_of::<usize>();
    }
    if total > MAX_ENV_TOTAL {
        return Err(format!(
            "the exported variables take {total} bytes together, over the {MAX_ENV_TOTAL} bytes \
             a session keeps (the kernel limits a program's whole environment)"
        ));
    }
    Ok(())
}

/// The environment, cwd and prelude the next exec of a bash session starts
/// from, given those this exec started from and its state report: exactly
/// what `exec` saves and sends next time (a complete report replaces the
/// state, anything else keeps it). The holder uses it to pre-start the next
/// shell, which is used only if the next request matches.
pub fn next_bash_start(
    env: &[String],
    cwd: &Path,
    prelude: &str,
    report: &[u8],
) -> (Vec<String>, PathBuf, String) {
    match parse_report(report, ShellKind::Bash, true).filter(|c| replayable(&c.env).is_ok()) {
        Some(c) => (
            bash_env(&c.env, &c.cwd),
            c.cwd.clone(),
            bash_prelude(c.shell.as_ref(), &c.env),
        ),
        None => (env.to_vec(), cwd.to_path_buf(), prelude.to_string()),
    }
}

/// What a completed report says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    pub exit_code: i32,
    pub cwd: PathBuf,
    pub env: BTreeMap<String, String>,
    pub shell: Option<ShellState>,
}

/// Variables that describe one shell process rather than the session.
const NOT_PERSISTED: &[&str] = &["_", "SHLVL", "PWD"];

/// Parses a report. `None` unless it is complete: for bash up to the end
/// mark; for other shells `env_complete` says `env -0` exited successfully.
pub fn parse_report(bytes: &[u8], kind: ShellKind, env_complete: bool) -> Option<Captured> {
    let mut parts = bytes.split(|&b| b == 0);
    if parts.next()? != b"DS1" {
        return None;
    }
    let exit_code = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let mut cwd = parts.next()?;
    if kind == ShellKind::Bash {
        // `pwd` (not `$PWD`, which the command may have set or unset) ends
        // its line with a newline.
        cwd = cwd.strip_suffix(b"\n")?;
    }
    let cwd = PathBuf::from(String::from_utf8(cwd.to_vec()).ok()?);
    if !cwd.is_absolute() {
        return None;
    }
    let functions = String::from_utf8_lossy(parts.next()?).into_owned();
    let aliases = String::from_utf8_lossy(parts.next()?).into_owned();
    let mut env = BTreeMap::new();
    let complete = if kind == ShellKind::Bash {
        let exported = super::bash_export::parse(parts.next()?)?;
        if parts.next()? != END_MARK.as_bytes() {
            return None;
        }
        env.extend(exported);
        true
    } else {
        for item in parts.filter(|item| !item.is_empty()) {
            let text = String::from_utf8_lossy(item);
            let (name, value) = text.split_once('=')?;
            env.insert(name.to_string(), value.to_string());
        }
        env_complete
    };
    if !complete {
        return None;
    }
    env.retain(|name, _| valid_name(name) && !NOT_PERSISTED.contains(&name.as_str()));
    let shell = (kind == ShellKind::Bash).then_some(ShellState { functions, aliases });
    Some(Captured {
        exit_code,
        cwd,
        env,
        shell,
    })
}

/// Whether `name` can be an environment variable a shell exports.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(items: &[&str]) -> Vec<u8> {
        let mut v = Vec::new();
        for i in items {
            v.extend_from_slice(i.as_bytes());
            v.push(0);
        }
        v
    }

    #[test]
    fn kinds_follow_the_program_name() {
        assert_eq!(ShellKind::of("bash"), ShellKind::Bash);
        assert_eq!(ShellKind::of("/usr/bin/bash"), ShellKind::Bash);
        assert_eq!(ShellKind::of("zsh"), ShellKind::Posix);
        assert_eq!(ShellKind::of("python3"), ShellKind::Python);
        assert_eq!(ShellKind::of("/usr/bin/python3.11"), ShellKind::Python);
        assert_eq!(ShellKind::of("python"), ShellKind::Python);
        assert_eq!(ShellKind::of("python2"), ShellKind::Script);
        assert_eq!(ShellKind::of("python3-config"), ShellKind::Script);
        assert_eq!(ShellKind::of("node"), ShellKind::Node);
        assert_eq!(
            ShellKind::of_session("python3", &["-m".into(), "x".into()]),
            ShellKind::Script
        );
        assert_eq!(ShellKind::of_session("python3", &[]), ShellKind::Python);
        assert_eq!(ShellKind::of("/usr/bin/node"), ShellKind::Node);
        assert_eq!(ShellKind::of("nodejs"), ShellKind::Node);
        assert_eq!(ShellKind::of("node-gyp"), ShellKind::Script);
        assert_eq!(
            ShellKind::of_session("node", &["app.js".into()]),
            ShellKind::Script
        );
    }

    #[test]
    fn parses_a_complete_bash_report() {
        let r = report(&[
            "DS1",
            "3",
            "/w/sub\n",
            "f () \n{ \n    echo\n}",
            "alias ll='ls -l'",
            "declare -x FOO=\"a=b\"\ndeclare -x _=\"x\"\ndeclare -x MULTI=\"l1\nl2\"\n",
            END_MARK,
        ]);
        let c = parse_report(&r, ShellKind::Bash, false).unwrap();
        assert_eq!(c.exit_code, 3);
        assert_eq!(c.cwd, PathBuf::from("/w/sub"));
        assert_eq!(c.env.get("FOO").unwrap(), "a=b");
        assert_eq!(c.env.get("MULTI").unwrap(), "l1\nl2");
        assert!(!c.env.contains_key("_"));
        assert!(c.shell.unwrap().aliases.contains("ll"));
    }

    #[test]
    fn incomplete_or_garbage_reports_are_rejected() {
        let full = report(&["DS1", "0", "/w\n", "", "", "declare -x A=\"1\"\n", END_MARK]);
        for cut in 0..full.len() - 1 {
            assert!(
                parse_report(&full[..cut], ShellKind::Bash, false).is_none(),
                "cut {cut}"
            );
        }
        assert!(parse_report(b"garbage\0", ShellKind::Bash, false).is_none());
        assert!(parse_report(
            &report(&["DS1", "x", "/w\n", "", "", END_MARK]),
            ShellKind::Bash,
            false
        )
        .is_none());
        assert!(parse_report(
            &report(&["DS1", "0", "rel\n", "", "", END_MARK]),
            ShellKind::Bash,
            false
        )
        .is_none());
    }

    #[test]
    fn posix_reports_need_env_to_finish() {
        let r = report(&["DS1", "0", "/w", "", "", "A=1"]);
        assert!(parse_report(&r, ShellKind::Posix, false).is_none());
        let c = parse_report(&r, ShellKind::Posix, true).unwrap();
        assert_eq!(c.env.get("A").unwrap(), "1");
        assert!(c.shell.is_none());
    }

    #[test]
    fn the_bash_wrappers_never_fork() {
        // No command substitution, pipeline or external program in the capture.
        for wrapper in [BASH_WRAPPER, BASH_PRESTARTED_WRAPPER] {
            let capture = &wrapper[wrapper.find("__ds_rc=$?").unwrap()..];
            assert!(!capture.contains("$(") && !capture.contains('|') && !capture.contains("env"));
            // One line: bash's messages number the command's lines as
            // `bash -c` would, and `set -v` prints none of the wrapper.
            assert_eq!(wrapper.lines().count(), 1, "{wrapper}");
        }
    }

    #[test]
    fn the_next_start_follows_a_complete_report_only() {
        let env = vec!["A=1".to_string(), "PWD=/w".to_string()];
        let r = report(&[
            "DS1",
            "0",
            "/w/sub\n",
            "f () \n{ \n    echo\n}",
            "alias ll='ls -l'",
            "declare -x B=\"2\"\n",
            END_MARK,
        ]);
        let (next_env, cwd, prelude) = next_bash_start(&env, Path::new("/w"), "old", &r);
        assert_eq!(next_env, vec!["B=2".to_string(), "PWD=/w/sub".to_string()]);
        assert_eq!(cwd, PathBuf::from("/w/sub"));
        assert!(prelude.contains("f ()") && prelude.contains("alias ll"));
        let kept = next_bash_start(&env, Path::new("/w"), "old", &r[..r.len() - 3]);
        assert_eq!(kept, (env.clone(), PathBuf::from("/w"), "old".to_string()));
    }
}
