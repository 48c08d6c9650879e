//! The client: connecting (endpoints, TLS, authentication) and the calls bfm makes.

use crate::Error;
use crate::lease::LeaseKeeper;
use crate::options::ConnectOptions;
use crate::pb::etcdserverpb::{self as pb, auth_client::AuthClient, kv_client::KvClient, lease_client::LeaseClient};
use crate::pb::mvccpb::KeyValue;
use crate::pb::v3lockpb::{self, lock_client::LockClient};
use crate::txn::{Keys, RangeOptions, RangeResult, Txn, TxnResponse};
use tonic::metadata::AsciiMetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// Every call goes through this: it adds the authentication token, if any.
pub(crate) type Service = InterceptedService<Channel, TokenInterceptor>;

/// Adds etcd's `token` header (from `Auth.Authenticate`) to each call.
#[derive(Clone)]
pub(crate) struct TokenInterceptor(Option<AsciiMetadataValue>);

impl tonic::service::Interceptor for TokenInterceptor {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            request.metadata_mut().insert("token", token.clone());
        }
        Ok(request)
    }
}

/// A handle on etcd (one channel balanced over the endpoints; clones share it).
#[derive(Clone)]
pub struct Client {
    kv: KvClient<Service>,
    lease: LeaseClient<Service>,
    lock: LockClient<Service>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

/// An endpoint as tonic wants it: `http://` and `https://` are taken as written; without a
/// scheme it is `https://` when TLS options are given, else `http://`.
fn endpoint(url: &str, options: &ConnectOptions) -> Result<Endpoint, Error> {
    let invalid = |message: String| Error::InvalidEndpoint { endpoint: url.to_string(), message };
    let (uri, tls) = if url.starts_with("http://") {
        if options.tls.is_some() {
            return Err(invalid("plain http:// but TLS options are given".into()));
        }
        (url.to_string(), None)
    } else if url.starts_with("https://") {
        (url.to_string(), Some(options.tls.clone().unwrap_or_default()))
    } else {
        match &options.tls {
            Some(t) => (format!("https://{url}"), Some(t.clone())),
            None => (format!("http://{url}"), None),
        }
    };
    let mut e = Endpoint::from_shared(uri).map_err(|e| invalid(e.to_string()))?;
    if let Some(t) = tls {
        e = e.tls_config(t.config()).map_err(|source| Error::Tls { endpoint: url.to_string(), source })?;
    }
    if let Some((interval, timeout)) = options.keep_alive {
        e = e.keep_alive_while_idle(true).http2_keep_alive_interval(interval).keep_alive_timeout(timeout);
    }
    if let Some(t) = options.connect_timeout {
        e = e.connect_timeout(t);
    }
    Ok(e)
}

impl Client {
    /// Connect to `endpoints` (`host:port`, `http://…` or `https://…`). The channel connects
    /// lazily: without credentials nothing is sent until the first call; with them, this
    /// authenticates once and the token goes with every call after.
    pub async fn connect<S: AsRef<str>>(endpoints: &[S], options: &ConnectOptions) -> Result<Client, Error> {
        let list = endpoints.iter().map(|e| endpoint(e.as_ref(), options)).collect::<Result<Vec<_>, _>>()?;
        if list.is_empty() {
            return Err(Error::NoEndpoints);
        }
        let channel = Channel::balance_list(list.into_iter());
        let token = match &options.user {
            Some((name, password)) => {
                let request = pb::AuthenticateRequest { name: name.clone(), password: password.clone() };
                let token = AuthClient::new(channel.clone()).authenticate(request).await?.into_inner().token;
                Some(AsciiMetadataValue::try_from(token).map_err(|_| Error::InvalidToken)?)
            }
            None => None,
        };
        let service = InterceptedService::new(channel, TokenInterceptor(token));
        Ok(Client { kv: KvClient::new(service.clone()), lease: LeaseClient::new(service.clone()), lock: LockClient::new(service) })
    }

    /// Read a key, a prefix or a range.
    pub async fn range(&self, keys: Keys, options: RangeOptions) -> Result<RangeResult, Error> {
        Ok(self.kv.clone().range(options.request(keys)).await?.into_inner().into())
    }

    /// Read one key.
    pub async fn get(&self, key: impl Into<Vec<u8>>) -> Result<Option<KeyValue>, Error> {
        Ok(self.range(Keys::key(key), RangeOptions::default()).await?.kvs.into_iter().next())
    }

    pub async fn put(&self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Result<(), Error> {
        self.put_with_lease(key, value, 0).await
    }

    /// Put a key attached to a lease (0: none): it is deleted when the lease goes.
    pub async fn put_with_lease(&self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>, lease: i64) -> Result<(), Error> {
        let request = pb::PutRequest { key: key.into(), value: value.into(), lease, ..Default::default() };
        self.kv.clone().put(request).await?;
        Ok(())
    }

    /// Delete a key, a prefix or a range; the number of keys deleted.
    pub async fn delete(&self, keys: Keys) -> Result<i64, Error> {
        let (key, range_end) = keys.bounds();
        let request = pb::DeleteRangeRequest { key, range_end, prev_kv: false };
        Ok(self.kv.clone().delete_range(request).await?.into_inner().deleted)
    }

    pub async fn txn(&self, txn: Txn) -> Result<TxnResponse, Error> {
        Ok(self.kv.clone().txn(txn.request()).await?.into_inner().into())
    }

    /// A new lease of `ttl_secs` seconds; its id.
    pub async fn lease_grant(&self, ttl_secs: i64) -> Result<i64, Error> {
        let r = self.lease.clone().lease_grant(pb::LeaseGrantRequest { ttl: ttl_secs, id: 0 }).await?.into_inner();
        if !r.error.is_empty() {
            return Err(Error::LeaseGrant(r.error));
        }
        Ok(r.id)
    }

    /// Revoke a lease: the keys attached to it are deleted (etcd says NotFound for a lease that
    /// is already gone).
    pub async fn lease_revoke(&self, id: i64) -> Result<(), Error> {
        self.lease.clone().lease_revoke(pb::LeaseRevokeRequest { id }).await?;
        Ok(())
    }

    /// The seconds a lease has left; -1 when it expired or never existed.
    pub async fn lease_time_to_live(&self, id: i64) -> Result<i64, Error> {
        Ok(self.lease.clone().lease_time_to_live(pb::LeaseTimeToLiveRequest { id, keys: false }).await?.into_inner().ttl)
    }

    /// The ids of every lease etcd holds.
    pub async fn leases(&self) -> Result<Vec<i64>, Error> {
        Ok(self.lease.clone().lease_leases(pb::LeaseLeasesRequest {}).await?.into_inner().leases.into_iter().map(|l| l.id).collect())
    }

    /// Open a keep-alive stream for a lease and refresh it once (an error if it is gone).
    pub async fn lease_keep_alive(&self, id: i64) -> Result<LeaseKeeper, Error> {
        LeaseKeeper::open(self.lease.clone(), id).await
    }

    /// Wait for etcd's lock `name` on behalf of `lease`; the key that exists exactly as long as
    /// the lock is held (it goes with the lease).
    pub async fn lock(&self, name: impl Into<Vec<u8>>, lease: i64) -> Result<Vec<u8>, Error> {
        let request = v3lockpb::LockRequest { name: name.into(), lease };
        Ok(self.lock.clone().lock(request).await?.into_inner().key)
    }

    /// Release a lock by the key [`Client::lock`] returned.
    pub async fn unlock(&self, key: impl Into<Vec<u8>>) -> Result<(), Error> {
        self.lock.clone().unlock(v3lockpb::UnlockRequest { key: key.into() }).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TlsOptions;

    #[test]
    fn endpoints_get_their_scheme_from_the_tls_options() {
        let plain = ConnectOptions::new();
        assert_eq!(endpoint("127.0.0.1:2379", &plain).unwrap().uri().to_string(), "http://127.0.0.1:2379/");
        assert_eq!(endpoint("http://a:1", &plain).unwrap().uri().scheme_str(), Some("http"));
        let tls = ConnectOptions::new().with_tls(TlsOptions::new());
        assert_eq!(endpoint("a:2379", &tls).unwrap().uri().scheme_str(), Some("https"));
        assert!(matches!(endpoint("http://a:2379", &tls), Err(Error::InvalidEndpoint { .. })));
        assert!(matches!(endpoint("a b:1", &plain), Err(Error::InvalidEndpoint { .. })));
    }
}
