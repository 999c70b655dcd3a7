//! Compiles proto/site.proto (the tower's API) and proto/peer.proto (node to node) with a
//! pure-Rust protobuf compiler: no protoc needed. Servers are generated only with the
//! `server` feature.

fn main() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../proto");
    let files = [format!("{dir}/site.proto"), format!("{dir}/peer.proto")];
    println!("cargo:rerun-if-changed={dir}/entry.proto");
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(&files, [dir]).expect("proto/*.proto compile");
    tonic_prost_build::configure()
        .build_server(std::env::var_os("CARGO_FEATURE_SERVER").is_some())
        // Blob chunks, from the tower and between nodes, are passed on without a copy.
        .bytes(".peer.v1.BlobChunk.data")
        .bytes(".site.v1.PutBlobRequest.data")
        // The log's messages, imported by peer.proto, are site-entry's.
        .extern_path(".entry.v1", "::site_entry::pb")
        .compile_fds(fds)
        .expect("generating gRPC code for proto/*.proto");
}
