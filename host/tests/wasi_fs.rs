//! Unmodified WASI programs on AFS: the std::fs suites (Rust on wasip2 and wasip1, C
//! through wasi-libc) run on an AFS directory through `afs-wasm run --dir`, and on a
//! local directory through stock wasmtime-wasi in this test binary; their stdout, exit
//! codes and resulting trees must be identical. The AFS tree is read back by another
//! client, from the fileserver, so what the guest wrote was stored.
//!
//! wasip1 modules run through the preview1 component adapter on both sides (the stock
//! side adapts them with the same encoder; `wasmtime run` would run them natively,
//! which differs from the adapter in a few error numbers, not in what is stored).

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use afs::client::{Client, Node};
use afs::types::FileType;
use common::*;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime_wasi::p2::bindings::Command;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// A guest of the suite, and where examples/build-guests.sh puts it.
fn suite(kind: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target");
    let p = match kind {
        "p2" => root.join("wasm32-wasip2/release/fs-suite.wasm"),
        "p1" => root.join("wasm32-wasip1/release/fs-suite.wasm"),
        "c" => root.join("wasm32-wasi-c/fs-suite-c.wasm"),
        other => panic!("no suite {other}"),
    };
    assert!(
        p.exists(),
        "{} is missing: run examples/build-guests.sh",
        p.display()
    );
    p
}

/// What a run left: exit code and stdout.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    code: i32,
    stdout: String,
}

/// Runs `wasm` with `dir` preopened as `/data` through `afs-wasm run --dir`.
fn run_on_afs(wasm: &Path, dir: &str, ro: bool, args: &[&str]) -> Outcome {
    let spec = format!("{dir}::/data{}", if ro { ":ro" } else { "" });
    let out = afs_wasm()
        .arg("run")
        .arg("--dir")
        .arg(spec)
        .arg(wasm)
        .args(args)
        .output()
        .expect("run afs-wasm");
    eprintln!("afs-wasm stderr:\n{}", String::from_utf8_lossy(&out.stderr));
    Outcome {
        code: out.status.code().expect("exited"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

struct Stock {
    ctx: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Stock {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// Runs `wasm` with the local `dir` preopened as `/data` through stock wasmtime-wasi.
fn run_on_local(wasm: &Path, dir: &Path, ro: bool, args: &[&str]) -> Outcome {
    let engine = wasmtime::Engine::default();
    let bytes = std::fs::read(wasm).unwrap();
    let bytes = afs_wasm_host::runtime::component_bytes(&bytes).unwrap();
    let component = Component::new(&engine, &*bytes).unwrap();
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
    let stdout = MemoryOutputPipe::new(16 << 20);
    let perms = if ro {
        FsPerms::ReadOnly
    } else {
        FsPerms::ReadWrite
    };
    let mut argv = vec![wasm.file_name().unwrap().to_string_lossy().into_owned()];
    argv.extend(args.iter().map(|a| a.to_string()));
    let ctx = WasiCtxBuilder::new()
        .args(&argv)
        .stdout(stdout.clone())
        .inherit_stderr()
        .preopened_dir(dir, "/data", perms)
        .unwrap()
        .build();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let code = rt.block_on(async {
        let mut store = wasmtime::Store::new(
            &engine,
            Stock {
                ctx,
                table: ResourceTable::new(),
            },
        );
        let command = Command::instantiate_async(&mut store, &component, &linker)
            .await
            .unwrap();
        match command.wasi_cli_run().call_run(&mut store).await {
            Ok(Ok(())) => 0,
            Ok(Err(())) => 1,
            Err(e) => e
                .downcast_ref::<wasmtime_wasi::I32Exit>()
                .map(|e| e.0)
                .unwrap_or_else(|| panic!("the guest trapped: {e:?}")),
        }
    });
    Outcome {
        code,
        stdout: String::from_utf8_lossy(&stdout.contents()).into_owned(),
    }
}

/// One line per object beneath `root`, sorted: its path, type and contents (bytes of a
/// file, text of a symlink).
type Tree = Vec<String>;

fn local_tree(root: &Path) -> Tree {
    fn walk(dir: &Path, rel: &str, out: &mut Tree) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let path = format!("{rel}/{name}");
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            if meta.is_symlink() {
                let text = std::fs::read_link(e.path()).unwrap();
                out.push(format!("{path} -> {}", text.display()));
            } else if meta.is_dir() {
                out.push(format!("{path}/"));
                walk(&e.path(), &path, out);
            } else {
                let data = std::fs::read(e.path()).unwrap();
                out.push(format!("{path} {}", describe(&data)));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, "", &mut out);
    out.sort();
    out
}

fn describe(data: &[u8]) -> String {
    let sum = data
        .iter()
        .fold(0u32, |s, b| s.wrapping_mul(31).wrapping_add(u32::from(*b)));
    format!("{} bytes sum {sum:08x}", data.len())
}

/// The same, read from the fileserver by a client of this test's own.
async fn afs_tree(client: &Client, root: &str) -> Tree {
    let mut out = Vec::new();
    let mut pending = vec![(root.to_string(), String::new())];
    while let Some((dir, rel)) = pending.pop() {
        let node = client.resolve(&dir).await.unwrap();
        for e in client.list_node(&node).await.unwrap() {
            let path = format!("{rel}/{}", e.name);
            let full = format!("{dir}/{}", e.name);
            let status = e.status.expect("a status for every entry");
            match status.file_type {
                FileType::Symlink => {
                    let n = Node {
                        status,
                        fid: e.fid,
                        ..node.clone()
                    };
                    out.push(format!("{path} -> {}", client.read_link(&n).await.unwrap()));
                }
                FileType::Directory => {
                    out.push(format!("{path}/"));
                    pending.push((full, path));
                }
                _ => {
                    let data = read_all(client, &full).await.unwrap();
                    out.push(format!("{path} {}", describe(&data)));
                }
            }
        }
    }
    out.sort();
    out
}

/// Makes `rel` (a directory, or `link -> text`) in both trees.
fn setup(afs_dir: &str, local: &Path, entries: &[&str]) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = client().await;
        for e in entries {
            match e.split_once(" -> ") {
                Some((name, text)) => {
                    c.symlink(&format!("{afs_dir}/{name}"), text).await.unwrap();
                    std::os::unix::fs::symlink(text, local.join(name)).unwrap();
                }
                None if e.ends_with('/') => {
                    c.mkdir(&format!("{afs_dir}/{}", e.trim_end_matches('/')))
                        .await
                        .unwrap();
                    std::fs::create_dir(local.join(e)).unwrap();
                }
                None => {
                    let (name, text) = e.split_once('=').expect("name=contents");
                    write_all(&c, &format!("{afs_dir}/{name}"), text.as_bytes())
                        .await
                        .unwrap();
                    std::fs::write(local.join(name), text).unwrap();
                }
            }
        }
    });
}

/// Runs a scenario of a suite guest on a fresh AFS directory and a fresh local one,
/// and checks that the outcomes and the resulting trees are the same.
fn same_on_afs_and_local(kind: &str, scenario: &str, ro: bool, entries: &[&str]) -> Outcome {
    let _cell = shared();
    let afs_dir = unique_path(&format!("wasi-{kind}-{scenario}"));
    let local = tempdir();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async { client().await.mkdir(&afs_dir).await.unwrap() });
    setup(&afs_dir, &local, entries);
    let wasm = suite(kind);
    let on_afs = run_on_afs(&wasm, &afs_dir, ro, &[scenario, "/data"]);
    let on_local = run_on_local(&wasm, &local, ro, &[scenario, "/data"]);
    if on_afs != on_local {
        let (a, l): (Vec<&str>, Vec<&str>) = (
            on_afs.stdout.lines().collect(),
            on_local.stdout.lines().collect(),
        );
        for (i, (x, y)) in a.iter().zip(&l).enumerate() {
            assert_eq!(
                x,
                y,
                "{kind} {scenario}: line {} differs (AFS, then local)",
                i + 1
            );
        }
        assert_eq!(on_afs, on_local, "{kind} {scenario}: AFS, then local");
    }
    let trees = rt.block_on(async {
        let c = client().await;
        afs_tree(&c, &afs_dir).await
    });
    assert_eq!(
        trees,
        local_tree(&local),
        "{kind} {scenario}: the trees (AFS, then local)"
    );
    let _ = std::fs::remove_dir_all(&local);
    on_afs
}

#[test]
fn rust_wasip2_std_fs_on_afs_is_std_fs_on_a_local_disk() {
    let outcome = same_on_afs_and_local("p2", "all", false, &[]);
    assert_eq!(outcome.code, 0, "{}", outcome.stdout);
    assert!(outcome.stdout.lines().count() > 300, "the whole suite ran");
}

#[test]
fn rust_wasip1_std_fs_on_afs_is_std_fs_on_a_local_disk() {
    let outcome = same_on_afs_and_local("p1", "all", false, &[]);
    assert_eq!(outcome.code, 0, "{}", outcome.stdout);
}

#[test]
fn c_wasi_libc_on_afs_is_c_on_a_local_disk() {
    let outcome = same_on_afs_and_local("c", "all", false, &[]);
    assert_eq!(outcome.code, 0, "{}", outcome.stdout);
    assert!(outcome.stdout.lines().count() > 200, "the whole suite ran");
}

/// `..`, absolute paths, links out of the preopen (relative, absolute), names and paths
/// too long: the codes wasmtime-wasi gives on a local directory; nothing is reached.
#[test]
fn hostile_paths_get_the_codes_wasmtime_gives() {
    let links = [
        "sub/",
        "link-out -> ../..",
        "link-abs -> /etc",
        "link-in -> sub",
    ];
    for kind in ["p2", "c"] {
        let outcome = same_on_afs_and_local(kind, "bad", false, &links);
        assert!(
            !outcome.stdout.contains("setup missing"),
            "{}",
            outcome.stdout
        );
        assert!(
            outcome.stdout.contains("PermissionDenied") || outcome.stdout.contains("EPERM"),
            "escapes are refused: {}",
            outcome.stdout
        );
    }
}

#[test]
fn a_read_only_dir_refuses_every_change_as_wasmtime_does() {
    let outcome = same_on_afs_and_local("p2", "ro", true, &["ro.txt=read me\n"]);
    assert!(
        outcome.stdout.contains("read ro.txt: ok"),
        "{}",
        outcome.stdout
    );
}

/// Where AFS differs from a local disk, it says so with the errno Linux AFS clients
/// give: hard links across directories and renames across volumes are EXDEV.
#[test]
fn links_across_directories_and_renames_across_volumes_are_cross_device() {
    let _cell = shared();
    let dir = unique_path("wasi-xdev");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = client().await;
        c.mkdir(&dir).await.unwrap();
        // The cell's root volume, mounted beneath the preopen.
        c.make_mount_point(
            &format!("{dir}/root"),
            &afs::path::MountPoint::parse(b"#root.cell.").unwrap(),
        )
        .await
        .unwrap();
        write_all(&c, &format!("{dir}/f"), b"data").await.unwrap();
    });
    let out = run_on_afs(&suite("p2"), &dir, false, &["xlink", "/data"]);
    assert!(
        out.stdout
            .contains("hard_link x1/f x2/f (across dirs): err CrossesDevices"),
        "{}",
        out.stdout
    );
    // A rename into another volume: refused before the server is asked.
    let out = afs_wasm()
        .arg("run")
        .arg("--dir")
        .arg(format!("{dir}::/data:rw,mounts"))
        .arg(suite("p2"))
        .args(["rename", "/data/f", "/data/root/f"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("err CrossesDevices"), "{stdout}");
    let stays = rt.block_on(async { read_all(&client().await, &format!("{dir}/f")).await });
    assert_eq!(stays.unwrap(), b"data");
}

/// A guest that holds a file open reads a third party's change (afsio) at its next
/// read, and its next listing of a directory shows a file afsio made.
#[test]
fn held_handles_and_listings_see_a_third_partys_changes() {
    use std::io::{BufRead, BufReader, Write};
    let _cell = shared();
    let dir = unique_path("wasi-coherence");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = client().await;
        c.mkdir(&dir).await.unwrap();
        write_all(&c, &format!("{dir}/f"), b"one\n").await.unwrap();
    });
    for (scenario, target, change, want) in [
        ("watch", "/data/f", "f", "two"),
        ("watchdir", "/data", "new", "new"),
    ] {
        let mut child = afs_wasm()
            .arg("run")
            .arg("--dir")
            .arg(format!("{dir}::/data:ro"))
            .arg(suite("p2"))
            .args([scenario, target])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // One look: what there is now, up to the `--` line.
        let mut look = |stdin: &mut std::process::ChildStdin| -> Vec<String> {
            writeln!(stdin, "go").unwrap();
            let mut got = Vec::new();
            for l in lines.by_ref() {
                let l = l.unwrap();
                if l == "--" {
                    break;
                }
                got.push(l);
            }
            got
        };
        let before = look(&mut stdin);
        assert!(!before.iter().any(|l| l == want), "{scenario}: {before:?}");
        afsio_write(&format!("{dir}/{change}"), format!("{want}\n").as_bytes());
        // The break reaches the host before afsio's store returns; allow for a
        // scheduler hiccup, not for a missed break (promises last minutes).
        let start = Instant::now();
        let mut after = look(&mut stdin);
        while !after.iter().any(|l| l == want) && start.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(50));
            after = look(&mut stdin);
        }
        assert!(
            after.iter().any(|l| l == want),
            "{scenario}: the guest still sees {after:?} after afsio's change"
        );
        drop(stdin);
        assert!(child.wait().unwrap().success());
    }
}

/// A file read through `std::fs` by one guest and mapped by another guest of the same
/// host is one copy of pages: the mapping is served from what the reader fetched, and
/// the reader after the mapping fetches nothing either.
#[test]
fn files_read_by_copy_and_mapped_share_one_copy_of_pages() {
    use afs_wasm_host::filesystem::DirArg;
    use afs_wasm_host::pager::{Access, PagerConfig};
    use afs_wasm_host::runtime::{GuestConfig, Host, HostConfig};
    let _cell = shared();
    let host = Host::new(HostConfig::new(config(), PagerConfig::default())).unwrap();
    let dir = unique_path("wasi-shared");
    let len = 6 << 20;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async { client().await.mkdir(&dir).await.unwrap() });
    put(&host, &format!("{dir}/f"), &pattern(len, 7));
    let fetched = || host.cache().pages().stats().snapshot().bytes_fetched;
    let read = |what: &str| {
        let mut config = GuestConfig::new("fs-suite.wasm")
            .dir(DirArg::parse(&format!("{dir}::/data:ro"), None).unwrap())
            .arg("read")
            .arg("/data/f");
        let out = config.capture_stdout(1 << 16);
        assert_eq!(host.run_command(&suite("p2"), config).unwrap(), 0, "{what}");
        let out = String::from_utf8_lossy(&out.contents()).into_owned();
        assert!(out.starts_with(&format!("len {len} ")), "{what}: {out}");
    };
    let before = fetched();
    read("the first read");
    let by_copy = fetched() - before;
    assert!(
        by_copy >= len as u64,
        "the first read fetched {by_copy} bytes"
    );

    // The mapping faults every page in: from the page store, no fetch.
    let grant = host.grant(&dir, Access::Read).unwrap();
    let config = GuestConfig::new("mmap-bench")
        .grant(grant)
        .arg(format!("{dir}/f"))
        .arg("--rounds")
        .arg("1");
    let before = fetched();
    assert_eq!(host.run_command(&guest("mmap-bench"), config).unwrap(), 0);
    assert_eq!(fetched() - before, 0, "the mapping fetched the file again");
    read("the read after the mapping");
    assert_eq!(
        fetched() - before,
        0,
        "the second read fetched the file again"
    );
}
