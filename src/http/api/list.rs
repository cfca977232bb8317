//! ChatBotKit's list conventions: `cursor`, `take` (1..=100) and `order` (`asc`|`desc`, default
//! `desc`), answered with `{items: [...]}`.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ApiResult};
use crate::ids::MAX_ID_LEN;
use crate::store::{Order, Page};

pub const DEFAULT_TAKE: u64 = 25;
pub const MAX_TAKE: u64 = 100;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// The id of the last item of the previous page.
    pub cursor: Option<String>,
    /// How many items to return, 1 to 100. Default 25.
    pub take: Option<i64>,
    /// `asc` (oldest first) or `desc` (newest first). Default `desc`.
    pub order: Option<String>,
}

impl ListQuery {
    pub fn page(&self) -> ApiResult<Page> {
        let take = match self.take {
            None => DEFAULT_TAKE,
            Some(n) if (1..=MAX_TAKE as i64).contains(&n) => n as u64,
            Some(n) => {
                return Err(ApiError::bad_request(format!(
                    "take must be between 1 and {MAX_TAKE}, got {n}"
                )));
            }
        };
        let order = match self.order.as_deref() {
            None | Some("desc") => Order::Desc,
            Some("asc") => Order::Asc,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "order must be \"asc\" or \"desc\", got {:?}",
                    truncate(other)
                )));
            }
        };
        let cursor = match &self.cursor {
            Some(c) if c.len() > MAX_ID_LEN => {
                return Err(ApiError::bad_request("cursor is not a valid id"));
            }
            Some(c) if c.is_empty() => None,
            other => other.clone(),
        };
        Ok(Page {
            cursor,
            take,
            order,
        })
    }
}

/// Echo at most a few characters of hostile input back in messages.
pub fn truncate(s: &str) -> String {
    s.chars().take(32).collect()
}

/// `{items: [...], cursor}`: pass `cursor` back to get the next page. It is the id of the last
/// item, or `null` when the page is empty (there is nothing after it).
#[derive(Debug, Serialize, ToSchema)]
pub struct ListResponse<T> {
    pub items: Vec<T>,
    pub cursor: Option<String>,
}

impl<T> ListResponse<T> {
    /// A page of `items`, whose last id is `cursor`.
    pub fn new(items: Vec<T>, cursor: Option<String>) -> Self {
        Self { items, cursor }
    }
}

/// `{id}`, the answer of create, update and delete.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IdResponse {
    pub id: String,
}
