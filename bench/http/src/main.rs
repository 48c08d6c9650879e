//! `cargo run --release -p bench-http -- [--migrations 10000] [--history 1000000] [--duration 10]`
//!
//! 1. Writes an sfm tree of N migrations (10 connections, fixed schemas) and creates a
//!    PostgreSQL state database; a first `bfm serve` records the catalogue.
//! 2. Fills the state: every migration applied, and H history rows spread over them.
//! 3. Starts `bfm serve` again and measures the time until `GET /health` answers, then its
//!    resident memory when idle.
//! 4. Loads list (a page of 50), detail and status with `wrk` from a second process and prints
//!    the latency percentiles; status is also measured before the history is filled, to show
//!    that its cost does not depend on the history's length.
//!
//! Needs `wrk` (Debian package `wrk`) and a release build of bfm.

use bench_common::scalar;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-token-0123456789abcdef";

struct Args {
    migrations: usize,
    history: usize,
    duration: u64,
    bfm: PathBuf,
    server: String,
}

fn parse_args() -> Args {
    let mut a =
        Args { migrations: 10_000, history: 1_000_000, duration: 10, bfm: bench_common::bfm_binary(), server: bench_common::pg_server() };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--migrations" => a.migrations = value().parse().expect("a number"),
            "--history" => a.history = value().parse().expect("a number"),
            "--duration" => a.duration = value().parse().expect("seconds"),
            "--bfm" => a.bfm = PathBuf::from(value()),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn http_ok(port: u16, path: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n");
    if std::io::Write::write_all(&mut s, req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200")
}

/// A `bfm serve` process, stopped when dropped (also when the benchmark panics).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(a: &Args, dir: &Path, state_url: &str, port: u16) -> Server {
    Command::new(&a.bfm)
        .current_dir(dir)
        .args(["--sfm", "sfm", "--state", state_url, "serve", "--host", "127.0.0.1", "--port", &port.to_string(), "--no-watch"])
        .env("BFM_API_TOKEN", TOKEN)
        .env("BFM_AUTO_MIGRATE", "false")
        .env("BFM_LOG_LEVEL", "error")
        .stdout(Stdio::null())
        .spawn()
        .map(Server)
        .expect("start bfm")
}

fn wait_healthy(port: u16) -> Duration {
    let t = Instant::now();
    while !http_ok(port, "/health") {
        assert!(t.elapsed() < Duration::from_secs(60), "server did not become healthy");
        std::thread::sleep(Duration::from_millis(2));
    }
    t.elapsed()
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// (requests/s, p50, p90, p99) from wrk's `--latency` report.
fn wrk(port: u16, path: &str, seconds: u64) -> (f64, String, String, String) {
    let out = Command::new("wrk")
        .args([
            "-t2",
            "-c16",
            &format!("-d{seconds}s"),
            "--latency",
            "-H",
            &format!("Authorization: Bearer {TOKEN}"),
            &format!("http://127.0.0.1:{port}{path}"),
        ])
        .output()
        .expect("wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let pct =
        |p: &str| text.lines().find(|l| l.trim_start().starts_with(p)).and_then(|l| l.split_whitespace().nth(1)).unwrap_or("?").to_string();
    let rps = text
        .lines()
        .find(|l| l.starts_with("Requests/sec"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(!text.contains("Non-2xx"), "errors under load: {text}");
    (rps, pct("50%"), pct("90%"), pct("99%"))
}

fn main() {
    let a = parse_args();
    assert!(a.bfm.is_file(), "bfm binary not found at {} (cargo build --release -p bfm)", a.bfm.display());
    let dir = tempfile::tempdir().expect("temp dir");
    // The tree: N migrations over 10 connections, fixed schemas.
    for i in 0..a.migrations {
        let conn = format!("c{}", i % 10);
        let p = dir.path().join(format!("sfm/postgresql/{conn}"));
        if i < 10 {
            std::fs::create_dir_all(&p).expect("mkdir");
        }
        std::fs::write(
            p.join(format!("{}_m{i}.up.sql", 20200101000000u64 + i as u64)),
            format!("-- bfm-schema: s{}\n-- bfm-tags: shard={}\nCREATE TABLE t{i} (id int);\n", i % 10, i % 7),
        )
        .expect("write");
    }
    let db = format!("bench_http_{}", std::process::id());
    scalar(&a.server, "postgres", &format!("CREATE DATABASE {db}"));
    let state_url = format!("{}/{db}", a.server);

    // First start: records the catalogue.
    let port = free_port();
    let first = serve(&a, dir.path(), &state_url, port);
    let first_start = wait_healthy(port);
    drop(first);

    // Every migration applied; status measured before the history is filled.
    scalar(
        &a.server,
        &db,
        "INSERT INTO bfm_state (migration_id, schema_name, version, name, connection, backend, status, checksum, checksum_algorithm, applied_at, duration_ms, statements_done, partial, ledger, updated_at) \
         SELECT migration_id, declared_schema, version, name, connection, backend, 'applied', checksum, checksum_algorithm, now(), 3, 0, false, true, now() FROM bfm_catalog",
    );
    // A migration in the middle of the catalogue.
    let k = a.migrations * 4242 / 10_000;
    let probe = format!("{}_m{k}_postgresql_c{}", 20200101000000u64 + k as u64, k % 10);
    let port = free_port();
    let s = serve(&a, dir.path(), &state_url, port);
    wait_healthy(port);
    let before = wrk(port, &format!("/api/v1/migrations/{probe}/status"), a.duration);
    drop(s);

    let t = Instant::now();
    scalar(
        &a.server,
        &db,
        &format!(
            "INSERT INTO bfm_history (event_key, migration_id, schema_name, version, connection, backend, operation, status, started_at, finished_at, duration_ms, executed_by, execution_method, execution_context, run_id) \
             SELECT 'bench:' || g, c.migration_id, c.declared_schema, c.version, c.connection, c.backend, CASE WHEN g % 3 = 0 THEN 'skip' ELSE 'up' END, 'applied', now(), now() - (g || ' seconds')::interval, 3, 'bench', 'api', '{{}}', 'run-' || (g / 1000) \
             FROM generate_series(1, {}) g JOIN (SELECT migration_id, declared_schema, version, connection, backend, row_number() OVER (ORDER BY migration_id) - 1 AS n FROM bfm_catalog) c ON c.n = g % {}",
            a.history, a.migrations
        ),
    );
    scalar(&a.server, &db, "ANALYZE");
    let history: i64 = scalar(&a.server, &db, "SELECT count(*) FROM bfm_history").parse().expect("count");
    eprintln!("history filled: {history} rows in {:.1} s", t.elapsed().as_secs_f64());

    let port = free_port();
    let s = serve(&a, dir.path(), &state_url, port);
    let startup = wait_healthy(port);
    std::thread::sleep(Duration::from_secs(2));
    let idle_rss = rss_kb(s.0.id());
    let cases = [
        ("list (page of 50)", "/api/v1/migrations?limit=50&offset=5000".to_string()),
        ("list filtered (connection, tag)", "/api/v1/migrations?connection=c3&tag=shard=2&limit=50".to_string()),
        ("detail", format!("/api/v1/migrations/{probe}")),
        ("status", format!("/api/v1/migrations/{probe}/status")),
        ("history", format!("/api/v1/migrations/{probe}/history")),
    ];
    let mut rows = Vec::new();
    for (name, path) in &cases {
        rows.push((name.to_string(), wrk(port, path, a.duration)));
    }
    let busy_rss = rss_kb(s.0.id());
    drop(s);
    scalar(&a.server, "postgres", &format!("DROP DATABASE {db} WITH (FORCE)"));

    println!("bench-http: {} migrations, {history} history rows, PostgreSQL state store; wrk -t2 -c16 -d{}s", a.migrations, a.duration);
    println!();
    println!("| endpoint | requests/s | p50 | p90 | p99 |");
    println!("|---|---|---|---|---|");
    let (r, p50, p90, p99) = &before;
    println!("| status, before the history was filled | {r:.0} | {p50} | {p90} | {p99} |");
    for (name, (r, p50, p90, p99)) in &rows {
        println!("| {name} | {r:.0} | {p50} | {p90} | {p99} |");
    }
    println!();
    println!("| footprint | value | goal |");
    println!("|---|---|---|");
    println!("| start-up to a healthy /health (catalogue of {} migrations) | {} ms | < 300 ms |", a.migrations, startup.as_millis());
    println!("| first start-up (catalogue recorded in an empty state store) | {} ms | |", first_start.as_millis());
    println!("| resident memory, idle | {:.1} MB | < 30 MB |", idle_rss as f64 / 1024.0);
    println!("| resident memory, after the load | {:.1} MB | |", busy_rss as f64 / 1024.0);
}
