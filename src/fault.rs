//! Fault injection for the lifecycle tests: `DELTA_SESSIONS_FAULT=<step>`
//! makes the process kill itself with SIGKILL when it reaches that named
//! step, as a `kill -9` at exactly that moment would.
//!
//! Compiled only into debug builds (the test builds); in a release build
//! [`point`] is an empty function and the variable is ignored.

/// The environment variable that names the step to die at.
pub const FAULT_ENV: &str = "DELTA_SESSIONS_FAULT";

/// Dies here if `DELTA_SESSIONS_FAULT` names `step`.
#[inline]
pub fn point(step: &str) {
    #[cfg(debug_assertions)]
    if std::env::var_os(FAULT_ENV).is_some_and(|v| v == step) {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
    #[cfg(not(debug_assertions))]
    let _ = step;
}
