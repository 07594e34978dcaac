//! The jail's root filesystem: planned as data ([`plan`]), applied in one
//! place ([`apply`]).

pub mod apply;
#[cfg(test)]
pub mod fake_host;
pub mod plan;

pub use apply::{build, make_private, move_aside, open_path, open_sources};
pub use plan::{
    plan, HostKind, HostView, Plan, RealHost, RootfsSpec, DEVICES, ETC_SECRETS, SYSTEM_PATHS,
};
