//! Background work, run by apalis workers in `parley serve` and `parley worker`.
//!
//! Workers stop taking new work on shutdown and get up to `PARLEY_SHUTDOWN_TIMEOUT_SECS` to
//! finish what they hold.

use std::str::FromStr;

use apalis::prelude::*;
use apalis_cron::{CronScheduler, Tick};
use tokio_util::sync::CancellationToken;

use crate::auth::throttle;
use crate::state::AppState;

/// Housekeeping, once a minute on every replica. Each task is idempotent, so replicas running
/// it at the same time do no harm.
const MAINTENANCE_SCHEDULE: &str = "0 * * * * *";

async fn maintenance(_tick: Tick, state: Data<AppState>) -> Result<(), BoxDynError> {
    let pruned = throttle::prune(state.store().db()).await?;
    if pruned > 0 {
        tracing::debug!(pruned, "pruned expired login throttle rows");
    }
    Ok(())
}

/// Runs every worker until `shutdown` is cancelled, then drains them within the shutdown bound.
pub async fn run(state: AppState, shutdown: CancellationToken) -> anyhow::Result<()> {
    let schedule = cron::Schedule::from_str(MAINTENANCE_SCHEDULE)?;
    let timeout = state.settings().shutdown_timeout;
    let maintenance_state = state.clone();
    Monitor::new()
        .register(move |_| {
            WorkerBuilder::new("maintenance")
                .backend(CronScheduler::new(schedule.clone()))
                .data(maintenance_state.clone())
                .build(maintenance)
        })
        .shutdown_timeout(timeout)
        .run_with_signal(async move {
            shutdown.cancelled().await;
            Ok(())
        })
        .await?;
    Ok(())
}
