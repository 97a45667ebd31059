//! Deterministic simulation of the AFS client against a scripted fileserver.
//!
//! Coherence bugs live in timing: a break that overtakes a retransmitted reply,
//! a restart between two calls, a flood while a break is on its way. Against a
//! real cell they show up one run in many. Here the client's own Rx endpoint
//! and AFS client run unchanged on a [`net::Network`] whose losses, duplicates,
//! delays and reorderings come from one seed, against a [`FileServer`] whose
//! every move a test scripts, on tokio's paused clock: a minute of protocol time
//! takes milliseconds, and a failing seed replays.

pub mod fileserver;
pub mod net;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use afs::client::{Client, ClientConfig};
use rx::{Endpoint, EndpointConfig};

pub use fileserver::FileServer;
pub use net::{Faults, Network};

/// The simulated cell's name.
pub const CELL: &str = "sim.example";
/// Where the fileserver and vlserver live.
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);

/// Runs `test` on a single-threaded runtime with a paused clock (time jumps
/// ahead whenever every task waits).
pub fn run<F: std::future::Future>(test: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a tokio runtime")
        .block_on(test)
}

/// A network, a fileserver, and the cell configuration clients read.
pub struct Sim {
    pub net: Network,
    pub fs: FileServer,
    dir: PathBuf,
}

impl Sim {
    /// A cell on a network seeded with `seed`. Call within [`run`].
    pub fn new(seed: u64, faults: Faults) -> Self {
        let net = Network::new(seed, faults);
        let fs = FileServer::start(&net, IpAddr::V4(SERVER_IP));
        let dir = std::env::temp_dir().join(format!(
            "afs-sim-{}-{seed}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        std::fs::write(
            dir.join("CellServDB"),
            format!(">{CELL} #simulated\n{SERVER_IP} #vl\n"),
        )
        .expect("write CellServDB");
        std::fs::write(dir.join("ThisCell"), CELL).expect("write ThisCell");
        Self { net, fs, dir }
    }

    /// A client at `10.9.0.<host>:7001`, its prober off unless `probe` is given.
    pub fn client(&self, host: u8, probe: Option<Duration>) -> Arc<Client> {
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 9, 0, host)), 7001);
        let endpoint = Endpoint::with_transport(self.net.bind(addr), EndpointConfig::default());
        let cfg = ClientConfig {
            cellservdb: Some(self.dir.join("CellServDB")),
            thiscell: Some(self.dir.join("ThisCell")),
            probe_interval: probe,
            ..ClientConfig::default()
        };
        Arc::new(Client::with_endpoint(cfg, endpoint).expect("a client"))
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
