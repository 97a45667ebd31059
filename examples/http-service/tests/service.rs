//! http-service against the real test cell (testcell/cell.sh): its own routes answer,
//! `/pages/NAME` renders the AFS file through the guest, and after OpenAFS's afsio (a
//! third party) changes the file, the next request renders the new contents.
//!
//! The cell is reached as host/tests/common does it: through `testcell/cell.sh`, run
//! with `sudo -n` unless we are root (testcell/test.sh runs the tests as an ordinary
//! user). That harness is not shared here because it starts the `afs-wasm` binary,
//! which only host's own tests can name.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use afs::client::{Client, ClientConfig};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `testcell/cell.sh ARGS`, as root; its stdout.
fn cell_sh(args: &[&str]) -> Vec<u8> {
    let script = repo().join("testcell/cell.sh");
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let root = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0");
    let mut cmd = if root {
        Command::new(&script)
    } else {
        let mut sudo = Command::new("sudo");
        sudo.arg("-n").arg("--").arg(&script);
        sudo
    };
    let out = cmd.args(args).output().expect("run testcell/cell.sh");
    assert!(
        out.status.success(),
        "cell.sh {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The variables of the running cell's env file (AFS_CELLSERVDB, AFS_TEST_DIR...).
fn cell_env() -> HashMap<String, String> {
    let path = String::from_utf8(cell_sh(&["env"])).unwrap();
    std::fs::read_to_string(path.trim())
        .expect("read the cell's env file (is the cell up? testcell/cell.sh up)")
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().into(), v.trim().trim_matches('"').into()))
        .collect()
}

/// A fresh directory in the test volume with `template.html` and `data/NAME`, written
/// with our own AFS client.
fn make_site(env: &HashMap<String, String>, template: &str, name: &str, data: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let dir = format!(
        "{}/http-service-{}-{nanos:08x}",
        env["AFS_TEST_DIR"],
        std::process::id()
    );
    let config = ClientConfig {
        cellservdb: Some(env["AFS_CELLSERVDB"].clone().into()),
        thiscell: Some(env["AFS_THISCELL"].clone().into()),
        ..ClientConfig::default()
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = Client::new(config).await.expect("start the AFS client");
        client.mkdir(&dir).await.unwrap();
        client.mkdir(&format!("{dir}/data")).await.unwrap();
        put(&client, &format!("{dir}/template.html"), template).await;
        put(&client, &format!("{dir}/data/{name}"), data).await;
    });
    dir
}

/// Writes `text` as the whole AFS file at `path`, with our own client.
async fn put(client: &Client, path: &str, text: &str) {
    let data = std::io::Cursor::new(text.as_bytes().to_vec());
    let len = text.len() as u64;
    client.write(path, data, len, |_| {}).await.unwrap();
}

/// Writes `data` over the AFS file at `path` with OpenAFS's afsio (a third party). The
/// stock afsio writes in place and never shortens a file: keep the length.
fn afsio_write(path: &str, data: &str) {
    let local = std::env::temp_dir().join(format!("http-service-{}", std::process::id()));
    std::fs::write(&local, data).unwrap();
    cell_sh(&["afsio-put", local.to_str().unwrap(), path, "-force"]);
    let _ = std::fs::remove_file(local);
}

/// The running service, killed if a test fails before it stops it.
struct Service {
    child: Child,
    addr: SocketAddr,
}

impl Service {
    fn start(env: &HashMap<String, String>, dir: &str) -> Service {
        let guest = repo().join("target/wasm32-wasip2/release/afs-http.wasm");
        assert!(
            guest.exists(),
            "{} is missing: run examples/build-guests.sh first",
            guest.display()
        );
        let mut child = Command::new(env!("CARGO_BIN_EXE_http-service"))
            .args(["--addr", "127.0.0.1:0", "--cell-dir", dir])
            .arg(guest)
            .env("AFS_CELLSERVDB", &env["AFS_CELLSERVDB"])
            .env("AFS_THISCELL", &env["AFS_THISCELL"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start http-service");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let addr = first
            .trim()
            .strip_prefix("listening on http://")
            .and_then(|a| a.strip_suffix('/'))
            .unwrap_or_else(|| panic!("http-service did not say where it listens: {first:?}"))
            .parse()
            .unwrap();
        Service { child, addr }
    }

    /// `GET path` (HTTP/1.0: the body ends with the connection): status and body.
    fn get(&self, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect(self.addr).expect("connect to http-service");
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).expect("read the response");
        let (head, body) = raw.split_once("\r\n\r\n").expect("a response head");
        let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok());
        (status.expect("a status line"), body.to_string())
    }

    /// Stops it as an operator would (SIGTERM); whether it exited cleanly.
    fn stop(mut self) -> bool {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        sent.success() && self.child.wait().unwrap().success()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn serves_its_own_routes_and_fresh_pages_through_the_guest() {
    let env = cell_env();
    let dir = make_site(
        &env,
        "<h1>{{title}}</h1><p>{{content}}</p>\n",
        "fruit.txt",
        "apples\n",
    );
    let service = Service::start(&env, &dir);

    assert_eq!(service.get("/healthz"), (200, "ok\n".to_string()));
    assert_eq!(service.get("/nowhere").0, 404);

    let page = "<h1>fruit.txt</h1><p>apples\n</p>\n";
    assert_eq!(service.get("/pages/fruit.txt"), (200, page.to_string()));
    assert_eq!(service.get("/pages/missing.txt").0, 404);

    // afsio's store returns once the fileserver broke our callback: the next request
    // must render the new contents.
    afsio_write(&format!("{dir}/data/fruit.txt"), "pears!\n");
    let page = "<h1>fruit.txt</h1><p>pears!\n</p>\n";
    assert_eq!(service.get("/pages/fruit.txt"), (200, page.to_string()));

    let (status, stats) = service.get("/stats");
    assert_eq!(status, 200);
    assert!(stats.contains("guest_requests 3\n"), "{stats}");
    let counter = |name: &str| -> u64 {
        let line = stats.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    assert!(
        counter("page_faults") > 0,
        "the template is mapped: {stats}"
    );
    assert!(counter("bytes_fetched") > 0, "{stats}");

    assert!(service.stop(), "SIGTERM stops it cleanly");
}
