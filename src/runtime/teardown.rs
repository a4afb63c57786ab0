//! Endpoint teardowns that run after the change was answered.
//!
//! Removing an endpoint's device is the kernel's slow part of a detach: closing a TAP's last
//! descriptor unregisters the device and closing an AF_PACKET socket waits for an RCU grace
//! period (10-20 ms each, measured), and deleting a veth pair is one netlink round trip of the
//! same length. Done before answering and one after another, that made a detach 22-28 ms and
//! the stop of a daemon with 500 endpoints 10.5 s. The state change (and its write to disk) is
//! what a detach must finish before it answers; the device goes right after, here:
//!
//! - every teardown is a task, at most [`CONCURRENCY`] running at once (the kernel's waits
//!   overlap; the bound keeps the blocking pool and the rtnl lock from being flooded);
//! - an attach into a namespace first waits for the teardowns of that namespace
//!   ([`Teardowns::settled_in`]), so the same interface name can be used again at once;
//! - a stop or a reset waits for all of them ([`Teardowns::settled`]), so nothing is left.

use std::future::Future;
use std::sync::{Arc, Mutex};

use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;

/// Teardowns running at once.
pub const CONCURRENCY: usize = 32;

/// A namespace, by the device and inode of its nsfs file (`NsIdentity`); (0, 0) for endpoints
/// with no namespace of netyard's (a veth handed over to its runtime).
pub type NsKey = (u64, u64);

struct Running {
    ns: NsKey,
    task: AbortHandle,
    done: Shared<BoxFuture<'static, ()>>,
}

/// The teardowns of a daemon that have not finished yet.
pub struct Teardowns {
    limit: Arc<Semaphore>,
    running: Mutex<Vec<Running>>,
}

impl Default for Teardowns {
    fn default() -> Self {
        Teardowns {
            limit: Arc::new(Semaphore::new(CONCURRENCY)),
            running: Mutex::new(Vec::new()),
        }
    }
}

impl Teardowns {
    /// Runs `teardown` (of an endpoint in namespace `ns`) in the background.
    pub fn start(&self, ns: NsKey, teardown: impl Future<Output = ()> + Send + 'static) {
        let limit = Arc::clone(&self.limit);
        let handle = tokio::spawn(async move {
            // The semaphore is never closed: a permit always comes.
            let _permit = limit.acquire_owned().await;
            teardown.await;
        });
        let task = handle.abort_handle();
        let done = handle.map(|_| ()).boxed().shared();
        let mut running = self.lock();
        running.retain(|r| !r.task.is_finished());
        running.push(Running { ns, task, done });
    }

    /// Waits until every teardown of namespace `ns` started so far has finished.
    pub async fn settled_in(&self, ns: NsKey) {
        let waits: Vec<_> = self
            .lock()
            .iter()
            .filter(|r| r.ns == ns && !r.task.is_finished())
            .map(|r| r.done.clone())
            .collect();
        futures::future::join_all(waits).await;
    }

    /// Waits until every teardown started so far has finished.
    pub async fn settled(&self) {
        let waits: Vec<_> = {
            let mut running = self.lock();
            running.retain(|r| !r.task.is_finished());
            running.iter().map(|r| r.done.clone()).collect()
        };
        futures::future::join_all(waits).await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Running>> {
        // A poisoned lock only means a panic while pushing or pruning; the list is whole.
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn settled_in_waits_for_that_namespace_only() {
        let t = Teardowns::default();
        let (release_a, wait_a) = tokio::sync::oneshot::channel::<()>();
        let (release_b, wait_b) = tokio::sync::oneshot::channel::<()>();
        let done = Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        t.start((1, 1), async move {
            let _ = wait_a.await;
            d.fetch_add(1, Ordering::SeqCst);
        });
        t.start((2, 2), async move {
            let _ = wait_b.await;
        });
        // Namespace (3, 3) has none: returns at once.
        t.settled_in((3, 3)).await;
        let waiting = t.settled_in((1, 1));
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(Duration::from_millis(20), &mut waiting)
                .await
                .is_err()
        );
        let _ = release_a.send(());
        waiting.await;
        assert_eq!(done.load(Ordering::SeqCst), 1);
        let all = t.settled();
        tokio::pin!(all);
        assert!(tokio::time::timeout(Duration::from_millis(20), &mut all)
            .await
            .is_err());
        let _ = release_b.send(());
        all.await;
    }

    #[tokio::test]
    async fn at_most_the_bound_run_at_once() {
        let t = Teardowns::default();
        let now = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        for i in 0..(CONCURRENCY * 3) as u64 {
            let (now, peak) = (now.clone(), peak.clone());
            t.start((i, i), async move {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                now.fetch_sub(1, Ordering::SeqCst);
            });
        }
        t.settled().await;
        assert_eq!(now.load(Ordering::SeqCst), 0);
        assert!(peak.load(Ordering::SeqCst) <= CONCURRENCY);
        assert!(t.lock().iter().all(|r| r.task.is_finished()));
    }
}
