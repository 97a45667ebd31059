//! Coherence under adversity, simulated: each test scripts the moment that used
//! to lose a break, or runs many seeds of a lossy network and checks that no
//! read is stale once the server's break has been acknowledged.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use afs::cache::manager::CacheManager;
use afs::cache::validity::Check;
use afs::client::{Client, Node};
use afs::error::ErrorKind;
use afs::Fid;
use afs_sim::fileserver::CALL_DEAD;
use afs_sim::{run, Faults, Sim, CELL};
use rx::{Endpoint, EndpointConfig};
use tokio::time::{sleep, Instant};

async fn node(client: &Client, fid: Fid) -> Node {
    client.fetch_status(CELL, fid).await.expect("FetchStatus")
}

async fn read(cache: &CacheManager, node: &Node) -> Vec<u8> {
    cache
        .read_at(node, 0, 1 << 20)
        .await
        .expect("a cached read")
        .1
}

/// Defect 1 of issue 9: the client holds "one"; storing "two" breaks its
/// promise; it asks again, and `make_late` delays that answer (for "two"); "three"
/// is stored, breaking the new promise, while the answer is on its way. The late
/// answer must leave no promise behind (nothing would ever break it again), and
/// the next read must show "three".
async fn overtaken_reply(seed: u64, make_late: impl FnOnce(&Sim)) {
    let sim = Sim::new(seed, Faults::lan());
    let fid = sim.fs.create(2, b"one");
    let client = sim.client(10, None);
    let cache = CacheManager::new(client.clone(), Default::default());
    let n = node(&client, fid).await;
    assert_eq!(read(&cache, &n).await, b"one");
    sim.fs.write(fid, b"two").await;
    make_late(&sim);
    let asking = tokio::spawn({
        let client = client.clone();
        async move { node(&client, fid).await }
    });
    sleep(Duration::from_millis(20)).await;
    sim.fs.write(fid, b"three").await;
    let late = asking.await.unwrap();
    assert_eq!(late.status.data_version(), 2, "the answer was for 'two'");
    assert_ne!(
        client.check(fid),
        Check::Valid,
        "an overtaken reply promises nothing"
    );
    sim.fs.set_reply_delay(Duration::ZERO);
    sim.net.clear_drop_rules();
    assert_eq!(read(&cache, &late).await, b"three");
    assert_eq!(client.check(fid), Check::Valid);
}

/// The server answers late (it was slow).
#[test]
fn a_break_that_overtakes_a_late_reply_leaves_no_promise() {
    run(overtaken_reply(1, |sim| {
        sim.fs.set_reply_delay(Duration::from_millis(300))
    }));
}

/// The network makes it late: the server's reply packets are lost, the break
/// (a call of the server's own) gets through, the reply is retransmitted.
#[test]
fn a_break_that_overtakes_a_retransmitted_reply_is_not_lost() {
    run(overtaken_reply(2, |sim| {
        let (fs, mut dropped) = (sim.fs.addr(), 0);
        sim.net.drop_when(move |d| {
            let reply = d.from == fs
                && d.header().is_some_and(|h| {
                    h.packet_type == rx::packet::PacketType::Data && !h.is_client_initiated()
                });
            let drop = reply && dropped < 2;
            dropped += drop as u32;
            drop
        });
    }));
}

/// Many seeds of a lossy, duplicating, reordering network, a reader reading
/// at random moments and a third party writing: once the server's break for a
/// data version has been acknowledged, no read returns anything older; and when
/// the writes stop, the reader ends on the server's bytes.
/// `SIM_SEEDS` sets how many (default 1000); `SIM_SEED` runs just one, to replay.
#[test]
fn no_stale_read_once_a_break_is_acknowledged_over_many_seeds() {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let seeds = match env("SIM_SEED") {
        Some(one) => one..one + 1,
        None => 0..env("SIM_SEEDS").unwrap_or(1000),
    };
    for seed in seeds {
        run(lossy_round(seed));
    }
}

async fn lossy_round(seed: u64) {
    use rand::{Rng, SeedableRng};
    let sim = Sim::new(seed, Faults::lossy(0.2));
    let fid = sim.fs.create(2, &[0u8; 100]);
    let client = sim.client(10, None);
    let cache = Arc::new(CacheManager::new(client.clone(), Default::default()));
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed);
    let first = retry(|| client.fetch_status(CELL, fid)).await;
    // Writer: 10 writes at random moments; after each, the version whose break
    // has been acknowledged (or that nobody held a promise for).
    let acked = Arc::new(std::sync::atomic::AtomicU64::new(1));
    let writer = {
        let (fs, acked) = (sim.fs.clone(), acked.clone());
        let gaps: Vec<u64> = (0..10).map(|_| rng.random_range(1..400)).collect();
        tokio::spawn(async move {
            for (i, gap) in gaps.into_iter().enumerate() {
                sleep(Duration::from_millis(gap)).await;
                let dv = fs.write(fid, &[i as u8 + 1; 100]).await;
                // write() returns once every holder's break was delivered or
                // kept for its next call (which then fails until delivered).
                acked.store(dv, std::sync::atomic::Ordering::SeqCst);
            }
        })
    };
    let mut node = first;
    let mut reads = 0;
    while !writer.is_finished() || reads < 3 {
        sleep(Duration::from_millis(rng.random_range(1..200))).await;
        let floor = acked.load(std::sync::atomic::Ordering::SeqCst);
        match cache.read_at(&node, 0, 100).await {
            Ok((n, data)) => {
                // Version v's bytes are all v - 1.
                let version = u64::from(data[0]) + 1;
                assert!(
                    data.iter().all(|b| *b == data[0]),
                    "seed {seed}: one version's bytes"
                );
                assert!(
                    version >= floor,
                    "seed {seed}: read version {version} after the break of {floor} was acknowledged"
                );
                node = n;
                reads += 1;
            }
            // The server refuses us until it could deliver its breaks.
            Err(e) if is_transient(&e) => {}
            Err(e) => panic!("seed {seed}: {e}"),
        }
    }
    writer.await.unwrap();
    let (want, _) = sim.fs.contents(fid).unwrap();
    let data = retry(|| async { cache.read_at(&node, 0, 100).await.map(|r| r.1) }).await;
    assert_eq!(
        data, want,
        "seed {seed}: the reader ends on the server's bytes"
    );
    let (fs, net) = (sim.fs.counters(), sim.net.stats());
    assert!(
        reads >= 3 && fs.breaks_delivered >= 1 && net.lost > 0,
        "seed {seed}: {reads} reads, {fs:?}, {net:?}"
    );
}

fn is_transient(e: &afs::rpc::Error) -> bool {
    e.kind() == ErrorKind::ServerUnreachable || e.abort_code() == Some(CALL_DEAD)
}

/// Retries what a lossy network (or a server owed a break) refused.
async fn retry<T, F: std::future::Future<Output = afs::rpc::Result<T>>>(
    mut f: impl FnMut() -> F,
) -> T {
    for _ in 0..20 {
        match f().await {
            Ok(v) => return v,
            Err(e) if is_transient(&e) => sleep(Duration::from_secs(1)).await,
            Err(e) => panic!("{e}"),
        }
    }
    panic!("still failing after 20 tries");
}

/// Defect 2: CallBack, InitCallBackState3 and ProbeUuid from an address that
/// is no fileserver of ours are refused and change nothing; the real server's
/// break still counts.
#[test]
fn forged_callbacks_change_nothing() {
    run(async {
        use afs::proto::cb::CbRequest;
        let sim = Sim::new(3, Faults::lan());
        let fid = sim.fs.create(2, b"one");
        let client = sim.client(10, None);
        node(&client, fid).await;
        assert_eq!(client.check(fid), Check::Valid);
        let forger = Endpoint::with_transport(
            sim.net.bind(addr([10, 9, 0, 66], 7000)),
            EndpointConfig::default(),
        );
        let ours = addr([10, 9, 0, 10], 7001);
        let forged = [
            CbRequest::CallBack {
                fids: vec![fid],
                callbacks: vec![],
            },
            CbRequest::CallBack {
                fids: vec![Fid::new(fid.volume, 0, 0)],
                callbacks: vec![],
            },
            CbRequest::InitCallBackState3 {
                server_uuid: afs::Uuid::from_bytes([0x5a; 16]),
            },
            CbRequest::ProbeUuid {
                client_uuid: afs::Uuid::from_bytes([1; 16]),
            },
        ];
        for req in &forged {
            let err = forger
                .make_call(ours, afs::callback::SERVICE, &req.encode())
                .await
                .unwrap_err();
            assert_eq!(
                err.abort_code(),
                Some(afs::callback::NOT_A_FILESERVER),
                "{req:?}"
            );
        }
        assert_eq!(client.check(fid), Check::Valid);
        // The fileserver's address, another port: still not the fileserver.
        let same_host = Endpoint::with_transport(
            sim.net.bind(SocketAddr::new(sim.fs.addr().ip(), 7777)),
            EndpointConfig::default(),
        );
        let req = forged[0].encode();
        assert!(same_host.make_call(ours, 1, &req).await.is_err());
        assert_eq!(client.check(fid), Check::Valid);
        sim.fs.write(fid, b"two").await;
        assert_ne!(
            client.check(fid),
            Check::Valid,
            "the real server is believed"
        );
    });
}

fn addr(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)
}

/// A fileserver that restarts without its callback state introduces itself
/// with InitCallBackState3 at our next call; an idle client learns it from its
/// prober. Either way, no promise of the old server survives.
#[test]
fn a_restart_without_state_revokes_every_promise() {
    run(async {
        let sim = Sim::new(4, Faults::lan());
        let fid = sim.fs.create(2, b"one");
        let client = sim.client(10, Some(Duration::from_secs(45)));
        node(&client, fid).await;
        assert_eq!(client.check(fid), Check::Valid);
        sim.fs.restart(false);
        // Changed while it did not know us: nobody to break.
        sim.fs.write(fid, b"two").await;
        assert_eq!(client.check(fid), Check::Valid, "nothing told us yet");
        sleep(Duration::from_secs(50)).await;
        assert_ne!(
            client.check(fid),
            Check::Valid,
            "the probe brought the reset"
        );
        assert_eq!(node(&client, fid).await.status.data_version(), 2);
    });
}

/// A restart that keeps its state keeps its promises, and later breaks arrive
/// on the new Rx epoch.
#[test]
fn a_restart_keeping_state_still_delivers_breaks() {
    run(async {
        let sim = Sim::new(5, Faults::lan());
        let fid = sim.fs.create(2, b"one");
        let client = sim.client(10, None);
        node(&client, fid).await;
        sim.fs.restart(true);
        assert_eq!(client.check(fid), Check::Valid);
        sim.fs.write(fid, b"two").await;
        assert_ne!(client.check(fid), Check::Valid);
        assert_eq!(sim.fs.counters().breaks_delivered, 1);
    });
}

/// Defect 3: a flood of half-open calls leaves bounded state, and a real break
/// that follows is still answered at once.
#[test]
fn a_flood_of_half_open_calls_leaves_bounded_state() {
    run(async {
        let sim = Sim::new(6, Faults::lan());
        let fid = sim.fs.create(2, b"one");
        let client = sim.client(10, None);
        node(&client, fid).await;
        let ours = addr([10, 9, 0, 10], 7001);
        let started = Instant::now();
        // 40,000 datagrams in one simulated second, from one host, each a new call
        // that never sends its last packet.
        for i in 0..40_000u32 {
            if i % 400 == 0 {
                sleep(Duration::from_millis(10)).await;
            }
            let from = addr([10, 9, 0, 66], 1024 + (i % 60_000) as u16);
            sim.net.inject(from, ours, half_open_call(i));
        }
        sleep(Duration::from_millis(10)).await;
        let (conns, calls) = client.endpoint().sizes();
        assert!(
            conns <= 20 && calls <= 70,
            "{conns} connections, {calls} calls held"
        );
        assert!(client.endpoint().counters().refused > 39_000);
        let before = Instant::now();
        sim.fs.write(fid, b"two").await;
        assert_ne!(client.check(fid), Check::Valid);
        assert!(
            before.elapsed() < Duration::from_secs(1),
            "the break took {:?}",
            before.elapsed()
        );
        // Within seconds the strangers' state is gone.
        sleep(Duration::from_secs(15)).await;
        let (conns, _) = client.endpoint().sizes();
        assert!(
            conns <= 3,
            "{conns} connections after {:?}",
            started.elapsed()
        );
    });
}

fn half_open_call(i: u32) -> bytes::Bytes {
    use rx::packet::{flags, Header, Packet, PacketType};
    Packet {
        header: Header {
            epoch: 0x8000_0000 | i,
            cid: (i << 2) & 0x3fff_fffc,
            call_number: 1,
            seq: 1,
            serial: 1,
            packet_type: PacketType::Data,
            flags: flags::CLIENT_INITIATED,
            user_status: 0,
            security_index: 0,
            spare: 0,
            service_id: 1,
        },
        payload: bytes::Bytes::from_static(b"x"),
    }
    .to_datagram()
}

/// A forged packet on the server's own callback connection (a sniffed epoch
/// and connection id, the server's address) with a call number far ahead must
/// not make the server's later calls look old.
#[test]
fn a_forged_call_number_does_not_silence_the_server() {
    run(async {
        let sim = Sim::new(7, Faults::lan());
        let fid = sim.fs.create(2, b"one");
        let client = sim.client(10, None);
        let ours = addr([10, 9, 0, 10], 7001);
        let fs = sim.fs.addr();
        let seen = Arc::new(std::sync::Mutex::new(None));
        {
            let seen = seen.clone();
            sim.net.observe(move |d| {
                if d.from == fs && d.to == ours {
                    if let Some(h) = d.header().filter(|h| h.is_client_initiated()) {
                        *seen.lock().unwrap() = Some(h);
                    }
                }
                true
            });
        }
        node(&client, fid).await; // the server's InitCallBackState3 opens its connection
        let h = seen.lock().unwrap().expect("the server called us");
        let mut forged = rx::packet::Packet {
            header: h,
            payload: bytes::Bytes::from_static(&[0, 0, 0, 206]),
        };
        forged.header.call_number += 1_000_000;
        forged.header.packet_type = rx::packet::PacketType::Data;
        forged.header.seq = 1;
        forged.header.flags = rx::packet::flags::CLIENT_INITIATED | rx::packet::flags::LAST_PACKET;
        sim.net.inject(fs, ours, forged.to_datagram());
        sleep(Duration::from_millis(10)).await;
        sim.fs.write(fid, b"two").await;
        assert_eq!(
            sim.fs.counters().breaks_delivered,
            1,
            "the real break got through"
        );
        assert_ne!(client.check(fid), Check::Valid);
    });
}

/// A partitioned server: the call fails as unreachable after the dead time
/// (10 s), not sooner and not never; after the partition heals all is well.
#[test]
fn a_partitioned_server_gives_a_dead_call_then_recovers() {
    run(async {
        let sim = Sim::new(8, Faults::lan());
        let fid = sim.fs.create(2, b"one");
        let client = sim.client(10, None);
        node(&client, fid).await;
        sim.net.partition(sim.fs.addr().ip(), true);
        let t = Instant::now();
        let err = client.fetch_status(CELL, fid).await.unwrap_err();
        let took = t.elapsed();
        assert_eq!(err.kind(), ErrorKind::ServerUnreachable, "{err}");
        assert!(
            took >= Duration::from_secs(10) && took < Duration::from_secs(12),
            "dead after {took:?}"
        );
        sim.net.partition(sim.fs.addr().ip(), false);
        assert_eq!(node(&client, fid).await.status.data_version(), 1);
    });
}

/// Retransmission: a 1 MiB file read through the cache over a network losing
/// 15% of datagrams both ways, duplicating and reordering some, arrives whole.
#[test]
fn a_large_read_survives_loss_duplication_and_reordering() {
    run(async {
        let sim = Sim::new(9, Faults::lossy(0.15));
        let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
        let fid = sim.fs.create(2, &data);
        let client = sim.client(10, None);
        let cache = CacheManager::new(client.clone(), Default::default());
        let n = retry(|| client.fetch_status(CELL, fid)).await;
        let got = retry(|| async { cache.read_at(&n, 0, 1 << 20).await.map(|r| r.1) }).await;
        assert!(got == data, "the bytes arrive intact");
        let net = sim.net.stats();
        assert!(net.lost > 100 && net.duplicated > 10, "{net:?}");
    });
}

/// A file changes between the validation of a read and the fetch of its
/// missing pages: the pages fetched then are of the new version while pages
/// cached before are of the old. The next validation finds the new version
/// and must drop the old pages, not serve them next to the new ones.
#[test]
fn pages_of_two_versions_are_not_served_together() {
    run(async {
        let sim = Sim::new(10, Faults::lan());
        let len = 32usize << 20;
        let fid = sim.fs.create(2, &vec![1u8; len]);
        let client = sim.client(10, None);
        let cache = CacheManager::new(client.clone(), Default::default());
        let n = node(&client, fid).await;
        let (_, head) = cache.read_at(&n, 0, 4096).await.unwrap();
        assert_eq!(head, vec![1u8; 4096]);
        // The next FetchData64 request is lost once: it is retransmitted after
        // the file changed, and fetches the new version's bytes.
        let (fs, mut dropped) = (sim.fs.addr(), false);
        sim.net.drop_when(move |d| {
            let fetch = d.to == fs
                && d.header()
                    .is_some_and(|h| h.packet_type == rx::packet::PacketType::Data)
                && d.bytes.get(28..32) == Some(&afs::proto::fs::FETCH_DATA64.to_be_bytes()[..]);
            let drop = fetch && !dropped;
            dropped |= drop;
            drop
        });
        let tail = tokio::spawn({
            let (cache, n) = (std::sync::Arc::new(cache), n.clone());
            let c = cache.clone();
            async move { (c.read_at(&n, (len - 4096) as u64, 4096).await, cache) }
        });
        sleep(Duration::from_millis(5)).await;
        sim.fs.write(fid, &vec![2u8; len]).await;
        let (tail, cache) = tail.await.unwrap();
        let (_, tail) = tail.unwrap();
        assert!(
            tail.iter().all(|b| *b == 2),
            "the tail was fetched after the change"
        );
        let (n2, head) = cache.read_at(&n, 0, 4096).await.unwrap();
        assert_eq!(n2.status.data_version(), 2);
        assert!(
            head.iter().all(|b| *b == 2),
            "no page of the old version is served (read version {}'s bytes)",
            head[0]
        );
    });
}
