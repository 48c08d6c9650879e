//! Prometheus metrics (`GET /metrics`), fed by the engine's observer hooks.

use bfm_engine::{Observer, Service, StepOutcomeKind};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    pub connection: String,
    pub backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabel {
    pub connection: String,
}

/// An HTTP method as a label: one of a fixed set, so that requests with made-up methods cannot
/// grow the metrics without bound.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// The gRPC methods bfm serves, as labels; any other path — and any call refused for want of a
/// token — counts under `unknown`, so unauthenticated callers cannot grow the metrics.
pub fn grpc_method_label(path: &str, authorised: bool) -> &'static str {
    const KNOWN: &[&str] = &[
        "/migration.MigrationService/Migrate",
        "/migration.MigrationService/StreamMigrate",
        "/migration.MigrationService/MigrateDown",
        "/migration.MigrationService/ListMigrations",
        "/migration.MigrationService/GetMigration",
        "/migration.MigrationService/GetMigrationStatus",
        "/migration.MigrationService/IsMigrationApplied",
        "/migration.MigrationService/GetMigrationHistory",
        "/migration.MigrationService/RollbackMigration",
        "/migration.MigrationService/ReindexMigrations",
        "/migration.MigrationService/Health",
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ];
    match KNOWN.iter().find(|k| **k == path) {
        Some(k) if authorised => k,
        _ => "unknown",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcLabels {
    pub method: String,
    pub code: String,
}

pub struct Metrics {
    registry: Registry,
    applied: Family<StepLabels, Counter>,
    failed: Family<StepLabels, Counter>,
    skipped: Family<StepLabels, Counter>,
    step_duration: Family<StepLabels, Histogram>,
    lock_wait: Family<ConnectionLabel, Histogram>,
    in_flight: Gauge,
    pending: Family<ConnectionLabel, Gauge>,
    pub requests: Family<RequestLabels, Counter>,
    pub grpc_requests: Family<GrpcLabels, Counter>,
}

fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.5, 14))
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("bfm");
        let applied = Family::<StepLabels, Counter>::default();
        let failed = Family::<StepLabels, Counter>::default();
        let skipped = Family::<StepLabels, Counter>::default();
        let step_duration = Family::<StepLabels, Histogram>::new_with_constructor(seconds_histogram as fn() -> Histogram);
        let lock_wait = Family::<ConnectionLabel, Histogram>::new_with_constructor(seconds_histogram as fn() -> Histogram);
        let in_flight = Gauge::default();
        let pending = Family::<ConnectionLabel, Gauge>::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let grpc_requests = Family::<GrpcLabels, Counter>::default();
        registry.register("migrations_applied", "Migration steps applied (or rolled back)", applied.clone());
        registry.register("migrations_failed", "Migration steps that failed", failed.clone());
        registry.register(
            "migrations_skipped",
            "Planned steps that did not run (blocked, or already in the target's ledger)",
            skipped.clone(),
        );
        registry.register("step_duration_seconds", "Time a step took on its target", step_duration.clone());
        registry.register("lock_wait_seconds", "Time spent waiting for a (connection, schema) lock", lock_wait.clone());
        registry.register("steps_in_flight", "Steps running now", in_flight.clone());
        registry.register(
            "pending_migrations",
            "Fixed-schema migrations not applied, and per-tenant runs not applied, per connection",
            pending.clone(),
        );
        registry.register("http_requests", "HTTP requests by route and status", requests.clone());
        registry.register(
            "grpc_requests",
            "gRPC calls by method and status code (a stream counts with the code it started with)",
            grpc_requests.clone(),
        );
        Metrics { registry, applied, failed, skipped, step_duration, lock_wait, in_flight, pending, requests, grpc_requests }
    }

    /// Refresh the pending gauge from the service's summary, then encode everything.
    pub async fn render(&self, service: &Service) -> String {
        match service.pending().await {
            Ok(pending) => {
                for (connection, p) in pending {
                    self.pending.get_or_create(&ConnectionLabel { connection }).set(p.total());
                }
            }
            Err(e) => tracing::warn!(error = %e, "metrics: reading the state failed"),
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "metrics: encoding failed");
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn labels(connection: &str, backend: &str) -> StepLabels {
    StepLabels {
        connection: connection.to_string(),
        backend: bfm_core::BackendKind::parse(backend).map(|k| k.to_string()).unwrap_or_else(|| backend.to_string()),
    }
}

/// The engine reports to the metrics through this.
pub struct MetricsObserver(pub Arc<Metrics>);

impl Observer for MetricsObserver {
    fn step_started(&self, _connection: &str, _backend: &str) {
        self.0.in_flight.inc();
    }

    fn step_ran(&self, connection: &str, backend: &str, _ok: bool, duration: Duration) {
        self.0.in_flight.dec();
        self.0.step_duration.get_or_create(&labels(connection, backend)).observe(duration.as_secs_f64());
    }

    fn step_finished(&self, connection: &str, backend: &str, outcome: StepOutcomeKind, _duration: Duration) {
        let l = labels(connection, backend);
        match outcome {
            StepOutcomeKind::Applied | StepOutcomeKind::RolledBack => self.0.applied.get_or_create(&l).inc(),
            StepOutcomeKind::Failed => self.0.failed.get_or_create(&l).inc(),
            StepOutcomeKind::Skipped => self.0.skipped.get_or_create(&l).inc(),
        };
    }

    fn lock_acquired(&self, connection: &str, waited: Duration) {
        self.0.lock_wait.get_or_create(&ConnectionLabel { connection: connection.to_string() }).observe(waited.as_secs_f64());
    }
}

#[cfg(test)]
mod label_tests {
    use super::*;

    #[test]
    fn labels_come_from_a_fixed_set() {
        assert_eq!(method_label(&axum::http::Method::GET), "GET");
        assert_eq!(method_label(&axum::http::Method::from_bytes(b"BREW").unwrap()), "OTHER");
        assert_eq!(grpc_method_label("/migration.MigrationService/Migrate", true), "/migration.MigrationService/Migrate");
        assert_eq!(grpc_method_label("/migration.MigrationService/Migrate", false), "unknown");
        assert_eq!(grpc_method_label("/x.Y/Z", true), "unknown");
        assert_eq!(grpc_method_label("/migration.MigrationService/Health", true), "/migration.MigrationService/Health");
    }
}
