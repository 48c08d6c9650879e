//! The client's errors.

/// What can go wrong talking to etcd.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no etcd endpoints given")]
    NoEndpoints,
    #[error("invalid etcd endpoint {endpoint:?}: {message}")]
    InvalidEndpoint { endpoint: String, message: String },
    #[error("TLS settings of endpoint {endpoint}: {source}")]
    Tls {
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
    /// etcd (or the transport under it) answered a call with an error status.
    #[error("{}: {}", .0.code(), .0.message())]
    Rpc(#[from] tonic::Status),
    #[error("the authentication token from etcd is not a valid header value")]
    InvalidToken,
    #[error("lease grant refused: {0}")]
    LeaseGrant(String),
    /// etcd answered a keep-alive with TTL 0: the lease expired or was revoked.
    #[error("lease {0:x} not found (expired or revoked)")]
    LeaseNotFound(i64),
    #[error("the keep-alive stream of lease {0:x} ended")]
    KeepAliveClosed(i64),
}

impl Error {
    /// The gRPC status code, for an error etcd answered.
    pub fn code(&self) -> Option<crate::Code> {
        match self {
            Error::Rpc(s) => Some(s.code()),
            _ => None,
        }
    }
}
