//! Which rows a read returns.

use crate::Operation;
use bfm_core::Status;

#[derive(Debug, Clone, Default)]
pub struct StateFilter {
    pub migration_id: Option<String>,
    /// Any of these migrations (empty: no restriction).
    pub migration_ids: Vec<String>,
    pub schema: Option<String>,
    pub connection: Option<String>,
    pub status: Option<Status>,
    /// Most recently updated first (default: by migration id, then schema).
    pub newest_first: bool,
    pub limit: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    pub migration_id: Option<String>,
    pub schema: Option<String>,
    pub operation: Option<Operation>,
    /// Newest first; `None` for no limit.
    pub limit: Option<i64>,
}
