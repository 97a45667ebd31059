//! Measures Rx streaming throughput between two endpoints on loopback.
//!
//! `cargo run --release -p rx --example loopback_throughput [MiB]`

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rx::{Endpoint, EndpointConfig, IncomingCall, Response, Service};

/// Replies with as many bytes as the 8-byte request asks for.
struct Source;

impl Service for Source {
    fn serve(
        &self,
        call: IncomingCall,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>> {
        Box::pin(async move {
            let n = u64::from_be_bytes(call.request[..8].try_into().unwrap());
            Response::reply(vec![7u8; n as usize])
        })
    }
}

#[tokio::main]
async fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(64);
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = Endpoint::bind(any, server_config()).await.unwrap();
    server.register_service(1, Arc::new(Source));
    let client = Endpoint::bind(any, EndpointConfig::default())
        .await
        .unwrap();
    let len = (mib as u64) << 20;
    let start = Instant::now();
    let reply = client
        .make_call(server.local_addr(), 1, &len.to_be_bytes())
        .await
        .unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(reply.len() as u64, len);
    println!(
        "{mib} MiB in {secs:.3}s: {:.1} MB/s",
        len as f64 / secs / 1e6
    );
    println!("client stats: {:?}", client.stats());
    println!("server stats: {:?}", server.stats());
}

/// The echo server takes requests of any size (a cache manager's default limit
/// is for callback requests).
fn server_config() -> EndpointConfig {
    let mut cfg = EndpointConfig::default();
    cfg.limits.max_request = 64 << 20;
    cfg
}
