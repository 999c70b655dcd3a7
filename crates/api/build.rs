//! Compiles proto/site.proto with a pure-Rust protobuf compiler: no protoc needed.

fn main() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../proto");
    let file = format!("{dir}/site.proto");
    println!("cargo:rerun-if-changed={file}");
    let fds = protox::compile([&file], [dir]).expect("proto/site.proto compiles");
    tonic_prost_build::configure()
        .compile_fds(fds)
        .expect("generating gRPC code for proto/site.proto");
}
