//! Declarative schema plan benchmark.
//!
//! Generates a 1,000-table schema (11 columns each, identity PK, FK to the previous table,
//! UNIQUE, CHECK, a partial and an expression index, a comment; plus 100 views, 101 functions,
//! 100 triggers, 100 policies with RLS, 20 enums and a domain) into two databases, the second
//! slightly different, then times bfm-schema's plans, `migra` and `pg_dump --schema-only`.
//!
//! Usage: bench-schema-plan [--server postgres://postgres@127.0.0.1:5432] [--tables 1000] [--runs 5]
//!        [--params sslmode=disable]   (appended to bfm-schema's database URLs)

use std::process::Command;
use std::time::Instant;

use bench_common::median;
use bfm_schema::{DesiredSource, SchemaTarget};

const ENUMS: usize = 20;

/// The desired schema as files (100 tables per file). `variant` 1 is the slightly different one.
fn generate(tables: usize, variant: u8) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut head = String::from("CREATE SCHEMA app;\nCREATE DOMAIN app.email AS text CHECK (VALUE ~ '@');\n");
    for e in 0..ENUMS {
        head.push_str(&format!("CREATE TYPE app.status_{e:02} AS ENUM ('new', 'active', 'closed');\n"));
    }
    head.push_str(
        "CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.created_at := now(); RETURN NEW; END $$;\n",
    );
    files.push(("000_types.sql".to_string(), head));
    let keep = |i: usize| !(variant == 1 && i == tables - 1); // variant 1 drops the last table
    for chunk in 0..tables.div_ceil(100) {
        let mut s = String::new();
        for i in chunk * 100..((chunk + 1) * 100).min(tables) {
            if !keep(i) {
                continue;
            }
            let t = format!("t{i:04}");
            let fk = if i > 0 { format!(",\n  parent_id bigint REFERENCES app.t{:04}(id)", i - 1) } else { ",\n  parent_id bigint".into() };
            let extra = if variant == 1 && i % 100 == 7 { ",\n  extra_flag boolean NOT NULL DEFAULT false" } else { "" };
            let name_len = if variant == 1 && i % 250 == 3 { 300 } else { 200 };
            s.push_str(&format!(
                "CREATE TABLE app.{t} (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  uid uuid NOT NULL DEFAULT gen_random_uuid(),
  tenant varchar(64) NOT NULL,
  name varchar({name_len}) NOT NULL,
  email app.email,
  status app.status_{:02} NOT NULL DEFAULT 'new',
  amount numeric(12,2) NOT NULL DEFAULT 0 CHECK (amount >= 0),
  payload jsonb,
  lower_name text GENERATED ALWAYS AS (lower(name)) STORED,
  created_at timestamptz NOT NULL DEFAULT now(){fk}{extra},
  UNIQUE (tenant, name)
);
CREATE INDEX {t}_created_idx ON app.{t} (created_at) WHERE parent_id IS NOT NULL;
CREATE INDEX {t}_lower_idx ON app.{t} ({});
COMMENT ON TABLE app.{t} IS 'table {i}';
",
                i % ENUMS,
                if variant == 1 && i % 200 == 11 { "lower(name), tenant" } else { "lower(name)" }
            ));
            if i % 10 == 0 {
                s.push_str(&format!(
                    "CREATE FUNCTION app.total_{t}() RETURNS numeric LANGUAGE sql STABLE AS $$ SELECT coalesce(sum(amount), {}) FROM app.{t} $$;
CREATE TRIGGER {t}_touch BEFORE UPDATE ON app.{t} FOR EACH ROW EXECUTE FUNCTION app.touch();
ALTER TABLE app.{t} ENABLE ROW LEVEL SECURITY;
CREATE POLICY {t}_tenant ON app.{t} USING (tenant = current_setting('app.tenant', true));
",
                    if variant == 1 && i % 500 == 0 { 1 } else { 0 }
                ));
                if !(variant == 1 && i % 400 == 10) {
                    s.push_str(&format!("CREATE VIEW app.v{i:04} AS SELECT id, name, status, amount FROM app.{t} WHERE amount > 0;\n"));
                }
            }
        }
        files.push((format!("{:03}_tables.sql", chunk + 1), s));
    }
    files
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (c, conn) = match tokio_postgres::connect(url, tokio_postgres::NoTls).await {
        Ok(x) => x,
        Err(e) => {
            eprintln!("cannot connect to {url}: {e}");
            std::process::exit(2);
        }
    };
    tokio::spawn(async move {
        let _ = conn.await;
    });
    c
}

async fn recreate(server: &str, db: &str, files: &[(String, String)]) -> f64 {
    let admin = connect(&format!("{server}/postgres")).await;
    let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)")).await;
    let t = Instant::now();
    must(admin.batch_execute(&format!("CREATE DATABASE \"{db}\" TEMPLATE template0")).await, "create database");
    let c = connect(&format!("{server}/{db}")).await;
    must(c.batch_execute("SET synchronous_commit = off").await, "set");
    for (_, sql) in files {
        must(c.batch_execute(&format!("BEGIN;\n{sql}\nCOMMIT;")).await, "load");
    }
    t.elapsed().as_secs_f64() * 1000.0
}

fn must<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{what}: {e}");
            std::process::exit(2);
        }
    }
}

fn time_command(cmd: &mut Command) -> Option<(f64, String)> {
    let t = Instant::now();
    let out = cmd.output().ok()?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    // migra exits 2 when it found differences.
    if !out.status.success() && out.status.code() != Some(2) {
        eprintln!("{:?} failed: {}", cmd, String::from_utf8_lossy(&out.stderr));
        return None;
    }
    Some((ms, String::from_utf8_lossy(&out.stdout).into_owned()))
}

fn fmt(ms: f64) -> String {
    if ms >= 1000.0 { format!("{:.2} s", ms / 1000.0) } else { format!("{ms:.0} ms") }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut server = "postgres://postgres@127.0.0.1:5432".to_string();
    let mut tables = 1000usize;
    let mut runs = 5usize;
    let mut params = String::new();
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        match (args[i].as_str(), args.get(i + 1)) {
            ("--server", Some(v)) => server = v.clone(),
            ("--tables", Some(v)) => tables = v.parse().unwrap_or(tables),
            ("--runs", Some(v)) => runs = v.parse().unwrap_or(runs).max(1),
            ("--params", Some(v)) => params = format!("?{}", v.trim_start_matches('?')),
            _ => {
                eprintln!("usage: bench-schema-plan [--server URL] [--tables N] [--runs N] [--params sslmode=disable]");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    let (db_a, db_b) = ("bfm_bench_schema_a", "bfm_bench_schema_b");
    let files_a = generate(tables, 0);
    let files_b = generate(tables, 1);
    let bytes: usize = files_b.iter().map(|f| f.1.len()).sum();
    eprintln!("generated {tables} tables, {} KB of SQL; loading two databases…", bytes / 1024);
    let load_a = recreate(&server, db_a, &files_a).await;
    let load_b = recreate(&server, db_b, &files_b).await;
    let url_a = format!("{server}/{db_a}{params}");
    let url_b = format!("{server}/{db_b}{params}");
    let dir = must(tempfile::tempdir(), "tempdir");
    for (name, text) in &files_b {
        must(std::fs::write(dir.path().join(name), text), "write");
    }

    let stats = {
        let c = connect(&url_b).await;
        let q = |sql: &'static str| {
            let c = &c;
            async move { must(c.query_one(sql, &[]).await, "count").get::<_, i64>(0) }
        };
        (
            q("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE nspname = 'app' AND relkind = 'r'").await,
            q("SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE nspname = 'app' AND relkind IN ('r','v') AND attnum > 0 AND NOT attisdropped").await,
            q("SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE nspname = 'app'").await,
            q("SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE nspname = 'app' AND contype <> 'n' AND conrelid <> 0").await,
        )
    };

    // Database vs database: first with new connections, then repeated (warm, reused connections,
    // as a long-running server would configure).
    bfm_schema::set_connection_reuse(true);
    bfm_schema::close_idle_connections();
    let t = Instant::now();
    let first = must(bfm_schema::plan_between(&url_a, &url_b, &[]).await, "plan_between");
    let first_total = t.elapsed().as_secs_f64() * 1000.0;
    let steps = first.steps.len();
    if std::env::var_os("BENCH_PRINT_PLAN").is_some() {
        eprintln!("{}", bfm_schema::render_plan_text(&first, false));
    }
    let mut db_total = Vec::new();
    let mut db_intro = Vec::new();
    let mut db_diff = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let p = must(bfm_schema::plan_between(&url_a, &url_b, &[]).await, "plan_between");
        db_total.push(t.elapsed().as_secs_f64() * 1000.0);
        db_intro.push(p.timings.introspect_ms);
        db_diff.push(p.timings.diff_ms);
    }

    // Files vs database: cold (scratch database), then from the cache.
    let target = SchemaTarget { database_url: url_a.clone(), managed_schemas: vec![], default_schema: None };
    let desired = DesiredSource { dir: dir.path().to_path_buf(), bootstrap: None };
    bfm_schema::clear_desired_cache();
    let t = Instant::now();
    let cold = must(bfm_schema::plan(&target, &desired).await, "plan (files)");
    let cold_total = t.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(cold.steps.len(), steps, "files plan and database plan agree");
    let mut warm_total = Vec::new();
    let mut warm_intro = Vec::new();
    let mut warm_diff = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let p = must(bfm_schema::plan(&target, &desired).await, "plan (cached)");
        warm_total.push(t.elapsed().as_secs_f64() * 1000.0);
        warm_intro.push(p.timings.introspect_ms);
        warm_diff.push(p.timings.diff_ms);
        assert!(p.timings.desired_cached);
    }

    // migra and pg_dump.
    let migra = time_command(Command::new("migra").args([
        "--unsafe",
        &format!("postgresql+psycopg2://{}/{db_a}", server.trim_start_matches("postgres://").trim_start_matches("postgresql://")),
        &format!("postgresql+psycopg2://{}/{db_b}", server.trim_start_matches("postgres://").trim_start_matches("postgresql://")),
    ]));
    let host_part = server.trim_start_matches("postgres://").trim_start_matches("postgresql://");
    let (user, hostport) = host_part.split_once('@').unwrap_or(("postgres", host_part));
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "5432"));
    let mut dumps = Vec::new();
    for _ in 0..runs {
        if let Some((ms, _)) = time_command(Command::new("pg_dump").args(["--schema-only", "-h", host, "-p", port, "-U", user, db_a])) {
            dumps.push(ms);
        }
    }

    println!(
        "Schema: {} tables, {} columns, {} indexes, {} constraints; {} KB of SQL; plan has {steps} steps",
        stats.0,
        stats.1,
        stats.2,
        stats.3,
        bytes / 1024
    );
    println!("Loading the two databases (setup, not part of a plan): {} and {}", fmt(load_a), fmt(load_b));
    println!();
    println!("| operation | load desired | introspection | diff + fingerprints | total |");
    println!("|---|---|---|---|---|");
    println!(
        "| bfm-schema, database vs database, first (new connections) | — | {} (both sides in parallel) | {:.1} ms | {} |",
        fmt(first.timings.introspect_ms),
        first.timings.diff_ms,
        fmt(first_total)
    );
    println!(
        "| bfm-schema, database vs database, repeated (median of {runs}) | — | {} (both sides in parallel) | {:.1} ms | {} |",
        fmt(median(&db_intro)),
        median(&db_diff),
        fmt(median(&db_total))
    );
    println!(
        "| bfm-schema, files vs database, cold (1 run) | {} (scratch database) | {} | {:.1} ms | {} |",
        fmt(cold.timings.load_ms),
        fmt(cold.timings.introspect_ms),
        cold.timings.diff_ms,
        fmt(cold_total)
    );
    println!(
        "| bfm-schema, files vs database, repeated (cache hit, median of {runs}) | — | {} | {:.1} ms | {} |",
        fmt(median(&warm_intro)),
        median(&warm_diff),
        fmt(median(&warm_total))
    );
    match migra {
        Some((ms, out)) => println!(
            "| migra, database vs database (1 run) | — | — | — | {} ({} lines of SQL) |",
            fmt(ms),
            out.lines().filter(|l| !l.trim().is_empty()).count()
        ),
        None => println!("| migra (not installed: pip install migra psycopg2-binary) | — | — | — | n/a |"),
    }
    if dumps.is_empty() {
        println!("| pg_dump --schema-only | — | — | — | n/a |");
    } else {
        println!("| pg_dump --schema-only (one database) | — | — | — | {} |", fmt(median(&dumps)));
    }

    if std::env::var_os("BENCH_KEEP").is_some() {
        return;
    }
    let admin = connect(&format!("{server}/postgres")).await;
    for db in [db_a, db_b] {
        let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)")).await;
    }
}
