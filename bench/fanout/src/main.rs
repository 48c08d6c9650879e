//! `cargo run --release -p bench-fanout -- [--schemas 200,1000] [--migrations 20] [--rounds 3] [--concurrency 4]`
//!
//! Applies M per-tenant migrations to N schemas of a fresh PostgreSQL database, in two shapes —
//! `ddl` (each creates a small table, every 10th also an index) and `light` (each inserts one
//! row into a table created beforehand) — and prints migration steps per second for bfm beside
//! the floor: the same statements split over 2 and over 4 concurrent `psql` sessions, each
//! session setting `search_path` per schema and running every migration in its own
//! transaction, without bookkeeping. Runs alternate between floor and bfm.

use bench_common::{median, psql};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

struct Args {
    schemas: Vec<usize>,
    migrations: usize,
    rounds: usize,
    concurrency: usize,
    shapes: Vec<String>,
    bfm: PathBuf,
    server: String,
}

fn parse_args() -> Args {
    let mut a = Args {
        schemas: vec![200, 1000],
        migrations: 20,
        rounds: 3,
        concurrency: 4,
        shapes: vec!["ddl".into(), "light".into()],
        bfm: bench_common::bfm_binary(),
        server: bench_common::pg_server(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--schemas" => a.schemas = value().split(',').map(|s| s.parse().expect("--schemas: numbers")).collect(),
            "--migrations" => a.migrations = value().parse().expect("--migrations: a number"),
            "--rounds" => a.rounds = value().parse().expect("--rounds: a number"),
            "--concurrency" => a.concurrency = value().parse().expect("--concurrency: a number"),
            "--shapes" => a.shapes = value().split(',').map(str::to_string).collect(),
            "--bfm" => a.bfm = PathBuf::from(value()),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

fn body(shape: &str, i: usize) -> String {
    match shape {
        "ddl" => {
            let mut s = format!("CREATE TABLE t_{i} (id bigint PRIMARY KEY, name text NOT NULL);\n");
            if i.is_multiple_of(10) {
                s.push_str(&format!("CREATE INDEX t_{i}_name ON t_{i} (name);\n"));
            }
            s
        }
        _ => format!("INSERT INTO bench_rows (id, payload) VALUES ({i}, 'row {i}');\n"),
    }
}

fn schema(i: usize) -> String {
    format!("tenant_{i}")
}

/// Untimed: the schemas (and, for `light`, their table) exist before both runs.
fn setup(server: &str, db: &str, shape: &str, n: usize, dir: &Path) {
    psql(server, "postgres", &["-c", &format!("DROP DATABASE IF EXISTS {db}"), "-c", &format!("CREATE DATABASE {db}")]);
    let mut sql = String::new();
    for i in 0..n {
        sql.push_str(&format!("CREATE SCHEMA {};\n", schema(i)));
        if shape == "light" {
            sql.push_str(&format!("CREATE TABLE {}.bench_rows (id bigint PRIMARY KEY, payload text NOT NULL);\n", schema(i)));
        }
    }
    let f = dir.join("setup.sql");
    std::fs::write(&f, sql).expect("write setup");
    psql(server, db, &["-f", f.to_str().expect("path")]);
}

fn floor(server: &str, db: &str, shape: &str, n: usize, m: usize, sessions: usize, dir: &Path) -> f64 {
    let mut files = Vec::new();
    for k in 0..sessions {
        let mut sql = String::new();
        for i in (k..n).step_by(sessions) {
            sql.push_str(&format!("SET search_path TO {}, public;\n", schema(i)));
            for j in 1..=m {
                sql.push_str("BEGIN;\n");
                sql.push_str(&body(shape, j));
                sql.push_str("COMMIT;\n");
            }
        }
        let f = dir.join(format!("floor-{k}.sql"));
        std::fs::write(&f, sql).expect("write floor");
        files.push(f);
    }
    let t = Instant::now();
    let children: Vec<Child> = files
        .iter()
        .map(|f| {
            Command::new("psql")
                .arg(format!("{server}/{db}"))
                .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", f.to_str().expect("path")])
                .stdout(Stdio::null())
                .spawn()
                .expect("psql")
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().expect("psql");
        assert!(o.status.success());
    }
    t.elapsed().as_secs_f64()
}

fn run_bfm(a: &Args, db: &str, n: usize, dir: &Path, round: usize) -> (f64, usize) {
    let state = dir.join(format!("state-{round}-{n}.db"));
    let args: Vec<String> = vec![
        "--sfm".into(),
        dir.join("sfm").to_string_lossy().to_string(),
        "--state".into(),
        format!("sqlite://{}", state.display()),
        "migrate".into(),
        "up".into(),
        "--connection".into(),
        "bench".into(),
        "--schema-pattern".into(),
        "tenant_%".into(),
        "--concurrency".into(),
        a.concurrency.to_string(),
        "--json".into(),
    ];
    let t = Instant::now();
    let out = Command::new(&a.bfm)
        .args(&args)
        .env("BENCH_BACKEND", "postgresql")
        .env("BENCH_DB_URL", format!("{}/{db}", a.server))
        .env("BFM_DB_MAX_OPEN_CONNS", (a.concurrency + 1).to_string())
        .env("BFM_LOG_LEVEL", "error")
        .output()
        .expect("run bfm");
    let s = t.elapsed().as_secs_f64();
    assert!(out.status.success(), "bfm failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report");
    (s, report["applied"].as_array().map(Vec::len).unwrap_or(0))
}

fn main() {
    let a = parse_args();
    assert!(a.bfm.is_file(), "bfm binary not found at {} (cargo build --release -p bfm, or set BFM_BIN)", a.bfm.display());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    println!(
        "bench-fanout: {} migrations per schema, {} rounds, bfm --concurrency {}, {cores} cores",
        a.migrations, a.rounds, a.concurrency
    );
    println!();
    println!("| shape | schemas | floor: 2 psql sessions | floor: 4 psql sessions | bfm | bfm / best floor | goal |");
    println!("|---|---|---|---|---|---|---|");
    for shape in &a.shapes {
        for &n in &a.schemas {
            let dir = tempfile::tempdir().expect("temp dir");
            let tree = dir.path().join("sfm/postgresql/bench");
            std::fs::create_dir_all(&tree).expect("tree");
            for j in 1..=a.migrations {
                std::fs::write(tree.join(format!("{}_m{j}.up.sql", 20250101000000u64 + j as u64)), body(shape, j))
                    .expect("write migration");
            }
            let steps = (n * a.migrations) as f64;
            let db = format!("bench_fanout_{}", std::process::id());
            let (mut f2, mut f4, mut b) = (Vec::new(), Vec::new(), Vec::new());
            for round in 0..a.rounds {
                let measure_floors = |f2: &mut Vec<f64>, f4: &mut Vec<f64>| {
                    setup(&a.server, &db, shape, n, dir.path());
                    f2.push(steps / floor(&a.server, &db, shape, n, a.migrations, 2, dir.path()));
                    setup(&a.server, &db, shape, n, dir.path());
                    f4.push(steps / floor(&a.server, &db, shape, n, a.migrations, 4, dir.path()));
                };
                let measure_bfm = |b: &mut Vec<f64>| {
                    setup(&a.server, &db, shape, n, dir.path());
                    let (s, applied) = run_bfm(&a, &db, n, dir.path(), round);
                    assert_eq!(applied, n * a.migrations, "bfm applied {applied}");
                    b.push(steps / s);
                };
                if round % 2 == 0 {
                    measure_floors(&mut f2, &mut f4);
                    measure_bfm(&mut b);
                } else {
                    measure_bfm(&mut b);
                    measure_floors(&mut f2, &mut f4);
                }
                eprintln!("  {shape} × {n} round {round}: floor2 {:.0}/s floor4 {:.0}/s bfm {:.0}/s", f2[round], f4[round], b[round]);
            }
            psql(&a.server, "postgres", &["-c", &format!("DROP DATABASE IF EXISTS {db}")]);
            let (m2, m4, mb) = (median(&f2), median(&f4), median(&b));
            let best = m2.max(m4);
            let goal = if shape == "ddl" { "≥ 0.90" } else { "≥ 0.80" };
            println!("| {shape} | {n} | {m2:.0} steps/s | {m4:.0} steps/s | {mb:.0} steps/s | {:.2} | {goal} |", mb / best);
        }
    }
}
