//! Compiles RocketMQ's published protocol files (`proto/`, see its README) into the
//! message types and the tonic service. `protox` parses them, so no `protoc` is
//! needed on the build machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/apache/rocketmq/v2/service.proto", "proto/apache/rocketmq/v2/admin.proto"];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    println!("cargo:rerun-if-changed=proto/apache/rocketmq/v2/definition.proto");
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure().build_server(true).build_client(true).compile_fds(descriptors)?;
    Ok(())
}
