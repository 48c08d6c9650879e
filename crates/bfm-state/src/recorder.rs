//! Keeps state-store writes off the critical path: the executor hands events to the recorder and
//! goes on; a background task writes them in batches (one transaction per batch). `flush` waits
//! until everything handed over so far is stored. Events are written in the order they were
//! recorded. If the store is unreachable, events are kept and retried; `flush` reports the error
//! so the caller can say that the state store lags (it can be reconciled from the targets'
//! ledgers).

use crate::{Event, StateStore};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

enum Msg {
    Event(Box<Event>),
    Flush(oneshot::Sender<Result<(), String>>),
}

#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::UnboundedSender<Msg>,
}

/// Largest batch written in one transaction.
const MAX_BATCH: usize = 2_000;

impl Recorder {
    pub fn new(store: Arc<dyn StateStore>) -> Recorder {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(store, rx));
        Recorder { tx }
    }

    /// Hand an event over; never blocks.
    pub fn record(&self, event: Event) {
        if self.tx.send(Msg::Event(Box::new(event))).is_err() {
            tracing::error!("state recorder has stopped; an event was not recorded");
        }
    }

    /// Wait until every event recorded so far is stored.
    pub async fn flush(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Msg::Flush(tx)).map_err(|_| "state recorder has stopped".to_string())?;
        rx.await.map_err(|_| "state recorder has stopped".to_string())?
    }
}

async fn run(store: Arc<dyn StateStore>, mut rx: mpsc::UnboundedReceiver<Msg>) {
    let mut pending: Vec<Event> = Vec::new();
    let mut waiters: Vec<oneshot::Sender<Result<(), String>>> = Vec::new();
    let mut last_error: Option<String> = None;
    let mut open = true;
    while open {
        match rx.recv().await {
            Some(Msg::Event(e)) => pending.push(*e),
            Some(Msg::Flush(w)) => waiters.push(w),
            None => open = false,
        }
        // Take whatever else is already queued, to write it in the same transaction.
        while pending.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Msg::Event(e)) => pending.push(*e),
                Ok(Msg::Flush(w)) => waiters.push(w),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        let mut attempts = 0;
        while !pending.is_empty() {
            let n = pending.len().min(MAX_BATCH);
            match store.write(&pending[..n]).await {
                Ok(()) => {
                    pending.drain(..n);
                    last_error = None;
                    attempts = 0;
                }
                Err(e) => {
                    attempts += 1;
                    let msg = e.to_string();
                    tracing::warn!(error = %msg, attempt = attempts, "writing to the state store failed");
                    last_error = Some(msg);
                    // Retry a few times now; then keep the events and report to waiters.
                    if attempts >= 3 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200 * attempts)).await;
                }
            }
        }
        if !waiters.is_empty() {
            let result = match (&last_error, pending.is_empty()) {
                (_, true) => Ok(()),
                (Some(e), false) => Err(format!("{} event(s) not yet stored: {e}", pending.len())),
                (None, false) => Err(format!("{} event(s) not yet stored", pending.len())),
            };
            for w in waiters.drain(..) {
                let _ = w.send(result.clone());
            }
        }
    }
}
