//! The engine on etcd (a real server, `BFM_TEST_ETCD_ENDPOINTS`) and on GreptimeDB (the HTTP API
//! stand-in of bfm-testkit), configured with BfM's environment variables.

mod common;

use bfm_core::Status;
use bfm_engine::StepOutcomeKind;
use bfm_etcd::{Client, ConnectOptions, Keys, RangeOptions};
use bfm_testkit::greptime::{FAIL_MARKER, GreptimeMock};
use common::*;

async fn etcd_keys(prefix: &str) -> Vec<(String, String)> {
    let endpoints: Vec<String> = bfm_testkit::etcd_endpoints().split(',').map(str::to_string).collect();
    let c = Client::connect(&endpoints, &ConnectOptions::new()).await.unwrap();
    let r = c.range(Keys::prefix(prefix), RangeOptions::default()).await.unwrap();
    r.kvs
        .iter()
        .map(|kv| (std::str::from_utf8(&kv.key).unwrap()[prefix.len()..].to_string(), std::str::from_utf8(&kv.value).unwrap().to_string()))
        .collect()
}

#[tokio::test]
async fn etcd_migrations_through_the_engine() {
    let t = Tree::new();
    // BfM's example: an absolute declared schema, read relative to the connection prefix.
    t.write(
        "etcd/metadata/20250101000000_feature_flags.up.json",
        r#"[
  {"key": "solution/feature_flags/zero_downtime", "value": {"enabled": true}, "if_absent": true},
  {"key": "solution/environment", "value": "{{.Environment}}"}
]"#,
    );
    t.write("etcd/metadata/20250101000000_feature_flags.down.json", r#"[{"operation": "delete_prefix", "key": "solution/"}]"#);
    t.write(
        "etcd/metadata/20250101000000_feature_flags.go",
        "package m\nvar M = &migrations.MigrationScript{Schema: \"/metadata/operations\", Tags: []string{\"team=platform\"}}\n",
    );
    // Per tenant: one run per schema.
    t.write("etcd/metadata/20250102000000_tenant_settings.up.json", r#"[{"key": "settings/tenant", "value": "{{.Schema}}"}]"#);
    t.write("etcd/metadata/20250102000000_tenant_settings.down.json", r#"[{"operation": "delete", "key": "settings/tenant"}]"#);
    // A guard that does not hold: fails, changes nothing.
    t.write(
        "etcd/metadata/20250103000000_guarded.up.json",
        r#"[{"key": "settings/plan", "value": "pro"}, {"key": "settings/tenant", "value": "x", "if_value": "someone-else"}]"#,
    );
    let prefix = bfm_testkit::etcd_prefix("engine");
    let endpoints = bfm_testkit::etcd_endpoints();
    let e = engine(config(
        &t,
        &t.state_url(),
        &[("METADATA_BACKEND", "etcd"), ("METADATA_ENDPOINTS", &endpoints), ("METADATA_PREFIX", &prefix), ("BFM_ENVIRONMENT", "staging")],
    ))
    .await;
    let r = up(&e, "metadata", &["tenant_a", "tenant_b"]).await;
    let mut applied = r.applied.clone();
    applied.sort();
    assert_eq!(
        applied,
        vec![
            "20250101000000_feature_flags_etcd_metadata",
            "tenant_a_20250102000000_tenant_settings_etcd_metadata",
            "tenant_b_20250102000000_tenant_settings_etcd_metadata",
        ],
        "{r:?}"
    );
    let failed: Vec<_> = r.steps.iter().filter(|s| s.outcome == StepOutcomeKind::Failed).collect();
    assert_eq!(failed.len(), 2, "{r:?}");
    assert_eq!(failed[0].statement_index, Some(1));
    assert!(failed[0].error.as_deref().unwrap().contains("if_value"));
    assert!(failed[0].statement.as_deref().unwrap().contains("someone-else"));

    let keys = etcd_keys(&prefix).await;
    let get = |k: &str| keys.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    assert_eq!(get("metadata/operations/solution/feature_flags/zero_downtime").as_deref(), Some(r#"{"enabled":true}"#));
    assert_eq!(get("metadata/operations/solution/environment").as_deref(), Some("staging"));
    assert_eq!(get("tenant_a/settings/tenant").as_deref(), Some("tenant_a"));
    assert_eq!(get("tenant_b/settings/tenant").as_deref(), Some("tenant_b"));
    assert_eq!(get("tenant_a/settings/plan"), None, "the failed guard changed nothing");
    assert!(get("__bfm/ledger/metadata/operations/20250101000000_feature_flags_etcd_metadata").is_some());
    let st = e.state().states(&bfm_state::StateFilter { status: Some(Status::Failed), ..Default::default() }).await.unwrap();
    assert_eq!(st.len(), 2);
    assert!(st.iter().all(|s| !s.partial), "{st:?}");

    // Running again: what ran is skipped; the failed guard fails again, cleanly.
    let r = up(&e, "metadata", &["tenant_a", "tenant_b"]).await;
    assert!(r.applied.is_empty(), "{r:?}");
    assert_eq!(r.skipped.len(), 3, "{r:?}");

    // Down for one tenant.
    let r = down(&e, &["tenant_a_20250102000000_tenant_settings_etcd_metadata"]).await;
    assert_eq!(r.applied, vec!["tenant_a_20250102000000_tenant_settings_etcd_metadata"], "{r:?}");
    let keys = etcd_keys(&prefix).await;
    assert!(!keys.iter().any(|(k, _)| k == "tenant_a/settings/tenant"));
    assert!(keys.iter().any(|(k, _)| k == "tenant_b/settings/tenant"));
    assert!(!keys.iter().any(|(k, _)| k.ends_with("tenant_a/20250102000000_tenant_settings_etcd_metadata")));

    // A request schema that tries to leave the prefix fails its step and writes nothing.
    let before = etcd_keys(&prefix).await.len();
    let req = bfm_engine::service::UpRequest {
        migrations: bfm_engine::service::MigrationFilter { connection: Some("metadata".into()), ..Default::default() },
        schemas: bfm_engine::service::SchemaChoice::names(bfm_engine::service::Field::Schemas, vec!["../escape".into()]),
        ..Default::default()
    };
    // The service refuses it before anything runs (the target's own check stays behind it).
    let err = bfm_engine::Service::new(e.clone()).up(req, label("test up"), bfm_engine::RunHooks::default()).await.unwrap_err();
    assert_eq!(err.kind(), bfm_engine::ErrorKind::BadRequest, "{err}");
    assert!(err.to_string().starts_with("schemas[0]: "), "{err}");
    assert_eq!(etcd_keys(&prefix).await.len(), before);
    e.close().await;
}

#[tokio::test]
async fn greptimedb_migrations_resume_after_retry() {
    let mock = GreptimeMock::start().await;
    let t = Tree::new();
    t.write(
        "greptimedb/logs/20250101000000_create_app_logs.up.sql",
        "CREATE TABLE IF NOT EXISTS app_logs (host STRING, message STRING, ts TIMESTAMP TIME INDEX, PRIMARY KEY (host));",
    );
    t.write("greptimedb/logs/20250101000000_create_app_logs.down.sql", "DROP TABLE app_logs;");
    t.write(
        "greptimedb/logs/20250102000000_backfill.up.sql",
        &format!(
            "-- bfm-resumable\nINSERT INTO app_logs VALUES ('h1', 'one', 1);\nINSERT INTO app_logs VALUES ('h2', '{FAIL_MARKER}', 2);\nINSERT INTO app_logs VALUES ('h3', 'three', 3);"
        ),
    );
    let port = mock.port.to_string();
    let e =
        engine(config(&t, &t.state_url(), &[("LOGS_BACKEND", "greptimedb"), ("LOGS_DB_HOST", "127.0.0.1"), ("LOGS_DB_PORT", &port)])).await;
    let r = up(&e, "logs", &["tenant_a"]).await;
    assert_eq!(r.applied, vec!["tenant_a_20250101000000_create_app_logs_greptimedb_logs"], "{r:?}");
    assert!(mock.databases().contains(&"tenant_a".to_string()), "the database is created on demand");
    assert_eq!(mock.tables("tenant_a"), vec!["app_logs"]);
    let failed = r.steps.iter().find(|s| s.outcome == StepOutcomeKind::Failed).unwrap();
    assert_eq!(failed.statement_index, Some(1));
    let st = e.state().states(&bfm_state::StateFilter { status: Some(Status::Failed), ..Default::default() }).await.unwrap();
    assert_eq!((st[0].partial, st[0].statements_done), (true, 1), "{st:?}");

    // Partial changes block the chain until a retry.
    assert!(up(&e, "logs", &["tenant_a"]).await.applied.is_empty());
    mock.set_failing(false);
    let reset = e.retry("tenant_a_20250102000000_backfill_greptimedb_logs", None, ctx()).await.unwrap();
    assert_eq!(reset, vec!["tenant_a_20250102000000_backfill_greptimedb_logs"]);
    let before = mock.statements().len();
    let r = up(&e, "logs", &["tenant_a"]).await;
    assert_eq!(r.applied, vec!["tenant_a_20250102000000_backfill_greptimedb_logs"], "{r:?}");
    let after: Vec<String> = mock.statements()[before..].iter().map(|(_, q)| q.clone()).collect();
    assert!(!after.iter().any(|q| q.contains("'h1'")), "the first statement is not run twice: {after:?}");
    assert!(after.iter().any(|q| q.contains("'h2'")) && after.iter().any(|q| q.contains("'h3'")));
    let ledger = mock.rows("public", "bfm_ledger");
    assert_eq!(ledger.len(), 2, "{ledger:?}");
    e.close().await;
}
