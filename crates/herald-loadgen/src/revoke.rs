//! The revocation scenario: accounts revoked one at a time, each timed from
//! the request to its stream's `event: revoked`. A revoked stream that has
//! not received it within [`REVOCATION_TIMEOUT`] is a timeout, not an
//! omitted sample: any timeout, or a refused revocation, fails the run.

use crate::client::Conn;
use crate::target::Target;
use crate::{histogram, now_ns, percentiles, RunArgs, Stats};
use http_body_util::BodyExt;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How long a revoked stream may take to receive `event: revoked` before
/// the revocation counts as a timeout, which fails the run.
pub const REVOCATION_TIMEOUT: Duration = Duration::from_secs(5);

/// Revokes accounts one at a time and times each from the request to its
/// stream's `event: revoked`. One not seen within [`REVOCATION_TIMEOUT`]
/// is a timeout, and any timeout or refused revocation fails the run.
pub async fn revocations(
    target: &Target,
    args: &RunArgs,
    stats: &Stats,
    report: &mut serde_json::Value,
    failures: &mut Vec<String>,
) -> Result<(), String> {
    // Only streams that opened can be revoked; those that did not are
    // reported as `failed` already.
    let open: Vec<usize> = (0..args.streams)
        .filter(|i| stats.connected[*i].load(Ordering::Relaxed))
        .collect();
    let count = args.revocations.min(open.len());
    let mut lat = histogram();
    let mut answered = histogram();
    let mut conn = None;
    let (mut timeouts, mut refused) = (0usize, 0usize);
    for k in 0..count {
        let i = open[k * open.len() / count.max(1)];
        let Some(req) = target.revoke(i, args.revoke_url.as_deref()) else {
            return Err("revocation needs --target herald".into());
        };
        if conn.is_none() {
            conn = Some(Conn::open(&req.url, None, false).await?);
        }
        let c = conn.as_mut().ok_or("no connection")?;
        let sent = now_ns();
        let resp = c.send(&req).await?;
        let accepted = resp.status().is_success();
        let _ = resp.into_body().collect().await;
        let _ = answered.record(((now_ns() - sent) / 1000).max(1));
        if !accepted {
            refused += 1;
            continue;
        }
        let wait = Instant::now();
        while stats.revoked_at[i].load(Ordering::Acquire) == 0 && wait.elapsed() < REVOCATION_TIMEOUT {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        match stats.revoked_at[i].load(Ordering::Acquire) {
            0 => timeouts += 1,
            at => {
                let _ = lat.record((at.saturating_sub(sent) / 1000).max(1));
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    report["revocations"] = json!(count);
    report["revocation_timeout_secs"] = json!(REVOCATION_TIMEOUT.as_secs_f64());
    report["revocation_timeouts"] = json!(timeouts);
    report["revocations_refused"] = json!(refused);
    report["revoke_to_close"] = percentiles(&lat);
    report["revoke_answered"] = percentiles(&answered);
    if timeouts > 0 {
        failures.push(format!(
            "{timeouts} of {count} revoked streams saw no `event: revoked` within {} s",
            REVOCATION_TIMEOUT.as_secs()
        ));
    }
    if refused > 0 {
        failures.push(format!("{refused} of {count} revocations were refused"));
    }
    Ok(())
}
