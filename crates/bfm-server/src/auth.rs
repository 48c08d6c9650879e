//! Bearer-token authentication, compared in constant time, with BfM's error messages.

use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The API token. Its `Debug` never shows it.
#[derive(Clone)]
pub struct Token(Arc<[u8]>);

impl Token {
    pub fn new(token: &str) -> Token {
        Token(Arc::from(token.as_bytes()))
    }

    /// Constant-time comparison (the length is not secret).
    pub fn matches(&self, candidate: &[u8]) -> bool {
        self.0.len() == candidate.len() && bool::from(self.0.ct_eq(candidate))
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Check `Authorization: Bearer <token>` (an HTTP header or gRPC metadata); the error says
/// what is wrong without revealing anything about the token.
pub fn verify(token: &Token, header: Option<&[u8]>) -> Result<(), &'static str> {
    let Some(value) = header else {
        return Err("missing Authorization header");
    };
    let Some(space) = value.iter().position(|b| *b == b' ') else {
        return Err("invalid Authorization header format");
    };
    let (scheme, rest) = (&value[..space], &value[space + 1..]);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err("authorization header must use Bearer scheme");
    }
    if token.matches(rest) { Ok(()) } else { Err("invalid API token") }
}

/// [`verify`] as an HTTP 401.
pub fn check(token: &Token, header: Option<&[u8]>) -> Result<(), ApiError> {
    verify(token, header).map_err(ApiError::unauthorized)
}

pub async fn require(State(token): State<Token>, req: Request, next: Next) -> Result<Response, ApiError> {
    check(&token, req.headers().get(AUTHORIZATION).map(|v| v.as_bytes()))?;
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bfm_messages() {
        let t = Token::new("secret");
        let msg = |h: Option<&[u8]>| check(&t, h).err().map(|e| e.message);
        assert_eq!(msg(None).as_deref(), Some("missing Authorization header"));
        assert_eq!(msg(Some(b"Bearer")).as_deref(), Some("invalid Authorization header format"));
        assert_eq!(msg(Some(b"Basic secret")).as_deref(), Some("authorization header must use Bearer scheme"));
        assert_eq!(msg(Some(b"Bearer wrong")).as_deref(), Some("invalid API token"));
        assert_eq!(msg(Some(b"Bearer secre")).as_deref(), Some("invalid API token"));
        assert_eq!(msg(Some(b"bearer secret")), None);
        assert!(!format!("{t:?}").contains("secret"));
    }
}
