//! The service's errors: what went wrong, which request field it concerns, and the kind the
//! surfaces map to their status codes (in one place each).

use crate::engine::EngineError;

/// What kind of failure, for the surfaces' status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is wrong (400 / InvalidArgument).
    BadRequest,
    /// The migration is unknown (404 / NotFound).
    NotFound,
    /// The request is valid but the state does not allow it (400 / FailedPrecondition).
    Precondition,
    /// The request conflicts with the current state of the target: another apply holds the
    /// lock, the schema changed since the plan, an approval is missing (409 / Aborted).
    Conflict,
    /// A target database could not be reached (503 / Unavailable).
    Unavailable,
    /// A dependency (state store, target) failed (500 / Internal).
    Internal,
}

/// A field of a service request, named as BfM's wire formats name it. Surfaces with other
/// names (the CLI's flags) translate it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Connection,
    /// One execution schema (`POST /api/v1/migrate`, gRPC `schema`).
    Schema,
    /// gRPC's alternative name of `schema`.
    SchemaName,
    Schemas,
    SchemaPattern,
    /// Tag filters of a target (`target.tags`).
    TargetTags,
    /// Tag filters of a list query (`tag`).
    Tag,
    Status,
    MigrationId,
    MigrationIds,
    /// The value of `{{.Environment}}` for the run.
    Environment,
}

impl Field {
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Connection => "connection",
            Field::Schema => "schema",
            Field::SchemaName => "schema_name",
            Field::Schemas => "schemas",
            Field::SchemaPattern => "schema_pattern",
            Field::TargetTags => "target.tags",
            Field::Tag => "tag",
            Field::Status => "status",
            Field::MigrationId => "migration_id",
            Field::MigrationIds => "migration_ids",
            Field::Environment => "environment",
        }
    }

    /// Whether the field holds a list (its errors name the entry: `schemas[2]`).
    fn is_list(self) -> bool {
        matches!(self, Field::Schemas)
    }
}

/// Where in a request a problem is: a field, and for a list the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldRef {
    pub field: Field,
    pub index: Option<usize>,
}

impl FieldRef {
    pub fn at(field: Field, index: usize) -> FieldRef {
        FieldRef { field, index: field.is_list().then_some(index) }
    }
}

impl From<Field> for FieldRef {
    fn from(field: Field) -> FieldRef {
        FieldRef { field, index: None }
    }
}

impl std::fmt::Display for FieldRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.index {
            Some(i) => write!(f, "{}[{i}]", self.field.as_str()),
            None => f.write_str(self.field.as_str()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// A request field is missing or invalid.
    #[error("{field}: {message}")]
    Invalid { field: FieldRef, message: String },
    /// The request as a whole is wrong (an ambiguous id, an impossible combination).
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Precondition(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ServiceError {
    pub fn invalid(field: impl Into<FieldRef>, message: impl Into<String>) -> ServiceError {
        ServiceError::Invalid { field: field.into(), message: message.into() }
    }
    pub fn required(field: Field) -> ServiceError {
        ServiceError::invalid(field, "is required")
    }
    pub fn bad_request(message: impl Into<String>) -> ServiceError {
        ServiceError::BadRequest(message.into())
    }
    pub fn not_found(message: impl Into<String>) -> ServiceError {
        ServiceError::NotFound(message.into())
    }
    pub fn precondition(message: impl Into<String>) -> ServiceError {
        ServiceError::Precondition(message.into())
    }
    pub fn conflict(message: impl Into<String>) -> ServiceError {
        ServiceError::Conflict(message.into())
    }
    pub fn internal(message: impl Into<String>) -> ServiceError {
        ServiceError::Internal(message.into())
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            ServiceError::Invalid { .. } | ServiceError::BadRequest(_) => ErrorKind::BadRequest,
            ServiceError::NotFound(_) => ErrorKind::NotFound,
            ServiceError::Precondition(_) => ErrorKind::Precondition,
            ServiceError::Conflict(_) => ErrorKind::Conflict,
            ServiceError::Unavailable(_) => ErrorKind::Unavailable,
            ServiceError::Internal(_) => ErrorKind::Internal,
        }
    }

    /// The message as the wire formats carry it.
    pub fn message(&self) -> String {
        self.to_string()
    }

    fn of_kind(kind: ErrorKind, message: String) -> ServiceError {
        match kind {
            ErrorKind::BadRequest => ServiceError::BadRequest(message),
            ErrorKind::NotFound => ServiceError::NotFound(message),
            ErrorKind::Precondition => ServiceError::Precondition(message),
            ErrorKind::Conflict => ServiceError::Conflict(message),
            ErrorKind::Unavailable => ServiceError::Unavailable(message),
            ErrorKind::Internal => ServiceError::Internal(message),
        }
    }
}

impl From<EngineError> for ServiceError {
    fn from(e: EngineError) -> ServiceError {
        let kind = match &e {
            EngineError::UnknownConnection { .. } | EngineError::Ambiguous { .. } | EngineError::Invalid(_) => ErrorKind::BadRequest,
            EngineError::NotFound(_) => ErrorKind::NotFound,
            EngineError::Config(_) | EngineError::State(_) | EngineError::Target(_) => ErrorKind::Internal,
            EngineError::Schema(s) => schema_error_kind(s),
        };
        ServiceError::of_kind(kind, e.to_string())
    }
}

fn schema_error_kind(e: &bfm_schema::SchemaError) -> ErrorKind {
    use bfm_schema::SchemaError as S;
    match e {
        S::InvalidUrl(_)
        | S::Io { .. }
        | S::Load { .. }
        | S::Lex { .. }
        | S::NoSource(_)
        | S::InvalidApproval { .. }
        | S::FormatVersion { .. } => ErrorKind::BadRequest,
        S::FingerprintMismatch { .. } | S::VersionMismatch { .. } | S::ApprovalRequired { .. } | S::LockTimeout { .. } => {
            ErrorKind::Conflict
        }
        S::Connect { .. } => ErrorKind::Unavailable,
        S::Database { .. } | S::Step { .. } | S::Snapshot(_) => ErrorKind::Internal,
    }
}

impl From<bfm_state::StateError> for ServiceError {
    fn from(e: bfm_state::StateError) -> ServiceError {
        ServiceError::internal(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, ServiceError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_errors_name_the_field_and_the_entry() {
        assert_eq!(ServiceError::invalid(FieldRef::at(Field::Schemas, 2), "bad").to_string(), "schemas[2]: bad");
        // A single-valued field has no entry index, whatever the caller passed.
        assert_eq!(ServiceError::invalid(FieldRef::at(Field::Schema, 0), "bad").to_string(), "schema: bad");
        assert_eq!(ServiceError::required(Field::Connection).to_string(), "connection: is required");
        assert_eq!(ServiceError::required(Field::Connection).kind(), ErrorKind::BadRequest);
        assert_eq!(ServiceError::from(EngineError::NotFound("x".into())).kind(), ErrorKind::NotFound);
    }
}
