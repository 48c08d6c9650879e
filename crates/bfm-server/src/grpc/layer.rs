//! Around every gRPC call, in one place: the bearer token (all of `migration.MigrationService`
//! except `Health`; the standard health and reflection services are open), the request counter
//! and one log line per call.

use crate::auth::{self, Token};
use crate::metrics::{GrpcLabels, Metrics};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tonic::Status;
use tonic::codegen::http;

/// Calls that need no token.
fn is_open(path: &str) -> bool {
    path == "/migration.MigrationService/Health"
        || path.starts_with("/grpc.health.v1.Health/")
        || path.starts_with("/grpc.reflection.v1.ServerReflection/")
        || path.starts_with("/grpc.reflection.v1alpha.ServerReflection/")
}

/// Probes are counted but not logged.
fn is_probe(path: &str) -> bool {
    path == "/migration.MigrationService/Health" || path.starts_with("/grpc.health.v1.Health/")
}

/// Marks an open call that carried a valid token anyway: `Health` then answers with its checks
/// (connection names and their errors), which an anonymous caller never sees.
#[derive(Debug, Clone, Copy)]
pub struct Authenticated;

#[derive(Clone)]
pub struct GrpcLayer {
    token: Token,
    metrics: Arc<Metrics>,
}

impl GrpcLayer {
    pub fn new(token: Token, metrics: Arc<Metrics>) -> GrpcLayer {
        GrpcLayer { token, metrics }
    }
}

impl<S> tower::Layer<S> for GrpcLayer {
    type Service = Guarded<S>;

    fn layer(&self, inner: S) -> Guarded<S> {
        Guarded { inner, token: self.token.clone(), metrics: self.metrics.clone() }
    }
}

#[derive(Clone)]
pub struct Guarded<S> {
    inner: S,
    token: Token,
    metrics: Arc<Metrics>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The status a response starts with: `grpc-status` in its headers (a unary error, or a
/// rejection), else OK (the final status of a stream is in its trailers).
fn code_of<B>(response: &http::Response<B>) -> tonic::Code {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(tonic::Code::from_i32)
        .unwrap_or(tonic::Code::Ok)
}

impl<S, B, ResBody> tower::Service<http::Request<B>> for Guarded<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let start = Instant::now();
        let path = req.uri().path().to_string();
        let metrics = self.metrics.clone();
        let authorization = auth::verify(&self.token, req.headers().get(http::header::AUTHORIZATION).map(|v| v.as_bytes()));
        let verdict = if is_open(&path) {
            if authorization.is_ok() {
                req.extensions_mut().insert(Authenticated);
            }
            Ok(())
        } else {
            authorization
        };
        // The service that was polled ready handles this call; a fresh clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let label = crate::metrics::grpc_method_label(&path, verdict.is_ok());
        Box::pin(async move {
            let response = match verdict {
                Ok(()) => inner.call(req).await?,
                Err(message) => Status::unauthenticated(message).into_http::<ResBody>(),
            };
            let code = code_of(&response);
            metrics.grpc_requests.get_or_create(&GrpcLabels { method: label.to_string(), code: format!("{code:?}") }).inc();
            if !is_probe(&path) {
                tracing::info!(
                    method = %path,
                    code = ?code,
                    latency_ms = start.elapsed().as_secs_f64() * 1000.0,
                    connection_type = "grpc",
                    "request"
                );
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_health_and_reflection_are_open() {
        for p in [
            "/migration.MigrationService/Health",
            "/grpc.health.v1.Health/Check",
            "/grpc.health.v1.Health/Watch",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ] {
            assert!(is_open(p), "{p}");
        }
        for p in [
            "/migration.MigrationService/Migrate",
            "/migration.MigrationService/ReindexMigrations",
            "/migration.MigrationService/HealthX",
            "/migration.MigrationService/Unknown",
            "/other.Service/Health",
            "/",
        ] {
            assert!(!is_open(p), "{p}");
        }
    }
}
