//! The crate's error type. Every variant says what was being done, on which object or file, and
//! carries the server's message when there is one.

use std::path::PathBuf;

/// What went wrong in a schema operation.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The database URL could not be parsed.
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),

    /// Connecting to the server failed.
    #[error("cannot connect to {target}: {message}")]
    Connect { target: String, message: String },

    /// A catalog query or a control statement failed.
    #[error("{context}: {message}")]
    Database { context: String, message: String, sqlstate: Option<String> },

    /// A desired-state file could not be read.
    #[error("cannot read {path}: {message}")]
    Io { path: PathBuf, message: String },

    /// A desired-state statement failed while it was loaded into the scratch database.
    #[error("{file}:{line}: {message}\n  statement: {statement}")]
    Load { file: String, line: usize, statement: String, message: String, sqlstate: Option<String> },

    /// A desired-state file could not be split into statements.
    #[error("{file}: {message}")]
    Lex { file: String, message: String },

    /// The desired-state directory has no `.sql` file.
    #[error("no .sql file in {0}")]
    NoSource(PathBuf),

    /// The live schema changed since the plan was made.
    #[error("the live schema changed since the plan was made (plan made from {expected}, live is now {actual}); make a new plan")]
    FingerprintMismatch { expected: String, actual: String },

    /// The plan was made on another PostgreSQL major version.
    #[error("the plan was made for PostgreSQL {plan} but the server runs PostgreSQL {server}")]
    VersionMismatch { plan: u32, server: u32 },

    /// Destructive steps lack an approval.
    #[error("destructive steps need approval; approve each with: {}", missing.join(", "))]
    ApprovalRequired { missing: Vec<String> },

    /// An approval string could not be parsed.
    #[error("invalid approval {input:?}: {reason}")]
    InvalidApproval { input: String, reason: String },

    /// Another apply holds the schema lock.
    #[error("another schema apply holds the lock on {target}; gave up after {waited_ms} ms")]
    LockTimeout { target: String, waited_ms: u128 },

    /// A plan step failed while it was applied.
    #[error(
        "step {step} ({object}) failed: {message}\n  statement: {sql}\n  {applied} earlier step(s) were applied{rolled_back}",
        rolled_back = if *.rolled_back { "; the failed step's transaction group was rolled back" } else { "" }
    )]
    Step { step: usize, object: String, sql: String, message: String, sqlstate: Option<String>, applied: usize, rolled_back: bool },

    /// A snapshot could not be encoded or decoded.
    #[error("snapshot: {0}")]
    Snapshot(String),

    /// A plan or snapshot does not fit this version of the crate.
    #[error("unsupported format version {found} (this build reads {supported})")]
    FormatVersion { found: u32, supported: u32 },
}

impl SchemaError {
    pub(crate) fn db(context: impl Into<String>, e: &tokio_postgres::Error) -> SchemaError {
        SchemaError::Database { context: context.into(), message: pg_message(e), sqlstate: sqlstate(e) }
    }
}

/// The server's message with detail and hint, or the client error.
pub(crate) fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut m = format!("{}: {}", db.severity(), db.message());
            if let Some(d) = db.detail() {
                m.push_str(&format!(" (detail: {d})"));
            }
            if let Some(h) = db.hint() {
                m.push_str(&format!(" (hint: {h})"));
            }
            m
        }
        None => {
            let mut m = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(s) = src {
                m.push_str(&format!(": {s}"));
                src = s.source();
            }
            m
        }
    }
}

pub(crate) fn sqlstate(e: &tokio_postgres::Error) -> Option<String> {
    e.code().map(|c| c.code().to_string())
}
