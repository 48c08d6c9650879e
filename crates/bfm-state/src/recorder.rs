//! Keeps state-store writes off the critical path: the executor hands events to the recorder and
//! goes on; a background task writes them in batches (one transaction per batch). Recording an
//! event is a push onto a buffer — no wake-up, no channel message per event; the writer wakes
//! every `LINGER`, when the buffer is large, or on `flush`, which waits until everything handed
//! over so far is stored. Events are written in the order they were recorded. If the store is
//! unreachable, events are kept and retried; `flush` reports the error so the caller can say that
//! the state store lags (it can be reconciled from the targets' ledgers).

use crate::{Event, StateStore};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, oneshot};

/// Largest batch written in one transaction.
const MAX_BATCH: usize = 2_000;

/// How long events gather before they are written (a flush writes at once).
const LINGER: Duration = Duration::from_millis(100);

type Waiter = oneshot::Sender<Result<(), String>>;

struct Inner {
    buffer: Mutex<Vec<Event>>,
    waiters: Mutex<Vec<Waiter>>,
    wake: Notify,
}

#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

impl Recorder {
    pub fn new(store: Arc<dyn StateStore>) -> Recorder {
        let inner = Arc::new(Inner { buffer: Mutex::new(Vec::new()), waiters: Mutex::new(Vec::new()), wake: Notify::new() });
        tokio::spawn(run(store, Arc::downgrade(&inner)));
        Recorder { inner }
    }

    /// Hand an event over; never blocks on I/O.
    pub fn record(&self, event: Event) {
        let len = match self.inner.buffer.lock() {
            Ok(mut b) => {
                b.push(event);
                b.len()
            }
            Err(_) => {
                tracing::error!("state recorder buffer poisoned; an event was not recorded");
                return;
            }
        };
        if len >= MAX_BATCH {
            self.inner.wake.notify_one();
        }
    }

    /// Wait until every event recorded so far is stored.
    pub async fn flush(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.inner.waiters.lock().map_err(|_| "state recorder poisoned".to_string())?.push(tx);
        self.inner.wake.notify_one();
        rx.await.map_err(|_| "state recorder has stopped".to_string())?
    }
}

async fn run(store: Arc<dyn StateStore>, inner: std::sync::Weak<Inner>) {
    let mut pending: Vec<Event> = Vec::new();
    loop {
        let Some(me) = inner.upgrade() else { break };
        let _ = tokio::time::timeout(LINGER, me.wake.notified()).await;
        // Waiters first, then events: everything recorded before a flush call is in this batch.
        let waiters: Vec<Waiter> = me.waiters.lock().map(|mut w| std::mem::take(&mut *w)).unwrap_or_default();
        if let Ok(mut b) = me.buffer.lock() {
            pending.append(&mut b);
        }
        let last_error = write_all(store.as_ref(), &mut pending).await;
        let result = match (&last_error, pending.is_empty()) {
            (_, true) => Ok(()),
            (Some(e), false) => Err(format!("{} event(s) not yet stored: {e}", pending.len())),
            (None, false) => Err(format!("{} event(s) not yet stored", pending.len())),
        };
        for w in waiters {
            let _ = w.send(result.clone());
        }
        drop(me);
    }
    // Every handle is gone (callers flush before they let go): write what is left.
    let _ = write_all(store.as_ref(), &mut pending).await;
}

/// Write `pending` in batches, retrying a few times; returns the last error if some remain.
async fn write_all(store: &dyn StateStore, pending: &mut Vec<Event>) -> Option<String> {
    let mut attempts = 0u64;
    while !pending.is_empty() {
        let n = pending.len().min(MAX_BATCH);
        match store.write(&pending[..n]).await {
            Ok(()) => {
                pending.drain(..n);
                attempts = 0;
            }
            Err(e) => {
                attempts += 1;
                let msg = e.to_string();
                tracing::warn!(error = %msg, attempt = attempts, "writing to the state store failed");
                if attempts >= 3 {
                    return Some(msg);
                }
                tokio::time::sleep(Duration::from_millis(200 * attempts)).await;
            }
        }
    }
    None
}
