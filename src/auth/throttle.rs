//! Slows down password guessing: after [`FREE_FAILURES`] failed logins for one email within
//! [`WINDOW_MS`], each further failure locks that email out for twice as long as the last
//! (1 s, 2 s, 4 s … up to [`MAX_LOCK_MS`]), answering 429 with `Retry-After` meanwhile.
//!
//! State is in the database, so all replicas share it. It is keyed by a hash of the lower-cased
//! email whether or not a user has that email, so the throttle does not reveal which exist.

use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ApiResult};
use crate::store::entities::login_throttle as lt;
use crate::time::now_ms;

pub const FREE_FAILURES: i32 = 5;
pub const WINDOW_MS: i64 = 15 * 60 * 1000;
pub const MAX_LOCK_MS: i64 = 15 * 60 * 1000;

fn key(email: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"parley login throttle\0");
    h.update(email.trim().to_lowercase().as_bytes());
    hex::encode(h.finalize())
}

/// 429 if this email is locked out right now.
pub async fn check(db: &DatabaseConnection, email: &str) -> ApiResult<()> {
    let now = now_ms();
    if let Some(row) = lt::Entity::find_by_id(key(email)).one(db).await?
        && row.locked_until > now
    {
        let secs = (row.locked_until - now + 999) / 1000;
        return Err(ApiError::too_many_requests(
            "too many failed logins; wait before trying again",
            u64::try_from(secs).unwrap_or(1),
        ));
    }
    Ok(())
}

/// Counts a failure, and locks the email out once it has used its free attempts.
pub async fn record_failure(db: &DatabaseConnection, email: &str) -> ApiResult<()> {
    let now = now_ms();
    let key = key(email);
    // One atomic upsert, so concurrent failures on several replicas are all counted. A window
    // that has run out starts again at 1.
    let stale = Expr::col((lt::Entity, lt::Column::WindowStartAt)).lt(now - WINDOW_MS);
    lt::Entity::insert(lt::ActiveModel {
        key: Set(key.clone()),
        failures: Set(1),
        window_start_at: Set(now),
        locked_until: Set(0),
    })
    .on_conflict(
        OnConflict::column(lt::Column::Key)
            .value(
                lt::Column::Failures,
                Expr::case(stale.clone(), 1)
                    .finally(Expr::col((lt::Entity, lt::Column::Failures)).add(1)),
            )
            .value(
                lt::Column::WindowStartAt,
                Expr::case(stale, now).finally(Expr::col((lt::Entity, lt::Column::WindowStartAt))),
            )
            .to_owned(),
    )
    .exec(db)
    .await?;

    let Some(row) = lt::Entity::find_by_id(key.clone()).one(db).await? else {
        return Ok(());
    };
    let over = row.failures - FREE_FAILURES;
    if over >= 0 {
        let lock = Ord::min(1000_i64 << Ord::min(over, 20), MAX_LOCK_MS);
        lt::Entity::update_many()
            .col_expr(lt::Column::LockedUntil, Expr::value(now + lock))
            .filter(lt::Column::Key.eq(key))
            .exec(db)
            .await?;
    }
    Ok(())
}

/// Forgets the failures of an email after a successful login.
pub async fn clear(db: &DatabaseConnection, email: &str) -> ApiResult<()> {
    lt::Entity::delete_by_id(key(email)).exec(db).await?;
    Ok(())
}

/// Deletes rows whose window and lock are both over. Run periodically.
pub async fn prune(db: &DatabaseConnection) -> Result<u64, sea_orm::DbErr> {
    let now = now_ms();
    let res = lt::Entity::delete_many()
        .filter(lt::Column::WindowStartAt.lt(now - WINDOW_MS))
        .filter(lt::Column::LockedUntil.lt(now))
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}
