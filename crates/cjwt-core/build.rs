//! Generates the Rust types of the vendored etcd protocol (`proto/etcd`, see
//! `proto/README.md`) into the build's output directory: `protox` compiles the
//! files in pure Rust (no `protoc` needed), `prost-build` writes the types.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/etcd/kv.proto", "proto/etcd/rpc.proto"];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(files, ["proto/etcd"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
