//! `afs-wasm serve` against the real cell: the example handler (examples/afs-http) serves
//! an AFS directory through a mapped template; afsio changes the template under load; the
//! abuse handler (examples/http-abuse) fails in every way a handler fails.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// A running `afs-wasm serve`, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
    /// Where it serves metrics (`--metrics-addr`), if asked to.
    metrics: Option<SocketAddr>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(wasm: &str, args: &[&str]) -> Server {
        let mut child = afs_wasm()
            .args(["serve", "--addr", "127.0.0.1:0"])
            .args(args)
            .arg(guest(wasm))
            .stderr(Stdio::piped())
            .spawn()
            .expect("start afs-wasm serve");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = Vec::new();
        let addr = loop {
            let line = match lines.next() {
                Some(Ok(l)) => l,
                _ => panic!("afs-wasm serve ended before serving: {seen:#?}"),
            };
            if let Some(rest) = line.strip_prefix("Serving HTTP on http://") {
                break rest.trim_end_matches('/').parse().unwrap();
            }
            seen.push(line);
        };
        let metrics = seen.iter().find_map(|l| {
            let rest = l.strip_prefix("Metrics on http://")?;
            rest.strip_suffix("/metrics")?.parse().ok()
        });
        let stderr = Arc::new(Mutex::new(seen));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Server {
            child,
            addr,
            metrics,
            stderr,
        }
    }

    /// Stops it as an operator would (SIGTERM): whether it stopped gracefully (said so,
    /// and exited 0).
    fn stop(mut self) -> bool {
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let clean = self.child.wait().unwrap().success();
        std::thread::sleep(Duration::from_millis(100)); // the last lines of stderr
        let said = self
            .stderr
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("stopping"));
        clean && said
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response: status, headers (lower-case names), body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` over HTTP/1.0 (the body ends with the connection).
fn get(addr: SocketAddr, path: &str) -> Reply {
    let mut s = TcpStream::connect(addr).expect("connect to the server");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the response");
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

/// A site: `DIR/template.html` and `DIR/data/` with `files`.
fn site(template: &str, files: &[(&str, &str)]) -> String {
    let dir = unique_path("site");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = client().await;
        c.mkdir(&dir).await.unwrap();
        c.mkdir(&format!("{dir}/data")).await.unwrap();
        write_all(&c, &format!("{dir}/template.html"), template.as_bytes())
            .await
            .unwrap();
        for (name, data) in files {
            write_all(&c, &format!("{dir}/data/{name}"), data.as_bytes())
                .await
                .unwrap();
        }
        c.give_up_callbacks().await;
    });
    dir
}

/// A new AFS directory holding the file `f` with `data`: (directory, file).
fn dir_with_file(prefix: &str, data: &[u8]) -> (String, String) {
    let dir = unique_path(prefix);
    let path = format!("{dir}/f");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = client().await;
        c.mkdir(&dir).await.unwrap();
        write_all(&c, &path, data).await.unwrap();
        // A client that goes away holding promises makes the fileserver wait for it at
        // every change of the file.
        c.give_up_callbacks().await;
    });
    (dir, path)
}

fn serve_site(dir: &str) -> Server {
    Server::start(
        "afs-http",
        &[
            "--dir",
            &format!("{dir}/data::/data:ro"),
            "--grant",
            &format!("{dir}:ro"),
            "--env",
            &format!("TEMPLATE={dir}/template.html"),
        ],
    )
}

#[test]
fn requests_return_the_data_of_the_afs_directory() {
    let _g = shared();
    let dir = site(
        "<h1>{{title}}</h1><pre>{{content}}</pre>\n",
        &[("hello.txt", "hello <world>\n"), ("b.txt", "bee\n")],
    );
    let server = serve_site(&dir);
    let r = get(server.addr, "/hello.txt");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body,
        "<h1>hello.txt</h1><pre>hello &lt;world&gt;\n</pre>\n"
    );
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(
        r.header("x-afs-template-version").is_some(),
        "{:?}",
        r.headers
    );
    let r = get(server.addr, "/");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("<pre>b.txt\nhello.txt</pre>"), "{}", r.body);
    assert_eq!(get(server.addr, "/nothing").status, 404);
    assert!(server.stop(), "a graceful stop exits 0");
}

/// SIGHUP is `fs checkvolumes`: the server forgets where volumes are, says how many, and
/// the next request finds them again through the VLDB.
#[test]
fn sighup_forgets_the_volume_locations_and_serving_goes_on() {
    let _g = shared();
    let dir = site("<pre>{{content}}</pre>\n", &[("a.txt", "a\n")]);
    let server = serve_site(&dir);
    assert_eq!(get(server.addr, "/a.txt").status, 200);
    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
    let deadline = std::time::Instant::now() + SHORT;
    let forgot = loop {
        let said = server.stderr.lock().unwrap().iter().find_map(|l| {
            let n = l.strip_prefix("SIGHUP: forgot the locations of ")?;
            n.split(' ').next()?.parse::<usize>().ok()
        });
        if let Some(n) = said {
            break n;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing said about SIGHUP"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(
        forgot >= 2,
        "root.cell and the test volume were known: {forgot}"
    );
    let r = get(server.addr, "/a.txt");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("a\n"), "{}", r.body);
    assert!(server.stop(), "a graceful stop exits 0");
}

/// While eight clients request a page without pause, afsio rewrites the template five
/// times. The fileserver breaks our callback before it answers afsio's store, so every
/// request that starts after afsio returned must render with that change or a later one.
#[test]
fn every_response_after_a_change_shows_it_under_concurrent_load() {
    let _g = shared();
    let template = |i: usize| format!("v{i:03} {{{{content}}}}\n");
    let dir = site(&template(0), &[("page", "x")]);
    let server = serve_site(&dir);
    assert_eq!(get(server.addr, "/page").body, "v000 x\n");
    let changes: Arc<Mutex<Vec<(usize, Instant)>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let addr = server.addr;
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let done = done.clone();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    let start = Instant::now();
                    let r = get(addr, "/page");
                    assert_eq!(r.status, 200, "{}", r.body);
                    let v: usize = r.body[1..4].parse().expect("a version marker");
                    let dv: u64 = r.header("x-afs-template-version").unwrap().parse().unwrap();
                    seen.push((start, v, dv));
                }
                seen
            })
        })
        .collect();
    let path = format!("{dir}/template.html");
    for i in 1..=5 {
        std::thread::sleep(Duration::from_millis(300));
        afsio_write(&path, template(i).as_bytes());
        changes.lock().unwrap().push((i, Instant::now()));
    }
    std::thread::sleep(Duration::from_millis(300));
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen: Vec<_> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    let changes = changes.lock().unwrap();
    let mut after = 0;
    for &(start, v, _) in &seen {
        let due = changes
            .iter()
            .filter(|(_, at)| *at <= start)
            .map(|(i, _)| *i)
            .max()
            .unwrap_or(0);
        assert!(
            v >= due,
            "a response started after change {due} showed v{v:03}"
        );
        after += usize::from(due > 0);
    }
    // One data version per marker: each response carries the version it rendered.
    let mut pairs: Vec<(usize, u64)> = seen.iter().map(|&(_, v, dv)| (v, dv)).collect();
    pairs.sort();
    pairs.dedup();
    for w in pairs.windows(2) {
        assert!(
            (w[0].0 == w[1].0) == (w[0].1 == w[1].1) && w[0].1 <= w[1].1,
            "markers and data versions disagree: {pairs:?}"
        );
    }
    assert!(
        after >= 40,
        "only {after} of {} responses started after a change",
        seen.len()
    );
    let last = get(server.addr, "/page");
    assert_eq!(last.body, "v005 x\n");
    eprintln!(
        "{} responses, {after} after a change, versions {:?}",
        seen.len(),
        pairs
    );
}

#[test]
fn a_handler_that_traps_or_runs_past_a_limit_gets_a_500_naming_the_cause() {
    let _g = shared();
    let server = Server::start("http-abuse", &["-W", "timeout=2s,max-memory-size=64M"]);
    for (path, cause) in [
        ("/trap", "unreachable"),
        ("/spin", "time limit of 2s"),
        ("/grow", "limit of 67108864 bytes"),
        ("/silent", "without setting a response"),
    ] {
        let r = get(server.addr, path);
        assert_eq!(r.status, 500, "{path}: {}", r.body);
        assert!(r.body.contains(cause), "{path}: {}", r.body);
        let ok = get(server.addr, "/ok");
        assert_eq!((ok.status, ok.body.as_str()), (200, "ok\n"), "after {path}");
    }
    assert!(server.stop());
}

/// Under `--on-unreachable trap`, a request whose instance faults on a page no fileserver
/// can give gets a 500 naming the file; once the server is back, requests succeed.
#[test]
fn a_handler_that_faults_on_an_unreachable_server_gets_a_500_naming_the_file() {
    let _g = exclusive();
    let (dir, path) = dir_with_file("unreachable", b"\x42 and more");
    let server = Server::start(
        "http-abuse",
        &["--on-unreachable", "trap", "--grant", &format!("{dir}:ro")],
    );
    // The host learns the file's status (with a promise) but none of its pages.
    let r = get(server.addr, &format!("/stat{path}"));
    assert_eq!((r.status, r.body.as_str()), (200, "10\n"));
    cell_sh(&["fs-stop"]);
    let r = get(server.addr, &format!("/map{path}"));
    cell_sh(&["fs-start"]);
    assert_eq!(r.status, 500, "{}", r.body);
    assert!(
        r.body.contains("unreachable") && r.body.contains(&path),
        "{}",
        r.body
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = get(server.addr, &format!("/map{path}"));
        if r.status == 200 {
            assert_eq!(r.body, "42\n");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not served after the restart: {}",
            r.body
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The value of the sample `name` (with its labels, as rendered) in Prometheus text.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
}

/// A handler holds a mapping while afsio changes the file: the same instance reads the
/// new byte, and `--metrics-addr` shows the break, the zap, the revalidation, the faults
/// and the fileserver calls behind it, with their latencies.
#[test]
fn a_mapping_held_by_a_request_sees_a_change_and_the_metrics_count_it() {
    let _g = shared();
    let (dir, path) = dir_with_file("metrics", b"A is the first byte");
    let server = Server::start(
        "http-abuse",
        &[
            "--grant",
            &format!("{dir}:ro"),
            "--metrics-addr",
            "127.0.0.1:0",
        ],
    );
    let metrics = server.metrics.expect("serve printed its metrics address");
    let addr = server.addr;
    let watcher = {
        let path = path.clone();
        std::thread::spawn(move || get(addr, &format!("/watch{path}")))
    };
    std::thread::sleep(Duration::from_millis(700));
    afsio_write(&path, b"B is the first byte now");
    let r = watcher.join().unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "41 42\n"));

    let m = get(metrics, "/metrics");
    assert_eq!(m.status, 200);
    assert_eq!(
        m.header("content-type"),
        Some("text/plain; version=0.0.4"),
        "{:?}",
        m.headers
    );
    let text = &m.body;
    assert_eq!(
        sample(text, r#"afs_http_requests_total{status="200"}"#),
        1.0
    );
    assert!(sample(text, "afs_callback_breaks_total") >= 1.0, "{text}");
    assert!(sample(text, "afs_zaps_total") >= 1.0, "{text}");
    assert!(sample(text, "afs_revalidations_total") >= 1.0, "{text}");
    assert!(sample(text, "afs_change_seconds_count") >= 1.0, "{text}");
    assert!(
        sample(text, "afs_revalidation_seconds_count") >= 1.0,
        "{text}"
    );
    assert!(
        sample(text, r#"afs_fault_seconds_count{path="slow"}"#) >= 2.0,
        "{text}"
    );
    let faults = sample(text, r#"afs_faults_total{kind="missing"}"#)
        + sample(text, r#"afs_faults_total{kind="minor"}"#);
    assert!(faults >= 2.0, "{text}");
    assert!(
        sample(text, r#"afs_fileserver_calls_total{call="FetchData"}"#) >= 2.0,
        "{text}"
    );
    assert!(
        sample(text, r#"afs_fileserver_bytes_total{direction="fetched"}"#) >= 42.0,
        "{text}"
    );
    assert!(
        text.contains("# TYPE afs_change_seconds histogram"),
        "{text}"
    );
    assert!(
        sample(text, r#"afs_page_store_budget_bytes"#) > 0.0,
        "{text}"
    );
    assert_eq!(get(metrics, "/").status, 404);
    eprintln!("{text}");
    assert!(server.stop());
}
