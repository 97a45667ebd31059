//! Byte-exact interop with OpenAFS's afsio, both ways, against the real test cell.

// The fault lock is held for a whole test on purpose, across its awaits: it keeps
// cell-breaking tests apart from the others. Each test has its own runtime.
#![allow(clippy::await_holding_lock)]

mod common;

use common::*;

const SIZES: [usize; 8] = [0, 1, 1411, 1412, 1413, 65536, 10 << 20, 200 << 20];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ours_writes_afsio_reads() {
    let _g = shared();
    let client = client().await;
    for (i, &size) in SIZES.iter().enumerate() {
        let path = unique_path(&format!("w{size}"));
        let data = pattern(size, i as u64 + 1);
        write_all(&client, &path, &data).await.unwrap();
        assert_same(
            &format!("afsio read of {size} bytes"),
            &afsio_read(&path),
            &data,
        );
        client.remove(&path).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn afsio_writes_ours_reads() {
    let _g = shared();
    let client = client().await;
    for (i, &size) in SIZES.iter().enumerate() {
        let path = unique_path(&format!("r{size}"));
        // afsio cannot truncate: start from an empty file we create.
        write_all(&client, &path, &[]).await.unwrap();
        let data = pattern(size, 100 + i as u64);
        afsio_write(&path, &data);
        let got = read_all(&client, &path).await.unwrap();
        assert_same(&format!("our read of {size} bytes"), &got, &data);
        client.remove(&path).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overwrite_shrinks_and_grows() {
    let _g = shared();
    let client = client().await;
    let path = unique_path("resize");
    for (i, size) in [5000usize, 10, 300_000, 0, 7].into_iter().enumerate() {
        let data = pattern(size, 7 + i as u64);
        write_all(&client, &path, &data).await.unwrap();
        assert_same("afsio after overwrite", &afsio_read(&path), &data);
        assert_eq!(
            client.resolve(&path).await.unwrap().status.length(),
            size as u64
        );
    }
    client.remove(&path).await.unwrap();
}

/// A lookup with a directory node older than the directory (other tasks of the same
/// client created entries since) reads the whole current directory: the server sends the
/// new version, which is longer than the node said, and a prefix of it is no directory.
/// 16 creators at a time in one directory hit this at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_with_a_stale_directory_node_reads_all_of_the_directory() {
    let _g = shared();
    let client = client().await;
    let dir = unique_path("growing");
    client.mkdir(&dir).await.unwrap();
    let stale = client.resolve(&dir).await.unwrap();
    for i in 0..300 {
        client
            .create_in(&stale, &format!("entry-with-a-long-name-{i:04}"), 0o644)
            .await
            .unwrap();
    }
    let now = client.resolve(&dir).await.unwrap();
    assert!(
        now.status.length() > stale.status.length(),
        "the directory grew"
    );
    for i in [0, 150, 299] {
        let name = format!("entry-with-a-long-name-{i:04}");
        let found = client.lookup(&stale, &name).await.unwrap();
        assert!(found.is_some(), "{name} not found through the older node");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directories_and_errors_are_clear() {
    let _g = shared();
    let client = client().await;
    let dir = unique_path("dir");
    client.mkdir(&dir).await.unwrap();
    let file = format!("{dir}/inner");
    write_all(&client, &file, b"hello").await.unwrap();
    let names: Vec<String> = client
        .list(&dir)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["inner"]);

    let err = client.remove_dir(&dir).await.unwrap_err();
    assert_eq!(err.kind(), afs::ErrorKind::NotEmpty, "{err}");
    let missing = client.resolve(&format!("{dir}/nope")).await.unwrap_err();
    assert_eq!(missing.kind(), afs::ErrorKind::NotFound);
    assert!(missing.to_string().contains("no such file"), "{missing}");
    let err = client.mkdir(&dir).await.unwrap_err();
    assert_eq!(err.kind(), afs::ErrorKind::Exists, "{err}");
    let err = read_all(&client, &dir).await.unwrap_err();
    assert_eq!(err.kind(), afs::ErrorKind::IsDirectory, "{err}");

    client.remove(&file).await.unwrap();
    client.remove_dir(&dir).await.unwrap();
    assert_eq!(
        client.resolve(&dir).await.unwrap_err().kind(),
        afs::ErrorKind::NotFound
    );
}

#[test]
fn cli_commands_round_trip() {
    let _g = shared();
    let path = unique_path("cli");
    let dir = tempdir();
    let local = dir.join("in");
    let data = pattern(3 << 20, 42);
    std::fs::write(&local, &data).unwrap();
    let ok = |args: &[&str]| {
        let out = afs_wasm().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    ok(&["put", local.to_str().unwrap(), &path]);
    assert_same("cat", &ok(&["cat", &path]), &data);
    let stat = String::from_utf8(ok(&["stat", &path])).unwrap();
    assert!(
        stat.contains(&format!("length:       {}", data.len())),
        "{stat}"
    );
    let name = path.rsplit('/').next().unwrap();
    let ls = String::from_utf8(ok(&["ls", "-l", &cell().test_dir])).unwrap();
    assert!(
        ls.lines()
            .any(|l| l.ends_with(name) && l.contains(&data.len().to_string())),
        "{ls}"
    );
    // Relative paths use --cell.
    let rel = path
        .strip_prefix(&format!("/afs/{}/", cell().name))
        .unwrap();
    assert_same(
        "cat relative",
        &ok(&["--cell", &cell().name, "cat", rel]),
        &data,
    );
    ok(&["rm", &path]);
    let out = afs_wasm().args(["cat", &path]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no such file or directory") && err.contains(&path),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_points_and_symlinks_are_followed() {
    let _g = shared();
    let client = client().await;
    let c = cell();
    let dir = unique_path("links");
    client.mkdir(&dir).await.unwrap();
    write_all(&client, &format!("{dir}/file"), b"through links")
        .await
        .unwrap();
    let test_root = client.resolve(&c.test_dir).await.unwrap().fid;
    let dir_name = dir.rsplit('/').next().unwrap();
    let cases = [
        // A cell-qualified mount point back to the test volume.
        ("mp-cell", Some(c.name.clone()), false),
        ("mp-rw", None, true),
    ];
    for (name, mp_cell, rw) in cases {
        let mp = afs::path::MountPoint {
            cell: mp_cell,
            volume: "test".into(),
            rw,
        };
        client
            .make_mount_point(&format!("{dir}/{name}"), &mp)
            .await
            .unwrap();
        let root = client.resolve(&format!("{dir}/{name}")).await.unwrap();
        assert_eq!(
            root.fid, test_root,
            "{name} leads to the test volume's root"
        );
        let via = read_all(&client, &format!("{dir}/{name}/{dir_name}/file"))
            .await
            .unwrap();
        assert_eq!(via, b"through links", "{name}");
        client.remove(&format!("{dir}/{name}")).await.unwrap();
    }
    client.symlink(&format!("{dir}/rel"), "file").await.unwrap();
    client
        .symlink(&format!("{dir}/abs"), &format!("{dir}/file"))
        .await
        .unwrap();
    client
        .symlink(&format!("{dir}/up"), &format!("../{dir_name}/rel"))
        .await
        .unwrap();
    for link in ["rel", "abs", "up"] {
        let got = read_all(&client, &format!("{dir}/{link}")).await.unwrap();
        assert_eq!(got, b"through links", "{link}");
    }
    client
        .symlink(&format!("{dir}/loop"), "loop")
        .await
        .unwrap();
    let err = client.resolve(&format!("{dir}/loop")).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("too many levels of symbolic links"),
        "{err}"
    );
    for name in ["rel", "abs", "up", "loop", "file"] {
        client.remove(&format!("{dir}/{name}")).await.unwrap();
    }
    client.remove_dir(&dir).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vl_fails_over_to_the_next_server() {
    let _g = shared();
    let c = cell();
    let dir = tempdir();
    // Nothing answers on 127.0.0.1:7003: the client must move on to the real vlserver.
    let db = dir.join("CellServDB");
    std::fs::write(
        &db,
        format!(">{} #test\n127.0.0.1 #dead\n{} #vl\n", c.name, c.server),
    )
    .unwrap();
    let mut cfg = config();
    cfg.cellservdb = Some(db);
    cfg.rx.call.dead_time = std::time::Duration::from_secs(2);
    let client = afs::client::Client::new(cfg).await.unwrap();
    let node = client.resolve(&c.test_dir).await.unwrap();
    assert_eq!(node.status.file_type, afs::FileType::Directory);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_volume_is_waited_out() {
    let _g = shared();
    let client = std::sync::Arc::new(client().await);
    let path = unique_path("busy");
    let data = pattern(4 << 20, 77);
    write_all(&client, &path, &data).await.unwrap();
    let node = client.resolve(&path).await.unwrap();
    // Many calls at once on one volume make the fileserver answer "volume busy"
    // to some; those must be retried, not reported.
    let mut tasks = Vec::new();
    for i in 0..32u64 {
        let fs = client.file_server(&node).unwrap();
        let fid = node.fid;
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            fs.fetch_data(fid, i * 131072, 131072, |b| {
                got.extend_from_slice(&b);
                Ok(())
            })
            .await
            .map(|_| got)
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let got = t.await.unwrap().unwrap_or_else(|e| panic!("call {i}: {e}"));
        assert_same(
            &format!("range {i}"),
            &got,
            &data[i * 131072..(i + 1) * 131072],
        );
    }
    client.remove(&path).await.unwrap();
}
