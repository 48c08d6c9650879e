//! Auto-migrate at start-up (BfM's `BFM_AUTO_MIGRATE*` variables): in rounds, apply the
//! fixed-schema migrations of every ready connection, until nothing is pending, no progress is
//! made, the round limit is reached, or the server shuts down. Per-tenant migrations are left to
//! explicit requests.

use bfm_engine::service::{MigrationFilter, UpRequest};
use bfm_engine::{Engine, ExecutionContext, RunHooks, RunLabel, Service, Surface};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoMigrate {
    pub enabled: bool,
    /// Lower-cased connection names; `None` = all.
    pub connections: Option<Vec<String>>,
    /// Zero: a single round.
    pub interval: Duration,
    pub max_rounds: u32,
}

impl AutoMigrate {
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> AutoMigrate {
        let enabled =
            !get("BFM_AUTO_MIGRATE").is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "false" | "0" | "off" | "no"));
        let connections = get("BFM_AUTO_MIGRATE_CONNECTIONS")
            .map(|v| v.split(',').map(|c| c.trim().to_ascii_lowercase()).filter(|c| !c.is_empty()).collect::<Vec<_>>())
            .filter(|v| !v.is_empty());
        // Invalid values fall back to the defaults, as in BfM.
        let interval = match get("BFM_AUTO_MIGRATE_RETRY_INTERVAL") {
            Some(v) if v.trim().starts_with('-') || v.trim() == "0" => Duration::ZERO,
            Some(v) => bfm_engine::config::parse_duration(&v).unwrap_or(Duration::from_secs(5)),
            None => Duration::from_secs(5),
        };
        let max_rounds =
            get("BFM_AUTO_MIGRATE_RETRY_MAX_ROUNDS").and_then(|v| v.trim().parse::<u32>().ok()).filter(|n| *n > 0).unwrap_or(24);
        AutoMigrate { enabled, connections, interval, max_rounds: if interval.is_zero() { 1 } else { max_rounds } }
    }

    fn ready_connections(&self, engine: &Engine) -> Vec<String> {
        engine
            .config()
            .connections
            .values()
            .filter(|c| self.connections.as_ref().is_none_or(|l| l.contains(&c.name.to_ascii_lowercase())))
            .filter(|c| {
                let ready = c.is_ready();
                if !ready {
                    tracing::info!(connection = %c.name, "auto-migrate: connection not ready (no host or endpoints configured); skipped");
                }
                ready
            })
            .map(|c| c.name.clone())
            .collect()
    }

    /// Fixed-schema migrations of `connections` not applied.
    async fn pending(service: &Service, connections: &[String]) -> Result<i64, String> {
        let pending = service.pending().await.map_err(|e| e.to_string())?;
        Ok(pending.iter().filter(|(c, _)| connections.contains(c)).map(|(_, p)| p.fixed).sum())
    }

    /// Start-up phases 1 and 2 for PostgreSQL connections with a desired schema
    /// (`{CONN}_SCHEMA_DIR`): bootstrap, then the declarative apply. A connection whose phases
    /// fail keeps its versioned migrations for later: they may build on the declared schema.
    async fn declarative_startup(service: &Service, connections: Vec<String>) -> Vec<String> {
        let mut ready = Vec::with_capacity(connections.len());
        for c in connections {
            let declared = service
                .engine()
                .config()
                .connections
                .get(&c)
                .is_some_and(|conn| conn.kind == bfm_core::BackendKind::Postgresql && conn.extra("schema_dir").is_some());
            if !declared {
                ready.push(c);
                continue;
            }
            let ctx = ExecutionContext {
                executed_by: "bfm-server".into(),
                execution_method: "auto_migrate".into(),
                execution_context: serde_json::json!({"connection": c, "source": "start-up", "phase": "declarative"}).to_string(),
            };
            match service.schema_startup(&c, RunLabel::new(Surface::AutoMigrate, "auto-migrate", ctx)).await {
                Ok(_) => {
                    tracing::info!(connection = %c, "start-up 3/3: versioned migrations");
                    ready.push(c);
                }
                Err(e) => {
                    tracing::error!(connection = %c, error = %e, "start-up: declarative schema failed; versioned migrations of this connection not run")
                }
            }
        }
        ready
    }

    pub async fn run(&self, service: Arc<Service>) {
        let engine = service.engine();
        if !self.enabled {
            tracing::info!("auto-migrate disabled (BFM_AUTO_MIGRATE)");
            return;
        }
        let connections = self.ready_connections(engine);
        if connections.is_empty() {
            tracing::info!("auto-migrate: no ready connection");
            return;
        }
        let connections = Self::declarative_startup(&service, connections).await;
        if connections.is_empty() {
            return;
        }
        for round in 1..=self.max_rounds {
            if engine.is_stopping() {
                return;
            }
            let before = match Self::pending(&service, &connections).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(error = %e, "auto-migrate: counting pending migrations failed; giving up");
                    return;
                }
            };
            if before == 0 {
                tracing::info!(round, "auto-migrate: nothing pending");
                return;
            }
            tracing::info!(round, pending = before, connections = ?connections, "auto-migrate: round starts");
            let (mut applied, mut errors) = (0usize, 0usize);
            for c in &connections {
                // Per-tenant migrations are left to explicit requests.
                let req = UpRequest {
                    connection: Some(c.clone()),
                    migrations: MigrationFilter { connection: Some(c.clone()), ..Default::default() },
                    skip_per_tenant: true,
                    ..Default::default()
                };
                let ctx = ExecutionContext {
                    executed_by: "bfm-server".into(),
                    execution_method: "auto_migrate".into(),
                    execution_context: serde_json::json!({"connection": c, "source": "BFM_AUTO_MIGRATE", "round": round}).to_string(),
                };
                let result = service.up(req, RunLabel::new(Surface::AutoMigrate, "auto-migrate", ctx), RunHooks::default()).await;
                match result {
                    Ok(outcome) => {
                        let r = outcome.response();
                        applied += r.applied.len();
                        errors += r.errors.len();
                        for e in &r.errors {
                            tracing::warn!(connection = %c, round, error = %e, "auto-migrate: step failed");
                        }
                        if !r.applied.is_empty() {
                            tracing::info!(connection = %c, round, applied = r.applied.len(), "auto-migrate: applied");
                        }
                    }
                    Err(e) => {
                        errors += 1;
                        tracing::warn!(connection = %c, round, error = %e, "auto-migrate: connection not migrated");
                    }
                }
            }
            let after = Self::pending(&service, &connections).await.unwrap_or(before);
            if after == 0 {
                tracing::info!(round, applied, "auto-migrate: done");
                return;
            }
            if applied == 0 && errors == 0 && after == before {
                tracing::warn!(round, pending = after, "auto-migrate: no progress; stopping");
                return;
            }
            if round == self.max_rounds || self.interval.is_zero() {
                tracing::warn!(round, pending = after, "auto-migrate: giving up after the last round");
                return;
            }
            tokio::time::sleep(self.interval).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(pairs: &[(&str, &str)]) -> AutoMigrate {
        let m: std::collections::HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        AutoMigrate::from_env(|k| m.get(k).cloned())
    }

    #[test]
    fn bfm_variables() {
        let d = from(&[]);
        assert!(d.enabled && d.connections.is_none() && d.interval == Duration::from_secs(5) && d.max_rounds == 24);
        assert!(!from(&[("BFM_AUTO_MIGRATE", "OFF")]).enabled);
        assert_eq!(from(&[("BFM_AUTO_MIGRATE_CONNECTIONS", "Core, guard")]).connections, Some(vec!["core".into(), "guard".into()]));
        assert_eq!(from(&[("BFM_AUTO_MIGRATE_RETRY_INTERVAL", "0")]).max_rounds, 1);
        assert_eq!(from(&[("BFM_AUTO_MIGRATE_RETRY_INTERVAL", "nonsense")]).interval, Duration::from_secs(5));
        assert_eq!(from(&[("BFM_AUTO_MIGRATE_RETRY_INTERVAL", "250ms"), ("BFM_AUTO_MIGRATE_RETRY_MAX_ROUNDS", "3")]).max_rounds, 3);
        assert_eq!(from(&[("BFM_AUTO_MIGRATE_RETRY_MAX_ROUNDS", "-2")]).max_rounds, 24);
    }
}
