//! OpenAFS's cmdebug against our client's callback service (Rx service 1 on the
//! client's port), run inside the test cell's namespace so that it makes no DNS
//! lookups and calls us the way a debugging administrator would.

// The fault lock is held for the whole test on purpose, across its awaits: it keeps
// cell-breaking tests apart from this one.
#![allow(clippy::await_holding_lock)]

mod common;

use common::*;

/// The host side of the cell's veth pair, where our client is reachable from
/// inside the namespace.
fn client_addr() -> String {
    let env_path = String::from_utf8(cell_sh(&["env"]).stdout).unwrap();
    let text = std::fs::read_to_string(env_path.trim()).expect("read the cell's env file");
    text.lines()
        .find_map(|l| l.strip_prefix("AFS_CLIENT_ADDR="))
        .map(|v| v.trim().trim_matches('"').to_string())
        .expect("AFS_CLIENT_ADDR in the cell's env file")
}

/// Runs `cmdebug ADDR -port PORT FLAGS...` inside the cell's namespace; returns
/// its standard output after checking it exited 0.
async fn cmdebug(addr: &str, port: u16, flags: &[&str]) -> String {
    let mut cmd = cell_command();
    cmd.args(["exec", "cmdebug", addr, "-port", &port.to_string()])
        .args(flags);
    let what = format!("{cmd:?}");
    // cmdebug's calls are answered by this process's runtime: wait off it.
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run cmdebug"))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // cmdebug exits 0 even when a call fails; it says so on stdout.
    assert!(
        !stdout.contains("cmdebug:"),
        "{what} reported an error:\n{stdout}"
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cmdebug_lists_what_we_read() {
    let _g = shared();
    let c = cell();
    let client = client().await;
    let path = unique_path("cmdebug");
    let data = b"seen by cmdebug\n";
    write_all(&client, &path, data).await.unwrap();
    assert_eq!(read_all(&client, &path).await.unwrap(), data);
    let node = client.resolve(&path).await.unwrap();
    let port = client.endpoint().local_addr().port();
    let addr = client_addr();

    // -long: every cache entry, ours among them with its cell, length and the
    // fileserver's promise.
    let long = cmdebug(&addr, port, &["-long"]).await;
    println!("cmdebug -long:\n{long}");
    let header = format!(".{} [{}]", node.fid, c.name);
    let at = long
        .find(&header)
        .unwrap_or_else(|| panic!("{} is not listed:\n{long}", node.fid));
    let entry = &long[at..];
    let entry = &entry[..entry[1..]
        .find("** Cache entry")
        .map_or(entry.len(), |n| n + 1)];
    assert!(entry.contains(&format!("{} bytes", data.len())), "{entry}");
    assert!(entry.contains("stat'd"), "the promise holds:\n{entry}");
    assert!(!entry.contains("callback 00000000"), "{entry}");

    // By default cmdebug shows only locked locks and entries: we hold none.
    let quiet = cmdebug(&addr, port, &[]).await;
    assert_eq!(quiet.trim(), "", "nothing is locked");

    // -callbacks: only entries with a promise; ours has one.
    let callbacks = cmdebug(&addr, port, &["-callbacks"]).await;
    assert!(callbacks.contains(&header), "{callbacks}");

    // -cache and -cellservdb are answered too.
    let cache = cmdebug(&addr, port, &["-cache"]).await;
    println!("cmdebug -cache:\n{cache}");
    assert!(cache.contains("Cache type:    memory"), "{cache}");
    let cells = cmdebug(&addr, port, &["-cellservdb"]).await;
    println!("cmdebug -cellservdb:\n{cells}");
    assert!(cells.contains(&format!(">{}", c.name)), "{cells}");
    assert!(cells.contains(&c.server), "{cells}");

    let stats = client.callback_stats();
    assert!(stats.debug_calls.load(std::sync::atomic::Ordering::Relaxed) > 0);
    client.remove(&path).await.unwrap();
}
