//! Grant syntax, matching, and walks through links and mount points.

use super::*;
use afs::client::{Confinement, Step};
use afs::error::ErrorKind;

use crate::runtime::grants::walk::GrantWalk;

fn check(grants: &[Grant], path: &str) -> Option<Access> {
    granted(grants, &normalize(path, Some("test.cell")).unwrap())
}

#[test]
fn prefixes_match_whole_components() {
    let g = vec![
        "/afs/test.cell/data".parse::<Grant>().unwrap(),
        "/afs/test.cell/data/out:rw".parse::<Grant>().unwrap(),
    ];
    assert_eq!(check(&g, "/afs/test.cell/data"), Some(Access::Read));
    assert_eq!(check(&g, "/afs/test.cell/data/x"), Some(Access::Read));
    assert_eq!(
        check(&g, "/afs/test.cell/data/out/y"),
        Some(Access::ReadWrite)
    );
    assert_eq!(check(&g, "/afs/test.cell/database"), None);
    assert_eq!(check(&g, "/afs/test.cell"), None);
    assert_eq!(check(&g, "/afs/other.cell/data/x"), None);
}

#[test]
fn paths_are_normalized_first() {
    let g = vec!["/afs/test.cell/data/".parse::<Grant>().unwrap()];
    assert_eq!(check(&g, "/afs/test.cell//data/./x"), Some(Access::Read));
    assert_eq!(check(&g, "/afs/.test.cell/data/x"), Some(Access::Read));
    assert_eq!(check(&g, "/afs/TEST.cell/data/x"), Some(Access::Read));
    assert_eq!(check(&g, "/afs/test.cell/data/../secret"), None);
    assert_eq!(
        check(&g, "/afs/test.cell/data/x/../../data/y"),
        Some(Access::Read)
    );
    assert_eq!(check(&g, "data/x"), Some(Access::Read));
    assert!(normalize("/afs/test.cell/..", None).is_err());
    assert!(normalize("data/x", None).is_err());
}

#[test]
fn grant_syntax() {
    assert!("data:rw".parse::<Grant>().is_err());
    let g = Grant::parse("data:rw", Some("c")).unwrap();
    assert_eq!(g.to_string(), "/afs/c/data:rw");
    let g: Grant = "/afs/c/d:rw".parse().unwrap();
    assert_eq!(
        (g.prefix(), g.access()),
        ("/afs/c/d".into(), Access::ReadWrite)
    );
    assert_eq!(g.to_string(), "/afs/c/d:rw");
    assert_eq!(
        "/afs/c/d:ro".parse::<Grant>().unwrap().access(),
        Access::Read
    );
}

#[test]
fn grant_options() {
    let g: Grant = "/afs/c/d:rw,mounts".parse().unwrap();
    assert_eq!(g.access(), Access::ReadWrite);
    assert!(g.crosses_mounts() && !g.follows_links());
    assert_eq!(g.to_string(), "/afs/c/d:rw,mounts");
    let g: Grant = "/afs/c/d:links,ro,mounts".parse().unwrap();
    assert_eq!(g.access(), Access::Read);
    assert!(g.crosses_mounts() && g.follows_links());
    assert_eq!(g.to_string(), "/afs/c/d:ro,mounts,links");
    assert_eq!(g.to_string().parse::<Grant>().unwrap(), g);
    let g: Grant = "/afs/c/d".parse().unwrap();
    assert!(!g.crosses_mounts() && !g.follows_links());
    // A suffix of no known word is part of the path, as before.
    assert_eq!(
        "/afs/c/a:b".parse::<Grant>().unwrap().prefix(),
        "/afs/c/a:b"
    );
    for bad in [
        "/afs/c/d:rw,mount",
        "/afs/c/d:ro,rw",
        "/afs/c/d:rw,",
        "data:rw",
    ] {
        let e = bad.parse::<Grant>().unwrap_err();
        assert!(e.0.contains("mounts"), "{bad}: {e}");
    }
    let g = Grant::new("/afs/c/d", Access::Read, None)
        .unwrap()
        .with_mounts(true)
        .with_links(true);
    assert_eq!(g.to_string(), "/afs/c/d:ro,mounts,links");
}

fn p(s: &str) -> AfsPath {
    AfsPath::parse(s).unwrap()
}

fn grants(specs: &[&str]) -> Vec<Grant> {
    specs.iter().map(|s| s.parse().unwrap()).collect()
}

/// What a resolution is asked: a symlink at a logical path leading to another, a
/// mount point at one, the object reached.
enum S<'a> {
    Link(&'a str, &'a str),
    Mount(&'a str),
    End(&'a str),
}

/// Runs `steps` through a walk of `named` (the first step's error, if any).
fn walk(g: &[Grant], named: &str, want: Access, steps: &[S]) -> Result<(), afs::rpc::Error> {
    let mut w = GrantWalk::new(g, p(named), want);
    let node = afs::client::Node {
        cell: "c".into(),
        fid: afs::Fid::new(1, 1, 1),
        status: Default::default(),
        server: "127.0.0.1:7000".parse().unwrap(),
        callback: Default::default(),
        volume_type: afs::types::VolumeType::ReadWrite,
    };
    let mp = afs::path::MountPoint::parse(b"#test.").unwrap();
    for step in steps {
        match *step {
            S::Link(at, to) => w.check(&Step::Symlink {
                at: &p(at),
                text: "",
                to: &p(to),
            })?,
            S::Mount(at) => w.check(&Step::MountPoint {
                at: &p(at),
                target: &mp,
                cell: "c",
            })?,
            S::End(path) => w.check(&Step::Reached {
                path: &p(path),
                node: &node,
            })?,
        }
    }
    Ok(())
}

fn kind(r: Result<(), afs::rpc::Error>) -> Option<ErrorKind> {
    r.err().map(|e| e.kind())
}

const G: &str = "/afs/c/test/g";

#[test]
fn symlinks_beneath_a_grant_stay_in_the_grants() {
    use S::*;
    let g = grants(&["/afs/c/test/g", "/afs/c/test/h:rw"]);
    let f = "/afs/c/test/g/l/f";
    // Inside the grant: fine.
    let inside = [Link("/afs/c/test/g/l", G), End("/afs/c/test/g/f")];
    assert_eq!(kind(walk(&g, f, Access::Read, &inside)), None);
    // Relative, absolute, another cell: out.
    for to in [
        "/afs/c/test/secret",
        "/afs/c/test",
        "/afs/other.cell/test/g",
    ] {
        let e = walk(&g, f, Access::Read, &[Link("/afs/c/test/g/l", to)]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Confined, "{to}");
        assert_eq!(
            e.to_string(),
            format!("symlink /afs/c/test/g/l leads to {to}, outside this guest's grants")
        );
    }
    // Into another grant: its access.
    let across = [
        Link("/afs/c/test/g/l", "/afs/c/test/h"),
        End("/afs/c/test/h/f"),
    ];
    assert_eq!(kind(walk(&g, f, Access::ReadWrite, &across)), None);
    let back = [Link("/afs/c/test/h/l", G), End("/afs/c/test/g/f")];
    let e = walk(&g, "/afs/c/test/h/l/f", Access::ReadWrite, &back).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ReadOnly);
    assert_eq!(
        e.to_string(),
        "leads to /afs/c/test/g/f, granted read-only to this guest"
    );
    assert_eq!(
        kind(walk(&g, "/afs/c/test/h/l/f", Access::Read, &back)),
        None
    );
    // Named directly, read-write of a read-only grant.
    let e = walk(&g, f, Access::ReadWrite, &[End(f)]).unwrap_err();
    assert_eq!(
        (e.kind(), e.to_string()),
        (
            ErrorKind::ReadOnly,
            "granted read-only to this guest".into()
        )
    );
}

#[test]
fn mount_points_beneath_a_grant_lead_out_of_it() {
    use S::*;
    let f = "/afs/c/test/g/m/f";
    let steps = [Mount("/afs/c/test/g/m"), End(f)];
    let e = walk(&grants(&[G]), f, Access::Read, &steps).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Confined);
    assert!(
        e.to_string().starts_with(
            "mount point /afs/c/test/g/m leads to volume test of cell c, out of this \
             guest's grant /afs/c/test/g"
        ),
        "{e}"
    );
    let with = grants(&["/afs/c/test/g:ro,mounts"]);
    assert_eq!(kind(walk(&with, f, Access::Read, &steps)), None);
    // Above the prefix and at the prefix: the operator's.
    let own = [
        Mount("/afs/c"),
        Mount("/afs/c/test"),
        Mount(G),
        End("/afs/c/test/g/f"),
    ];
    assert_eq!(
        kind(walk(&grants(&[G]), "/afs/c/test/g/f", Access::Read, &own)),
        None
    );
    // A grant's own mount point beneath another grant: the operator named it.
    let nested = grants(&["/afs/c", "/afs/c/test:rw"]);
    let steps = [Mount("/afs/c/test"), End("/afs/c/test/f")];
    assert_eq!(
        kind(walk(&nested, "/afs/c/test/f", Access::ReadWrite, &steps)),
        None
    );
    let other = [Mount("/afs/c/other"), End("/afs/c/other/f")];
    assert_eq!(
        kind(walk(&nested, "/afs/c/other/f", Access::Read, &other)),
        Some(ErrorKind::Confined)
    );
    // The case of the cell name does not matter.
    let upper = grants(&["/afs/C", "/afs/C/test:rw"]);
    assert_eq!(
        kind(walk(&upper, "/afs/c/test/f", Access::ReadWrite, &steps)),
        None
    );
    // Beneath both, the innermost grant's options apply.
    let nested = grants(&["/afs/c:ro,mounts", "/afs/c/test:rw"]);
    let deep = [Mount("/afs/c/test/m"), End("/afs/c/test/m/f")];
    assert_eq!(
        kind(walk(&nested, "/afs/c/test/m/f", Access::Read, &deep)),
        Some(ErrorKind::Confined)
    );
    let other = [Mount("/afs/c/other"), End("/afs/c/other/f")];
    assert_eq!(
        kind(walk(&nested, "/afs/c/other/f", Access::Read, &other)),
        None
    );
}

#[test]
fn links_option_follows_symlinks_anywhere_with_the_grants_access() {
    use S::*;
    let f = "/afs/c/test/g/l/f";
    let out = [
        Link("/afs/c/test/g/l", "/afs/c/test/secret"),
        Mount("/afs/c/test/secret/m"),
        Link("/afs/c/test/secret/m/x", "/afs/o/y"),
        End("/afs/o/y/f"),
    ];
    assert_eq!(
        kind(walk(
            &grants(&["/afs/c/test/g:ro,links"]),
            f,
            Access::Read,
            &out
        )),
        None
    );
    assert_eq!(
        kind(walk(
            &grants(&["/afs/c/test/g:ro,links"]),
            f,
            Access::ReadWrite,
            &out
        )),
        Some(ErrorKind::ReadOnly)
    );
    assert_eq!(
        kind(walk(
            &grants(&["/afs/c/test/g:rw,links"]),
            f,
            Access::ReadWrite,
            &out
        )),
        None
    );
    // `links` is not `mounts`.
    let mount = [Mount("/afs/c/test/g/m")];
    assert_eq!(
        kind(walk(
            &grants(&["/afs/c/test/g:ro,links"]),
            f,
            Access::Read,
            &mount
        )),
        Some(ErrorKind::Confined)
    );
}

#[test]
fn a_grants_own_path_is_followed_and_the_grant_goes_where_it_leads() {
    use S::*;
    let g = grants(&["/afs/c/test/g:rw"]);
    let f = "/afs/c/test/g/l/f";
    // /afs/c/test is a symlink to /afs/c/t2: the grant is /afs/c/t2/g as well.
    let steps = [
        Link("/afs/c/test", "/afs/c/t2"),
        Link("/afs/c/t2/g/l", "/afs/c/t2/g/x"),
        End("/afs/c/t2/g/x/f"),
    ];
    assert_eq!(kind(walk(&g, f, Access::ReadWrite, &steps)), None);
    let out = [
        Link("/afs/c/test", "/afs/c/t2"),
        Link("/afs/c/t2/g/l", "/afs/c/test/g/x"),
        End("/afs/c/test/g/x/f"),
    ];
    assert_eq!(kind(walk(&g, f, Access::ReadWrite, &out)), None);
    let out = [
        Link("/afs/c/test", "/afs/c/t2"),
        Link("/afs/c/t2/g/l", "/afs/c/t2/secret"),
    ];
    assert_eq!(
        kind(walk(&g, f, Access::Read, &out)),
        Some(ErrorKind::Confined)
    );
    // The prefix itself a symlink.
    let steps = [Link(G, "/afs/c/test/h"), End("/afs/c/test/h/f")];
    assert_eq!(
        kind(walk(&g, "/afs/c/test/g/f", Access::ReadWrite, &steps)),
        None
    );
    // Only where the walk goes, never elsewhere.
    let stray = [End("/afs/c/test/h/f")];
    assert_eq!(
        kind(walk(&g, "/afs/c/test/g/f", Access::Read, &stray)),
        Some(ErrorKind::Confined)
    );
    let stray = [Link("/afs/c/test/h/l", "/afs/c/test/g")];
    assert_eq!(
        kind(walk(&g, "/afs/c/test/g/f", Access::Read, &stray)),
        Some(ErrorKind::Confined)
    );
}
