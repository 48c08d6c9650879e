//! The gRPC API (tonic, plain HTTP/2): BfM's `migration.MigrationService` on its own port, in
//! the same process as HTTP and calling the same [`Service`]; plus the standard health service
//! (`grpc.health.v1`, from readiness) and server reflection (v1 and v1alpha), so that `grpcurl`
//! works without the `.proto`.

mod api;
pub mod layer;
pub mod stream;

/// Generated from `proto/migration.proto` at build time: messages, server and client.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod proto {
    tonic::include_proto!("migration");

    /// The encoded file descriptor set of `migration.proto` (for reflection).
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/migration_descriptor.bin"));
}

pub use api::GrpcApi;

use crate::auth::Token;
use crate::metrics::Metrics;
use bfm_engine::{ErrorKind, Service, ServiceError};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tonic::Status;
use tonic_health::ServingStatus;

/// The one place where the service layer's errors become gRPC statuses.
pub fn status(e: ServiceError) -> Status {
    let message = e.message();
    match e.kind() {
        ErrorKind::BadRequest => Status::invalid_argument(message),
        ErrorKind::NotFound => Status::not_found(message),
        ErrorKind::Precondition => Status::failed_precondition(message),
        ErrorKind::Conflict => Status::aborted(message),
        ErrorKind::Unavailable => Status::unavailable(message),
        ErrorKind::Internal => {
            tracing::error!(error = %message, connection_type = "grpc", "request failed");
            Status::internal(message)
        }
    }
}

/// gRPC settings (environment: `BFM_GRPC_*`).
#[derive(Debug, Clone)]
pub struct GrpcSettings {
    pub addr: SocketAddr,
    /// Messages a progress stream may hold for a slow client before `pending`/`running`
    /// events are left out (never fewer than the plan's steps + 64).
    pub stream_buffer: usize,
    /// How often readiness is checked for `grpc.health.v1`.
    pub health_interval: Duration,
}

impl GrpcSettings {
    /// `None` when `BFM_GRPC_ENABLED` is false. The host defaults to `default_ip` (HTTP's).
    pub fn from_env(get: impl Fn(&str) -> Option<String>, default_ip: IpAddr) -> Result<Option<GrpcSettings>, String> {
        if get("BFM_GRPC_ENABLED").is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "false" | "0" | "off" | "no")) {
            return Ok(None);
        }
        let port: u16 = match get("BFM_GRPC_PORT") {
            Some(p) => p.trim().parse().map_err(|_| format!("BFM_GRPC_PORT: must be a port number, not {p:?}"))?,
            None => 9090,
        };
        let ip = match get("BFM_GRPC_HOST") {
            Some(h) => h.trim().parse().map_err(|_| format!("BFM_GRPC_HOST: must be an IP address, not {h:?}"))?,
            None => default_ip,
        };
        let stream_buffer = match get("BFM_GRPC_STREAM_BUFFER") {
            Some(v) => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("BFM_GRPC_STREAM_BUFFER: must be a positive number of messages, not {v:?}"))?,
            None => 1024,
        };
        let health_interval = match get("BFM_GRPC_HEALTH_INTERVAL") {
            Some(v) => bfm_engine::config::parse_duration(&v)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| format!("BFM_GRPC_HEALTH_INTERVAL: invalid duration {v:?}"))?,
            None => Duration::from_secs(5),
        };
        Ok(Some(GrpcSettings { addr: SocketAddr::new(ip, port), stream_buffer, health_interval }))
    }
}

const SERVICE_NAME: &str = "migration.MigrationService";

/// Keep `grpc.health.v1` in line with readiness (state store and connections): SERVING or
/// NOT_SERVING for the server ("") and for `migration.MigrationService`; NOT_SERVING once
/// shutting down.
async fn report_health(
    service: Arc<Service>,
    reporter: tonic_health::server::HealthReporter,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let set = |status: ServingStatus| {
        let reporter = reporter.clone();
        async move {
            reporter.set_service_status("", status).await;
            reporter.set_service_status(SERVICE_NAME, status).await;
        }
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.wait_for(|v| *v) => true,
        };
        if stopping {
            break;
        }
        let ready = service.health().await.status == bfm_engine::service::dto::HealthStatus::Healthy;
        if *stop.borrow() {
            break;
        }
        set(if ready { ServingStatus::Serving } else { ServingStatus::NotServing }).await;
    }
    set(ServingStatus::NotServing).await;
}

/// Serve gRPC on `listener` until `stop` turns true; calls in flight finish first (a progress
/// stream ends when its run has stopped after the current steps).
pub async fn serve(
    service: Arc<Service>,
    token: Token,
    metrics: Arc<Metrics>,
    settings: GrpcSettings,
    listener: tokio::net::TcpListener,
    stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let (reporter, health_service) = tonic_health::server::health_reporter();
    // Until the first readiness check: not serving.
    reporter.set_service_status("", ServingStatus::NotServing).await;
    reporter.set_service_status(SERVICE_NAME, ServingStatus::NotServing).await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1().map_err(|e| format!("gRPC reflection: {e}"))?;
    let reflection_v1alpha = reflection().build_v1alpha().map_err(|e| format!("gRPC reflection: {e}"))?;
    let health_task = tokio::spawn(report_health(service.clone(), reporter, settings.health_interval, stop.clone()));
    let api = GrpcApi::new(service, settings.stream_buffer);
    let mut stopped = stop;
    let result = tonic::transport::Server::builder()
        .layer(layer::GrpcLayer::new(token, metrics))
        .add_service(proto::migration_service_server::MigrationServiceServer::new(api))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)), async move {
            let _ = stopped.wait_for(|v| *v).await;
        })
        .await
        .map_err(|e| format!("gRPC server error: {e}"));
    if !health_task.is_finished() {
        health_task.abort();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_from_the_environment() {
        let env =
            |pairs: &'static [(&'static str, &'static str)]| move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
        let ip: IpAddr = [127, 0, 0, 1].into();
        let s = GrpcSettings::from_env(env(&[]), ip).unwrap().unwrap();
        assert_eq!((s.addr.to_string().as_str(), s.stream_buffer, s.health_interval), ("127.0.0.1:9090", 1024, Duration::from_secs(5)));
        let s = GrpcSettings::from_env(env(&[("BFM_GRPC_PORT", "9191"), ("BFM_GRPC_HOST", "0.0.0.0")]), ip).unwrap().unwrap();
        assert_eq!(s.addr.to_string(), "0.0.0.0:9191");
        assert!(GrpcSettings::from_env(env(&[("BFM_GRPC_ENABLED", "off")]), ip).unwrap().is_none());
        assert!(GrpcSettings::from_env(env(&[("BFM_GRPC_PORT", "nine")]), ip).unwrap_err().contains("BFM_GRPC_PORT"));
        assert!(GrpcSettings::from_env(env(&[("BFM_GRPC_STREAM_BUFFER", "0")]), ip).unwrap_err().contains("BFM_GRPC_STREAM_BUFFER"));
    }

    #[test]
    fn service_errors_map_to_status_codes() {
        use tonic::Code;
        assert_eq!(status(ServiceError::bad_request("x")).code(), Code::InvalidArgument);
        assert_eq!(status(ServiceError::not_found("x")).code(), Code::NotFound);
        assert_eq!(status(ServiceError::precondition("x")).code(), Code::FailedPrecondition);
        assert_eq!(status(ServiceError::internal("x")).code(), Code::Internal);
    }

    fn descriptor() -> prost_types::FileDescriptorProto {
        use prost::Message;
        let fds = prost_types::FileDescriptorSet::decode(proto::FILE_DESCRIPTOR_SET).unwrap();
        fds.file.into_iter().find(|f| f.name() == "migration.proto").unwrap()
    }

    #[test]
    fn the_service_has_bfm_rpcs() {
        let file = descriptor();
        assert_eq!(file.package(), "migration");
        let svc = &file.service[0];
        assert_eq!(svc.name(), "MigrationService");
        let rpcs: Vec<(&str, &str, &str, bool)> =
            svc.method.iter().map(|m| (m.name(), m.input_type(), m.output_type(), m.server_streaming())).collect();
        assert_eq!(
            rpcs,
            [
                ("Migrate", ".migration.MigrateRequest", ".migration.MigrateResponse", false),
                ("StreamMigrate", ".migration.MigrateRequest", ".migration.MigrateProgress", true),
                ("MigrateDown", ".migration.MigrateDownRequest", ".migration.MigrateResponse", false),
                ("ListMigrations", ".migration.ListMigrationsRequest", ".migration.ListMigrationsResponse", false),
                ("GetMigration", ".migration.GetMigrationRequest", ".migration.MigrationDetailResponse", false),
                ("GetMigrationStatus", ".migration.GetMigrationStatusRequest", ".migration.MigrationStatusResponse", false),
                ("IsMigrationApplied", ".migration.IsMigrationAppliedRequest", ".migration.IsMigrationAppliedResponse", false),
                ("GetMigrationHistory", ".migration.GetMigrationHistoryRequest", ".migration.MigrationHistoryResponse", false),
                ("RollbackMigration", ".migration.RollbackMigrationRequest", ".migration.RollbackResponse", false),
                ("ReindexMigrations", ".migration.ReindexMigrationsRequest", ".migration.ReindexResponse", false),
                ("Health", ".migration.HealthRequest", ".migration.HealthResponse", false),
            ]
        );
    }

    /// BfM's wire contract: every message keeps these fields with these numbers and types
    /// (`s` string, `b` bool, `i` int32, `m` message or map; `*` repeated). bfm's own fields
    /// must use other numbers.
    #[test]
    fn bfm_field_numbers_are_kept() {
        type Fields = &'static [(&'static str, i32, &'static str)];
        const BFM: &[(&str, Fields)] = &[
            (
                "MigrationTarget",
                &[
                    ("backend", 1, "s"),
                    ("schema", 2, "s"),
                    ("tables", 3, "s*"),
                    ("version", 4, "s"),
                    ("connection", 5, "s"),
                    ("tags", 6, "s*"),
                ],
            ),
            (
                "MigrateRequest",
                &[
                    ("target", 1, "m"),
                    ("connection", 2, "s"),
                    ("schema", 3, "s"),
                    ("schema_name", 4, "s"),
                    ("dry_run", 5, "b"),
                    ("ignore_dependencies", 6, "b"),
                ],
            ),
            ("MigrateResponse", &[("success", 1, "b"), ("applied", 2, "s*"), ("skipped", 3, "s*"), ("errors", 4, "s*")]),
            ("MigrateProgress", &[("migration_id", 1, "s"), ("status", 2, "s"), ("message", 3, "s"), ("progress", 4, "i")]),
            ("MigrateDownRequest", &[("migration_id", 1, "s"), ("schemas", 2, "s*"), ("dry_run", 3, "b"), ("ignore_dependencies", 4, "b")]),
            (
                "ListMigrationsRequest",
                &[
                    ("schema", 1, "s"),
                    ("table", 2, "s"),
                    ("connection", 3, "s"),
                    ("backend", 4, "s"),
                    ("status", 5, "s"),
                    ("version", 6, "s"),
                ],
            ),
            ("ListMigrationsResponse", &[("items", 1, "m*"), ("total", 2, "i")]),
            (
                "MigrationListItem",
                &[
                    ("migration_id", 1, "s"),
                    ("schema", 2, "s"),
                    ("table", 3, "s"),
                    ("version", 4, "s"),
                    ("name", 5, "s"),
                    ("connection", 6, "s"),
                    ("backend", 7, "s"),
                    ("applied", 8, "b"),
                    ("status", 9, "s"),
                    ("applied_at", 10, "s"),
                    ("error_message", 11, "s"),
                    ("tags", 12, "s*"),
                ],
            ),
            ("GetMigrationRequest", &[("migration_id", 1, "s")]),
            ("GetMigrationStatusRequest", &[("migration_id", 1, "s")]),
            ("IsMigrationAppliedRequest", &[("migration_id", 1, "s")]),
            ("IsMigrationAppliedResponse", &[("applied", 1, "b")]),
            ("GetMigrationHistoryRequest", &[("migration_id", 1, "s")]),
            (
                "MigrationDetailResponse",
                &[
                    ("migration_id", 1, "s"),
                    ("schema", 2, "s"),
                    ("table", 3, "s"),
                    ("version", 4, "s"),
                    ("name", 5, "s"),
                    ("connection", 6, "s"),
                    ("backend", 7, "s"),
                    ("applied", 8, "b"),
                    ("up_sql", 9, "s"),
                    ("down_sql", 10, "s"),
                    ("dependencies", 11, "s*"),
                    ("structured_dependencies", 12, "m*"),
                    ("tags", 13, "s*"),
                ],
            ),
            (
                "DependencyResponse",
                &[
                    ("connection", 1, "s"),
                    ("schema", 2, "s"),
                    ("target", 3, "s"),
                    ("target_type", 4, "s"),
                    ("requires_table", 5, "s"),
                    ("requires_schema", 6, "s"),
                ],
            ),
            (
                "MigrationStatusResponse",
                &[("migration_id", 1, "s"), ("status", 2, "s"), ("applied", 3, "b"), ("applied_at", 4, "s"), ("error_message", 5, "s")],
            ),
            ("MigrationHistoryResponse", &[("migration_id", 1, "s"), ("history", 2, "m*")]),
            (
                "MigrationHistoryItem",
                &[
                    ("migration_id", 1, "s"),
                    ("schema", 2, "s"),
                    ("table", 3, "s"),
                    ("version", 4, "s"),
                    ("connection", 5, "s"),
                    ("backend", 6, "s"),
                    ("applied_at", 7, "s"),
                    ("status", 8, "s"),
                    ("error_message", 9, "s"),
                    ("executed_by", 10, "s"),
                    ("execution_method", 11, "s"),
                    ("execution_context", 12, "s"),
                ],
            ),
            ("RollbackMigrationRequest", &[("migration_id", 1, "s"), ("schemas", 2, "s*")]),
            ("RollbackResponse", &[("success", 1, "b"), ("message", 2, "s"), ("errors", 3, "s*")]),
            ("ReindexMigrationsRequest", &[("sfm_path", 1, "s")]),
            ("ReindexResponse", &[("added", 1, "s*"), ("removed", 2, "s*"), ("updated", 3, "s*"), ("total", 4, "i")]),
            ("HealthRequest", &[]),
            ("HealthResponse", &[("status", 1, "s"), ("checks", 2, "m*")]),
        ];
        use prost_types::field_descriptor_proto::{Label, Type};
        let file = descriptor();
        for (message, fields) in BFM {
            let m = file.message_type.iter().find(|m| m.name() == *message).unwrap_or_else(|| panic!("message {message} missing"));
            for (name, number, kind) in *fields {
                let f = m.field.iter().find(|f| f.name() == *name).unwrap_or_else(|| panic!("{message}.{name} missing"));
                let repeated = f.label() == Label::Repeated;
                let t = match f.r#type() {
                    Type::String => "s",
                    Type::Bool => "b",
                    Type::Int32 => "i",
                    Type::Message => "m",
                    other => panic!("{message}.{name}: unexpected type {other:?}"),
                };
                assert_eq!(
                    (f.number(), format!("{t}{}", if repeated { "*" } else { "" })),
                    (*number, kind.to_string()),
                    "{message}.{name}"
                );
            }
            // Extensions never reuse BfM's numbers (nor the range right after them).
            for f in m.field.iter().filter(|f| !fields.iter().any(|(n, _, _)| *n == f.name())) {
                assert!(f.number() >= 20, "{message}.{}: bfm extension numbered {} (use 20 and above)", f.name(), f.number());
            }
        }
    }
}
