//! Sleeping in a workflow: until an instant, or until a signal changes what to wait for.
//!
//! Shared by the ticket workflow (its SLA clocks) and the approval chain (reminders and
//! timeouts). Both are recorded in histories, so what this issues never changes: one timer
//! for the whole wait (none when there is no instant), its duration rounded up to the
//! millisecond and at least one, and its cancellation when a signal comes first.

use std::future::Future;
use std::time::Duration;

use futures::FutureExt;
use jiff::Timestamp;
use temporalio_sdk::{CancellableFuture, TimerOptions, WorkflowCancellationToken, WorkflowContext, WorkflowResult};

/// The workflow's own clock: the time of the activation being processed (replays the same).
pub fn workflow_now<W>(ctx: &WorkflowContext<W>) -> Timestamp {
    ctx.workflow_time().and_then(|t| Timestamp::try_from(t).ok()).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// How long to sleep from `now` until `at`: rounded up to the millisecond so the timer never
/// fires a hair early, and at least a millisecond.
pub fn sleep_until(now: Timestamp, at: Timestamp) -> Duration {
    let nanos = (at.as_nanosecond() - now.as_nanosecond()).max(0);
    let millis = (nanos + 999_999) / 1_000_000;
    Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX).max(1))
}

/// A timer of `duration` with a cancellation token of its own, not the workflow context's.
///
/// With the context's token (the SDK's default), temporalio-sdk 1.1.1 registers a callback on
/// it that holds the context, and removes it only when the timer completes: a workflow evicted
/// from the worker's cache while it sleeps (the usual case for a ticket waiting on its SLA
/// clocks) leaves that cycle behind, and its whole context (about 15 KB) is never freed, so a
/// worker's memory grows with every eviction. A detached token is dropped with the timer. The
/// timer is still cancelled when a signal comes first (through its handle, below); it does not
/// follow a cancellation of the whole workflow, which Archer never requests (a ticket or an
/// approval ends through its own commands). The timer's command, and so every history, is the
/// same either way.
fn detached_timer(duration: Duration) -> TimerOptions {
    TimerOptions::builder(duration).cancellation_token(WorkflowCancellationToken::new()).build()
}

/// Sleeps until `until` (with `None`, until signalled) or until `signalled` holds, whichever
/// comes first; a timer still running when the signal comes is cancelled.
pub async fn sleep_until_or_signal<W>(
    ctx: &WorkflowContext<W>,
    until: Option<Timestamp>,
    signalled: impl FnMut(&W) -> bool,
) -> WorkflowResult<()> {
    let mut nothing_beside: Option<std::future::Pending<WorkflowResult<()>>> = None;
    sleep_beside(ctx, until, signalled, &mut nothing_beside).await
}

/// Why a wait woke.
enum Woke {
    /// The instant came.
    Due,
    /// A signal came first.
    Signalled(WorkflowResult<()>),
    /// The work beside the sleep finished (the sleep goes on).
    BesideDone(WorkflowResult<()>),
}

/// [`sleep_until_or_signal`] while `beside` runs (the ticket's escalation levels): its
/// finishing clears it (an error ends the wait with that error) and never ends the sleep, so
/// the work beside never holds the timer up.
pub async fn sleep_beside<W, F>(
    ctx: &WorkflowContext<W>,
    until: Option<Timestamp>,
    mut signalled: impl FnMut(&W) -> bool,
    beside: &mut Option<F>,
) -> WorkflowResult<()>
where
    F: Future<Output = WorkflowResult<()>> + Unpin,
{
    let timer = until.map(|at| ctx.timer(detached_timer(sleep_until(workflow_now(ctx), at))));
    futures::pin_mut!(timer);
    loop {
        let woke = {
            let due = async {
                match timer.as_mut().as_pin_mut() {
                    Some(t) => {
                        t.await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            .fuse();
            let finished = async {
                match beside.as_mut() {
                    Some(f) => f.await,
                    None => std::future::pending().await,
                }
            }
            .fuse();
            futures::pin_mut!(due, finished);
            temporalio_sdk::workflows::select! {
                _ = due => Woke::Due,
                r = ctx.wait_condition(&mut signalled) => Woke::Signalled(r.map_err(Into::into)),
                r = finished => Woke::BesideDone(r),
            }
        };
        match woke {
            Woke::Due => return Ok(()),
            Woke::Signalled(r) => {
                if let Some(t) = timer.as_mut().as_pin_mut() {
                    t.cancel();
                }
                return r;
            }
            Woke::BesideDone(r) => {
                *beside = None;
                r?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::unwrap_used)]
    fn timers_round_up_to_the_millisecond_and_never_sleep_zero() {
        let now: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let ms = Duration::from_millis;
        assert_eq!(sleep_until(now, now + jiff::SignedDuration::from_nanos(1)), ms(1));
        assert_eq!(sleep_until(now, now + jiff::SignedDuration::from_micros(2_500)), ms(3));
        assert_eq!(sleep_until(now, now + jiff::SignedDuration::from_secs(1)), ms(1_000));
        assert_eq!(sleep_until(now, now), ms(1), "due now: a millisecond");
        assert_eq!(sleep_until(now, now - jiff::SignedDuration::from_secs(1)), ms(1), "overdue: at once");
    }
}
