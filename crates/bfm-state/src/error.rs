//! What goes wrong in the state store, and where.

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state store: {0}")]
    Database(#[from] sqlx::Error),
    #[error("state store: {0}")]
    Config(String),
    /// A stored value bfm cannot read back (unparsable JSON, an impossible timestamp, an
    /// unknown status…). Never replaced by a default: a default would be written back by the
    /// next update and the original lost, or would make an applied migration look pending.
    #[error("state store: {table} row {key}: column {column} is corrupt: {detail}")]
    Corrupt {
        table: &'static str,
        /// The row's key as the table spells it, e.g. `migration m1, schema s`.
        key: String,
        column: &'static str,
        detail: String,
    },
    /// A value could not be serialised for storage.
    #[error("state store: {table} row {key}: column {column} cannot be encoded: {source}")]
    Encode {
        table: &'static str,
        key: String,
        column: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

pub type Result<T> = std::result::Result<T, StateError>;
