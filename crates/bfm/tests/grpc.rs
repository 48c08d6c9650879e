//! Black-box tests of the gRPC API: the real `bfm serve` binary, the real PostgreSQL, and a
//! tonic client generated from the same `proto/migration.proto` (exported by bfm-server).

use bfm_server::grpc::proto::migration_service_client::MigrationServiceClient;
use bfm_server::grpc::proto::*;
use bfm_testkit::PgDb;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request};

const TOKEN: &str = "grpc-test-token-0123456789";

mod common;

use common::{ServeProcess, pg_env, spawn_serve, tree, write};

struct Server {
    proc: ServeProcess,
    http: String,
    grpc: String,
}

async fn start(env: &[(&str, String)], setup: impl FnOnce(&Path)) -> Server {
    let mut env = env.to_vec();
    env.push(("BFM_GRPC_HEALTH_INTERVAL", "200ms".into()));
    let proc = spawn_serve(TOKEN, &env, &["--no-watch"], setup);
    let server =
        Server { http: format!("http://127.0.0.1:{}", proc.http_port), grpc: format!("http://127.0.0.1:{}", proc.grpc_port), proc };
    let start = Instant::now();
    while Endpoint::from_shared(server.grpc.clone()).unwrap().connect().await.is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server
}

impl Server {
    async fn channel(&self) -> Channel {
        Endpoint::from_shared(self.grpc.clone()).unwrap().connect().await.unwrap()
    }

    async fn client(&self) -> MigrationServiceClient<Channel> {
        MigrationServiceClient::new(self.channel().await)
    }
}

/// A request with the bearer token.
fn authed<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    r
}

fn with_auth<T>(msg: T, value: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert("authorization", value.parse().unwrap());
    r
}

fn target(connection: &str) -> Option<MigrationTarget> {
    Some(MigrationTarget { connection: connection.into(), ..Default::default() })
}

#[tokio::test]
async fn every_rpc_with_bfm_messages_and_corrected_semantics() {
    let db = PgDb::new().await;
    let s = start(&pg_env(&db), tree).await;
    let mut c = s.client().await;

    // Health: no token needed, and without one only the status (no connection names).
    let h = c.health(HealthRequest {}).await.unwrap().into_inner();
    assert_eq!(h.status, "healthy", "{h:?}");
    assert!(h.checks.is_empty(), "an anonymous caller sees no checks: {h:?}");
    // With the token, the checks too.
    let h = c.health(authed(HealthRequest {})).await.unwrap().into_inner();
    assert_eq!(h.checks.get("state").map(String::as_str), Some("ok"));
    assert_eq!(h.checks.get("connection:core").map(String::as_str), Some("ok"));

    // BfM's request: target, connection, schema.
    let r = c
        .migrate(authed(MigrateRequest {
            target: Some(MigrationTarget {
                backend: "postgresql".into(),
                schema: "core".into(),
                connection: "core".into(),
                ..Default::default()
            }),
            connection: "core".into(),
            schema: "core".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r,
        MigrateResponse {
            success: true,
            applied: vec!["20250101000000_bootstrap_postgresql_core".into(), "20250102000000_tagged_postgresql_core".into()],
            skipped: vec![],
            errors: vec![]
        }
    );

    // One schema by `schema_name`, more with the `schemas` extension; tenants with `_`.
    let org = MigrateRequest {
        target: target("organization"),
        connection: "organization".into(),
        schema_name: "tenant_a_1".into(),
        schemas: vec!["tenant_b".into()],
        ..Default::default()
    };
    let r = c.migrate(authed(org.clone())).await.unwrap().into_inner();
    assert!(r.success, "{r:?}");
    assert_eq!(r.applied.len(), 4, "{r:?}");
    let r = c.migrate(authed(org.clone())).await.unwrap().into_inner();
    assert_eq!((r.applied.len(), r.skipped.len()), (0, 4), "{r:?}");

    let id = "tenant_a_1_20250104000000_seed_postgresql_organization";
    let st = c.get_migration_status(authed(GetMigrationStatusRequest { migration_id: id.into() })).await.unwrap().into_inner();
    assert_eq!((st.status.as_str(), st.applied, st.migration_id.as_str()), ("applied", true, id), "{st:?}");
    assert!(!st.applied_at.is_empty());
    let a = c.is_migration_applied(authed(IsMigrationAppliedRequest { migration_id: id.into() })).await.unwrap().into_inner();
    assert!(a.applied);

    // Rollback one tenant: visible in status and applied; the other tenant is untouched.
    let base = "20250104000000_seed_postgresql_organization";
    let rb = c
        .rollback_migration(authed(RollbackMigrationRequest { migration_id: base.into(), schemas: vec!["tenant_a_1".into()] }))
        .await
        .unwrap()
        .into_inner();
    assert!(rb.success, "{rb:?}");
    assert_eq!(rb.applied, vec![id.to_string()]);
    assert_eq!(rb.message, "rollback completed successfully for 1 schema(s)");
    let st = c.get_migration_status(authed(GetMigrationStatusRequest { migration_id: id.into() })).await.unwrap().into_inner();
    assert_eq!((st.status.as_str(), st.applied), ("rolled_back", false));
    let a = c.is_migration_applied(authed(IsMigrationAppliedRequest { migration_id: id.into() })).await.unwrap().into_inner();
    assert!(!a.applied);
    let other = "tenant_b_20250104000000_seed_postgresql_organization";
    let st = c.get_migration_status(authed(GetMigrationStatusRequest { migration_id: other.into() })).await.unwrap().into_inner();
    assert_eq!(st.status, "applied");
    // Nothing left to roll back there: FAILED_PRECONDITION, as BfM.
    let e = c
        .rollback_migration(authed(RollbackMigrationRequest { migration_id: base.into(), schemas: vec!["tenant_a_1".into()] }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("migration is not applied"), "{e:?}");

    // Down: dry run, then for real.
    let dry = c
        .migrate_down(authed(MigrateDownRequest {
            migration_id: base.into(),
            schemas: vec!["tenant_b".into()],
            dry_run: true,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dry.applied, vec![format!("{other} (dry-run)")], "{dry:?}");
    let down = c
        .migrate_down(authed(MigrateDownRequest { migration_id: base.into(), schemas: vec!["tenant_b".into()], ..Default::default() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((down.success, down.applied.clone()), (true, vec![other.to_string()]), "{down:?}");
    let st = c.get_migration_status(authed(GetMigrationStatusRequest { migration_id: other.into() })).await.unwrap().into_inner();
    assert_eq!(st.status, "rolled_back");

    // Up again: applied again, history shows the whole story, recorded as a gRPC call.
    let r = c.migrate(authed(org)).await.unwrap().into_inner();
    assert_eq!(r.applied.len(), 2, "{r:?}");
    let h = c.get_migration_history(authed(GetMigrationHistoryRequest { migration_id: id.into() })).await.unwrap().into_inner();
    let statuses: Vec<&str> = h.history.iter().map(|x| x.status.as_str()).collect();
    assert_eq!(statuses, vec!["applied", "rolled_back", "applied"], "{h:?}");
    let ops: Vec<&str> = h.history.iter().map(|x| x.operation.as_str()).collect();
    assert_eq!(ops, vec!["up", "rollback", "up"]);
    for item in &h.history {
        assert_eq!((item.executed_by.as_str(), item.execution_method.as_str()), ("grpc_client", "api"), "{item:?}");
        let ctx: serde_json::Value = serde_json::from_str(&item.execution_context).unwrap();
        assert_eq!(ctx["connection_type"], "grpc", "{ctx}");
        assert!(ctx["method"].as_str().unwrap().starts_with("/migration.MigrationService/"), "{ctx}");
        assert_eq!((item.schema.as_str(), item.connection.as_str()), ("tenant_a_1", "organization"));
    }

    // Lists: BfM's filters, and the bfm extensions (tags, paging, per-schema counts).
    let l = c
        .list_migrations(authed(ListMigrationsRequest { connection: "organization".into(), ..Default::default() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(l.total, 2);
    assert_eq!(l.items[0].schema_status, HashMap::from([("applied".to_string(), 2)]), "{l:?}");
    assert!(l.items[0].applied);
    let l = c
        .list_migrations(authed(ListMigrationsRequest { tags: vec!["team=billing".into()], ..Default::default() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(l.items.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), vec!["tagged"]);
    assert_eq!(l.items[0].tags, vec!["team=billing".to_string()]);
    let l = c.list_migrations(authed(ListMigrationsRequest { limit: 1, offset: 1, ..Default::default() })).await.unwrap().into_inner();
    assert_eq!((l.total, l.items.len(), l.items[0].name.as_str()), (4, 1, "tagged"));
    let l = c.list_migrations(authed(ListMigrationsRequest { status: "applied".into(), ..Default::default() })).await.unwrap().into_inner();
    assert_eq!(l.total, 4);

    // Detail.
    let d = c
        .get_migration(authed(GetMigrationRequest { migration_id: "20250103000000_alerts_postgresql_organization".into() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.structured_dependencies[0].target, "bootstrap");
    assert_eq!(d.structured_dependencies[0].connection, "core");
    assert!(d.up_sql.contains("CREATE TABLE alerts"));
    assert_eq!(d.down_sql, "DROP TABLE alerts;");
    assert!(d.checksum.starts_with('v'), "{d:?}");
    assert_eq!((d.applied, d.status.as_str(), d.missing), (true, "applied", false));

    // Reindex: only the configured tree, whatever the request says.
    let r = c.reindex_migrations(authed(ReindexMigrationsRequest { sfm_path: String::new() })).await.unwrap().into_inner();
    assert_eq!((r.total, r.warning.as_str()), (4, ""), "{r:?}");
    let r = c.reindex_migrations(authed(ReindexMigrationsRequest { sfm_path: "/tmp".into() })).await.unwrap().into_inner();
    assert_eq!(r.total, 4, "{r:?}");
    assert!(r.warning.contains("\"/tmp\" ignored"), "{r:?}");
    assert!(r.removed.is_empty());
    let r = c.reindex_migrations(authed(ReindexMigrationsRequest { sfm_path: "sfm".into() })).await.unwrap().into_inner();
    assert_eq!(r.warning, "", "the configured path itself is no warning: {r:?}");

    // gRPC calls are counted in the metrics.
    let text = bfm_testkit::http_client().get(format!("{}/metrics", s.http)).bearer_auth(TOKEN).send().await.unwrap().text().await.unwrap();
    assert!(text.contains(r#"bfm_grpc_requests_total{method="/migration.MigrationService/Migrate",code="Ok"} 4"#), "{text}");
    assert!(
        text.contains(r#"bfm_grpc_requests_total{method="/migration.MigrationService/RollbackMigration",code="FailedPrecondition"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn auth_status_codes_standard_health_and_reflection() {
    let db = PgDb::new().await;
    let s = start(&pg_env(&db), tree).await;
    let mut c = s.client().await;

    // Every RPC but Health needs the token.
    let list = || ListMigrationsRequest::default();
    for (auth, msg) in [
        (None, "missing Authorization header"),
        (Some("Bearer"), "invalid Authorization header format"),
        (Some("Basic grpc-test-token-0123456789"), "authorization header must use Bearer scheme"),
        (Some("Bearer wrong"), "invalid API token"),
        (Some("Bearer grpc-test-token-012345678"), "invalid API token"),
    ] {
        let req = match auth {
            Some(a) => with_auth(list(), a),
            None => Request::new(list()),
        };
        let e = c.list_migrations(req).await.unwrap_err();
        assert_eq!((e.code(), e.message()), (Code::Unauthenticated, msg));
    }
    let migrate = MigrateRequest { connection: "core".into(), ..Default::default() };
    assert_eq!(c.migrate(migrate.clone()).await.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(c.stream_migrate(migrate.clone()).await.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(c.migrate_down(MigrateDownRequest::default()).await.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(c.get_migration(GetMigrationRequest::default()).await.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(c.get_migration_status(GetMigrationStatusRequest::default()).await.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(c.is_migration_applied(IsMigrationAppliedRequest::default()).await.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(c.get_migration_history(GetMigrationHistoryRequest::default()).await.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(c.rollback_migration(RollbackMigrationRequest::default()).await.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(c.reindex_migrations(ReindexMigrationsRequest { sfm_path: "/".into() }).await.unwrap_err().code(), Code::Unauthenticated);
    // Nothing ran.
    let l = c.list_migrations(authed(list())).await.unwrap().into_inner();
    assert!(l.items.iter().all(|i| i.status == "pending"), "{l:?}");
    assert_eq!(c.health(HealthRequest {}).await.unwrap().into_inner().status, "healthy");
    // Refused calls share one metrics label: anonymous callers cannot grow /metrics.
    let text = bfm_testkit::http_client().get(format!("{}/metrics", s.http)).bearer_auth(TOKEN).send().await.unwrap().text().await.unwrap();
    assert!(!text.contains(r#"method="/migration.MigrationService/Migrate",code="Unauthenticated""#), "{text}");
    assert!(text.contains(r#"bfm_grpc_requests_total{method="unknown",code="Unauthenticated"}"#), "{text}");

    // Client mistakes: INVALID_ARGUMENT, with the field named.
    let invalid: Vec<(MigrateRequest, &str)> = vec![
        (MigrateRequest::default(), "connection: is required"),
        (MigrateRequest { connection: "nope".into(), ..Default::default() }, "connection: unknown connection \"nope\""),
        (
            MigrateRequest {
                connection: "core".into(),
                target: Some(MigrationTarget { tags: vec!["ok=1".into(), "bad".into()], ..Default::default() }),
                ..Default::default()
            },
            "target.tags: tags[1]: tag must be key=value",
        ),
        (MigrateRequest { connection: "organization".into(), schema: "x\"y".into(), ..Default::default() }, "schema: invalid schema name"),
        (
            MigrateRequest { connection: "organization".into(), schema_name: "a;b".into(), ..Default::default() },
            "schema_name: invalid schema name",
        ),
        (
            MigrateRequest { connection: "organization".into(), schemas: vec!["ok".into(), "bad-name".into()], ..Default::default() },
            "schemas[1]: invalid schema name",
        ),
        (MigrateRequest { connection: "organization".into(), schema_pattern: "x'".into(), ..Default::default() }, "schema_pattern:"),
    ];
    for (req, msg) in invalid {
        let e = c.migrate(authed(req.clone())).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{req:?}: {e:?}");
        assert!(e.message().contains(msg), "{req:?}: {e:?}");
        // The stream refuses the same request before it starts.
        let e = c.stream_migrate(authed(req.clone())).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "stream {req:?}: {e:?}");
    }
    let e = c.migrate_down(authed(MigrateDownRequest::default())).await.unwrap_err();
    assert_eq!((e.code(), e.message()), (Code::InvalidArgument, "migration_id: is required"));
    let e = c.get_migration(authed(GetMigrationRequest::default())).await.unwrap_err();
    assert_eq!((e.code(), e.message()), (Code::InvalidArgument, "migration_id: is required"));
    let e = c.list_migrations(authed(ListMigrationsRequest { status: "weird".into(), ..Default::default() })).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("status: unknown status"), "{e:?}");
    let e = c.list_migrations(authed(ListMigrationsRequest { tags: vec!["nokey".into()], ..Default::default() })).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let e = c
        .migrate_down(authed(MigrateDownRequest {
            migration_id: "20250103000000_alerts_postgresql_organization".into(),
            schemas: vec!["bad name".into()],
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    // Unknown migrations: NOT_FOUND.
    let nope = || "20990101000000_nope_postgresql_core".to_string();
    assert_eq!(c.get_migration(authed(GetMigrationRequest { migration_id: nope() })).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(
        c.get_migration_status(authed(GetMigrationStatusRequest { migration_id: nope() })).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        c.get_migration_history(authed(GetMigrationHistoryRequest { migration_id: nope() })).await.unwrap_err().code(),
        Code::NotFound
    );
    let e = c.rollback_migration(authed(RollbackMigrationRequest { migration_id: nope(), schemas: vec![] })).await.unwrap_err();
    assert_eq!((e.code(), e.message()), (Code::NotFound, "migration not found"));
    let e = c.migrate_down(authed(MigrateDownRequest { migration_id: nope(), ..Default::default() })).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // "Is it applied?" of an unknown id is a plain no (as HTTP).
    assert!(!c.is_migration_applied(authed(IsMigrationAppliedRequest { migration_id: nope() })).await.unwrap().into_inner().applied);

    // Rolling back what is not applied: FAILED_PRECONDITION.
    let e = c
        .rollback_migration(authed(RollbackMigrationRequest {
            migration_id: "20250101000000_bootstrap_postgresql_core".into(),
            schemas: vec![],
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().starts_with("migration is not applied: 20250101000000_bootstrap_postgresql_core"), "{e:?}");

    // The standard health service, without a token: SERVING once readiness has been checked.
    let mut health = tonic_health::pb::health_client::HealthClient::new(s.channel().await);
    for service in ["", "migration.MigrationService"] {
        let start = Instant::now();
        loop {
            let r = health.check(tonic_health::pb::HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
            if r.status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32 {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "{service:?} not serving: {r:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let e = health.check(tonic_health::pb::HealthCheckRequest { service: "no.Such".into() }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // Reflection (v1 and v1alpha), without a token: what grpcurl needs.
    use tonic_reflection::pb::v1 as r1;
    let mut refl = r1::server_reflection_client::ServerReflectionClient::new(s.channel().await);
    let ask = |m: r1::server_reflection_request::MessageRequest| {
        futures::stream::iter(vec![r1::ServerReflectionRequest { host: String::new(), message_request: Some(m) }])
    };
    let mut out = refl
        .server_reflection_info(ask(r1::server_reflection_request::MessageRequest::ListServices(String::new())))
        .await
        .unwrap()
        .into_inner();
    let resp = out.message().await.unwrap().unwrap();
    let Some(r1::server_reflection_response::MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("{resp:?}")
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(names, ["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "migration.MigrationService"], "{names:?}");
    let mut out = refl
        .server_reflection_info(ask(r1::server_reflection_request::MessageRequest::FileContainingSymbol(
            "migration.MigrationService".into(),
        )))
        .await
        .unwrap()
        .into_inner();
    let resp = out.message().await.unwrap().unwrap();
    let Some(r1::server_reflection_response::MessageResponse::FileDescriptorResponse(fd)) = resp.message_response else {
        panic!("{resp:?}")
    };
    let file = <prost_types::FileDescriptorProto as prost::Message>::decode(fd.file_descriptor_proto[0].as_slice()).unwrap();
    assert_eq!((file.name(), file.package()), ("migration.proto", "migration"));
    assert_eq!(file.service[0].method.len(), 11);

    use tonic_reflection::pb::v1alpha as ra;
    let mut refl = ra::server_reflection_client::ServerReflectionClient::new(s.channel().await);
    let req = ra::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(ra::server_reflection_request::MessageRequest::ListServices(String::new())),
    };
    let mut out = refl.server_reflection_info(futures::stream::iter(vec![req])).await.unwrap().into_inner();
    let resp = out.message().await.unwrap().unwrap();
    let Some(ra::server_reflection_response::MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("{resp:?}")
    };
    assert!(list.service.iter().any(|s| s.name == "migration.MigrationService"));
}

/// Every event of a stream, checked: per step pending → running → success, progress never
/// decreasing and ending at 100. Returns the successful steps' ids.
/// Wait until the standard health service reports `want` for `service`.
async fn wait_health(s: &Server, service: &str, want: tonic_health::pb::health_check_response::ServingStatus) {
    let mut health = tonic_health::pb::health_client::HealthClient::new(s.channel().await);
    let start = Instant::now();
    loop {
        let r = health.check(tonic_health::pb::HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        if r.status == want as i32 {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{service:?} is not {want:?}: {r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn standard_health_follows_readiness_when_a_connection_goes_down() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let db = PgDb::new().await;
    let s = start(&pg_env(&db), tree).await;
    for service in ["", "migration.MigrationService"] {
        wait_health(&s, service, ServingStatus::Serving).await;
    }
    // The connections' database disappears: readiness fails and the health service follows.
    drop(db);
    for service in ["", "migration.MigrationService"] {
        wait_health(&s, service, ServingStatus::NotServing).await;
    }
    let h = s.client().await.health(HealthRequest {}).await.unwrap().into_inner();
    assert_eq!(h.status, "unhealthy", "{h:?}");
    assert!(h.checks.is_empty(), "no database error reaches an anonymous caller: {h:?}");
    let h = s.client().await.health(authed(HealthRequest {})).await.unwrap().into_inner();
    assert_eq!(h.checks.get("state").map(String::as_str), Some("ok"), "{h:?}");
    assert_ne!(h.checks.get("connection:core").map(String::as_str), Some("ok"), "{h:?}");
}

fn check_events(events: &[MigrateProgress], steps: usize) -> Vec<String> {
    assert_eq!(events.len(), steps * 3, "one event per step and state");
    let mut seen: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut last = 0;
    for e in events {
        assert!(e.progress >= last, "progress went back: {e:?}");
        last = e.progress;
        assert_eq!((e.total, e.dropped), (steps as i32, 0), "{e:?}");
        assert_eq!(e.run_id, events[0].run_id);
        assert_eq!(e.migration_id, format!("{}_{}", e.schema, e.base_migration_id), "{e:?}");
        seen.entry(e.migration_id.as_str()).or_default().push(e.status.as_str());
    }
    assert_eq!(last, 100);
    assert_eq!(seen.len(), steps);
    for (id, states) in &seen {
        assert_eq!(states, &["pending", "running", "success"], "{id}");
    }
    // All pending events come first (the plan), each step's pending before anything runs.
    assert!(events[..steps].iter().all(|e| e.status == "pending" && e.progress == 0));
    seen.into_keys().map(str::to_string).collect()
}

fn fanout_tree(root: &Path) {
    write(root, "sfm/postgresql/org/20250101000000_accounts.up.sql", "CREATE TABLE accounts (id int, tenant text DEFAULT '{{.Schema}}');");
    write(root, "sfm/postgresql/org/20250102000000_seed.up.sql", "INSERT INTO accounts (id) VALUES (1);");
}

fn org_env(db: &PgDb) -> Vec<(&'static str, String)> {
    vec![("ORG_BACKEND", "postgresql".into()), ("ORG_DB_URL", db.url.clone())]
}

async fn scalar(pool: &sqlx::PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await.unwrap()
}

#[tokio::test]
async fn stream_migrate_over_50_schemas_reports_every_step() {
    let db = PgDb::new().await;
    let s = start(&org_env(&db), fanout_tree).await;
    let mut c = s.client().await;
    let schemas: Vec<String> = (0..50).map(|i| format!("tenant_{i:02}")).collect();
    let req = MigrateRequest {
        connection: "org".into(),
        target: target("org"),
        schema_name: schemas[0].clone(),
        schemas: schemas[1..].to_vec(),
        ..Default::default()
    };

    // A dry run streams the plan and changes nothing.
    let mut stream = c.stream_migrate(authed(MigrateRequest { dry_run: true, ..req.clone() })).await.unwrap().into_inner();
    let mut dry = Vec::new();
    while let Some(m) = stream.message().await.unwrap() {
        dry.push(m);
    }
    assert_eq!(dry.len(), 200, "pending and success per step");
    assert!(dry[..100].iter().all(|m| m.status == "pending"));
    assert!(dry[100..].iter().all(|m| m.status == "success" && m.message.contains("dry run")));
    assert_eq!(dry.last().unwrap().progress, 100);

    let started = Instant::now();
    let mut stream = c.stream_migrate(authed(req.clone())).await.unwrap().into_inner();
    let mut events = Vec::new();
    while let Some(m) = stream.message().await.unwrap() {
        events.push(m);
    }
    let ids = check_events(&events, 100);
    for schema in &schemas {
        assert!(ids.contains(&format!("{schema}_20250102000000_seed_postgresql_org")), "{schema}");
    }
    // Within a schema the steps ran in order (consecutive steps may travel in one batch: both
    // running, then both done).
    let pos = |id: &str, status: &str| events.iter().position(|e| e.migration_id == id && e.status == status).unwrap();
    for schema in &schemas {
        let (first, second) =
            (format!("{schema}_20250101000000_accounts_postgresql_org"), format!("{schema}_20250102000000_seed_postgresql_org"));
        assert!(pos(&first, "running") < pos(&second, "running"));
        assert!(pos(&first, "success") < pos(&second, "success"));
    }
    eprintln!("50-schema stream: {} events in {:?}", events.len(), started.elapsed());

    // The state and the targets agree.
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    assert_eq!(scalar(&pool, "SELECT count(*) FROM bfm.ledger").await, 100);
    assert_eq!(scalar(&pool, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'accounts'").await, 50);
    let l = c.list_migrations(authed(ListMigrationsRequest { connection: "org".into(), ..Default::default() })).await.unwrap().into_inner();
    for item in &l.items {
        assert_eq!(item.schema_status, HashMap::from([("applied".to_string(), 50)]), "{item:?}");
    }
    let h = c
        .get_migration_history(authed(GetMigrationHistoryRequest {
            migration_id: "tenant_07_20250101000000_accounts_postgresql_org".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h.history.len(), 1);
    assert!(h.history[0].execution_context.contains("StreamMigrate"), "{h:?}");

    // Again: everything is already applied, one `skipped` message per step, nothing runs.
    let mut stream = c.stream_migrate(authed(req)).await.unwrap().into_inner();
    let mut again = Vec::new();
    while let Some(m) = stream.message().await.unwrap() {
        again.push(m);
    }
    assert_eq!(again.len(), 100);
    assert!(again.iter().all(|m| m.status == "skipped"), "{:?}", again[0]);
    pool.close().await;
}

fn slow_tree(root: &Path) {
    write(
        root,
        "sfm/postgresql/org/20250101000000_slow.up.sql",
        "CREATE TABLE slow (id int, tenant text DEFAULT '{{.Schema}}');\nSELECT pg_sleep(0.1);",
    );
}

/// Applied steps per schema, from the state (over gRPC), once nothing runs any more.
async fn settled_applied(c: &mut MigrationServiceClient<Channel>) -> HashMap<String, i64> {
    let mut last = HashMap::new();
    let mut stable_since = Instant::now();
    let start = Instant::now();
    loop {
        let l =
            c.list_migrations(authed(ListMigrationsRequest { connection: "org".into(), ..Default::default() })).await.unwrap().into_inner();
        let counts = l.items[0].schema_status.clone();
        if counts != last {
            last = counts;
            stable_since = Instant::now();
        } else if stable_since.elapsed() > Duration::from_millis(800) && !last.contains_key("running") {
            return last;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the run did not settle: {last:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_dropped_stream_stops_the_run_after_the_current_steps() {
    let db = PgDb::new().await;
    let mut env = org_env(&db);
    env.push(("BFM_CONCURRENCY", "2".into()));
    let s = start(&env, slow_tree).await;
    let mut c = s.client().await;
    let schemas: Vec<String> = (0..30).map(|i| format!("t_{i:02}")).collect();
    let req = MigrateRequest { connection: "org".into(), schemas: schemas.clone(), ..Default::default() };
    let mut stream = c.stream_migrate(authed(req.clone())).await.unwrap().into_inner();
    let mut successes = 0;
    while successes < 3 {
        let m = stream.message().await.unwrap().unwrap();
        if m.status == "success" {
            successes += 1;
        }
    }
    drop(stream);

    let counts = settled_applied(&mut c).await;
    let applied = counts.get("applied").copied().unwrap_or(0);
    assert_eq!(counts.keys().map(String::as_str).collect::<Vec<_>>(), vec!["applied"], "only applied steps, nothing half-done: {counts:?}");
    assert!((3..20).contains(&applied), "the run went on after the client left: {applied} of 30 applied");
    // The records match the target: a table and a ledger row for exactly the applied steps.
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    assert_eq!(scalar(&pool, "SELECT count(*) FROM bfm.ledger").await, applied);
    assert_eq!(scalar(&pool, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'slow'").await, applied);

    // The rest runs on the next request; nothing twice.
    let r = c.migrate(authed(req)).await.unwrap().into_inner();
    assert!(r.success, "{r:?}");
    assert_eq!((r.applied.len() as i64, r.skipped.len() as i64), (30 - applied, applied), "{r:?}");
    assert_eq!(scalar(&pool, "SELECT count(*) FROM bfm.ledger").await, 30);
    pool.close().await;
}

#[tokio::test]
async fn a_client_that_does_not_read_does_not_hold_up_the_run() {
    let db = PgDb::new().await;
    let s = start(&org_env(&db), fanout_tree).await;
    // A client whose flow-control window holds almost nothing: the server cannot send more
    // until it reads.
    let slow = Endpoint::from_shared(s.grpc.clone()).unwrap().initial_stream_window_size(Some(1024)).connect().await.unwrap();
    let mut slow = MigrationServiceClient::new(slow);
    let mut c = s.client().await;
    let schemas: Vec<String> = (0..50).map(|i| format!("lag_{i:02}")).collect();
    let req = MigrateRequest { connection: "org".into(), schemas, ..Default::default() };
    let mut stream = slow.stream_migrate(authed(req)).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.status, "pending");

    // Not reading; the run finishes anyway.
    let counts = settled_applied(&mut c).await;
    assert_eq!(counts.get("applied"), Some(&50), "{counts:?}");

    // Then every outcome arrives, in order; only pending/running may have been left out.
    let mut events = vec![first];
    while let Some(m) = stream.message().await.unwrap() {
        events.push(m);
    }
    let mut last = 0;
    for e in &events {
        assert!(e.progress >= last, "{e:?}");
        last = e.progress;
    }
    assert_eq!(last, 100);
    assert_eq!(events.iter().filter(|e| e.status == "success").count(), 100);
    let dropped: i32 = events.iter().map(|e| e.dropped).sum();
    assert_eq!(events.len() + dropped as usize, 300, "every event delivered or counted as left out");
}

#[tokio::test]
async fn sigterm_ends_a_stream_cleanly_and_stops_both_servers() {
    let db = PgDb::new().await;
    let mut env = org_env(&db);
    env.push(("BFM_CONCURRENCY", "1".into()));
    let mut s = start(&env, slow_tree).await;
    let mut c = s.client().await;
    let schemas: Vec<String> = (0..20).map(|i| format!("term_{i:02}")).collect();
    let mut stream =
        c.stream_migrate(authed(MigrateRequest { connection: "org".into(), schemas, ..Default::default() })).await.unwrap().into_inner();
    loop {
        let m = stream.message().await.unwrap().unwrap();
        if m.status == "success" {
            break;
        }
    }
    s.proc.sigterm();
    // The stream ends (the run stopped after its current step), then the process exits 0.
    let mut tail = Vec::new();
    while let Ok(Some(m)) = stream.message().await {
        tail.push(m);
    }
    s.proc.wait_clean_exit().await;
    assert!(tail.iter().all(|m| m.status != "failed"), "{tail:?}");
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let tables = scalar(&pool, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'slow'").await;
    assert_eq!(scalar(&pool, "SELECT count(*) FROM bfm.ledger").await, tables);
    assert!(tables < 20, "the run stopped early: {tables}");
    pool.close().await;
}
