//! The kill switch of one client connection.
//!
//! When a stream's writer is stuck in a socket that no longer drains, the
//! hub closes the stream (a zombie) and must also cut the connection, since
//! the stuck writer will not look at its queue again. Every connection
//! carries a switch for its whole life and its task checks it on every
//! wake-up, so it is made as cheap as it can be: one flag and one waker.
//! (A `CancellationToken` is a node of a cancellation tree behind a mutex,
//! 112 bytes, and takes that lock on every check.)

use futures_util::task::AtomicWaker;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

/// Cuts one connection. Clones share the switch.
#[derive(Clone, Default)]
pub struct KillSwitch(Arc<Inner>);

#[derive(Default)]
struct Inner {
    killed: AtomicBool,
    /// The one task serving the connection, waiting on [`KillSwitch::killed`].
    waiter: AtomicWaker,
}

impl std::fmt::Debug for KillSwitch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("KillSwitch").field(&self.is_killed()).finish()
    }
}

impl KillSwitch {
    /// A switch that has not been thrown.
    pub fn new() -> KillSwitch {
        KillSwitch::default()
    }

    /// Throws the switch: the connection's task wakes and drops the
    /// connection.
    pub fn kill(&self) {
        self.0.killed.store(true, Ordering::Release);
        self.0.waiter.wake();
    }

    /// Whether the switch was thrown.
    pub fn is_killed(&self) -> bool {
        self.0.killed.load(Ordering::Acquire)
    }

    /// Resolves once the switch is thrown. Only the connection's own task
    /// waits on it (the waker slot holds one task).
    pub fn killed(&self) -> Killed<'_> {
        Killed(&self.0)
    }
}

/// Future of [`KillSwitch::killed`].
pub struct Killed<'a>(&'a Inner);

impl Future for Killed<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // Register first, then look: a kill between the two still wakes us.
        self.0.waiter.register(cx.waker());
        if self.0.killed.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_waiting_task_wakes_when_killed() {
        let switch = KillSwitch::new();
        let waiting = tokio::spawn({
            let switch = switch.clone();
            async move { switch.killed().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        switch.kill();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .expect("joined");
        assert!(switch.is_killed());
        // Already thrown: resolves at once.
        switch.killed().await;
    }
}
