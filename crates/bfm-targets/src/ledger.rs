//! Reading ledger rows strictly: a value that does not decode is
//! [`TargetError::CorruptLedger`], naming the connection, the ledger table, the row and the
//! column, never a default (1970, algorithm 0, an empty string).

use crate::TargetError;
use sqlx::{ColumnIndex, Decode, Row, Type};

/// The ledger row a value comes from.
pub(crate) struct LedgerAt<'a> {
    pub connection: &'a str,
    pub table: &'a str,
    pub key: String,
}

impl<'a> LedgerAt<'a> {
    /// The row of (`migration_id`, `schema`) in `table`.
    pub fn new(connection: &'a str, table: &'a str, migration_id: &str, schema: &str) -> LedgerAt<'a> {
        LedgerAt { connection, table, key: format!("migration {migration_id}, schema {schema:?}") }
    }

    pub fn corrupt(&self, column: &'static str, detail: impl std::fmt::Display) -> TargetError {
        TargetError::CorruptLedger {
            connection: self.connection.to_string(),
            table: self.table.to_string(),
            key: self.key.clone(),
            column,
            detail: detail.to_string(),
        }
    }

    /// Column `column` of `row`; a value the driver cannot decode as `T` is corrupt.
    pub fn get<'r, R, T>(&self, row: &'r R, column: &'static str) -> Result<T, TargetError>
    where
        R: Row,
        T: Decode<'r, R::Database> + Type<R::Database>,
        &'static str: ColumnIndex<R>,
    {
        row.try_get(column).map_err(|e| match e {
            sqlx::Error::ColumnDecode { source, .. } => self.corrupt(column, source),
            other => TargetError::db(self.connection, other),
        })
    }

    /// A stored checksum algorithm (a signed column) as bfm's algorithm number.
    pub fn algorithm(&self, value: i64) -> Result<u32, TargetError> {
        u32::try_from(value).map_err(|_| self.corrupt("checksum_algorithm", format_args!("{value} is not a checksum algorithm")))
    }
}
