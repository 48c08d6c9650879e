//! Summaries of the state, computed once for every surface: the aggregate status of a
//! migration over its schemas, the per migration × schema table with its counts, what is
//! pending per connection, and readiness.

use super::dto::{HealthResponse, HealthStatus};
use super::error::{Field, Result, ServiceError};
use super::request::StatusRequest;
use super::{Service, non_empty};
use crate::status::{StatusFilter, StatusRow};
use bfm_core::Status;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// The status of a migration over all its schemas: failed > running > applied > rolled back >
/// pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateStatus {
    Failed,
    Running,
    Applied,
    RolledBack,
    Pending,
}

impl AggregateStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AggregateStatus::Failed => "failed",
            AggregateStatus::Running => "running",
            AggregateStatus::Applied => "applied",
            AggregateStatus::RolledBack => "rolled_back",
            AggregateStatus::Pending => "pending",
        }
    }
}

/// How many schemas of one migration are in each status, and when it was last applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationCounts {
    /// Status (`applied`, `failed`, …) → schemas.
    pub by_status: BTreeMap<String, i64>,
    pub last_applied_at: Option<DateTime<Utc>>,
}

impl MigrationCounts {
    pub fn add(&mut self, status: Status, n: i64) {
        *self.by_status.entry(status.as_str().to_string()).or_default() += n;
    }

    pub fn aggregate(&self) -> AggregateStatus {
        let has = |s: Status| self.by_status.get(s.as_str()).is_some_and(|n| *n > 0);
        if has(Status::Failed) {
            AggregateStatus::Failed
        } else if has(Status::Running) {
            AggregateStatus::Running
        } else if has(Status::Applied) {
            AggregateStatus::Applied
        } else if has(Status::RolledBack) {
            AggregateStatus::RolledBack
        } else {
            AggregateStatus::Pending
        }
    }
}

/// Per migration × schema status, with the counts the CLI's summary line shows.
#[derive(Debug, Clone, Default)]
pub struct StatusTable {
    pub rows: Vec<StatusRow>,
}

impl StatusTable {
    /// Rows with this status (`applied`, `pending`, `failed`, `rolled_back`, `modified`,
    /// `missing`).
    pub fn count(&self, status: &str) -> usize {
        self.rows.iter().filter(|r| r.status == status).count()
    }
}

/// What is not applied on one connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionPending {
    /// Fixed-schema migrations not applied.
    pub fixed: i64,
    /// Recorded per-tenant runs not applied.
    pub per_tenant: i64,
}

impl ConnectionPending {
    pub fn total(&self) -> i64 {
        self.fixed + self.per_tenant
    }
}

impl Service {
    /// Status counts of the given migrations (by base id), in bounded batches.
    pub(crate) async fn counts(&self, ids: &[String]) -> Result<HashMap<String, MigrationCounts>> {
        let mut out: HashMap<String, MigrationCounts> = HashMap::new();
        // Keep IN lists bounded.
        for chunk in ids.chunks(500) {
            for c in self.engine.state().status_counts(Some(chunk)).await? {
                let e = out.entry(c.migration_id.clone()).or_default();
                e.add(c.status, c.count);
                if let Some(t) = c.last_applied_at {
                    e.last_applied_at = e.last_applied_at.max(Some(t));
                }
            }
        }
        Ok(out)
    }

    /// Per migration × schema status: the catalogue joined with the state (CLI `migrate status`).
    pub async fn status_table(&self, req: StatusRequest) -> Result<StatusTable> {
        let connection = non_empty(&req.connection).map(str::to_string);
        // A connection only known from the catalogue is fine (its configuration may be gone).
        if let Some(c) = &connection
            && !self.engine.catalog().iter().any(|m| &m.connection == c)
        {
            self.engine.ensure_connection(c).map_err(|e| ServiceError::invalid(Field::Connection, e.to_string()))?;
        }
        let mut rows = self
            .engine
            .status(&StatusFilter { connection, schema: non_empty(&req.schema).map(str::to_string), migration_id: None })
            .await?;
        if let Some(s) = non_empty(&req.status) {
            rows.retain(|r| r.status == s);
        }
        Ok(StatusTable { rows })
    }

    /// Per connection of the catalogue: fixed-schema migrations applied nowhere, and recorded
    /// per-tenant runs not applied. Feeds the metrics' gauge and auto-migrate's rounds.
    pub async fn pending(&self) -> Result<BTreeMap<String, ConnectionPending>> {
        let catalog = self.engine.catalog();
        let mut pending: BTreeMap<String, ConnectionPending> =
            catalog.iter().map(|m| (m.connection.clone(), ConnectionPending::default())).collect();
        let counts = self.engine.state().status_counts(None).await?;
        let mut applied_anywhere: BTreeMap<&str, i64> = BTreeMap::new();
        for c in &counts {
            if c.status == Status::Applied {
                *applied_anywhere.entry(c.migration_id.as_str()).or_default() += c.count;
            } else if let Some(m) = catalog.get(&c.migration_id).filter(|m| m.is_dynamic()) {
                pending.entry(m.connection.clone()).or_default().per_tenant += c.count;
            }
        }
        for m in catalog.iter().filter(|m| !m.is_dynamic()) {
            if applied_anywhere.get(m.id.as_str()).copied().unwrap_or(0) == 0 {
                pending.entry(m.connection.clone()).or_default().fixed += 1;
            }
        }
        Ok(pending)
    }

    /// Readiness: the state store and every connection, each with a short timeout.
    pub async fn health(&self) -> HealthResponse {
        let mut checks = BTreeMap::new();
        let state = tokio::time::timeout(Duration::from_secs(3), self.engine.state().ping()).await;
        checks.insert(
            "state".to_string(),
            match state {
                Ok(Ok(())) => "ok".to_string(),
                Ok(Err(e)) => e.to_string(),
                Err(_) => "no answer within 3 s".to_string(),
            },
        );
        let names: Vec<String> = self.engine.config().connections.keys().cloned().collect();
        let pings = names.iter().map(|name| async move {
            let r = tokio::time::timeout(Duration::from_secs(3), async {
                let t = self.engine.target(name).await.map_err(|e| e.to_string())?;
                t.ping().await.map_err(|e| e.to_string())
            })
            .await;
            let v = match r {
                Ok(Ok(())) => "ok".to_string(),
                Ok(Err(e)) => e,
                Err(_) => "no answer within 3 s".to_string(),
            };
            (name.clone(), v)
        });
        for (name, v) in futures::future::join_all(pings).await {
            checks.insert(format!("connection:{name}"), v);
        }
        let status = if checks.values().all(|v| v == "ok") { HealthStatus::Healthy } else { HealthStatus::Unhealthy };
        HealthResponse { status, checks }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_aggregate_prefers_failed_then_running_then_applied() {
        let mut c = MigrationCounts::default();
        assert_eq!(c.aggregate(), AggregateStatus::Pending);
        c.add(Status::RolledBack, 1);
        assert_eq!(c.aggregate(), AggregateStatus::RolledBack);
        c.add(Status::Applied, 3);
        assert_eq!(c.aggregate(), AggregateStatus::Applied);
        c.add(Status::Running, 1);
        assert_eq!(c.aggregate(), AggregateStatus::Running);
        c.add(Status::Failed, 1);
        assert_eq!(c.aggregate().as_str(), "failed");
        // Zero counts do not count.
        let mut z = MigrationCounts::default();
        z.add(Status::Failed, 0);
        assert_eq!(z.aggregate(), AggregateStatus::Pending);
    }
}
