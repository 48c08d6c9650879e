//! A stand-in for GreptimeDB's HTTP SQL API, for tests on machines without GreptimeDB.
//!
//! It speaks the documented protocol (<https://docs.greptime.com/reference/sql/http-api>,
//! <https://docs.greptime.com/user-guide/protocols/http>): `POST /v1/sql?db=<database>` with an
//! `application/x-www-form-urlencoded` body `sql=<statement>`, optional `Authorization: Basic …`;
//! answers `{"output": [{"records": {"schema": {"column_schemas": […]}, "rows": […]}} |
//! {"affectedrows": n}], "execution_time_ms": n}` (with `"code": 0`, as older versions do) and,
//! on failure, a non-2xx status with `{"code": <non-zero>, "error": "…", "execution_time_ms": 0}`.
//!
//! It keeps databases, created tables and every executed statement in memory, and understands
//! the few statement shapes bfm itself sends (`SHOW DATABASES`, `CREATE DATABASE`, `CREATE
//! TABLE`, and `INSERT`/`SELECT`/`DELETE` on `bfm_ledger` and `bfm_locks` with `col = literal`
//! conditions). Any other statement succeeds with `affectedrows`. A statement containing
//! [`FAIL_MARKER`] fails while [`GreptimeMock::set_failing`] is on (the default).

use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Statements containing this text fail (while failing is on).
pub const FAIL_MARKER: &str = "bfm_mock_fail";

type Row = BTreeMap<String, Value>;

#[derive(Debug, Default)]
struct State {
    databases: BTreeSet<String>,
    tables: BTreeMap<String, BTreeSet<String>>,
    /// Rows of bfm's own tables, per (database, table).
    rows: BTreeMap<(String, String), Vec<Row>>,
    executed: Vec<(String, String)>,
    auth_seen: Vec<Option<String>>,
    credentials: Option<String>,
    failing: bool,
}

pub struct GreptimeMock {
    /// `http://127.0.0.1:<port>`
    pub url: String,
    pub port: u16,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GreptimeMock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GreptimeMock {
    /// A server without authentication.
    pub async fn start() -> GreptimeMock {
        Self::start_with(None).await
    }

    /// A server that requires basic authentication with these credentials.
    pub async fn with_auth(user: &str, password: &str) -> GreptimeMock {
        Self::start_with(Some(format!("Basic {}", base64(format!("{user}:{password}").as_bytes())))).await
    }

    async fn start_with(credentials: Option<String>) -> GreptimeMock {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local address").port();
        let state = Arc::new(Mutex::new(State {
            databases: ["greptime_private", "information_schema", "public"].iter().map(|s| s.to_string()).collect(),
            credentials,
            failing: true,
            ..Default::default()
        }));
        let s = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = serve(conn, s).await;
                });
            }
        });
        GreptimeMock { url: format!("http://127.0.0.1:{port}"), port, state, task }
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    /// Every statement executed so far, with its database, in order (failed ones included).
    pub fn statements(&self) -> Vec<(String, String)> {
        self.with_state(|s| s.executed.clone())
    }

    /// Executed statements other than bfm's own bookkeeping (ledger, locks, `SHOW DATABASES`).
    pub fn user_statements(&self) -> Vec<(String, String)> {
        self.statements()
            .into_iter()
            .filter(|(_, sql)| !(sql.contains("bfm_ledger") || sql.contains("bfm_locks") || sql.starts_with("SHOW DATABASES")))
            .collect()
    }

    pub fn databases(&self) -> Vec<String> {
        self.with_state(|s| s.databases.iter().cloned().collect())
    }

    pub fn tables(&self, database: &str) -> Vec<String> {
        self.with_state(|s| s.tables.get(database).map(|t| t.iter().cloned().collect()).unwrap_or_default())
    }

    /// `Authorization` headers of every request, in order.
    pub fn auth_headers(&self) -> Vec<Option<String>> {
        self.with_state(|s| s.auth_seen.clone())
    }

    /// Rows of one of bfm's tables (`bfm_ledger`, `bfm_locks`) in a database.
    pub fn rows(&self, database: &str, table: &str) -> Vec<BTreeMap<String, Value>> {
        self.with_state(|s| s.rows.get(&(database.to_string(), table.to_string())).cloned().unwrap_or_default())
    }

    /// Whether statements containing [`FAIL_MARKER`] fail.
    pub fn set_failing(&self, failing: bool) {
        self.with_state(|s| s.failing = failing);
    }
}

pub fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                    Ok(v) => out.push(v),
                    Err(_) => out.push(b'%'),
                }
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn form(s: &str) -> BTreeMap<String, String> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect()
}

async fn serve(mut conn: TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // Headers.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let mut chunk = [0u8; 4096];
            let n = conn.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or("").to_string();
        let mut headers: BTreeMap<String, String> = BTreeMap::new();
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        while buf.len() < head_end + 4 + len {
            let mut chunk = [0u8; 4096];
            let n = conn.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = String::from_utf8_lossy(&buf[head_end + 4..head_end + 4 + len]).into_owned();
        buf.drain(..head_end + 4 + len);

        let (status, answer) = {
            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
            handle(&mut s, &request_line, &headers, &body)
        };
        let text = answer.to_string();
        let reason = match status {
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            404 => "Not Found",
            _ => "Error",
        };
        let out = format!("HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{text}", text.len());
        conn.write_all(out.as_bytes()).await?;
    }
}

fn error(status: u16, code: u32, message: impl Into<String>) -> (u16, Value) {
    (status, json!({"code": code, "error": message.into(), "execution_time_ms": 0}))
}

fn handle(s: &mut State, request_line: &str, headers: &BTreeMap<String, String>, body: &str) -> (u16, Value) {
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if method != "POST" || path != "/v1/sql" {
        return error(404, 1001, format!("unsupported request {method} {path}"));
    }
    let auth = headers.get("authorization").cloned();
    s.auth_seen.push(auth.clone());
    if let Some(expected) = &s.credentials
        && auth.as_deref() != Some(expected.as_str())
    {
        // StatusCode::AuthHeaderNotFound / UserPasswordMismatch.
        return error(401, 7003, "Not found http or grpc authorization header");
    }
    if !headers.get("content-type").is_some_and(|c| c.starts_with("application/x-www-form-urlencoded")) {
        return error(400, 1004, "expected a form body");
    }
    let db = form(query).get("db").cloned().unwrap_or_else(|| "public".into());
    let Some(sql) = form(body).get("sql").cloned() else {
        return error(400, 1004, "sql parameter is required.");
    };
    s.executed.push((db.clone(), sql.clone()));
    if !s.databases.contains(&db) {
        return error(404, 4004, format!("Database not found: greptime.{db}"));
    }
    if s.failing && sql.contains(FAIL_MARKER) {
        return error(400, 3001, format!("Failed to execute query: {sql} (mock failure)"));
    }
    match execute(s, &db, &sql) {
        Ok(output) => (200, json!({"code": 0, "output": [output], "execution_time_ms": 1})),
        Err(message) => error(400, 2000, message),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Num(i64),
    Punct(String),
}

fn tokens(sql: &str) -> Result<Vec<Tok>, String> {
    let c: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '\'' {
            let mut v = String::new();
            i += 1;
            loop {
                match c.get(i) {
                    None => return Err("unterminated string".into()),
                    Some('\\') => {
                        v.push(*c.get(i + 1).ok_or("bad escape")?);
                        i += 2;
                    }
                    Some('\'') if c.get(i + 1) == Some(&'\'') => {
                        v.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(x) => {
                        v.push(*x);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(v));
        } else if ch == '`' {
            let mut v = String::new();
            i += 1;
            loop {
                match c.get(i) {
                    None => return Err("unterminated identifier".into()),
                    Some('`') if c.get(i + 1) == Some(&'`') => {
                        v.push('`');
                        i += 2;
                    }
                    Some('`') => {
                        i += 1;
                        break;
                    }
                    Some(x) => {
                        v.push(*x);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Word(v));
        } else if ch.is_ascii_digit() || (ch == '-' && c.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            let start = i;
            i += 1;
            while i < c.len() && c[i].is_ascii_digit() {
                i += 1;
            }
            out.push(Tok::Num(c[start..i].iter().collect::<String>().parse().map_err(|_| "bad number")?));
        } else if ch.is_alphanumeric() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_' || c[i] == '.') {
                i += 1;
            }
            out.push(Tok::Word(c[start..i].iter().collect()));
        } else if (ch == '<' || ch == '>') && c.get(i + 1) == Some(&'=') {
            out.push(Tok::Punct(format!("{ch}=")));
            i += 2;
        } else {
            out.push(Tok::Punct(ch.to_string()));
            i += 1;
        }
    }
    Ok(out)
}

fn is_word(t: Option<&Tok>, w: &str) -> bool {
    matches!(t, Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w))
}

fn value(t: &Tok) -> Value {
    match t {
        Tok::Str(s) => Value::String(s.clone()),
        Tok::Num(n) => json!(n),
        Tok::Word(w) if w.eq_ignore_ascii_case("null") => Value::Null,
        Tok::Word(w) | Tok::Punct(w) => Value::String(w.clone()),
    }
}

/// `a = 'x' AND b < 5 …` → conditions.
fn conditions(t: &[Tok]) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 2 < t.len() {
        if let (Tok::Word(col), Tok::Punct(op)) = (&t[i], &t[i + 1]) {
            out.push((col.clone(), op.clone(), value(&t[i + 2])));
        }
        i += 3;
        if is_word(t.get(i), "and") {
            i += 1;
        }
    }
    out
}

fn compare(v: Option<&Value>, op: &str, lit: &Value) -> bool {
    let v = v.unwrap_or(&Value::Null);
    match (v.as_i64(), lit.as_i64()) {
        (Some(a), Some(b)) => match op {
            "=" => a == b,
            "<" => a < b,
            ">" => a > b,
            "<=" => a <= b,
            ">=" => a >= b,
            _ => false,
        },
        _ => op == "=" && v == lit,
    }
}

fn primary_key(table: &str) -> &'static [&'static str] {
    match table {
        "bfm_ledger" => &["connection_name", "schema_name", "migration_id"],
        "bfm_locks" => &["name", "owner"],
        _ => &[],
    }
}

fn records(columns: &[String], rows: Vec<Vec<Value>>) -> Value {
    let schema: Vec<Value> = columns.iter().map(|c| json!({"name": c, "data_type": "String"})).collect();
    json!({"records": {"schema": {"column_schemas": schema}, "rows": rows}})
}

fn execute(s: &mut State, db: &str, sql: &str) -> Result<Value, String> {
    let t = tokens(sql.trim().trim_end_matches(';'))?;
    let w = |i: usize, word: &str| is_word(t.get(i), word);
    if w(0, "show") && w(1, "databases") {
        let rows = s.databases.iter().map(|d| vec![Value::String(d.clone())]).collect();
        return Ok(records(&["Database".to_string()], rows));
    }
    if w(0, "create") && (w(1, "database") || w(1, "table")) {
        let at = if w(2, "if") && w(3, "not") && w(4, "exists") { 5 } else { 2 };
        let Some(Tok::Word(name)) = t.get(at) else { return Err(format!("expected a name in {sql}")) };
        if w(1, "database") {
            s.databases.insert(name.clone());
        } else {
            s.tables.entry(db.to_string()).or_default().insert(name.clone());
        }
        return Ok(json!({"affectedrows": if w(1, "database") { 1 } else { 0 }}));
    }
    if w(0, "insert") && w(1, "into") {
        let Some(Tok::Word(table)) = t.get(2) else { return Err("expected a table".into()) };
        let pk = primary_key(table);
        if pk.is_empty() {
            return Ok(json!({"affectedrows": 1}));
        }
        let close = t.iter().position(|x| *x == Tok::Punct(")".into())).ok_or("expected a column list")?;
        let cols: Vec<String> = t[4..close].iter().filter_map(|x| if let Tok::Word(c) = x { Some(c.clone()) } else { None }).collect();
        let vals: Vec<Value> = t[close + 3..].iter().filter(|x| !matches!(x, Tok::Punct(_))).map(value).collect();
        if cols.len() != vals.len() {
            return Err(format!("{} columns but {} values", cols.len(), vals.len()));
        }
        let row: Row = cols.into_iter().zip(vals).collect();
        let rows = s.rows.entry((db.to_string(), table.clone())).or_default();
        rows.retain(|r| !pk.iter().all(|k| r.get(*k) == row.get(*k)));
        rows.push(row);
        return Ok(json!({"affectedrows": 1}));
    }
    if w(0, "delete") && w(1, "from") {
        let Some(Tok::Word(table)) = t.get(2) else { return Err("expected a table".into()) };
        let conds = if w(3, "where") { conditions(&t[4..]) } else { Vec::new() };
        let rows = s.rows.entry((db.to_string(), table.clone())).or_default();
        let before = rows.len();
        rows.retain(|r| !conds.iter().all(|(c, op, v)| compare(r.get(c), op, v)));
        return Ok(json!({"affectedrows": before - rows.len()}));
    }
    if w(0, "select") {
        let Some(from) = t.iter().position(|x| is_word(Some(x), "from")) else {
            return Ok(records(&["1".to_string()], vec![vec![json!(1)]]));
        };
        let cols: Vec<String> = t[1..from].iter().filter_map(|x| if let Tok::Word(c) = x { Some(c.clone()) } else { None }).collect();
        let Some(Tok::Word(table)) = t.get(from + 1) else { return Err("expected a table".into()) };
        let conds = if w(from + 2, "where") { conditions(&t[from + 3..]) } else { Vec::new() };
        let source: Vec<Row> = if table.eq_ignore_ascii_case("information_schema.tables") {
            s.tables
                .iter()
                .flat_map(|(d, ts)| {
                    ts.iter().map(move |t| {
                        Row::from([
                            ("table_schema".to_string(), Value::String(d.clone())),
                            ("table_name".to_string(), Value::String(t.clone())),
                        ])
                    })
                })
                .collect()
        } else {
            if !s.tables.get(db).is_some_and(|ts| ts.contains(table)) {
                return Err(format!("Table not found: greptime.{db}.{table}"));
            }
            s.rows.get(&(db.to_string(), table.clone())).cloned().unwrap_or_default()
        };
        let rows = source
            .iter()
            .filter(|r| conds.iter().all(|(c, op, v)| compare(r.get(c), op, v)))
            .map(|r| cols.iter().map(|c| r.get(c).cloned().unwrap_or(Value::Null)).collect())
            .collect();
        return Ok(records(&cols, rows));
    }
    Ok(json!({"affectedrows": 0}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_forms() {
        assert_eq!(base64(b"greptime_user:greptime_pwd"), "Z3JlcHRpbWVfdXNlcjpncmVwdGltZV9wd2Q=");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(form("sql=SELECT+1%3B&db=x")["sql"], "SELECT 1;");
    }

    #[test]
    fn bookkeeping_statements() {
        let mut s = State { databases: ["public".to_string()].into(), ..Default::default() };
        execute(&mut s, "public", "CREATE TABLE IF NOT EXISTS bfm_locks (name STRING)").unwrap();
        execute(&mut s, "public", "INSERT INTO bfm_locks (name, owner, expires_at, ts) VALUES ('a''b', 'o\\\\1', 5, 0)").unwrap();
        let r = execute(&mut s, "public", "SELECT owner, expires_at FROM bfm_locks WHERE name = 'a''b'").unwrap();
        assert_eq!(r["records"]["rows"], json!([["o\\1", 5]]));
        execute(&mut s, "public", "DELETE FROM bfm_locks WHERE name = 'a''b' AND owner = 'o\\\\1'").unwrap();
        let r = execute(&mut s, "public", "SELECT owner FROM bfm_locks WHERE name = 'a''b'").unwrap();
        assert_eq!(r["records"]["rows"], json!([]));
    }
}
