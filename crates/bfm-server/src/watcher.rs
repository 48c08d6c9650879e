//! Reload the catalogue when files under the sfm path change (debounced). A reload swaps the
//! catalogue atomically and marks vanished migrations as missing; it never deletes history.

use bfm_engine::Service;
use notify::{RecursiveMode, Watcher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Quiet time after the last change before reloading (editors write in several steps).
const DEBOUNCE: Duration = Duration::from_millis(300);

/// Start watching; the returned watcher must be kept alive.
pub fn spawn(service: Arc<Service>, paths: Vec<PathBuf>) -> Option<notify::RecommendedWatcher> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher = match notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && !matches!(ev.kind, notify::EventKind::Access(_))
        {
            let _ = tx.send(());
        }
    }) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "file watcher unavailable; use POST /api/v1/migrations/reindex");
            return None;
        }
    };
    for p in &paths {
        if let Err(e) = watcher.watch(p, RecursiveMode::Recursive) {
            tracing::warn!(path = %p.display(), error = %e, "cannot watch");
        }
    }
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Wait for a quiet moment.
            loop {
                match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            if service.engine().is_stopping() {
                return;
            }
            match service.reload().await {
                Ok(r) => tracing::info!(
                    migrations = r.migrations,
                    added = r.sync.added.len(),
                    updated = r.sync.updated.len(),
                    missing = r.sync.missing.len(),
                    errors = r.errors,
                    "catalogue reloaded after a file change"
                ),
                Err(e) => tracing::warn!(error = %e, "catalogue reload failed"),
            }
        }
    });
    Some(watcher)
}
