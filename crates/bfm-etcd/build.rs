//! Compiles etcd's `.proto` files (trimmed to what bfm calls, see `proto/README.md`) without a
//! system `protoc`: protox parses them into a file descriptor set and tonic-prost-build
//! generates the messages and the clients from it.

use std::path::PathBuf;

const PROTOS: [&str; 3] =
    ["etcd/api/mvccpb/kv.proto", "etcd/api/etcdserverpb/rpc.proto", "etcd/server/etcdserver/api/v3lock/v3lockpb/v3lock.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    println!("cargo:rerun-if-changed={}", proto_dir.display());
    let files: Vec<PathBuf> = PROTOS.iter().map(|p| proto_dir.join(p)).collect();
    let fds = protox::compile(&files, [&proto_dir])?;
    tonic_prost_build::configure().build_server(false).build_client(true).compile_fds(fds)?;
    Ok(())
}
