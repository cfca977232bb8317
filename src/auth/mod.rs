//! Who is calling, and what they may do.
//!
//! Two kinds of credential go in `Authorization: Bearer …`: dashboard session JWTs (from signup
//! and login) and API tokens (`prl_…`, for programs). [`Auth`] accepts either and resolves the
//! caller's tenant from it; nothing else decides which tenant a request acts for.

mod extract;
pub mod jwt;
pub mod password;
mod role;
pub mod throttle;
pub mod token;

pub use extract::{Auth, require_auth};
pub use role::Role;
