//! Rows → records, strictly. A column that does not decode, JSON that does not parse, a
//! timestamp no `DateTime` can hold, an unknown status, a checksum without its algorithm: each is
//! a [`StateError::Corrupt`] naming the table, the row's key and the column. A default in their
//! place would be worse than the error: the catalogue sync would write an empty tag list back
//! over the original, a run would seem to touch no connection and never be reconciled.
//!
//! The `decode_*!` macros are expanded once per backend (inside `on_pool!`), so that each
//! column's type is checked against that driver.

use crate::{Result, StateError};
use bfm_core::{Checksum, Status};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use sqlx::error::BoxDynError;
use sqlx::mysql::{MySql, MySqlTypeInfo, MySqlValueRef};
use sqlx::postgres::{PgTypeInfo, PgValueFormat, PgValueRef, Postgres};
use sqlx::sqlite::{Sqlite, SqliteTypeInfo, SqliteValueRef};
use sqlx::{ColumnIndex, Decode, Row, Type, TypeInfo, ValueRef};

/// The row a value comes from, for the error that names it.
pub struct At {
    table: &'static str,
    key: String,
}

impl At {
    pub fn new(table: &'static str, key: impl Into<String>) -> At {
        At { table, key: key.into() }
    }

    pub fn corrupt(&self, column: &'static str, detail: impl std::fmt::Display) -> StateError {
        StateError::Corrupt { table: self.table, key: self.key.clone(), column, detail: detail.to_string() }
    }
}

/// Column `column` of `row`; a value the driver cannot decode as `T` is corrupt.
pub fn get<'r, R, T>(row: &'r R, at: &At, column: &'static str) -> Result<T>
where
    R: Row,
    T: Decode<'r, R::Database> + Type<R::Database>,
    &'static str: ColumnIndex<R>,
{
    row.try_get(column).map_err(|e| match e {
        sqlx::Error::ColumnDecode { source, .. } => at.corrupt(column, source),
        other => StateError::Database(other),
    })
}

/// A JSON column.
pub fn json<T: DeserializeOwned>(text: &str, at: &At, column: &'static str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| at.corrupt(column, format_args!("not the JSON bfm writes ({e}): {}", excerpt(text))))
}

pub fn status(text: &str, at: &At, column: &'static str) -> Result<Status> {
    Status::parse(text).ok_or_else(|| at.corrupt(column, format_args!("unknown status {:?}", excerpt(text))))
}

pub fn algorithm(value: i64, at: &At) -> Result<u32> {
    u32::try_from(value).map_err(|_| at.corrupt("checksum_algorithm", format_args!("{value} is not a checksum algorithm")))
}

/// An optional checksum: its value and its algorithm are stored together or not at all.
pub fn checksum(value: Option<String>, algo: Option<i64>, at: &At) -> Result<Option<Checksum>> {
    match (value, algo) {
        (Some(value), Some(a)) => Ok(Some(Checksum { algorithm: algorithm(a, at)?, value })),
        (None, None) => Ok(None),
        (Some(_), None) => Err(at.corrupt("checksum_algorithm", "missing beside a checksum")),
        (None, Some(_)) => Err(at.corrupt("checksum", "missing beside a checksum algorithm")),
    }
}

/// The start of a stored value, for an error message.
fn excerpt(text: &str) -> String {
    const MAX: usize = 80;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// A timestamp column, decoded without the drivers' fallbacks: sqlx reads an SQLite integer as
/// seconds since 1970 (bfm only writes text there), and on PostgreSQL it panics on `infinity`
/// instead of failing. Both are corrupt here.
pub struct Stamp(pub DateTime<Utc>);

/// Microseconds from 1970-01-01 to 2000-01-01, PostgreSQL's epoch.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

impl Type<Postgres> for Stamp {
    fn type_info() -> PgTypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <DateTime<Utc> as Type<Postgres>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Postgres> for Stamp {
    fn decode(value: PgValueRef<'r>) -> std::result::Result<Stamp, BoxDynError> {
        match value.format() {
            PgValueFormat::Binary => {
                let micros: i64 = Decode::<Postgres>::decode(value)?;
                // `infinity` and `-infinity` are i64::MAX and i64::MIN.
                micros
                    .checked_add(PG_EPOCH_MICROS)
                    .and_then(DateTime::from_timestamp_micros)
                    .map(Stamp)
                    .ok_or_else(|| format!("{micros} µs after 2000-01-01 is no representable time (infinity?)").into())
            }
            PgValueFormat::Text => Ok(Stamp(Decode::<Postgres>::decode(value)?)),
        }
    }
}

impl Type<Sqlite> for Stamp {
    fn type_info() -> SqliteTypeInfo {
        <DateTime<Utc> as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <DateTime<Utc> as Type<Sqlite>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Sqlite> for Stamp {
    fn decode(value: SqliteValueRef<'r>) -> std::result::Result<Stamp, BoxDynError> {
        let stored = value.type_info().name().to_string();
        if stored != "TEXT" {
            return Err(format!("a {stored} value where bfm writes an RFC 3339 text").into());
        }
        Ok(Stamp(Decode::<Sqlite>::decode(value)?))
    }
}

impl Type<MySql> for Stamp {
    fn type_info() -> MySqlTypeInfo {
        <DateTime<Utc> as Type<MySql>>::type_info()
    }

    fn compatible(ty: &MySqlTypeInfo) -> bool {
        <DateTime<Utc> as Type<MySql>>::compatible(ty)
    }
}

impl<'r> Decode<'r, MySql> for Stamp {
    fn decode(value: MySqlValueRef<'r>) -> std::result::Result<Stamp, BoxDynError> {
        // sqlx reports MySQL's zero date as NULL.
        if value.is_null() {
            return Err("NULL or the zero date 0000-00-00 where a time is required".into());
        }
        Ok(Stamp(Decode::<MySql>::decode(value)?))
    }
}

/// A timestamp column that may be NULL. Not `Option<Stamp>`: sqlx reports MySQL's zero date
/// as NULL, and `Option` would turn it into "never" without a word.
pub struct MaybeStamp(pub Option<DateTime<Utc>>);

impl<DB: sqlx::Database> Type<DB> for MaybeStamp
where
    Stamp: Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <Stamp as Type<DB>>::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        <Stamp as Type<DB>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Postgres> for MaybeStamp {
    fn decode(value: PgValueRef<'r>) -> std::result::Result<MaybeStamp, BoxDynError> {
        if value.is_null() { Ok(MaybeStamp(None)) } else { Ok(MaybeStamp(Some(<Stamp as Decode<Postgres>>::decode(value)?.0))) }
    }
}

impl<'r> Decode<'r, Sqlite> for MaybeStamp {
    fn decode(value: SqliteValueRef<'r>) -> std::result::Result<MaybeStamp, BoxDynError> {
        if value.is_null() { Ok(MaybeStamp(None)) } else { Ok(MaybeStamp(Some(<Stamp as Decode<Sqlite>>::decode(value)?.0))) }
    }
}

impl<'r> Decode<'r, MySql> for MaybeStamp {
    fn decode(value: MySqlValueRef<'r>) -> std::result::Result<MaybeStamp, BoxDynError> {
        if !value.is_null() {
            return Ok(MaybeStamp(Some(<Stamp as Decode<MySql>>::decode(value)?.0)));
        }
        // "Null" with bytes is the zero date; a real NULL has none.
        match <&[u8] as Decode<MySql>>::decode(value) {
            Err(_) => Ok(MaybeStamp(None)),
            Ok(_) => Err("the zero date 0000-00-00".into()),
        }
    }
}

/// A timestamp column that may be NULL.
macro_rules! stamp_opt {
    ($r:expr, $at:expr, $col:literal) => {
        $crate::store::decode::get::<_, $crate::store::decode::MaybeStamp>($r, $at, $col)?.0
    };
}

/// A timestamp column.
macro_rules! stamp {
    ($r:expr, $at:expr, $col:literal) => {
        $crate::store::decode::get::<_, $crate::store::decode::Stamp>($r, $at, $col)?.0
    };
}

macro_rules! decode_state {
    ($r:expr) => {{
        use $crate::store::decode::{At, checksum, get, status};
        let r = $r;
        let migration_id: String = r.try_get("migration_id")?;
        let schema: String = r.try_get("schema_name")?;
        let at = At::new("bfm_state", format!("migration {migration_id}, schema {schema}"));
        $crate::StateRow {
            version: get(r, &at, "version")?,
            name: get(r, &at, "name")?,
            connection: get(r, &at, "connection")?,
            backend: get(r, &at, "backend")?,
            status: status(&get::<_, String>(r, &at, "status")?, &at, "status")?,
            checksum: checksum(get(r, &at, "checksum")?, get(r, &at, "checksum_algorithm")?, &at)?,
            applied_at: stamp_opt!(r, &at, "applied_at"),
            duration_ms: get(r, &at, "duration_ms")?,
            error: get(r, &at, "error")?,
            failed_statement: get(r, &at, "failed_statement")?,
            failed_statement_index: get(r, &at, "failed_statement_index")?,
            statements_done: get(r, &at, "statements_done")?,
            partial: get(r, &at, "partial")?,
            ledger: get(r, &at, "ledger")?,
            run_id: get(r, &at, "run_id")?,
            updated_at: stamp!(r, &at, "updated_at"),
            migration_id,
            schema,
        }
    }};
}

macro_rules! decode_history {
    ($r:expr) => {{
        use $crate::store::decode::{At, get};
        let r = $r;
        let id: i64 = r.try_get("id")?;
        let at = At::new("bfm_history", format!("id {id}"));
        $crate::HistoryRow {
            id,
            migration_id: get(r, &at, "migration_id")?,
            schema: get(r, &at, "schema_name")?,
            version: get(r, &at, "version")?,
            connection: get(r, &at, "connection")?,
            backend: get(r, &at, "backend")?,
            operation: get(r, &at, "operation")?,
            status: get(r, &at, "status")?,
            checksum: get(r, &at, "checksum")?,
            error: get(r, &at, "error")?,
            failed_statement: get(r, &at, "failed_statement")?,
            failed_statement_index: get(r, &at, "failed_statement_index")?,
            started_at: stamp_opt!(r, &at, "started_at"),
            finished_at: stamp!(r, &at, "finished_at"),
            duration_ms: get(r, &at, "duration_ms")?,
            executed_by: get(r, &at, "executed_by")?,
            execution_method: get(r, &at, "execution_method")?,
            execution_context: get(r, &at, "execution_context")?,
            run_id: get(r, &at, "run_id")?,
        }
    }};
}

macro_rules! decode_run {
    ($r:expr) => {{
        use $crate::store::decode::{At, get, json};
        let r = $r;
        let run_id: String = r.try_get("run_id")?;
        let at = At::new("bfm_runs", format!("run {run_id}"));
        $crate::RunRecord {
            command: get(r, &at, "command")?,
            host: get(r, &at, "host")?,
            pid: get(r, &at, "pid")?,
            executed_by: get(r, &at, "executed_by")?,
            started_at: stamp!(r, &at, "started_at"),
            heartbeat_at: stamp!(r, &at, "heartbeat_at"),
            finished_at: stamp_opt!(r, &at, "finished_at"),
            connections: json(&get::<_, String>(r, &at, "connections")?, &at, "connections")?,
            run_id,
        }
    }};
}

macro_rules! decode_catalog {
    ($r:expr) => {{
        use $crate::store::decode::{At, algorithm, get, json};
        let r = $r;
        let migration_id: String = r.try_get("migration_id")?;
        let at = At::new("bfm_catalog", format!("migration {migration_id}"));
        $crate::CatalogRow {
            version: get(r, &at, "version")?,
            name: get(r, &at, "name")?,
            connection: get(r, &at, "connection")?,
            backend: get(r, &at, "backend")?,
            declared_schema: get(r, &at, "declared_schema")?,
            checksum: bfm_core::Checksum {
                algorithm: algorithm(get(r, &at, "checksum_algorithm")?, &at)?,
                value: get(r, &at, "checksum")?,
            },
            up_file: get(r, &at, "up_file")?,
            down_file: get(r, &at, "down_file")?,
            dependencies: json(&get::<_, String>(r, &at, "dependencies")?, &at, "dependencies")?,
            structured_dependencies: json(&get::<_, String>(r, &at, "structured_dependencies")?, &at, "structured_dependencies")?,
            tags: json(&get::<_, String>(r, &at, "tags")?, &at, "tags")?,
            present: get(r, &at, "present")?,
            first_seen_at: stamp!(r, &at, "first_seen_at"),
            updated_at: stamp!(r, &at, "updated_at"),
            migration_id,
        }
    }};
}

macro_rules! decode_status_count {
    ($r:expr) => {{
        use $crate::store::decode::{At, get, status};
        let r = $r;
        let migration_id: String = r.try_get("migration_id")?;
        let at = At::new("bfm_state", format!("migration {migration_id}"));
        $crate::StatusCount {
            status: status(&get::<_, String>(r, &at, "status")?, &at, "status")?,
            count: get(r, &at, "n")?,
            last_applied_at: stamp_opt!(r, &at, "last_applied_at"),
            last_updated_at: stamp_opt!(r, &at, "last_updated_at"),
            migration_id,
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_and_algorithm_come_together() {
        let at = At::new("bfm_state", "migration m, schema s");
        assert_eq!(checksum(None, None, &at).ok(), Some(None));
        assert_eq!(checksum(Some("x".into()), Some(1), &at).ok().flatten().map(|c| c.algorithm), Some(1));
        let e = checksum(Some("x".into()), None, &at).unwrap_err();
        assert!(
            matches!(&e, StateError::Corrupt { table: "bfm_state", column: "checksum_algorithm", key, .. } if key == "migration m, schema s"),
            "{e}"
        );
        assert!(matches!(algorithm(-1, &at), Err(StateError::Corrupt { column: "checksum_algorithm", .. })));
    }

    #[test]
    fn json_errors_quote_the_start_of_the_value() {
        let at = At::new("bfm_catalog", "migration m");
        let e = json::<Vec<String>>(&format!("[\"a\", {}", "x".repeat(500)), &at, "tags").unwrap_err().to_string();
        assert!(e.contains("bfm_catalog row migration m: column tags is corrupt"), "{e}");
        assert!(e.len() < 300, "{e}");
    }
}
