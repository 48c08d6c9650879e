//! Lock keys and the polling wait shared by every target.

use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

/// A stable 64-bit key for the (connection, schema) lock.
pub fn lock_key(connection: &str, schema: &str) -> i64 {
    let mut h = Sha256::new();
    h.update(b"bfm-lock\0");
    h.update(connection.as_bytes());
    h.update(b"\0");
    h.update(schema.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    i64::from_be_bytes(b)
}

/// The polling wait for a lock: try, sleep with exponential backoff (10 ms → 250 ms), give up
/// at the deadline. Polling — never a blocking wait inside the server — is what keeps
/// `CREATE INDEX CONCURRENTLY` from deadlocking against a waiter: between polls the waiter holds
/// no transaction.
pub(crate) struct Backoff {
    start: Instant,
    timeout: Duration,
    delay: Duration,
}

impl Backoff {
    pub(crate) fn new(timeout: Duration) -> Backoff {
        Backoff { start: Instant::now(), timeout, delay: Duration::from_millis(10) }
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Sleep before the next attempt; `false` once the deadline has passed.
    pub(crate) async fn wait(&mut self) -> bool {
        let elapsed = self.start.elapsed();
        if elapsed >= self.timeout {
            return false;
        }
        tokio::time::sleep(self.delay.min(self.timeout - elapsed)).await;
        self.delay = (self.delay * 2).min(Duration::from_millis(250));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_by_connection_and_schema() {
        assert_ne!(lock_key("a", "b_c"), lock_key("a_b", "c"));
        assert_eq!(lock_key("core", "x"), lock_key("core", "x"));
    }

    #[tokio::test]
    async fn backoff_gives_up_after_the_timeout() {
        let mut b = Backoff::new(Duration::from_millis(60));
        let mut waits = 0;
        while b.wait().await {
            waits += 1;
        }
        assert!(waits >= 2 && b.elapsed() >= Duration::from_millis(60));
    }
}
