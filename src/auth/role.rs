//! Roles, from most to least powerful. A user has one; an API token has one no higher than
//! its creator's.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Works conversations (human handoff).
    Agent,
    /// Manages bots, integrations, providers and tokens.
    Admin,
    /// Everything, including the tenant itself. Whoever signs up is its owner.
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Agent => "agent",
            Self::Viewer => "viewer",
        }
    }

    /// Parses a stored role. Unknown strings fall to the least power rather than failing.
    pub fn from_stored(s: &str) -> Self {
        match s {
            "owner" => Self::Owner,
            "admin" => Self::Admin,
            "agent" => Self::Agent,
            _ => Self::Viewer,
        }
    }

    /// 403 unless `self` is at least `needed`.
    pub fn require(self, needed: Role) -> ApiResult<()> {
        if self >= needed {
            Ok(())
        } else {
            Err(ApiError::not_authorized(format!(
                "this action needs the {} role or higher",
                needed.as_str()
            )))
        }
    }
}
