//! Compiles proto/entry.proto with a pure-Rust protobuf compiler: no protoc needed.

fn main() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../proto");
    let file = format!("{dir}/entry.proto");
    println!("cargo:rerun-if-changed={file}");
    let fds = protox::compile([&file], [dir]).expect("proto/entry.proto compiles");
    prost_build::Config::new()
        .compile_fds(fds)
        .expect("generating code for proto/entry.proto");
}
