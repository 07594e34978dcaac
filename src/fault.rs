//! Fault injection for the lifecycle tests: `DELTA_SESSIONS_FAULT=<step>`
//! makes the process kill itself with SIGKILL when it reaches that named
//! step, as a `kill -9` at exactly that moment would ([`point`]), or wait
//! there ([`pause`]).
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

/// Waits here for `DELTA_SESSIONS_FAULT_PAUSE` milliseconds if
/// `DELTA_SESSIONS_FAULT` names `step`: a process that is slow at exactly
/// that moment (a loaded host), for the race tests.
#[inline]
pub fn pause(step: &str) {
    #[cfg(debug_assertions)]
    if std::env::var_os(FAULT_ENV).is_some_and(|v| v == step) {
        let ms = std::env::var("DELTA_SESSIONS_FAULT_PAUSE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    #[cfg(not(debug_assertions))]
    let _ = step;
}
