//! How to connect: timeouts, HTTP/2 keep-alive, credentials, TLS.

use std::time::Duration;

/// Connection settings (all optional; the default is plain HTTP/2 with tonic's defaults).
#[derive(Clone, Default)]
pub struct ConnectOptions {
    pub(crate) connect_timeout: Option<Duration>,
    /// HTTP/2 keep-alive `(interval, timeout)`, also while idle.
    pub(crate) keep_alive: Option<(Duration, Duration)>,
    pub(crate) user: Option<(String, String)>,
    pub(crate) tls: Option<TlsOptions>,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("connect_timeout", &self.connect_timeout)
            .field("keep_alive", &self.keep_alive)
            .field("user", &self.user.as_ref().map(|(u, _)| u))
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl ConnectOptions {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    pub fn with_keep_alive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keep_alive = Some((interval, timeout));
        self
    }

    /// Authenticate as `user` when connecting; the token goes with every call.
    pub fn with_user(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = Some((user.into(), password.into()));
        self
    }

    /// TLS for endpoints without a scheme (which are `http://` otherwise); `https://` endpoints
    /// need it.
    pub fn with_tls(mut self, tls: TlsOptions) -> Self {
        self.tls = Some(tls);
        self
    }

    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }
}

/// TLS settings: the system's root certificates, plus an optional CA and client identity (PEM).
#[derive(Clone, Default)]
pub struct TlsOptions {
    pub(crate) ca_pem: Option<Vec<u8>>,
    /// `(certificate, key)`.
    pub(crate) identity_pem: Option<(Vec<u8>, Vec<u8>)>,
}

impl TlsOptions {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_ca_pem(mut self, pem: Vec<u8>) -> Self {
        self.ca_pem = Some(pem);
        self
    }

    pub fn with_identity_pem(mut self, cert: Vec<u8>, key: Vec<u8>) -> Self {
        self.identity_pem = Some((cert, key));
        self
    }

    pub(crate) fn config(&self) -> tonic::transport::ClientTlsConfig {
        let mut c = tonic::transport::ClientTlsConfig::new().with_native_roots();
        if let Some(ca) = &self.ca_pem {
            c = c.ca_certificate(tonic::transport::Certificate::from_pem(ca));
        }
        if let Some((cert, key)) = &self.identity_pem {
            c = c.identity(tonic::transport::Identity::from_pem(cert, key));
        }
        c
    }
}
