//! The command line: argument parsing, dispatch, and how results and errors
//! are printed. Every error is one `Error: …` line on stderr with exit status 1.

use crate::commands::{self, StartOptions};
use crate::exec::{self, ExecOptions};
use crate::store::SessionId;
use anyhow::{anyhow, Result};
use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

const EXAMPLES: &str = "\
Examples:
  id=$(delta-sessions start | jq -r .session_id)
  echo 'cd src && export MODE=dev' | delta-sessions exec \"$id\"
  printf '%s' 'pwd; echo $MODE' | delta-sessions exec \"$id\"
  delta-sessions exec \"$id\" --raw 'make test'      # stream output, exit with its status
  delta-sessions start --profile untrusted --work-dir ./sandbox python3
  delta-sessions list --all
  delta-sessions end \"$id\"";

#[derive(Debug, Parser)]
#[command(
    name = "delta-sessions",
    version,
    about = "Persistent, stateful command sessions, each in its own namespace jail",
    long_about = "Persistent, stateful command sessions, each in its own namespace jail.\n\n\
Start a session, send it any number of commands, end it. The working directory, exported \
variables, private /tmp and $HOME, and background processes carry over between commands. \
Every command returns its whole output at once, as JSON.",
    after_help = EXAMPLES,
    disable_version_flag = true
)]
struct Cli {
    /// Print the version
    #[arg(short = 'v', long = "version", short_alias = 'V', action = clap::ArgAction::Version)]
    version: Option<bool>,

    /// Directory that holds the sessions [default: ./.sessions]
    #[arg(long, global = true, env = "DELTA_SESSIONS_DIR", value_name = "DIR")]
    sessions_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a session and print its id as JSON
    Start(StartArgs),
    /// Run a command (read from stdin) in a session and print the result as JSON
    Exec(ExecArgs),
    /// End a session: kill its processes and release its jail
    End(EndArgs),
    /// List sessions as a JSON array (active ones unless --all)
    List(ListArgs),
    /// Remove the directories of ended and corrupt sessions
    Cleanup,
    /// List the built-in profiles, or show one resolved as JSON
    Profiles(ProfilesArgs),
    /// Check what this host allows (user namespaces, seccomp, Landlock, cgroups)
    Doctor,
    #[command(name = "__holder", hide = true)]
    Holder(HolderArgs),
}

#[derive(Debug, Args)]
struct StartArgs {
    /// Profile: a built-in name (see `profiles`) or a path to a .toml file
    #[arg(long, value_name = "NAME|PATH")]
    profile: Option<String>,
    /// Directory the session works in (mounted at the same path) [default: current directory]
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Set a variable in the session's environment (repeatable)
    #[arg(long, value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Program that runs each exec's text [default: bash]; also sh, zsh, python3, node, …
    #[arg(trailing_var_arg = true, value_name = "COMMAND [ARGS]")]
    command: Vec<String>,
}

#[derive(Debug, Args)]
struct ExecArgs {
    /// Session id, as printed by `start`
    session_id: String,
    /// Wall-clock limit for this command, in seconds or with a unit (500ms, 2m) [default: the profile's timeout]
    #[arg(long, value_name = "SECS", allow_hyphen_values = true)]
    timeout: Option<String>,
    /// Stream output live instead of JSON; exit with the command's status
    #[arg(long)]
    raw: bool,
    /// The command text (read from stdin when omitted)
    command: Option<String>,
}

#[derive(Debug, Args)]
struct EndArgs {
    /// Session id, as printed by `start`
    session_id: String,
    /// Also delete the session's directory
    #[arg(long)]
    remove: bool,
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Include ended sessions
    #[arg(long)]
    all: bool,
}

#[derive(Debug, Args)]
struct ProfilesArgs {
    #[command(subcommand)]
    action: Option<ProfilesAction>,
}

#[derive(Debug, Subcommand)]
enum ProfilesAction {
    /// Print a profile, resolved, as JSON
    Show {
        /// A built-in name or a path to a .toml file
        name: String,
    },
}

#[derive(Debug, Args)]
struct HolderArgs {
    /// Names the process only; the configuration comes over a descriptor.
    session_id: String,
}

/// Runs the program; returns the process exit status.
pub fn main() -> i32 {
    let cli = match Cli::try_parse_from(hoist_global_options(std::env::args_os().collect())) {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let sessions_dir = cli
        .sessions_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(".sessions"));
    match dispatch(cli.command, &sessions_dir) {
        Ok(code) => code,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("Error: {msg}");
            1
        }
    }
}

/// Moves `--sessions-dir DIR` (or `--sessions-dir=DIR`) from wherever it is
/// before a `--` to the front, where clap sees it as the global option even
/// after `start`'s command (`start bash --sessions-dir D`, the seed's
/// documented form). After `--`, everything is the session command's.
fn hoist_global_options(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut front = Vec::new();
    let mut rest = Vec::new();
    let mut it = args.into_iter();
    if let Some(argv0) = it.next() {
        front.push(argv0);
    }
    while let Some(a) = it.next() {
        if a == "--" {
            rest.push(a);
            rest.extend(it.by_ref());
            break;
        }
        if a == "--sessions-dir" {
            front.push(a);
            if let Some(v) = it.next() {
                front.push(v);
            }
        } else if a.as_encoded_bytes().starts_with(b"--sessions-dir=") {
            front.push(a);
        } else {
            rest.push(a);
        }
    }
    front.extend(rest);
    front
}

/// clap's own errors, reshaped into the one-line form (help and version print normally).
fn usage_error(e: clap::Error) -> i32 {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                1
            } else {
                0
            }
        }
        ErrorKind::MissingRequiredArgument => {
            let missing: Vec<String> = e
                .context()
                .filter(|(k, _)| *k == clap::error::ContextKind::InvalidArg)
                .map(|(_, v)| v.to_string())
                .collect();
            eprintln!(
                "Error: missing required argument {} (see delta-sessions --help)",
                missing.join(", ")
            );
            1
        }
        _ => {
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("Error: {first} (see delta-sessions --help)");
            1
        }
    }
}

fn print_json(value: &serde_json::Value) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

fn dispatch(command: Command, sessions_dir: &std::path::Path) -> Result<i32> {
    match command {
        Command::Start(a) => {
            let v = commands::start(
                sessions_dir,
                StartOptions {
                    profile: a.profile,
                    work_dir: a.work_dir,
                    env: a.env,
                    command: a.command,
                },
            )?;
            print_json(&v)?;
            Ok(0)
        }
        Command::Exec(a) => {
            let id = SessionId::parse(&a.session_id).map_err(|e| anyhow!(e))?;
            let timeout = a.timeout.as_deref().map(parse_timeout).transpose()?;
            let raw = a.raw;
            let result = exec::run(
                sessions_dir,
                &id,
                ExecOptions {
                    command: a.command,
                    timeout,
                    raw,
                },
            )?;
            if !raw {
                let mut out = std::io::stdout().lock();
                serde_json::to_writer(&mut out, &result)?;
                out.write_all(b"\n")?;
                out.flush()?;
            }
            Ok(result.exit_code.clamp(0, 255))
        }
        Command::End(a) => {
            print_json(&commands::end(sessions_dir, &a.session_id, a.remove)?)?;
            Ok(0)
        }
        Command::List(a) => {
            print_json(&commands::list(sessions_dir, a.all)?)?;
            Ok(0)
        }
        Command::Cleanup => {
            let (removed, failures) = commands::cleanup(sessions_dir)?;
            print_json(&removed)?;
            if failures.is_empty() {
                Ok(0)
            } else {
                eprintln!(
                    "Error: cleanup could not remove {} session(s): {}",
                    failures.len(),
                    failures.join("; ")
                );
                Ok(1)
            }
        }
        Command::Profiles(a) => match a.action {
            None => {
                print!("{}", commands::profiles_list()?);
                Ok(0)
            }
            Some(ProfilesAction::Show { name }) => {
                let v = commands::profiles_show(&name)?;
                println!("{}", serde_json::to_string_pretty(&v)?);
                Ok(0)
            }
        },
        Command::Doctor => Ok(crate::doctor::run()),
        Command::Holder(_) => crate::jail::holder::main(),
    }
}

/// `--timeout`: a number of seconds (decimals allowed), or a duration with
/// units as in profiles (`500ms`, `2m`, `1h30m`).
fn parse_timeout(text: &str) -> Result<Duration> {
    const MAX_MS: u64 = 7 * 86_400 * 1_000;
    // The profile syntax allows "1h 30m"; on the command line a space is a
    // quoting slip ("1 s", "1s "), so it is refused rather than guessed at.
    if text.chars().any(char::is_whitespace) {
        return Err(anyhow!(
            "Invalid --timeout {text:?}: no spaces; write a number of seconds or a duration such as 1s, 500ms, 2m"
        ));
    }
    let ms = crate::profile::units::parse_duration_ms(text)
        .map_err(|e| anyhow!("Invalid --timeout {text:?}: {e}"))?;
    if ms == 0 || ms > MAX_MS {
        return Err(anyhow!(
            "Invalid --timeout {text:?}: must be at least 1ms and at most 604800 seconds (7 days)"
        ));
    }
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_are_accepted_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "delta-sessions",
            "end",
            "sess_0123456789ab",
            "--sessions-dir",
            "/x",
        ])
        .unwrap();
        assert_eq!(cli.sessions_dir, Some(PathBuf::from("/x")));
        let cli = Cli::try_parse_from(["delta-sessions", "list", "--sessions-dir", "/y"]).unwrap();
        assert_eq!(cli.sessions_dir, Some(PathBuf::from("/y")));
    }

    #[test]
    fn start_takes_a_command_with_its_own_flags() {
        let cli = Cli::try_parse_from([
            "delta-sessions",
            "start",
            "--profile",
            "untrusted",
            "python3",
            "-u",
        ])
        .unwrap();
        match cli.command {
            Command::Start(a) => {
                assert_eq!(a.command, vec!["python3", "-u"]);
                assert_eq!(a.profile.as_deref(), Some("untrusted"));
            }
            _ => panic!("not start"),
        }
    }

    #[test]
    fn timeouts_parse_and_reject_nonsense() {
        assert_eq!(parse_timeout("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_timeout("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_timeout("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_timeout("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_timeout("1m30s").unwrap(), Duration::from_secs(90));
        for bad in [
            "0",
            "0s",
            "-1",
            "abc",
            "inf",
            "NaN",
            "1e9",
            "8d",
            "unlimited",
            "",
        ] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
    }
}
