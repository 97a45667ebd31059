//! Two endpoints on loopback: calls, incoming services and large streams.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rx::{Endpoint, EndpointConfig, IncomingCall, Response, RxError, Service};

/// Replies with the request reversed, or aborts with the code in a 4-byte request.
struct Echo;

impl Service for Echo {
    fn serve(
        &self,
        call: IncomingCall,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>> {
        Box::pin(async move {
            if call.request.len() == 4 {
                let code = i32::from_be_bytes(call.request[..4].try_into().unwrap());
                return Response::abort(code);
            }
            let mut v = call.request.to_vec();
            v.reverse();
            Response::reply(v)
        })
    }
}

async fn pair() -> (Endpoint, Endpoint, SocketAddr) {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = Endpoint::bind(any, server_config()).await.unwrap();
    server.register_service(7, Arc::new(Echo));
    let client = Endpoint::bind(any, EndpointConfig::default())
        .await
        .unwrap();
    let addr = server.local_addr();
    (server, client, addr)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn echo_calls_of_many_sizes() {
    let (_server, client, addr) = pair().await;
    for len in [0usize, 1, 5, 1411, 1412, 1413, 65536, 1 << 20] {
        let req = pattern(len);
        let reply = client
            .make_call(addr, 7, &req)
            .await
            .unwrap_or_else(|e| panic!("len {len}: {e}"));
        let mut expect = req.clone();
        expect.reverse();
        assert_eq!(reply.len(), expect.len(), "len {len}");
        assert!(reply == expect, "len {len}");
    }
}

#[tokio::test]
async fn abort_code_reaches_caller() {
    let (_server, client, addr) = pair().await;
    let err = client
        .make_call(addr, 7, &13i32.to_be_bytes())
        .await
        .unwrap_err();
    assert_eq!(err.abort_code(), Some(13));
    // The connection is still usable afterwards.
    assert_eq!(client.make_call(addr, 7, b"ab").await.unwrap(), b"ba");
}

#[tokio::test]
async fn unknown_service_is_rejected() {
    let (_server, client, addr) = pair().await;
    let err = client.make_call(addr, 99, b"hello").await.unwrap_err();
    assert_eq!(
        err.abort_code(),
        Some(rx::error::codes::RX_INVALID_OPERATION)
    );
}

#[tokio::test]
async fn many_concurrent_calls() {
    let (_server, client, addr) = pair().await;
    let mut tasks = Vec::new();
    for i in 0..40usize {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let req = pattern(1000 + i * 3000);
            let reply = client.make_call(addr, 7, &req).await.unwrap();
            assert_eq!(reply.len(), req.len());
            assert_eq!(reply.first(), req.last());
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn silent_server_gives_dead_error_within_dead_time() {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    // A socket that never answers.
    let silent = std::net::UdpSocket::bind(any).unwrap();
    let mut cfg = EndpointConfig::default();
    cfg.call.dead_time = Duration::from_secs(2);
    let client = Endpoint::bind(any, cfg).await.unwrap();
    let start = Instant::now();
    let err = client
        .make_call(silent.local_addr().unwrap(), 1, b"anyone?")
        .await
        .unwrap_err();
    let took = start.elapsed();
    assert!(matches!(err, RxError::Dead { .. }), "{err:?}");
    assert!(err.to_string().contains("server unreachable"), "{err}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

#[tokio::test]
async fn garbage_datagrams_are_ignored() {
    let (server, client, addr) = pair().await;
    let junk = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut x: u32 = 7;
    for i in 0..2000usize {
        let mut buf = vec![0u8; i % 200];
        for b in &mut buf {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        if buf.len() > 21 {
            buf[20] = 1 + (i % 2) as u8;
        }
        junk.send_to(&buf, addr).unwrap();
    }
    assert_eq!(client.make_call(addr, 7, b"xyz").await.unwrap(), b"zyx");
    assert!(server.counters().bad_packets > 0);
}

/// The echo server takes requests of any size (a cache manager's default limit
/// is for callback requests).
fn server_config() -> EndpointConfig {
    let mut cfg = EndpointConfig::default();
    cfg.limits.max_request = 64 << 20;
    cfg
}

/// A reply is the server's to size: one longer than the caller holds whole is
/// refused with a clear error, and the call is aborted.
#[tokio::test]
async fn a_reply_longer_than_the_limit_is_refused() {
    let (_server, client, addr) = pair().await;
    let req = pattern(rx::MAX_WHOLE_REPLY + 1);
    let err = client.make_call(addr, 7, &req).await.unwrap_err();
    assert!(matches!(err, RxError::ReplyTooLong { .. }), "{err:?}");
    assert!(err.to_string().contains("longer than"), "{err}");
    let mut call = client.call(addr, 7);
    call.write(b"0123456789").await.unwrap();
    call.finish_sending().await.unwrap();
    assert!(call.read_to_end(9).await.is_err());
    // The endpoint goes on serving.
    assert_eq!(client.make_call(addr, 7, b"abc").await.unwrap(), b"cba");
}
