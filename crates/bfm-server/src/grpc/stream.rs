//! The progress stream of `StreamMigrate`: the executor's events, in order, to one client.
//!
//! The executor calls its progress sink synchronously from the chains' tasks, so the sink must
//! never wait for the client. Events go into a bounded outbox that the response stream drains:
//!
//! * `pending` and `running` events are dropped when the outbox is full (a client that reads
//!   too slowly); the next delivered event says how many were left out (`dropped`);
//! * outcomes (`success`, `failed`, `skipped`) and run-level messages are never dropped — there
//!   is at most one per step, so they are bounded by the plan;
//! * order is kept, so `progress` never decreases.
//!
//! When the client goes away the response stream is dropped, which sets the run's cancel flag:
//! every chain finishes the step it is running (recorded as usual) and runs nothing more.

use super::proto::MigrateProgress;
use bfm_engine::{ProgressEvent, ProgressSink};
use futures::Stream;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tonic::Status;

pub type ProgressStream = Pin<Box<dyn Stream<Item = Result<MigrateProgress, Status>> + Send>>;

/// Whether an event may be left out for a lagging client.
fn droppable(status: &str) -> bool {
    matches!(status, "pending" | "running")
}

#[derive(Default)]
struct State {
    queue: VecDeque<MigrateProgress>,
    dropped: i32,
    closed: bool,
    error: Option<Status>,
}

/// A bounded, order-keeping queue of progress messages between the executor and one client.
pub struct Outbox {
    state: Mutex<State>,
    notify: Notify,
    capacity: usize,
}

impl Outbox {
    /// `capacity`: how many messages may wait before `pending`/`running` ones are left out.
    pub fn new(capacity: usize) -> Arc<Outbox> {
        Arc::new(Outbox { state: Mutex::new(State::default()), notify: Notify::new(), capacity: capacity.max(1) })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue a message; never waits.
    pub fn push(&self, mut msg: MigrateProgress) {
        {
            let mut st = self.state();
            if st.closed {
                return;
            }
            if droppable(&msg.status) && st.queue.len() >= self.capacity {
                st.dropped = st.dropped.saturating_add(1);
                return;
            }
            msg.dropped = std::mem::take(&mut st.dropped);
            st.queue.push_back(msg);
        }
        self.notify.notify_one();
    }

    /// No more messages; the stream ends after the queued ones (with `error` as its status).
    pub fn close(&self, error: Option<Status>) {
        {
            let mut st = self.state();
            st.closed = true;
            st.error = error;
        }
        self.notify.notify_one();
    }

    /// The next message, waiting for one; `None` once closed and drained.
    pub async fn next(&self) -> Option<Result<MigrateProgress, Status>> {
        loop {
            {
                let mut st = self.state();
                if let Some(m) = st.queue.pop_front() {
                    return Some(Ok(m));
                }
                if st.closed {
                    return st.error.take().map(Err);
                }
            }
            // A push between the check and here leaves a permit: no lost wake-up.
            self.notify.notified().await;
        }
    }

    /// The executor's sink: converts and queues each event.
    pub fn sink(self: &Arc<Self>) -> ProgressSink {
        let outbox = self.clone();
        Arc::new(move |e: &ProgressEvent| outbox.push(message(e)))
    }

    /// The response stream. Dropping it (the client went away) sets `cancel`.
    pub fn stream(self: Arc<Self>, cancel: Arc<AtomicBool>) -> ProgressStream {
        let guard = CancelOnDrop(cancel);
        Box::pin(futures::stream::unfold((self, guard), |(outbox, guard)| async move { outbox.next().await.map(|m| (m, (outbox, guard))) }))
    }
}

/// Sets the run's cancel flag when the response stream is dropped.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if !self.0.swap(true, Ordering::SeqCst) {
            tracing::debug!("progress stream dropped: the run stops after the current steps");
        }
    }
}

/// An executor event as a wire message.
pub fn message(e: &ProgressEvent) -> MigrateProgress {
    MigrateProgress {
        migration_id: e.id.clone(),
        status: e.status.to_string(),
        message: e.message.clone(),
        progress: i32::from(e.progress),
        base_migration_id: e.migration_id.clone(),
        schema: e.schema.clone(),
        connection: e.connection.clone(),
        step: i32::try_from(e.step).unwrap_or(i32::MAX),
        total: i32::try_from(e.total).unwrap_or(i32::MAX),
        run_id: e.run_id.clone(),
        dropped: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: usize, status: &str) -> MigrateProgress {
        MigrateProgress { migration_id: format!("m{id}"), status: status.into(), ..Default::default() }
    }

    #[tokio::test]
    async fn a_lagging_client_loses_only_pending_and_running_events_in_order() {
        let outbox = Outbox::new(4);
        // Nobody reads: the producer never waits.
        for i in 0..10 {
            outbox.push(msg(i, "pending"));
        }
        for i in 0..10 {
            outbox.push(msg(i, "running"));
            outbox.push(msg(i, "success"));
        }
        outbox.push(msg(99, "failed"));
        outbox.close(None);
        let mut got = Vec::new();
        while let Some(m) = outbox.next().await {
            got.push(m.unwrap());
        }
        // Four pending events fit; every outcome arrived, in order.
        assert_eq!(got.iter().filter(|m| m.status == "pending").count(), 4);
        let outcomes: Vec<String> = got.iter().filter(|m| !droppable(&m.status)).map(|m| m.migration_id.clone()).collect();
        let mut want: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
        want.push("m99".into());
        assert_eq!(outcomes, want);
        assert!(got.iter().all(|m| m.status != "running"), "the queue was full of outcomes");
        // The dropped count travels with the next delivered message and adds up.
        let dropped: i32 = got.iter().map(|m| m.dropped).sum();
        assert_eq!(dropped, 6 + 10);
        assert_eq!(got[4].dropped, 6 + 1);
    }

    #[tokio::test]
    async fn a_reading_client_gets_everything_and_the_error_last() {
        let outbox = Outbox::new(2);
        let reader = {
            let outbox = outbox.clone();
            tokio::spawn(async move {
                let mut n = 0;
                loop {
                    match outbox.next().await {
                        Some(Ok(_)) => n += 1,
                        Some(Err(s)) => return (n, Some(s.code())),
                        None => return (n, None),
                    }
                }
            })
        };
        for i in 0..100 {
            outbox.push(msg(i, "pending"));
            tokio::task::yield_now().await;
            while outbox.state().queue.len() > 1 {
                tokio::task::yield_now().await;
            }
        }
        outbox.close(Some(Status::internal("boom")));
        assert_eq!(reader.await.unwrap(), (100, Some(tonic::Code::Internal)));
    }

    #[tokio::test]
    async fn dropping_the_stream_cancels_the_run() {
        let outbox = Outbox::new(8);
        let cancel = Arc::new(AtomicBool::new(false));
        let stream = outbox.clone().stream(cancel.clone());
        outbox.push(msg(1, "pending"));
        assert!(!cancel.load(Ordering::SeqCst));
        drop(stream);
        assert!(cancel.load(Ordering::SeqCst));
    }
}
