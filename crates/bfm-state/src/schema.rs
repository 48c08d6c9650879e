//! bfm's own tables, versioned. Each version is a list of statements written once with type
//! placeholders and rendered for each backend.

use crate::StateBackend;

/// Statements of each schema version, in order. Never edit a released version; add one.
const VERSIONS: &[&[&str]] = &[
    &[
        "CREATE TABLE IF NOT EXISTS {t:bfm_catalog} (
        migration_id {ID} NOT NULL PRIMARY KEY,
        version {SHORT} NOT NULL,
        name {ID} NOT NULL,
        connection {NAME} NOT NULL,
        backend {SHORT} NOT NULL,
        declared_schema {NAME} NULL,
        checksum {SHORT} NOT NULL,
        checksum_algorithm BIGINT NOT NULL,
        up_file {TEXT} NOT NULL,
        down_file {TEXT} NULL,
        dependencies {TEXT} NOT NULL,
        structured_dependencies {TEXT} NOT NULL,
        tags {TEXT} NOT NULL,
        present {BOOL} NOT NULL,
        first_seen_at {TS} NOT NULL,
        updated_at {TS} NOT NULL
    ){ENGINE}",
        "CREATE INDEX {i:bfm_catalog_connection} ON {t:bfm_catalog} (connection, backend)",
        "CREATE TABLE IF NOT EXISTS {t:bfm_state} (
        migration_id {ID} NOT NULL,
        schema_name {NAME} NOT NULL,
        version {SHORT} NOT NULL,
        name {ID} NOT NULL,
        connection {NAME} NOT NULL,
        backend {SHORT} NOT NULL,
        status {SHORT} NOT NULL,
        checksum {SHORT} NULL,
        checksum_algorithm BIGINT NULL,
        applied_at {TS} NULL,
        duration_ms BIGINT NULL,
        error {TEXT} NULL,
        failed_statement {TEXT} NULL,
        failed_statement_index BIGINT NULL,
        statements_done BIGINT NOT NULL,
        partial {BOOL} NOT NULL,
        ledger {BOOL} NOT NULL,
        run_id {SHORT} NULL,
        updated_at {TS} NOT NULL,
        PRIMARY KEY (migration_id, schema_name)
    ){ENGINE}",
        "CREATE INDEX {i:bfm_state_connection} ON {t:bfm_state} (connection, status)",
        "CREATE INDEX {i:bfm_state_updated} ON {t:bfm_state} (updated_at)",
        "CREATE TABLE IF NOT EXISTS {t:bfm_history} (
        id {AUTOID},
        event_key {ID} NOT NULL,
        migration_id {ID} NOT NULL,
        schema_name {NAME} NOT NULL,
        version {SHORT} NOT NULL,
        connection {NAME} NOT NULL,
        backend {SHORT} NOT NULL,
        operation {SHORT} NOT NULL,
        status {SHORT} NOT NULL,
        checksum {SHORT} NULL,
        error {TEXT} NULL,
        failed_statement {TEXT} NULL,
        failed_statement_index BIGINT NULL,
        started_at {TS} NULL,
        finished_at {TS} NOT NULL,
        duration_ms BIGINT NULL,
        executed_by {ID} NOT NULL,
        execution_method {SHORT} NOT NULL,
        execution_context {TEXT} NOT NULL,
        run_id {SHORT} NULL
    ){ENGINE}",
        "CREATE UNIQUE INDEX {i:bfm_history_event_key} ON {t:bfm_history} (event_key)",
        "CREATE INDEX {i:bfm_history_migration} ON {t:bfm_history} (migration_id, schema_name, id)",
        "CREATE INDEX {i:bfm_history_finished} ON {t:bfm_history} (finished_at)",
        "CREATE TABLE IF NOT EXISTS {t:bfm_runs} (
        run_id {SHORT} NOT NULL PRIMARY KEY,
        command {TEXT} NOT NULL,
        host {ID} NOT NULL,
        pid BIGINT NOT NULL,
        executed_by {ID} NOT NULL,
        started_at {TS} NOT NULL,
        heartbeat_at {TS} NOT NULL,
        finished_at {TS} NULL,
        connections {TEXT} NOT NULL
    ){ENGINE}",
        "CREATE INDEX {i:bfm_runs_open} ON {t:bfm_runs} (finished_at)",
        "{VIEW} {t:bfm_migrations} AS SELECT migration_id, schema_name AS {q:schema}, version, name, connection, backend, status, \
     checksum, applied_at, duration_ms, error, failed_statement, run_id, updated_at FROM {t:bfm_state}",
    ],
    // 2: declarative schema snapshots (the fingerprint and the compressed model of the last apply).
    &["CREATE TABLE IF NOT EXISTS {t:bfm_schema_snapshots} (
        connection {NAME} NOT NULL PRIMARY KEY,
        fingerprint {SHORT} NOT NULL,
        taken_at {TS} NOT NULL,
        snapshot {LONGTEXT} NOT NULL
    ){ENGINE}"],
    // 3: the list endpoints ask for the migrations no longer on disk on every call; without an
    // index that is a scan of the whole catalogue.
    &["CREATE INDEX {i:bfm_catalog_present} ON {t:bfm_catalog} (present)"],
];

pub const LATEST: i64 = VERSIONS.len() as i64;

/// The statements that take a store from `from` to the latest version, rendered for `backend`.
pub fn upgrade(backend: StateBackend, qualify: &dyn Fn(&str) -> String, from: i64) -> Vec<(i64, Vec<String>)> {
    VERSIONS
        .iter()
        .enumerate()
        .skip(from.max(0) as usize)
        .map(|(i, stmts)| (i as i64 + 1, stmts.iter().map(|s| render(s, backend, qualify)).collect()))
        .collect()
}

fn render(template: &str, backend: StateBackend, qualify: &dyn Fn(&str) -> String) -> String {
    use StateBackend::*;
    let ty = |name: &str| -> &'static str {
        match (name, backend) {
            ("ID", _) => "VARCHAR(255)",
            ("NAME", _) => "VARCHAR(128)",
            ("SHORT", _) => "VARCHAR(64)",
            ("TEXT", Mysql) => "MEDIUMTEXT",
            ("LONGTEXT", Mysql) => "LONGTEXT",
            ("LONGTEXT", _) => "TEXT",
            ("TEXT", _) => "TEXT",
            ("BOOL", _) => "BOOLEAN",
            ("TS", Postgresql) => "TIMESTAMPTZ",
            ("TS", Mysql) => "DATETIME(6)",
            ("TS", Sqlite) => "TEXT",
            ("AUTOID", Postgresql) => "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
            ("AUTOID", Mysql) => "BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY",
            ("AUTOID", Sqlite) => "INTEGER PRIMARY KEY AUTOINCREMENT",
            ("ENGINE", Mysql) => " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
            ("ENGINE", _) => "",
            ("VIEW", Sqlite) => "CREATE VIEW IF NOT EXISTS",
            ("VIEW", _) => "CREATE OR REPLACE VIEW",
            _ => "",
        }
    };
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            out.push_str(&rest[open..]);
            return out;
        };
        let token = &rest[open + 1..open + close];
        match token.split_once(':') {
            Some(("t", table)) => out.push_str(&qualify(table)),
            // Index names are not schema-qualified on PostgreSQL (they live with their table).
            Some(("i", index)) => out.push_str(index),
            Some(("q", ident)) => out.push_str(&match backend {
                Mysql => format!("`{ident}`"),
                _ => format!("\"{ident}\""),
            }),
            _ => out.push_str(ty(token)),
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    // PostgreSQL and SQLite know `CREATE INDEX IF NOT EXISTS`; MySQL does not (versions make
    // re-runs impossible anyway).
    if backend != Mysql {
        out = out.replacen("CREATE INDEX ", "CREATE INDEX IF NOT EXISTS ", 1).replacen(
            "CREATE UNIQUE INDEX ",
            "CREATE UNIQUE INDEX IF NOT EXISTS ",
            1,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_types_per_backend() {
        let q = |t: &str| format!("\"s\".{t}");
        let pg = upgrade(StateBackend::Postgresql, &q, 0);
        assert_eq!(pg.len(), LATEST as usize);
        let all = pg[0].1.join("\n");
        assert!(all.contains("TIMESTAMPTZ") && all.contains("\"s\".bfm_state") && !all.contains('{'), "{all}");
        let my = upgrade(StateBackend::Mysql, &|t: &str| t.to_string(), 0)[0].1.join("\n");
        assert!(my.contains("DATETIME(6)") && my.contains("`schema`") && my.contains("AUTO_INCREMENT"));
        assert!(upgrade(StateBackend::Sqlite, &|t: &str| t.to_string(), LATEST).is_empty());
    }
}
