//! Grants hold on the resolved path: a guest granted a directory reaches only objects
//! inside its grants, whatever symlinks (relative, absolute, into another cell) or mount
//! points its paths cross, unless the grant has the `links` or `mounts` option. Against
//! the real cell, with the `mmap-probe` guest reporting what the host answered.

mod common;

use afs::path::MountPoint;
use afs_wasm_host::pager::PagerConfig;
use afs_wasm_host::runtime::{Grant, GuestConfig, Host, HostConfig};
use common::*;

/// A cell the test cell's CellServDB does not know: a resolution that tried to reach it
/// would fail with "unknown cell", not be refused.
const OTHER_CELL: &str = "other.afs-wasm.invalid";

fn host() -> Host {
    Host::new(HostConfig::new(config(), PagerConfig::default())).expect("start the host")
}

/// The tree the tests walk, under a fresh directory `base` of the test volume:
///
/// ```text
/// base/secret.txt                  "secret", outside every grant
/// base/g/inner.txt                 "inner"
/// base/g/sub/                      a directory
/// base/g/rel    -> ../secret.txt   relative symlink out of g
/// base/g/abs    -> /afs/CELL/.../base/secret.txt
/// base/g/cell   -> /afs/OTHER_CELL/secret.txt
/// base/g/mnt    -> #test.          mount point of the test volume (base is in it)
/// base/g/ok     -> sub/../../g/inner.txt   relative, out and back into g
/// base/g/okabs  -> /afs/CELL/.../base/g/inner.txt
/// base/g/toh    -> ../h/file.txt   into the other grant
/// base/h/file.txt                  "h-file"
/// base/h/tog    -> ../g/inner.txt
/// ```
struct Tree {
    base: String,
    /// The base's name in the test volume (the mount point shows it again).
    name: String,
}

impl Tree {
    fn make(host: &Host) -> Tree {
        let base = unique_path("grants");
        let name = base.rsplit('/').next().unwrap().to_string();
        let client = host.client().clone();
        let b = base.clone();
        host.afs_runtime()
            .block_on(async move {
                let c = &client;
                c.mkdir(&b).await?;
                write_all(c, &format!("{b}/secret.txt"), b"secret").await?;
                c.mkdir(&format!("{b}/g")).await?;
                c.mkdir(&format!("{b}/g/sub")).await?;
                c.mkdir(&format!("{b}/h")).await?;
                write_all(c, &format!("{b}/g/inner.txt"), b"inner").await?;
                write_all(c, &format!("{b}/h/file.txt"), b"h-file").await?;
                let links = [
                    ("g/rel", "../secret.txt".to_string()),
                    ("g/abs", format!("{b}/secret.txt")),
                    ("g/cell", format!("/afs/{OTHER_CELL}/secret.txt")),
                    ("g/ok", "sub/../../g/inner.txt".to_string()),
                    ("g/okabs", format!("{b}/g/inner.txt")),
                    ("g/toh", "../h/file.txt".to_string()),
                    ("h/tog", "../g/inner.txt".to_string()),
                ];
                for (at, to) in links {
                    c.symlink(&format!("{b}/{at}"), &to).await?;
                }
                let test = MountPoint {
                    cell: None,
                    volume: "test".into(),
                    rw: false,
                };
                c.make_mount_point(&format!("{b}/g/mnt"), &test).await?;
                Ok::<_, afs::rpc::Error>(())
            })
            .unwrap()
            .expect("make the tree");
        Tree { base, name }
    }

    fn path(&self, rel: &str) -> String {
        format!("{}/{rel}", self.base)
    }

    /// A grant of `rel` under base, in the CLI's syntax (`g:rw,mounts`).
    fn grant(&self, spec: &str) -> Grant {
        Grant::parse(&self.path(spec), None).expect("a grant")
    }

    /// The secret through the mount point of the test volume.
    fn via_mount(&self) -> String {
        self.path(&format!("g/mnt/{}/secret.txt", self.name))
    }

    /// A file's contents, read with the host's own client (no grants).
    fn read(&self, host: &Host, rel: &str) -> Vec<u8> {
        let client = host.client().clone();
        let path = self.path(rel);
        host.afs_runtime()
            .block_on(async move { read_all(&client, &path).await })
            .unwrap()
            .unwrap()
    }
}

/// Runs `mmap-probe CASE PATH` with `grants`; its one line of output.
fn probe(host: &Host, grants: &[Grant], case: &str, path: &str) -> String {
    let mut config = GuestConfig::new("mmap-probe").arg(case).arg(path);
    for g in grants {
        config = config.grant(g.clone());
    }
    let out = config.capture_stdout(1 << 16);
    let code = host
        .run_command(&guest("mmap-probe"), config)
        .expect("the guest runs");
    let out = String::from_utf8_lossy(&out.contents()).trim().to_string();
    assert_eq!(code, 0, "{case} {path}: {out}");
    out
}

fn assert_refused(out: &str, code: &str, names: &[&str]) {
    assert!(
        out.starts_with(&format!("refused ErrorCode::{code}: ")),
        "want {code}: {out}"
    );
    for n in names {
        assert!(out.contains(n), "the message names {n}: {out}");
    }
}

#[test]
fn symlinks_and_mount_points_out_of_a_grant_are_refused() {
    let _g = shared();
    let host = host();
    let t = Tree::make(&host);
    let g = [t.grant("g:ro")];
    let secret = t.path("secret.txt");
    // The tree is what it says: the secret is there, and readable without grants.
    assert_eq!(t.read(&host, "g/rel"), b"secret");
    for link in ["rel", "abs"] {
        let out = probe(&host, &g, "read", &t.path(&format!("g/{link}")));
        let at = t.path(&format!("g/{link}"));
        assert_refused(
            &out,
            "AccessDenied",
            &[&at, &secret, "outside this guest's grants"],
        );
    }
    // Into another cell: refused before that cell is looked for (it does not exist).
    let out = probe(&host, &g, "read", &t.path("g/cell"));
    assert_refused(
        &out,
        "AccessDenied",
        &[&format!("/afs/{OTHER_CELL}/secret.txt"), "outside"],
    );
    // A mount point beneath the grant leads out of it (here to the whole test volume).
    let out = probe(&host, &g, "read", &t.via_mount());
    assert_refused(
        &out,
        "AccessDenied",
        &[&t.path("g/mnt"), "volume test", "mounts"],
    );
    // Through a directory of the grant, and opened read-write: the same.
    let out = probe(&host, &g, "open-read-write", &t.path("g/sub/../rel"));
    assert_refused(&out, "AccessDenied", &[&secret]);
}

#[test]
fn a_read_write_grant_cannot_change_a_file_outside_it_through_a_symlink() {
    let _g = shared();
    let host = host();
    let t = Tree::make(&host);
    let g = [t.grant("g:rw")];
    for link in ["g/rel", "g/abs"] {
        for case in ["write:PWNED", "map-write:PWNED"] {
            let out = probe(&host, &g, case, &t.path(link));
            assert_refused(&out, "AccessDenied", &[&t.path("secret.txt")]);
        }
    }
    let out = probe(&host, &g, "write:PWNED", &t.via_mount());
    assert_refused(&out, "AccessDenied", &[&t.path("g/mnt")]);
    assert_eq!(
        t.read(&host, "secret.txt"),
        b"secret",
        "the secret is unchanged"
    );
}

#[test]
fn links_inside_the_grants_are_followed_with_the_access_where_they_end() {
    let _g = shared();
    let host = host();
    let t = Tree::make(&host);
    let g = [t.grant("g:rw")];
    for link in ["g/ok", "g/okabs", "g/sub/../ok"] {
        assert_eq!(
            probe(&host, &g, "read", &t.path(link)),
            "read inner",
            "{link}"
        );
    }
    assert_eq!(probe(&host, &g, "write:INNER", &t.path("g/ok")), "wrote 5");
    assert_eq!(t.read(&host, "g/inner.txt"), b"INNER");
    assert_eq!(
        probe(&host, &g, "map-write:inner", &t.path("g/okabs")),
        "wrote 5"
    );
    assert_eq!(t.read(&host, "g/inner.txt"), b"inner");
    // Into another grant: followed, with that grant's access.
    let out = probe(&host, &g, "read", &t.path("g/toh"));
    assert_refused(&out, "AccessDenied", &[&t.path("h/file.txt")]);
    let gh = [t.grant("g:ro"), t.grant("h:rw")];
    assert_eq!(probe(&host, &gh, "read", &t.path("g/toh")), "read h-file");
    assert_eq!(
        probe(&host, &gh, "write:H-FILE", &t.path("g/toh")),
        "wrote 6"
    );
    assert_eq!(t.read(&host, "h/file.txt"), b"H-FILE");
    // From the read-write grant into the read-only one: read-only.
    assert_eq!(probe(&host, &gh, "read", &t.path("h/tog")), "read inner");
    let out = probe(&host, &gh, "write:PWNED", &t.path("h/tog"));
    assert_refused(
        &out,
        "ReadOnly",
        &[&t.path("h/tog"), &t.path("g/inner.txt"), "read-only"],
    );
    let out = probe(&host, &gh, "map-write:PWNED", &t.path("h/tog"));
    assert_refused(&out, "ReadOnly", &[&t.path("g/inner.txt")]);
    assert_eq!(t.read(&host, "g/inner.txt"), b"inner");
}

#[test]
fn the_links_and_mounts_options_let_a_grant_cross_out() {
    let _g = shared();
    let host = host();
    let t = Tree::make(&host);
    let links = [t.grant("g:ro,links")];
    let mounts = [t.grant("g:ro,mounts")];
    for link in ["g/rel", "g/abs"] {
        assert_eq!(probe(&host, &links, "read", &t.path(link)), "read secret");
        let out = probe(&host, &mounts, "read", &t.path(link));
        assert_refused(&out, "AccessDenied", &[&t.path("secret.txt")]);
    }
    assert_eq!(probe(&host, &mounts, "read", &t.via_mount()), "read secret");
    let out = probe(&host, &links, "read", &t.via_mount());
    assert_refused(&out, "AccessDenied", &[&t.path("g/mnt")]);
    // With `links`, a symlink into another cell is followed: that cell is looked for.
    let out = probe(&host, &links, "read", &t.path("g/cell"));
    assert_refused(&out, "NotFound", &[OTHER_CELL]);
    // The grant's access goes with it: read-only stays read-only ...
    let out = probe(&host, &links, "write:PWNED", &t.path("g/rel"));
    assert_refused(&out, "ReadOnly", &[]);
    let out = probe(&host, &mounts, "write:PWNED", &t.via_mount());
    assert_refused(&out, "ReadOnly", &[]);
    assert_eq!(t.read(&host, "secret.txt"), b"secret");
    // ... and read-write, asked for, writes outside.
    let rw = [t.grant("g:rw,links")];
    assert_eq!(
        probe(&host, &rw, "write:SECRET", &t.path("g/rel")),
        "wrote 6"
    );
    assert_eq!(t.read(&host, "secret.txt"), b"SECRET");
}

#[test]
fn a_grant_of_a_mount_point_itself_is_followed() {
    let _g = shared();
    let host = host();
    let t = Tree::make(&host);
    // The grant's own directory is the mount point: the operator named it.
    let mnt = [t.grant("g/mnt:ro")];
    assert_eq!(probe(&host, &mnt, "read", &t.via_mount()), "read secret");
    // So is the test directory, a mount point of root.cell, under a grant of the cell.
    let test = cell().test_dir.clone();
    let root = [Grant::parse(&format!("/afs/{}:ro", cell().name), None).unwrap()];
    let out = probe(&host, &root, "read", &t.path("secret.txt"));
    assert_refused(&out, "AccessDenied", &[&format!("mount point {test} ")]);
    let nested = [
        Grant::parse(&format!("/afs/{}:ro", cell().name), None).unwrap(),
        Grant::parse(&format!("{test}:ro"), None).unwrap(),
    ];
    assert_eq!(
        probe(&host, &nested, "read", &t.path("secret.txt")),
        "read secret"
    );
}

/// The CLI takes the options, and the guest hears the refusal in a process of its own.
#[test]
fn afs_wasm_run_takes_grant_options() {
    let _g = shared();
    let host = host();
    let t = Tree::make(&host);
    let via_mount = t.via_mount();
    let run = |grant: &str| {
        let mut p = GuestProcess::run("mmap-probe", grant, &["read", &via_mount]);
        assert!(p.wait().success(), "afs-wasm run --grant {grant}");
        p.lines().join("\n")
    };
    assert_eq!(run(&t.path("g:ro,mounts")), "read secret");
    let out = run(&t.path("g:ro"));
    assert_refused(&out, "AccessDenied", &[&t.path("g/mnt")]);
}
