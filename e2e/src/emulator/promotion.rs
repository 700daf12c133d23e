//! Promotion (contract §5.2, §5.3) on a Cluster whose role is primary.
//!
//! With a pending token (non-empty, ≠ `lastPromotionToken`) the operator registers the
//! promoting phase, and the instance manager checks the token against the instance's real
//! pg_controldata after a `CHECKPOINT` (a restartpoint on a standby): fatal → unrecoverable
//! phase, retryable → promoting phase and a re-check every 10 s (scaled), forever; ready →
//! `pg_ctl promote`, `CHECKPOINT`, `lastPromotionToken`. Without a token a standby is promoted at
//! once (failover). The restart for `archive_mode` happens in the steady state.

use kube::runtime::controller::Action;
use topology::cnpg::{phase, phase_reason};
use topology::token::{PromotionToken, TokenVerdict, verify};

use super::error::{EmulatorError, Result};
use super::pass::Pass;
use super::postgres::sql;
use super::status::{set_instance_phase, set_operator_phase};

/// Written just before `pg_ctl promote` with the token being honoured, so that an emulator
/// restarted between the promotion and the `lastPromotionToken` patch recognises its own work
/// instead of checking the token against a primary (which would be fatal).
const MARKER: &str = "promoting.token";

/// `Some(action)` when this pass is about promotion, `None` when the steady state applies.
pub async fn step(pass: &mut Pass<'_>, standby: bool) -> Result<Option<Action>> {
    let timing = pass.config.timing;
    let marker = pass.instance.pgdata().with_file_name(MARKER);
    let Some(token) = pass.token_pending().map(str::to_owned) else {
        if standby {
            tracing::warn!(cluster = %pass.name, "promoting without a token (failover)");
            ensure_running(pass).await?;
            pass.instance.promote().await?;
            sql::checkpoint(pass.record.port).await?;
            return Ok(Some(Action::requeue(timing.operator())));
        }
        return Ok(None);
    };

    let current = pass.status.phase.as_deref();
    if current != Some(phase::UNRECOVERABLE) && current != Some(phase::PROMOTING) {
        pass.update_status(|s| {
            set_operator_phase(s, phase::PROMOTING, phase_reason::PROMOTION_IN_PROGRESS)
        })
        .await?;
    }
    if !standby && tokio::fs::read_to_string(&marker).await.ok().as_deref() == Some(&token) {
        pass.update_status(|s| s.last_promotion_token = Some(token.clone()))
            .await?;
        let _ = tokio::fs::remove_file(&marker).await;
        return Ok(Some(Action::requeue(timing.operator())));
    }
    if !pass.instance.is_running().await {
        ensure_running(pass).await?;
        return Ok(Some(Action::requeue(timing.operator())));
    }
    if standby {
        // The promote patch made the Cluster primary by spec: from now on its standby restores
        // from its own backup store and no longer streams from the source (CNPG refreshes the
        // replica configuration on every instance-manager loop, the promotion wait included).
        super::steady::apply_settings(pass, true).await?;
    }

    sql::checkpoint(pass.record.port).await?;
    let control = pass.instance.controldata().await?;
    let verdict = match PromotionToken::parse(&token) {
        Ok(decoded) if pass.faults.replayed_past_token => TokenVerdict::Fatal(format!(
            "promotion token LSN ({}) is older than the last replay LSN (fault {})",
            decoded.latest_checkpoint_redo_location,
            super::faults::REPLAYED_PAST_TOKEN
        )),
        Ok(decoded) => verify(&decoded, &control.control_point()?),
        Err(e) => TokenVerdict::Fatal(e.to_string()),
    };
    match verdict {
        TokenVerdict::Fatal(message) => {
            tracing::warn!(cluster = %pass.name, tokenStatus = %message, tokenContent = %token, "promotion token content is not correct for current instance");
            pass.update_status(|s| {
                set_instance_phase(s, phase::UNRECOVERABLE, phase_reason::TOKEN_NOT_CORRECT)
            })
            .await?;
            Ok(Some(Action::requeue(timing.instance_manager())))
        }
        TokenVerdict::Wait(message) => {
            tracing::info!(cluster = %pass.name, tokenStatus = %message, tokenContent = %token, "waiting for the promotion token");
            pass.update_status(|s| {
                set_instance_phase(s, phase::PROMOTING, phase_reason::PROMOTION_IN_PROGRESS)
            })
            .await?;
            Ok(Some(Action::requeue(timing.instance_manager())))
        }
        TokenVerdict::Ready => {
            if standby {
                if let Some(delay) = pass.faults.slow_promotion {
                    tracing::info!(cluster = %pass.name, ?delay, "fault: slow promotion");
                    tokio::time::sleep(delay).await;
                }
                tokio::fs::write(&marker, &token)
                    .await
                    .map_err(EmulatorError::io("writing", &marker))?;
                tracing::info!(cluster = %pass.name, "promotion token verified; promoting");
                pass.instance.promote().await?;
                sql::checkpoint(pass.record.port).await?;
            }
            pass.update_status(|s| s.last_promotion_token = Some(token.clone()))
                .await?;
            let _ = tokio::fs::remove_file(&marker).await;
            Ok(Some(Action::requeue(timing.operator())))
        }
    }
}

async fn ensure_running(pass: &Pass<'_>) -> Result<()> {
    if !pass.instance.is_running().await {
        pass.instance.start().await?;
    }
    Ok(())
}
