//! delta-sessions: persistent, stateful, sandboxed command sessions.
//!
//! Layout: [`cli`] parses arguments and prints; [`commands`] and [`exec`]
//! implement the subcommands; [`store`] owns the `.sessions/` files;
//! [`profile`] resolves profiles; [`jail`] builds and enters the sandbox and is
//! the only place that runs user commands.

pub mod cli;
pub mod commands;
pub mod doctor;
pub mod exec;
pub mod fault;
pub mod jail;
pub mod profile;
pub mod store;
pub mod timefmt;
