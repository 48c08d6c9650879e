//! Keeping a lease alive over etcd's bidirectional `LeaseKeepAlive` stream.

use crate::Error;
use crate::client::Service;
use crate::pb::etcdserverpb::{LeaseKeepAliveRequest, LeaseKeepAliveResponse, lease_client::LeaseClient};
use futures::SinkExt;
use futures::channel::mpsc;

/// An open keep-alive stream of one lease; dropping it closes the stream (the lease then runs
/// out its TTL).
pub struct LeaseKeeper {
    id: i64,
    requests: mpsc::Sender<LeaseKeepAliveRequest>,
    responses: tonic::Streaming<LeaseKeepAliveResponse>,
}

impl LeaseKeeper {
    pub(crate) async fn open(mut client: LeaseClient<Service>, id: i64) -> Result<LeaseKeeper, Error> {
        let (mut requests, receiver) = mpsc::channel(4);
        // The first request goes before the call: etcd answers the stream's headers with it.
        requests.send(LeaseKeepAliveRequest { id }).await.map_err(|_| Error::KeepAliveClosed(id))?;
        let responses = client.lease_keep_alive(receiver).await?.into_inner();
        let mut keeper = LeaseKeeper { id, requests, responses };
        keeper.answer().await?;
        Ok(keeper)
    }

    pub fn id(&self) -> i64 {
        self.id
    }

    /// Refresh the lease; the TTL it has again, in seconds.
    pub async fn keep_alive(&mut self) -> Result<i64, Error> {
        self.requests.send(LeaseKeepAliveRequest { id: self.id }).await.map_err(|_| Error::KeepAliveClosed(self.id))?;
        self.answer().await
    }

    async fn answer(&mut self) -> Result<i64, Error> {
        match self.responses.message().await? {
            Some(r) if r.ttl > 0 => Ok(r.ttl),
            Some(_) => Err(Error::LeaseNotFound(self.id)),
            None => Err(Error::KeepAliveClosed(self.id)),
        }
    }
}
