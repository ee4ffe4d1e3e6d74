//! Running work unless a token is cancelled, cheaply on the hot path.
//!
//! `tokio::select!` over `token.cancelled()` registers a waiter with the
//! token (two locks) every time it runs, which per frame cost several per
//! cent of the process's CPU. Most frame work completes at its first poll,
//! so [`unless_cancelled`] polls the work once before it watches the token;
//! only work that has to wait pays for the watch.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;

use tokio_util::sync::CancellationToken;

/// Runs `work` to completion, or stops with `None` once `cancel` fires
/// while it waits. Work that is ready at once runs even if the token was
/// already cancelled: callers that must not start then check
/// [`CancellationToken::is_cancelled`] first (a lock each time, so once per
/// frame at most).
pub(crate) async fn unless_cancelled<F: Future>(cancel: &CancellationToken, work: F) -> Option<F::Output> {
    let mut work = pin!(work);
    if let Poll::Ready(output) = std::future::poll_fn(|cx| Poll::Ready(work.as_mut().poll(cx))).await {
        return Some(output);
    }
    tokio::select! {
        biased;
        () = cancel.cancelled() => None,
        output = work => Some(output),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn ready_work_runs_and_cancellation_stops_waiting_work() {
        let token = CancellationToken::new();
        assert_eq!(unless_cancelled(&token, async { 7 }).await, Some(7));

        let waiting = unless_cancelled(&token, std::future::pending::<u8>());
        let cancel = async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            token.cancel();
        };
        let (outcome, ()) = tokio::join!(waiting, cancel);
        assert_eq!(outcome, None);

        // Already cancelled: ready work still completes, waiting work stops.
        assert_eq!(unless_cancelled(&token, async { 8 }).await, Some(8));
        assert_eq!(unless_cancelled(&token, std::future::pending::<u8>()).await, None);
    }
}
