//! Usage and statistics: ChatBotKit's `/usage/series/fetch` and `/bot/{botId}/usage/fetch`,
//! and Parley's `/usage/overview/fetch` for the dashboard's charts.
//!
//! The numbers are aggregates over the tenant's messages, so they are computed with grouped
//! SQL (the same on SQLite and PostgreSQL: integer division buckets days) rather than read
//! row by row. Each query names `tenant_id` itself; it is the caller's, from [`Auth`].

use std::collections::{BTreeMap, HashMap};

use actix_web::{HttpResponse, get, web};
use sea_orm::{ConnectionTrait, QueryResult, Statement, Value as DbValue};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::store::TenantScope;
use crate::store::entities::bot;
use crate::time::now_ms;

pub(super) fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(series).service(bot_usage).service(overview);
}

const DAY_MS: i64 = 86_400_000;

async fn rows(
    scope: &TenantScope,
    text: &str,
    values: Vec<DbValue>,
) -> ApiResult<Vec<QueryResult>> {
    let backend = scope.db().get_database_backend();
    Ok(scope
        .db()
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            crate::store::sql(backend, text),
            values,
        ))
        .await?)
}

fn int(r: &QueryResult, i: usize) -> ApiResult<i64> {
    Ok(r.try_get_by_index::<Option<i64>>(i)?.unwrap_or(0))
}

#[derive(Serialize, ToSchema)]
pub struct Point {
    /// Start of the day (UTC), in milliseconds.
    date: i64,
    total: i64,
}

#[derive(Serialize, ToSchema)]
pub struct UsageSeries {
    /// Model tokens (input and output) per day.
    tokens: Vec<Point>,
    /// Conversations started per day.
    conversations: Vec<Point>,
    /// Messages (both directions) per day.
    messages: Vec<Point>,
}

/// Every day from `first_day` to today, with the totals found (0 for the others).
fn daily(first_day: i64, days: i64, found: &HashMap<i64, i64>) -> Vec<Point> {
    (0..days)
        .map(|d| {
            let day = first_day + d;
            Point {
                date: day * DAY_MS,
                total: found.get(&day).copied().unwrap_or(0),
            }
        })
        .collect()
}

/// Usage per day for the last 90 days, today included.
#[utoipa::path(
    operation_id = "fetchUsageSeries",
    tag = "Usage",
    responses((status = 200, body = UsageSeries))
)]
#[get("/usage/series/fetch")]
async fn series(auth: Auth) -> ApiResult<HttpResponse> {
    let scope = auth.scope();
    let days = 90;
    let first_day = now_ms() / DAY_MS - (days - 1);
    let since = first_day * DAY_MS;
    let tenant = scope.tenant_id();
    let mut tokens = HashMap::new();
    let mut messages = HashMap::new();
    for r in rows(
        scope,
        "SELECT created_at / 86400000, COUNT(*), \
         SUM(COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0)) \
         FROM message WHERE tenant_id = ? AND created_at >= ? GROUP BY created_at / 86400000",
        vec![tenant.into(), since.into()],
    )
    .await?
    {
        let day = int(&r, 0)?;
        messages.insert(day, int(&r, 1)?);
        tokens.insert(day, int(&r, 2)?);
    }
    let mut conversations = HashMap::new();
    for r in rows(
        scope,
        "SELECT created_at / 86400000, COUNT(*) FROM conversation \
         WHERE tenant_id = ? AND created_at >= ? GROUP BY created_at / 86400000",
        vec![tenant.into(), since.into()],
    )
    .await?
    {
        conversations.insert(int(&r, 0)?, int(&r, 1)?);
    }
    Ok(HttpResponse::Ok().json(UsageSeries {
        tokens: daily(first_day, days, &tokens),
        conversations: daily(first_day, days, &conversations),
        messages: daily(first_day, days, &messages),
    }))
}

/// Parses `2026-11-22`, `2026-11-22T10:00:00Z` (or with `.sss` and a `+hh:mm` offset) or
/// milliseconds since the epoch, into milliseconds.
pub fn parse_time(field: &str, s: &str) -> ApiResult<i64> {
    let bad = || {
        ApiError::bad_request(format!(
            "{field} must be an ISO 8601 date or date-time, e.g. 2026-11-22T10:00:00Z"
        ))
    };
    if !s.is_empty() && s.len() <= 16 && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|_| bad());
    }
    if s.len() < 10 || s.len() > 40 || !s.is_ascii() {
        return Err(bad());
    }
    let num = |a: usize, b: usize| -> ApiResult<i64> {
        let part = s.get(a..b).ok_or_else(bad)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let (y, m, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    if &s[4..5] != "-" || &s[7..8] != "-" || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let (yy, mm) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * mm + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let mut ms = days * DAY_MS;
    let rest = &s[10..];
    if rest.is_empty() {
        return Ok(ms);
    }
    if !rest.starts_with('T') && !rest.starts_with(' ') || rest.len() < 9 {
        return Err(bad());
    }
    let (h, mi, sec) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if &s[13..14] != ":" || &s[16..17] != ":" || h > 23 || mi > 59 || sec > 60 {
        return Err(bad());
    }
    ms += (h * 3600 + mi * 60 + sec) * 1000;
    let mut tail = &s[19..];
    if let Some(frac) = tail.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let first3: String = frac[..digits].chars().chain("00".chars()).take(3).collect();
        ms += first3.parse::<i64>().map_err(|_| bad())?;
        tail = &frac[digits..];
    }
    match tail {
        "Z" | "z" | "" => Ok(ms),
        t if t.len() == 6 && (t.starts_with('+') || t.starts_with('-')) && &t[3..4] == ":" => {
            let oh: i64 = t[1..3].parse().map_err(|_| bad())?;
            let om: i64 = t[4..6].parse().map_err(|_| bad())?;
            let offset = (oh * 60 + om) * 60_000;
            Ok(if t.starts_with('+') {
                ms - offset
            } else {
                ms + offset
            })
        }
        _ => Err(bad()),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Period {
    /// Start of the period (ISO 8601). Default: the beginning.
    from: Option<String>,
    /// End of the period (ISO 8601), exclusive. Default: now.
    to: Option<String>,
}

impl Period {
    fn bounds(&self) -> ApiResult<(i64, i64)> {
        let from = self
            .from
            .as_deref()
            .map(|f| parse_time("from", f))
            .transpose()?
            .unwrap_or(0);
        let to = self
            .to
            .as_deref()
            .map(|t| parse_time("to", t))
            .transpose()?
            .unwrap_or(i64::MAX);
        if from > to {
            return Err(ApiError::bad_request("from must not be after to"));
        }
        Ok((from, to))
    }
}

#[derive(Serialize, ToSchema)]
pub struct BotUsage {
    /// Model tokens (input and output) the bot's replies used.
    tokens: i64,
    /// Conversations with the bot.
    conversations: i64,
    /// Messages of those conversations, both directions.
    messages: i64,
}

/// A bot's usage, optionally within a period.
#[utoipa::path(
    operation_id = "fetchBotUsage",
    tag = "Bot",
    params(("botId" = String, Path), Period),
    responses((status = 200, body = BotUsage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody))
)]
#[get("/bot/{botId}/usage/fetch")]
async fn bot_usage(
    auth: Auth,
    path: web::Path<String>,
    period: web::Query<Period>,
) -> ApiResult<HttpResponse> {
    let scope = auth.scope();
    let bot = scope.find::<bot::Entity>(&path).await?;
    let (from, to) = period.bounds()?;
    let tenant = scope.tenant_id();
    let conv = rows(
        scope,
        "SELECT COUNT(*) FROM conversation \
         WHERE tenant_id = ? AND bot_id = ? AND created_at >= ? AND created_at < ?",
        vec![tenant.into(), bot.id.clone().into(), from.into(), to.into()],
    )
    .await?;
    let msgs = rows(
        scope,
        "SELECT COUNT(*), SUM(COALESCE(m.input_tokens, 0) + COALESCE(m.output_tokens, 0)) \
         FROM message m JOIN conversation c ON c.id = m.conversation_id \
         WHERE m.tenant_id = ? AND c.tenant_id = ? AND c.bot_id = ? \
         AND m.created_at >= ? AND m.created_at < ?",
        vec![
            tenant.into(),
            tenant.into(),
            bot.id.into(),
            from.into(),
            to.into(),
        ],
    )
    .await?;
    let first = |rs: &[QueryResult], i| rs.first().map(|r| int(r, i)).transpose();
    Ok(HttpResponse::Ok().json(BotUsage {
        conversations: first(&conv, 0)?.unwrap_or(0),
        messages: first(&msgs, 0)?.unwrap_or(0),
        tokens: first(&msgs, 1)?.unwrap_or(0),
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OverviewQuery {
    /// How many days back, today included: 1 to 90. Default 14.
    days: Option<i64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DayStats {
    /// Start of the day (UTC), in milliseconds.
    date: i64,
    /// Messages users sent.
    messages: i64,
    /// Reply messages the bots sent (or tried to).
    replies: i64,
    /// Reply messages that failed to send.
    failures: i64,
    /// 95th percentile of the reply time that day, in milliseconds; `null` without replies.
    p95_reply_ms: Option<i64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailureStats {
    /// Meta's error code; `null` for failures without one (timeouts, network).
    code: Option<i64>,
    /// Meta's title (or Parley's reason) of one such failure.
    title: Option<String>,
    count: i64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BotTokens {
    bot_id: Option<String>,
    name: Option<String>,
    input_tokens: i64,
    output_tokens: i64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Overview {
    days: Vec<DayStats>,
    failures: Vec<FailureStats>,
    tokens_by_bot: Vec<BotTokens>,
    /// 95th percentile of the reply time over the whole period, in milliseconds: from the
    /// user's last message of a turn arriving to the reply being ready to send.
    p95_reply_ms: Option<i64>,
    messages: i64,
    replies: i64,
    failed: i64,
}

/// The nearest-rank percentile of `v` (sorted in place).
fn percentile(v: &mut [i64], p: f64) -> Option<i64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

/// Parley: the dashboard's overview: messages, replies and failures per day, failures by
/// Meta's error code, p95 reply time and tokens per bot.
#[utoipa::path(
    operation_id = "fetchUsageOverview",
    tag = "Usage",
    params(OverviewQuery),
    responses((status = 200, body = Overview), (status = 400, body = ErrorBody))
)]
#[get("/usage/overview/fetch")]
async fn overview(auth: Auth, query: web::Query<OverviewQuery>) -> ApiResult<HttpResponse> {
    let days = query.days.unwrap_or(14);
    if !(1..=90).contains(&days) {
        return Err(ApiError::bad_request("days must be between 1 and 90"));
    }
    let scope = auth.scope();
    let tenant = scope.tenant_id();
    let first_day = now_ms() / DAY_MS - (days - 1);
    let since = first_day * DAY_MS;
    let mut per_day: BTreeMap<i64, (i64, i64, i64)> = BTreeMap::new();
    for r in rows(
        scope,
        "SELECT created_at / 86400000, \
         SUM(CASE WHEN kind = 'user' THEN 1 ELSE 0 END), \
         SUM(CASE WHEN kind = 'bot' THEN 1 ELSE 0 END), \
         SUM(CASE WHEN kind = 'bot' AND delivery_status = 'failed' THEN 1 ELSE 0 END) \
         FROM message WHERE tenant_id = ? AND created_at >= ? GROUP BY created_at / 86400000",
        vec![tenant.into(), since.into()],
    )
    .await?
    {
        per_day.insert(int(&r, 0)?, (int(&r, 1)?, int(&r, 2)?, int(&r, 3)?));
    }
    let failures = rows(
        scope,
        "SELECT error_code, MAX(error_title), COUNT(*) FROM message \
         WHERE tenant_id = ? AND created_at >= ? AND delivery_status = 'failed' \
         GROUP BY error_code ORDER BY COUNT(*) DESC",
        vec![tenant.into(), since.into()],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(FailureStats {
            code: r.try_get_by_index::<Option<i32>>(0)?.map(i64::from),
            title: r.try_get_by_index::<Option<String>>(1)?,
            count: int(r, 2)?,
        })
    })
    .collect::<ApiResult<Vec<_>>>()?;
    // Reply time per turn: its first reply part against the last message it answers.
    let replied: HashMap<String, i64> = rows(
        scope,
        "SELECT turn_id, MIN(created_at) FROM message WHERE tenant_id = ? AND kind = 'bot' \
         AND turn_id IS NOT NULL AND created_at >= ? GROUP BY turn_id",
        vec![tenant.into(), since.into()],
    )
    .await?
    .iter()
    .map(|r| Ok((r.try_get_by_index::<String>(0)?, int(r, 1)?)))
    .collect::<ApiResult<_>>()?;
    let mut all = Vec::new();
    let mut by_day: HashMap<i64, Vec<i64>> = HashMap::new();
    for r in rows(
        scope,
        "SELECT turn_id, MAX(received_at) FROM inbound_message WHERE tenant_id = ? \
         AND turn_id IS NOT NULL AND received_at >= ? GROUP BY turn_id",
        vec![tenant.into(), (since - DAY_MS).into()],
    )
    .await?
    {
        let turn: String = r.try_get_by_index(0)?;
        let received = int(&r, 1)?;
        if let Some(&at) = replied.get(&turn) {
            let ms = (at - received).max(0);
            all.push(ms);
            by_day.entry(at / DAY_MS).or_default().push(ms);
        }
    }
    let names: HashMap<String, Option<String>> = rows(
        scope,
        "SELECT id, name FROM bot WHERE tenant_id = ?",
        vec![tenant.into()],
    )
    .await?
    .iter()
    .map(|r| Ok((r.try_get_by_index(0)?, r.try_get_by_index(1)?)))
    .collect::<ApiResult<_>>()?;
    let tokens_by_bot = rows(
        scope,
        "SELECT c.bot_id, SUM(COALESCE(m.input_tokens, 0)), SUM(COALESCE(m.output_tokens, 0)) \
         FROM message m JOIN conversation c ON c.id = m.conversation_id \
         WHERE m.tenant_id = ? AND c.tenant_id = ? AND m.kind = 'bot' AND m.created_at >= ? \
         GROUP BY c.bot_id",
        vec![tenant.into(), tenant.into(), since.into()],
    )
    .await?
    .iter()
    .map(|r| {
        let bot_id: Option<String> = r.try_get_by_index(0)?;
        Ok(BotTokens {
            name: bot_id
                .as_ref()
                .and_then(|b| names.get(b).cloned().flatten()),
            bot_id,
            input_tokens: int(r, 1)?,
            output_tokens: int(r, 2)?,
        })
    })
    .collect::<ApiResult<Vec<_>>>()?;
    let days: Vec<DayStats> = (0..days)
        .map(|d| {
            let day = first_day + d;
            let (messages, replies, failures) = per_day.get(&day).copied().unwrap_or_default();
            DayStats {
                date: day * DAY_MS,
                messages,
                replies,
                failures,
                p95_reply_ms: by_day.get_mut(&day).and_then(|v| percentile(v, 0.95)),
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(Overview {
        messages: days.iter().map(|d| d.messages).sum(),
        replies: days.iter().map(|d| d.replies).sum(),
        failed: days.iter().map(|d| d.failures).sum(),
        p95_reply_ms: percentile(&mut all, 0.95),
        days,
        failures,
        tokens_by_bot,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates_parse_to_milliseconds() {
        assert_eq!(parse_time("from", "1970-01-01").unwrap(), 0);
        assert_eq!(
            parse_time("from", "2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_time("from", "2023-11-14T22:13:20.5Z").unwrap(),
            1_700_000_000_500
        );
        assert_eq!(
            parse_time("from", "2023-11-15T00:13:20+02:00").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_time("from", "1700000000000").unwrap(),
            1_700_000_000_000
        );
        for bad in [
            "",
            "yesterday",
            "2023-13-01",
            "2023-11-14T25:00:00Z",
            "2023-11-14T22:13:20Q",
        ] {
            assert!(parse_time("from", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn p95_is_the_nearest_rank() {
        let mut v: Vec<i64> = (1..=100).rev().collect();
        assert_eq!(percentile(&mut v, 0.95), Some(95));
        assert_eq!(percentile(&mut [7], 0.95), Some(7));
        assert_eq!(percentile(&mut [], 0.95), None);
    }
}
