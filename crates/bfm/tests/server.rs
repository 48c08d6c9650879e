//! Black-box tests of `bfm serve`: the real binary, the real PostgreSQL and MariaDB, HTTP.

use bfm_testkit::{MySqlDb, PgDb};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const TOKEN: &str = "test-token-0123456789";

mod common;

use common::{ServeProcess, pg_env, spawn_serve, tree, write};

struct Server {
    proc: ServeProcess,
    base: String,
    client: reqwest::Client,
}

async fn start(env: &[(&str, String)], setup: impl FnOnce(&Path)) -> Server {
    let proc = spawn_serve(TOKEN, env, &[], setup);
    let server = Server { base: format!("http://127.0.0.1:{}", proc.http_port), client: bfm_testkit::http_client(), proc };
    let start = Instant::now();
    while server.client.get(format!("{}/health", server.base)).send().await.is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server
}

impl Server {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let mut req = match method {
            "GET" => self.client.get(url),
            _ => self.client.post(url),
        }
        .bearer_auth(TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

#[tokio::test]
async fn the_bfm_readme_example_per_tenant_runs_and_rollbacks() {
    let db = PgDb::new().await;
    let s = start(&pg_env(&db), tree).await;

    // The request of BfM's README.
    let (code, r) = s
        .call(
            "POST",
            "/api/v1/migrate",
            Some(json!({"target": {"backend": "postgresql", "schema": "core", "tables": [], "version": "", "connection": "core"}, "connection": "core", "schema": "core", "environment": "", "dry_run": false})),
        )
        .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(
        r,
        json!({"success": true, "applied": ["20250101000000_bootstrap_postgresql_core", "20250102000000_tagged_postgresql_core"], "skipped": [], "errors": []})
    );

    // Per tenant, tenants with `_` included.
    let body = json!({"connection": "organization", "target": {"connection": "organization"}, "schemas": ["tenant_a_1", "tenant_b"]});
    let (code, r) = s.call("POST", "/api/v1/migrations/up", Some(body.clone())).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["applied"].as_array().unwrap().len(), 4, "{r}");
    let (code, r) = s.call("POST", "/api/v1/migrations/up", Some(body.clone())).await;
    assert_eq!((code, r["applied"].as_array().unwrap().len(), r["skipped"].as_array().unwrap().len()), (200, 0, 4), "{r}");

    let id = "tenant_a_1_20250104000000_seed_postgresql_organization";
    let (_, st) = s.call("GET", &format!("/api/v1/migrations/{id}/status"), None).await;
    assert_eq!((st["status"].as_str(), st["applied"].as_bool()), (Some("applied"), Some(true)), "{st}");

    // Rollback → rolled_back, visible in status and history; up again → applied.
    let (code, r) = s
        .call("POST", "/api/v1/migrations/20250104000000_seed_postgresql_organization/rollback", Some(json!({"schemas": ["tenant_a_1"]})))
        .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["success"], true);
    assert_eq!(r["applied"], json!([id]));
    let (_, st) = s.call("GET", &format!("/api/v1/migrations/{id}/status"), None).await;
    assert_eq!(st["status"], "rolled_back", "{st}");
    let (_, a) = s.call("GET", &format!("/api/v1/migrations/{id}/applied"), None).await;
    assert_eq!(a, json!({"applied": false}));
    // The other tenant is untouched.
    let (_, st) = s.call("GET", "/api/v1/migrations/tenant_b_20250104000000_seed_postgresql_organization/status", None).await;
    assert_eq!(st["status"], "applied");
    let (code, r) = s
        .call("POST", "/api/v1/migrations/20250104000000_seed_postgresql_organization/rollback", Some(json!({"schemas": ["tenant_a_1"]})))
        .await;
    assert_eq!((code, r["error"].as_str()), (400, Some("no migrations to rollback")), "{r}");
    let (code, _) = s.call("POST", "/api/v1/migrations/up", Some(body)).await;
    assert_eq!(code, 200);
    let (_, st) = s.call("GET", &format!("/api/v1/migrations/{id}/status"), None).await;
    assert_eq!(st["status"], "applied");
    let (_, h) = s.call("GET", &format!("/api/v1/migrations/{id}/history"), None).await;
    let statuses: Vec<&str> = h["history"].as_array().unwrap().iter().map(|x| x["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, vec!["applied", "rolled_back", "applied"], "{h}");
    assert_eq!(h["history"][1]["executed_by"], "api_user");

    // Lists, details, executions, skipped.
    let (_, l) = s.call("GET", "/api/v1/migrations?connection=organization", None).await;
    assert_eq!(l["total"], 2);
    assert_eq!(l["items"][0]["schema_status"], json!({"applied": 2}), "{l}");
    let (_, l) = s.call("GET", "/api/v1/migrations?tag=team=billing", None).await;
    assert_eq!(l["items"].as_array().unwrap().len(), 1);
    let (_, l) = s.call("GET", "/api/v1/migrations?limit=1&offset=1", None).await;
    assert_eq!((l["total"].as_i64(), l["items"][0]["name"].as_str()), (Some(4), Some("tagged")), "{l}");
    let (_, d) = s.call("GET", "/api/v1/migrations/20250103000000_alerts_postgresql_organization", None).await;
    assert_eq!(d["structured_dependencies"][0]["target"], "bootstrap");
    assert!(d["up_sql"].as_str().unwrap().contains("CREATE TABLE alerts"));
    let (_, e) = s.call("GET", "/api/v1/migrations/20250103000000_alerts_postgresql_organization/executions", None).await;
    assert_eq!(e["executions"].as_array().unwrap().len(), 2);
    let (_, e) = s.call("GET", "/api/v1/migrations/executions/recent?limit=2", None).await;
    assert_eq!(e["executions"].as_array().unwrap().len(), 2);
    let (_, sk) = s.call("GET", "/api/v1/migrations/skipped/recent", None).await;
    assert!(!sk["skipped"].as_array().unwrap().is_empty(), "{sk}");
    let (_, sk) = s.call("GET", "/api/v1/migrations/tenant_b_20250104000000_seed_postgresql_organization/skipped", None).await;
    assert_eq!(sk["skipped"][0]["schema"], "tenant_b");
    let (code, o) = s
        .call("POST", "/api/v1/migrations/order-batch", Some(json!({"connection": "core", "migration_ids": ["20250102000000_tagged_postgresql_core", "20250101000000_bootstrap_postgresql_core"]})))
        .await;
    assert_eq!((code, o["ordered_migration_ids"][0].as_str()), (200, Some("20250101000000_bootstrap_postgresql_core")));
    let (code, r) = s.call("POST", "/api/v1/migrations/reindex", None).await;
    assert_eq!((code, r["total"].as_i64()), (200, Some(4)), "{r}");

    // Metrics count what ran.
    let text = s.client.get(format!("{}/metrics", s.base)).bearer_auth(TOKEN).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("bfm_migrations_applied_total{connection=\"organization\",backend=\"postgresql\"} 6"), "{text}");
    assert!(text.contains("bfm_step_duration_seconds_count"));

    // Made-up methods share one label: requests cannot grow the metrics without bound.
    for i in 0..20 {
        let m = reqwest::Method::from_bytes(format!("FOO{i}").as_bytes()).unwrap();
        s.client.request(m, format!("{}/api/v1/migrations", s.base)).send().await.unwrap();
    }
    let text = s.client.get(format!("{}/metrics", s.base)).bearer_auth(TOKEN).send().await.unwrap().text().await.unwrap();
    assert!(!text.contains("FOO"), "{text}");
    assert!(text.contains("method=\"OTHER\""), "{text}");
}

#[tokio::test]
async fn auth_and_every_client_mistake_is_a_4xx_json_error() {
    let db = PgDb::new().await;
    let mut env = pg_env(&db);
    env.push(("BFM_HTTP_BODY_LIMIT", "65536".into()));
    let s = start(&env, tree).await;
    let get = |path: &str, auth: Option<&str>| {
        let mut r = s.client.get(format!("{}{path}", s.base));
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.send()
    };
    for (auth, msg) in [
        (None, "missing Authorization header"),
        (Some("Bearer"), "invalid Authorization header format"),
        (Some(format!("Basic {TOKEN}").as_str()), "authorization header must use Bearer scheme"),
        (Some("Bearer nope"), "invalid API token"),
    ] {
        let r = get("/api/v1/migrations", auth).await.unwrap();
        assert_eq!(r.status().as_u16(), 401);
        assert_eq!(r.json::<Value>().await.unwrap(), json!({"error": msg}));
    }
    for path in ["/metrics", "/api/v1/health", "/api/v1/migrations/x/status"] {
        assert_eq!(get(path, None).await.unwrap().status().as_u16(), 401, "{path}");
    }
    // Liveness and the OpenAPI document are open.
    assert_eq!(get("/health", None).await.unwrap().status().as_u16(), 200);
    let doc: Value = get("/api/v1/openapi.json", None).await.unwrap().json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let yaml = get("/api/v1/openapi.yaml", None).await.unwrap().text().await.unwrap();
    assert!(yaml.contains("openapi: 3.1.0"));

    let cases: Vec<(&str, &str, Option<Value>, u16, &str)> = vec![
        ("POST", "/api/v1/migrations/up", Some(json!({"connection": "nope"})), 400, "connection: unknown connection \"nope\""),
        ("POST", "/api/v1/migrations/up", Some(json!({"target": {}})), 400, "connection: is required"),
        (
            "POST",
            "/api/v1/migrations/up",
            Some(json!({"connection": "core", "target": {"tags": ["ok=1", "bad"]}})),
            400,
            "target.tags: tags[1]: tag must be key=value",
        ),
        (
            "POST",
            "/api/v1/migrations/up",
            Some(json!({"connection": "organization", "schemas": ["ok", "bad-name;drop"]})),
            400,
            "schemas[1]: invalid schema name",
        ),
        ("POST", "/api/v1/migrations/up", Some(json!({"connection": "core", "schemas": "notalist"})), 400, "invalid request body"),
        // A misspelt field never widens the selection: `tag` for `tags` selected everything.
        ("POST", "/api/v1/migrations/up", Some(json!({"connection": "core", "target": {"tag": ["a=b"]}})), 400, "unknown field `tag`"),
        ("POST", "/api/v1/migrations/up", Some(json!({"connection": "core", "schema": "x"})), 400, "unknown field `schema`"),
        ("POST", "/api/v1/migrate", Some(json!({"connection": "core", "dryrun": true})), 400, "unknown field `dryrun`"),
        ("POST", "/api/v1/migrations/down", Some(json!({"migration_id": "x", "schema": ["a"]})), 400, "unknown field `schema`"),
        ("POST", "/api/v1/migrations/order-batch", Some(json!({"connection": "core", "ids": []})), 400, "unknown field `ids`"),
        (
            "POST",
            "/api/v1/migrations/20250101000000_bootstrap_solution_postgresql_core/rollback",
            Some(json!({"schema": ["a"]})),
            400,
            "unknown field `schema`",
        ),
        ("POST", "/api/v1/migrate", Some(json!({"connection": "organization", "schema": "x\"y"})), 400, "schema: invalid schema name"),
        ("POST", "/api/v1/migrations/down", Some(json!({})), 400, "migration_id: is required"),
        ("POST", "/api/v1/migrations/down", Some(json!({"migration_id": "nope"})), 404, "migration not found"),
        ("GET", "/api/v1/migrations/nope", None, 404, "migration not found"),
        ("GET", "/api/v1/migrations/nope/status", None, 404, "migration not found"),
        ("GET", "/api/v1/migrations/nope/history", None, 404, "migration not found"),
        ("POST", "/api/v1/migrations/nope/rollback", None, 404, "migration not found"),
        ("GET", "/api/v1/migrations?limit=abc", None, 400, "limit: must be a whole number"),
        ("GET", "/api/v1/migrations?status=weird", None, 400, "status: unknown status"),
        (
            "POST",
            "/api/v1/migrations/order-batch",
            Some(json!({"connection": "core", "migration_ids": ["nope"]})),
            400,
            "unknown migration_id(s): nope",
        ),
        ("GET", "/api/v1/nothing-here", None, 404, "Not found"),
    ];
    for (method, path, body, code, msg) in cases {
        let (got, r) = s.call(method, path, body).await;
        assert_eq!(got, code, "{method} {path}: {r}");
        assert!(r["error"].as_str().is_some_and(|e| e.contains(msg)), "{method} {path}: {r}");
    }
    // Errors the router makes itself are JSON too: a wrong method (with `Allow`), a path that
    // is not UTF-8.
    let r = s.client.get(format!("{}/api/v1/migrations/up", s.base)).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert!(r.headers().get("allow").is_some_and(|v| v.to_str().unwrap_or("").contains("POST")), "{:?}", r.headers());
    let e: Value = r.json().await.expect("a JSON body");
    assert_eq!(e["error"], "method not allowed", "{e}");
    let r = s.client.get(format!("{}/api/v1/migrations/%FF%FE/status", s.base)).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let e: Value = r.json().await.expect("a JSON body");
    assert!(e["error"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
    // Malformed JSON and an oversized body.
    let r = s
        .client
        .post(format!("{}/api/v1/migrations/up", s.base))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("{\"connection\":")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.json::<Value>().await.unwrap()["error"].as_str().unwrap().starts_with("malformed JSON"));
    // A body over the limit (64 KiB for this server) gets 413 with a JSON error.
    let big = format!("{{\"connection\": \"core\", \"schemas\": [\"{}\"]}}", "a".repeat(100 << 10));
    let r = s
        .client
        .post(format!("{}/api/v1/migrations/up", s.base))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "request body too large");
    // A missing target is "no filter" (within the request's connection), not a crash.
    let (code, r) = s.call("POST", "/api/v1/migrations/up", Some(json!({"connection": "core"}))).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["applied"].as_array().unwrap().len(), 2);
    // A per-tenant migration without a schema is reported, not run (206).
    let (code, r) = s.call("POST", "/api/v1/migrations/up", Some(json!({"connection": "organization"}))).await;
    assert_eq!(code, 206, "{r}");
    assert!(r["errors"][0].as_str().unwrap().contains("no schema was given"), "{r}");
}

#[tokio::test]
async fn readiness_reports_a_connection_that_is_down_and_mariadb_works() {
    let my = MySqlDb::new().await;
    let env = vec![
        ("DOWN_BACKEND", "postgresql".to_string()),
        ("DOWN_DB_HOST", "127.0.0.1".to_string()),
        ("DOWN_DB_PORT", "1".to_string()),
        ("SHOP_BACKEND", "mariadb".to_string()),
        ("SHOP_DB_URL", my.url.clone()),
    ];
    let s = start(&env, |root| {
        write(root, "sfm/mysql/shop/20250101000000_products.up.sql", "CREATE TABLE products (id INT PRIMARY KEY);");
    })
    .await;
    let (code, h) = s.call("GET", "/api/v1/health", None).await;
    assert_eq!(code, 503, "{h}");
    assert_eq!(h["status"], "unhealthy");
    assert_eq!(h["checks"]["state"], "ok");
    assert_eq!(h["checks"]["connection:shop"], "ok");
    assert_ne!(h["checks"]["connection:down"], "ok");
    let (code, r) = s.call("POST", "/api/v1/migrations/up", Some(json!({"connection": "shop"}))).await;
    assert_eq!((code, r["applied"][0].as_str()), (200, Some("20250101000000_products_mysql_shop")), "{r}");
}

#[tokio::test]
async fn sigterm_stops_the_server_cleanly() {
    let db = PgDb::new().await;
    let mut s = start(&pg_env(&db), tree).await;
    s.proc.sigterm();
    s.proc.wait_clean_exit().await;
}

#[test]
fn serve_refuses_to_start_without_a_token() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("sfm")).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_bfm"))
        .current_dir(d.path())
        .args(["--sfm", "sfm", "serve", "--port", "0"])
        .env_remove("BFM_API_TOKEN")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("BFM_API_TOKEN is not set"));
}

#[tokio::test]
async fn auto_migrate_at_start_up_watcher_reload_and_cors() {
    let db = PgDb::new().await;
    let dir_holder = tempfile::tempdir().unwrap();
    let root = dir_holder.path().to_path_buf();
    let mut env = pg_env(&db);
    env.push(("BFM_AUTO_MIGRATE", "true".into()));
    env.push(("BFM_AUTO_MIGRATE_CONNECTIONS", "CORE".into()));
    env.push(("BFM_CORS_ORIGINS", "https://dash.example.com".into()));
    let s = start(&env, |r| {
        tree(r);
        std::fs::write(root.join("sfm_root"), r.display().to_string()).unwrap();
    })
    .await;
    let sfm_root = std::fs::read_to_string(root.join("sfm_root")).unwrap();
    // Auto-migrate applies the fixed-schema migrations of the listed connections.
    let start_t = Instant::now();
    loop {
        let (_, st) = s.call("GET", "/api/v1/migrations/20250102000000_tagged_postgresql_core/status", None).await;
        if st["status"] == "applied" {
            break;
        }
        assert!(start_t.elapsed() < Duration::from_secs(15), "auto-migrate did not run: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, h) = s.call("GET", "/api/v1/migrations/20250102000000_tagged_postgresql_core/history", None).await;
    assert_eq!(h["history"][0]["execution_method"], "auto_migrate");
    assert_eq!(h["history"][0]["executed_by"], "bfm-server");

    // A new file is picked up by the watcher; a removed one becomes `missing`, history kept.
    write(Path::new(&sfm_root), "sfm/postgresql/core/20250105000000_new.up.sql", "-- bfm-schema: core\nSELECT 1;");
    std::fs::remove_file(Path::new(&sfm_root).join("sfm/postgresql/core/20250102000000_tagged.up.sql")).unwrap();
    let start_t = Instant::now();
    loop {
        let (_, l) = s.call("GET", "/api/v1/migrations?connection=core", None).await;
        let names: Vec<(String, String)> = l["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| (i["name"].as_str().unwrap().to_string(), i["status"].as_str().unwrap().to_string()))
            .collect();
        if names.contains(&("new".into(), "pending".into())) && names.contains(&("tagged".into(), "missing".into())) {
            break;
        }
        assert!(start_t.elapsed() < Duration::from_secs(15), "reload not seen: {names:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, h) = s.call("GET", "/api/v1/migrations/20250102000000_tagged_postgresql_core/history", None).await;
    assert_eq!(code, 200, "{h}");
    assert_eq!(h["history"].as_array().unwrap().len(), 1);

    // CORS: only the allowed origin, and no credentials wildcard.
    let pre = |origin: &str| {
        s.client
            .request(reqwest::Method::OPTIONS, format!("{}/api/v1/migrations", s.base))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let ok = pre("https://dash.example.com").await.unwrap();
    assert_eq!(ok.headers().get("access-control-allow-origin").and_then(|v| v.to_str().ok()), Some("https://dash.example.com"));
    let other = pre("https://evil.example.com").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

/// `BFM_CORS_ORIGINS='*'` allows any origin, never with credentials (it used to stop the server).
#[tokio::test]
async fn cors_wildcard_allows_any_origin_without_credentials() {
    let db = PgDb::new().await;
    let mut env = pg_env(&db);
    env.push(("BFM_CORS_ORIGINS", "*".into()));
    let s = start(&env, tree).await;
    let r = s
        .client
        .request(reqwest::Method::OPTIONS, format!("{}/api/v1/migrations", s.base))
        .header("origin", "https://ui.example.com")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers().get("access-control-allow-origin").and_then(|v| v.to_str().ok()), Some("*"), "{:?}", r.headers());
    assert!(r.headers().get("access-control-allow-credentials").is_none());
    let (code, _) = s.call("GET", "/api/v1/migrations", None).await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn declarative_schema_at_start_up_and_over_http() {
    let db = PgDb::new().await;
    let mut env = vec![
        ("CORE_BACKEND", "postgresql".to_string()),
        ("CORE_DB_URL", db.url.clone()),
        // Relative to the server's working directory.
        ("CORE_SCHEMA_DIR", "desired".to_string()),
        ("CORE_MANAGED_SCHEMAS", "app".to_string()),
    ];
    env.push(("BFM_AUTO_MIGRATE", "true".into()));
    let s = start(&env, |r| {
        write(r, "desired/bootstrap.sql", "CREATE SCHEMA IF NOT EXISTS app;");
        write(r, "desired/tables.sql", "CREATE TABLE app.users (id bigint PRIMARY KEY, email text NOT NULL, nickname text);");
        // A versioned migration that needs the declared table: it runs after the declarative phase.
        write(
            r,
            "sfm/postgresql/core/20250101000000_seed.up.sql",
            "-- bfm-schema: app\nINSERT INTO app.users (id, email) VALUES (1, 'a@example.com');",
        );
    })
    .await;
    let t = Instant::now();
    loop {
        let (_, st) = s.call("GET", "/api/v1/migrations/20250101000000_seed_postgresql_core/status", None).await;
        if st["status"] == "applied" {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "start-up flow did not finish: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM app.users").fetch_one(&pool).await.unwrap();
    assert_eq!(n, 1);

    let (code, st) = s.call("GET", "/api/v1/schema/core/status", None).await;
    assert_eq!(code, 200, "{st}");
    assert_eq!(st["in_sync"], true, "{st}");
    assert_eq!(st["scope"], json!({"origin": "configured", "schemas": ["app"], "extensions": []}), "{st}");

    // A destructive change: planned, refused without approval, refused for a stale plan.
    let dir = s.proc.dir.path();
    write(dir, "desired/tables.sql", "CREATE TABLE app.users (id bigint PRIMARY KEY, email text NOT NULL);");
    let (code, plan) = s.call("POST", "/api/v1/schema/core/plan", None).await;
    assert_eq!(code, 200, "{plan}");
    let approval = plan["approvals_required"][0].as_str().unwrap().to_string();
    assert!(approval.contains("nickname"), "{plan}");
    let (code, e) = s.call("POST", "/api/v1/schema/core/apply", None).await;
    assert_eq!(code, 409, "{e}");
    assert!(e["error"].as_str().unwrap().contains(&approval), "{e}");
    let reviewed = json!({"approve": [approval], "source_fingerprint": plan["source_fingerprint"], "desired_fingerprint": plan["desired_fingerprint"]});
    sqlx::raw_sql("CREATE TABLE app.other (id int)").execute(&pool).await.unwrap();
    let (code, e) = s.call("POST", "/api/v1/schema/core/apply", Some(reviewed.clone())).await;
    assert_eq!(code, 409, "{e}");
    assert!(e["error"].as_str().unwrap().contains("changed since the plan"), "{e}");
    sqlx::raw_sql("DROP TABLE app.other").execute(&pool).await.unwrap();
    let (code, r) = s.call("POST", "/api/v1/schema/core/apply", Some(reviewed)).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["converged"], true, "{r}");
    let cols: i64 =
        sqlx::query_scalar("SELECT count(*) FROM information_schema.columns WHERE table_schema = 'app' AND column_name = 'nickname'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(cols, 0);

    // Drift since the last apply, and the dump.
    let (code, v) = s.call("GET", "/api/v1/schema/core/validate", None).await;
    assert_eq!((code, &v["in_sync"]), (200, &json!(true)), "{v}");
    sqlx::raw_sql("CREATE INDEX users_email ON app.users (email)").execute(&pool).await.unwrap();
    let (_, v) = s.call("GET", "/api/v1/schema/core/validate", None).await;
    assert_eq!(v["in_sync"], false, "{v}");
    assert_eq!(v["scope"]["schemas"], json!(["app"]), "{v}");
    let (code, d) = s.call("POST", "/api/v1/schema/core/dump", None).await;
    assert_eq!(code, 200, "{d}");
    assert_eq!(d["scope"]["schemas"], json!(["app"]), "{d}");
    let all: String = d["files"].as_array().unwrap().iter().map(|f| f["sql"].as_str().unwrap()).collect();
    assert!(all.contains("users_email") && all.contains("CREATE TABLE"), "{d}");

    // Client mistakes are 4xx JSON errors.
    let (code, e) = s.call("GET", "/api/v1/schema/nope/status", None).await;
    assert_eq!(code, 400, "{e}");
    assert!(e["error"].as_str().unwrap().contains("unknown connection"), "{e}");
    let (code, e) = s.call("POST", "/api/v1/schema/core/apply", Some(json!({"plan": {"steps": []}}))).await;
    assert_eq!(code, 400, "{e}");
    let resp = s.client.get(format!("{}/api/v1/schema/core/status", s.base)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    pool.close().await;
}
