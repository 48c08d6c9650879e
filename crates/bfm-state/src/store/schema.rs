//! bfm's own tables, versioned: what each version of the state schema adds. The statements are
//! templates written once for the three backends — `{t:table}` a table (qualified with the
//! state schema), `{i:index}` an index, `{q:ident}` a quoted identifier, `{ID}`, `{TS}`… a column
//! type — rendered by [`super::dialect::Dialect::render`]. Running them is `upgrade`'s job.

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

/// The latest version of the state schema.
pub const LATEST: i64 = VERSIONS.len() as i64;

/// The templates that take a store from version `from` to [`LATEST`]: each version with its
/// statements, in order.
pub fn pending(from: i64) -> impl Iterator<Item = (i64, &'static [&'static str])> {
    VERSIONS.iter().enumerate().skip(from.max(0) as usize).map(|(i, stmts)| (i as i64 + 1, *stmts))
}

/// `bfm_meta` holds the version itself, so it is created before any version is read (on every
/// upgrade, outside the versions).
pub const META: &str =
    "CREATE TABLE IF NOT EXISTS {t:bfm_meta} (meta_key VARCHAR(64) NOT NULL PRIMARY KEY, meta_value VARCHAR(255) NOT NULL)";
