//! Black-box tests of `bfm schema …` and `bfm baseline` against the real PostgreSQL.

mod common;

use bfm_testkit::PgDb;
use common::{bfm, text, write};
use serde_json::Value;

#[tokio::test]
async fn plan_apply_validate_dump_and_approvals() {
    let db = PgDb::new().await;
    let d = tempfile::tempdir().unwrap();
    let state = format!("sqlite://{}", d.path().join("state.db").display());
    std::fs::create_dir_all(d.path().join("sfm")).unwrap();
    write(d.path(), "desired/bootstrap.sql", "CREATE SCHEMA IF NOT EXISTS app;");
    write(
        d.path(),
        "desired/tables.sql",
        "CREATE TABLE app.users (id bigint PRIMARY KEY, email text NOT NULL, nickname text);\nCREATE INDEX users_email ON app.users (email);",
    );
    let env = vec![
        ("CORE_BACKEND", "postgresql".to_string()),
        ("CORE_DB_URL", db.url.clone()),
        ("CORE_SCHEMA_DIR", d.path().join("desired").display().to_string()),
        ("CORE_MANAGED_SCHEMAS", "app".to_string()),
    ];
    let base = ["--sfm", "sfm", "--state", state.as_str()];
    let run = |args: &[&str]| {
        let mut all: Vec<&str> = base.to_vec();
        all.extend_from_slice(args);
        bfm(d.path(), &all, &env)
    };

    let o = run(&["schema", "plan", "-c", "core", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let plan: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(plan["steps"].as_array().unwrap().len() >= 3, "{plan}");
    let o = run(&["schema", "apply", "-c", "core"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = run(&["schema", "status", "-c", "core", "--json"]);
    let st: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(st["in_sync"], true, "{st}");
    let o = run(&["schema", "validate", "-c", "core"]);
    assert!(o.status.success(), "{}", text(&o));

    // Drift made by hand is reported, naming the object.
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    sqlx::raw_sql("ALTER TABLE app.users ADD COLUMN sneaky int").execute(&pool).await.unwrap();
    let o = run(&["schema", "validate", "-c", "core", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let drift: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(drift["drifts"].as_array().unwrap().iter().any(|x| x["object"].as_str().unwrap_or("").contains("users")), "{drift}");
    sqlx::raw_sql("ALTER TABLE app.users DROP COLUMN sneaky").execute(&pool).await.unwrap();

    // A destructive change needs its approval.
    write(
        d.path(),
        "desired/tables.sql",
        "CREATE TABLE app.users (id bigint PRIMARY KEY, email text NOT NULL);\nCREATE INDEX users_email ON app.users (email);",
    );
    let o = run(&["schema", "plan", "-c", "core", "--json", "--out", "plan.json"]);
    let plan: Value = serde_json::from_slice(&o.stdout).unwrap();
    let required: Vec<String> = plan["approvals_required"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect();
    assert_eq!(required.len(), 1, "{plan}");
    assert!(required[0].contains("nickname"), "{required:?}");
    let o = run(&["schema", "apply", "-c", "core"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = run(&["schema", "apply", "-c", "core", "--non-destructive-only"]);
    assert_eq!(o.status.code(), Some(1), "nothing to do but the destructive step: {}", text(&o));
    // A plan made before the live schema changed is refused.
    sqlx::raw_sql("CREATE TABLE app.other (id int)").execute(&pool).await.unwrap();
    let o = run(&["schema", "apply", "-c", "core", "--plan-file", "plan.json", "--approve", &required[0]]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("changed since the plan was made"), "{}", text(&o));
    sqlx::raw_sql("DROP TABLE app.other").execute(&pool).await.unwrap();
    let o = run(&["schema", "apply", "-c", "core", "--approve", &required[0]]);
    assert!(o.status.success(), "{}", text(&o));
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM information_schema.columns WHERE table_schema = 'app' AND column_name = 'nickname'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(n, 0);

    // Dump writes re-loadable files; applies are in the history.
    let o = run(&["schema", "dump", "-c", "core", "--out", "dumped"]);
    assert!(o.status.success(), "{}", text(&o));
    let dumped: String =
        std::fs::read_dir(d.path().join("dumped")).unwrap().map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap()).collect();
    assert!(dumped.contains("users_email"), "{dumped}");
    let lite = sqlx::SqlitePool::connect(&state).await.unwrap();
    let applies: i64 = sqlx::query_scalar("SELECT count(*) FROM bfm_history WHERE operation = 'schema_apply' AND status = 'applied'")
        .fetch_one(&lite)
        .await
        .unwrap();
    assert!(applies >= 2, "{applies}");
    lite.close().await;
    pool.close().await;
}

#[tokio::test]
async fn baseline_adopts_an_existing_database() {
    let db = PgDb::new().await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    // A schema made by something else (an ORM's auto-migration).
    sqlx::raw_sql("CREATE SCHEMA legacy; CREATE TABLE legacy.accounts (id serial PRIMARY KEY, name text NOT NULL UNIQUE); CREATE VIEW legacy.names AS SELECT name FROM legacy.accounts;")
        .execute(&pool)
        .await
        .unwrap();
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("sfm")).unwrap();
    let state = format!("sqlite://{}", d.path().join("state.db").display());
    let env = vec![
        ("LEGACY_BACKEND", "postgresql".to_string()),
        ("LEGACY_DB_URL", db.url.clone()),
        ("LEGACY_MANAGED_SCHEMAS", "legacy".to_string()),
    ];
    let o = bfm(d.path(), &["--sfm", "sfm", "--state", &state, "baseline", "-c", "legacy", "--json"], &env);
    assert!(o.status.success(), "{}", text(&o));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    let file = d.path().join(r["file"].as_str().unwrap());
    assert!(std::fs::read_to_string(&file).unwrap().contains("accounts"));
    let o = bfm(d.path(), &["--sfm", "sfm", "--state", &state, "migrate", "status", "-c", "legacy", "--json"], &env);
    let rows: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rows[0]["status"], "applied", "{rows}");
    let o = bfm(d.path(), &["--sfm", "sfm", "--state", &state, "migrate", "up", "-c", "legacy", "--json"], &env);
    let up: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(up["applied"].as_array().unwrap().len(), 0, "{up}");
    let ledger: i64 = sqlx::query_scalar("SELECT count(*) FROM bfm.ledger WHERE migration_id LIKE '%_baseline_postgresql_legacy'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(ledger, 1);
    // The baseline loads into an empty database and gives the same schema.
    let fresh = PgDb::new().await;
    let fp = sqlx::PgPool::connect(&fresh.url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(std::fs::read_to_string(&file).unwrap())).execute(&fp).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM legacy.names").fetch_one(&fp).await.unwrap();
    assert_eq!(n, 0);
    fp.close().await;
    pool.close().await;
}

#[tokio::test]
async fn the_scope_is_what_the_desired_files_use_and_every_command_prints_it() {
    let db = PgDb::new().await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    // Things the desired files never mention: an extension in public, another schema.
    sqlx::raw_sql("CREATE EXTENSION pgcrypto; CREATE SCHEMA other; CREATE TABLE other.keep (id int);").execute(&pool).await.unwrap();
    let d = tempfile::tempdir().unwrap();
    let state = format!("sqlite://{}", d.path().join("state.db").display());
    std::fs::create_dir_all(d.path().join("sfm")).unwrap();
    write(d.path(), "schema/items.sql", "CREATE SCHEMA app;\nCREATE TABLE app.items (id bigint PRIMARY KEY, name text NOT NULL);");
    let env = vec![("CORE_BACKEND", "postgresql".to_string()), ("CORE_DB_URL", db.url.clone()), ("CORE_SCHEMA", "app".to_string())];
    let base = ["--sfm", "sfm", "--state", state.as_str()];
    let run = |args: &[&str]| {
        let mut all: Vec<&str> = base.to_vec();
        all.extend_from_slice(args);
        bfm(d.path(), &all, &env)
    };

    let o = run(&["schema", "plan", "-c", "core", "--dir", "schema"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(out.contains("scope: schemas app (from the desired files)"), "{out}");
    assert!(!out.contains("pgcrypto") && !out.contains("other"), "{out}");
    let o = run(&["schema", "plan", "-c", "core", "--dir", "schema", "--json"]);
    let plan: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(plan["scope"]["origin"], "desired_files", "{plan}");
    assert_eq!(plan["scope"]["schemas"], serde_json::json!(["app"]), "{plan}");
    assert_eq!(plan["approvals_required"], serde_json::json!([]), "{plan}");

    // The apply of the issue: no approval needed, nothing outside the scope touched.
    let o = run(&["schema", "apply", "-c", "core", "--dir", "schema"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("scope: schemas app"), "{}", text(&o));
    let o = run(&["schema", "validate", "-c", "core"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("scope: schemas app (from the desired files)"), "{}", text(&o));
    let o = run(&["schema", "validate", "-c", "core", "--json"]);
    let drift: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(drift["scope"]["schemas"], serde_json::json!(["app"]), "{drift}");
    let o = run(&["schema", "dump", "-c", "core", "--out", "dumped", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let dump: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(dump["scope"]["schemas"], serde_json::json!(["app"]), "{dump}");
    let dumped: String =
        std::fs::read_dir(d.path().join("dumped")).unwrap().map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap()).collect();
    assert!(dumped.contains("items") && !dumped.contains("pgcrypto") && !dumped.contains("keep"), "{dumped}");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_extension WHERE extname = 'pgcrypto'").fetch_one(&pool).await.unwrap();
    assert_eq!(n, 1);
    pool.close().await;
}
