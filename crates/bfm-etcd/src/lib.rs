//! A thin etcd v3 client over tonic: exactly what bfm's etcd target uses — key ranges, puts,
//! deletes, transactions, leases (grant, keep-alive, revoke) and etcd's lock service.
//!
//! The gRPC code is generated at build time from etcd's own `.proto` files (trimmed, in
//! `proto/`) by protox and tonic-prost-build, so building needs no `protoc`.
//!
//! Every method takes `&self`: a [`Client`] is a handle on one balanced channel and clones share
//! it.

mod client;
mod error;
mod lease;
mod options;
mod txn;

pub use client::Client;
pub use error::Error;
pub use lease::LeaseKeeper;
pub use options::{ConnectOptions, TlsOptions};
pub use pb::mvccpb::KeyValue;
/// The gRPC status code of an [`Error::Rpc`].
pub use tonic::Code;
pub use txn::{Compare, CompareOp, Keys, RangeOptions, RangeResult, Txn, TxnOp, TxnOpResponse, TxnResponse, prefix_end};

/// The generated messages and clients (packages `mvccpb`, `etcdserverpb`, `v3lockpb`; they
/// refer to each other as siblings).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod pb {
    pub mod mvccpb {
        tonic::include_proto!("mvccpb");
    }
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }
    pub mod v3lockpb {
        tonic::include_proto!("v3lockpb");
    }
}
