//! Authenticated AFS against the auth cell (`cell.sh --auth`): an MIT KDC, OpenAFS 1.8.9
//! servers that require rxkad, users alice and bob, ACLs on the volume roots.
//!
//! Tickets come from MIT's own `kinit` (alice) and from a keytab (bob); `afs-wasm login`
//! turns them into tokens; every other command uses them.

mod common;

use common::{auth_cell, outcome, User};

fn login(user: &User, keytab: bool) {
    let c = auth_cell();
    let mut cmd = c.afs_wasm(user);
    cmd.arg("login");
    if keytab {
        cmd.args(["--keytab", c.keytab(user), "--principal", &user.principal]);
    } else {
        c.kinit(user);
    }
    let (ok, out, err) = outcome(&mut cmd);
    assert!(ok, "login as {} failed: {err}", user.principal);
    assert!(out.contains(&user.principal), "{out}");
}

fn put(user: &User, path: &str, data: &str, extra: &[&str]) -> (bool, String) {
    use std::io::Write;
    let c = auth_cell();
    let mut child = c
        .afs_wasm(user)
        .args(extra)
        .args(["put", "-", path])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(data.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn cat(user: &User, path: &str, extra: &[&str]) -> (bool, String, String) {
    outcome(auth_cell().afs_wasm(user).args(extra).args(["cat", path]))
}

#[test]
fn alice_writes_her_directory_and_bob_and_anonymous_are_refused() {
    let c = auth_cell();
    let (alice, bob) = (c.user("alice"), c.user("bob"));
    login(&alice, false);
    login(&bob, true);
    let n: u32 = rand::random();
    let mine = format!("{}/mine-{n:08x}", c.alice_dir);
    let (ok, err) = put(&alice, &mine, "alice's secret\n", &[]);
    assert!(ok, "alice writes her directory: {err}");
    assert_eq!(cat(&alice, &mine, &[]).1, "alice's secret\n");

    let (ok, err) = put(&bob, &format!("{}/bob-{n:08x}", c.alice_dir), "x", &[]);
    assert!(!ok);
    assert!(
        err.contains(&format!("permission denied for {}", bob.principal)),
        "{err}"
    );
    let (ok, out, err) = cat(&bob, &mine, &[]);
    assert!(!ok && out.is_empty(), "bob reads nothing: {out}");
    assert!(
        err.contains(&format!(
            "permission denied for {} on {mine}",
            bob.principal
        )),
        "{err}"
    );
    let (ok, out, err) = cat(&alice, &mine, &["--anonymous"]);
    assert!(!ok && out.is_empty());
    assert!(err.contains("permission denied for anonymous"), "{err}");

    // public: alice writes, bob and anonymous read, bob may not write.
    let shared = format!("{}/shared-{n:08x}", c.public_dir);
    assert!(put(&alice, &shared, "for everyone\n", &[]).0);
    assert_eq!(cat(&bob, &shared, &[]).1, "for everyone\n");
    assert_eq!(cat(&bob, &shared, &["--anonymous"]).1, "for everyone\n");
    assert!(!put(&bob, &shared, "bob was here\n", &[]).0);
    assert_eq!(cat(&alice, &shared, &[]).1, "for everyone\n");
}

#[test]
fn every_level_reads_and_writes() {
    let c = auth_cell();
    let alice = c.user("alice");
    login(&alice, true);
    for level in ["clear", "auth", "crypt"] {
        let path = format!(
            "{}/level-{level}-{:08x}",
            c.alice_dir,
            rand::random::<u32>()
        );
        let data = format!("written at {level}\n").repeat(5000);
        let (ok, err) = put(&alice, &path, &data, &["--level", level]);
        assert!(ok, "{level}: {err}");
        for read_level in ["clear", "auth", "crypt"] {
            let (ok, out, err) = cat(&alice, &path, &["--level", read_level]);
            assert!(ok, "{level}/{read_level}: {err}");
            assert_eq!(out, data, "written at {level}, read at {read_level}");
        }
    }
}

/// Edits the token file of `user` with `f` (line by line).
fn edit_token(user: &User, f: impl Fn(&str) -> String) {
    let dir = user.home.join("tokens");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(&file).unwrap();
    let edited: String = text.lines().map(|l| f(l) + "\n").collect();
    std::fs::write(&file, edited).unwrap();
}

#[test]
fn a_damaged_ticket_a_wrong_key_and_an_expired_token_each_say_so() {
    let c = auth_cell();
    let path = format!("{}/probe", c.alice_dir);
    let case = |what: &str, f: &dyn Fn(&str) -> String, want: &str| {
        let alice = c.user("alice");
        login(&alice, true);
        edit_token(&alice, f);
        let (ok, _, err) = cat(&alice, &path, &[]);
        assert!(!ok, "{what} must fail");
        assert!(err.contains(want), "{what}: {err}");
    };
    case(
        "damaged ticket",
        &|l: &str| match l.strip_prefix("ticket ") {
            // Flip bits in the encrypted part, near the end.
            Some(hex) => {
                let mut b = hex.as_bytes().to_vec();
                let i = b.len() - 20;
                b[i] = if b[i] == b'0' { b'1' } else { b'0' };
                format!("ticket {}", String::from_utf8(b).unwrap())
            }
            None => l.to_string(),
        },
        "RXKADBADTICKET",
    );
    case(
        "wrong key",
        &|l: &str| {
            if l.starts_with("key ") {
                format!("key {}", "00".repeat(32))
            } else {
                l.to_string()
            }
        },
        "wrong key (RXKADSEALEDINCON)",
    );
    case(
        "expired token",
        &|l: &str| {
            if l.starts_with("expires ") {
                "expires 1000000".to_string()
            } else {
                l.to_string()
            }
        },
        "token expired",
    );
}

#[test]
fn tokens_lists_and_unlog_drops() {
    let c = auth_cell();
    let alice = c.user("alice");
    login(&alice, false);
    let (ok, out, _) = outcome(c.afs_wasm(&alice).arg("tokens"));
    assert!(ok);
    assert!(
        out.contains(&alice.principal) && out.contains(&c.name),
        "{out}"
    );
    let store = alice.home.join("tokens");
    use std::os::unix::fs::PermissionsExt;
    let file = std::fs::read_dir(&store)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(&store).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert!(outcome(c.afs_wasm(&alice).args(["--cell", &c.name, "unlog"])).0);
    let (_, out, _) = outcome(c.afs_wasm(&alice).arg("tokens"));
    assert!(!out.contains(&alice.principal), "{out}");
    // Without a token alice is anonymous: her own directory is closed to her.
    let probe = format!("{}/probe", c.alice_dir);
    let (ok, _, err) = cat(&alice, &probe, &[]);
    assert!(
        !ok && err.contains(&format!(
            "permission denied for anonymous on {probe} (no token for cell {})",
            c.name
        )),
        "{err}"
    );
}

/// A capture of the traffic (tcpdump on the cell's veth) while alice stores and reads a
/// file: at the crypt level none of its bytes are on the wire; at the auth and clear levels
/// (which protect only the packet headers) they are.
#[test]
fn crypt_hides_a_files_bytes_on_the_wire_and_clear_does_not() {
    let c = auth_cell();
    let alice = c.user("alice");
    login(&alice, true);
    for (level, visible) in [("crypt", false), ("auth", true), ("clear", true)] {
        let marker = format!("marker-{level}-{:016x}-", rand::random::<u64>());
        let data = marker.repeat(300);
        let path = format!("{}/wire-{level}-{:08x}", c.alice_dir, rand::random::<u32>());
        let pcap = alice.home.join(format!("{level}.pcap"));
        let _ = std::fs::remove_file(&pcap);
        common::auth_cell_sh(&["capture", "start", pcap.to_str().unwrap()]);
        let (ok, err) = put(&alice, &path, &data, &["--level", level]);
        let (read_ok, out, read_err) = cat(&alice, &path, &["--level", level]);
        common::auth_cell_sh(&["capture", "stop"]);
        assert!(ok, "{err}");
        assert!(read_ok && out == data, "{read_err}");
        let wire = std::fs::read(&pcap).unwrap();
        assert!(
            wire.len() > data.len() * 2,
            "the capture holds the store and the fetch ({} bytes)",
            wire.len()
        );
        let seen = wire
            .windows(marker.len())
            .filter(|w| *w == marker.as_bytes())
            .count();
        if visible {
            assert!(
                seen > 100,
                "{level}: the file's bytes travel in the clear ({seen})"
            );
        } else {
            assert_eq!(seen, 0, "{level}: no plaintext on the wire");
        }
    }
}

/// One client, one page store, two identities: alice reads her file through the cache
/// manager, so its pages are cached; bob's view of the same manager is refused the file
/// (and fetches none of it), and so is the anonymous view. A file both may read is served
/// to bob from alice's pages, with no second fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_pages_are_no_way_around_the_acl() {
    use afs::cache::manager::CacheManager;
    use afs::client::{Client, ClientConfig};
    use afs::identity::{Identity, TokenSource};
    use afs_auth::{login_from_keytab, StaticToken};
    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::Arc;

    let c = auth_cell();
    let (alice, bob) = (c.user("alice"), c.user("bob"));
    login(&alice, true);
    let n: u32 = rand::random();
    let private = format!("{}/pages-{n:08x}", c.alice_dir);
    let shared = format!("{}/pages-{n:08x}", c.public_dir);
    let data = "alice's page\n".repeat(10_000);
    assert!(put(&alice, &private, &data, &[]).0);
    assert!(put(&alice, &shared, &data, &[]).0);

    // The krb5 crate reads KRB5_CONFIG; no other test of this binary reads it in-process.
    std::env::set_var("KRB5_CONFIG", &c.krb5_config);
    let identity = |user: &common::User| {
        let keytab = std::path::Path::new(c.keytab(user));
        let token = login_from_keytab(&c.name, None, keytab, &user.principal).unwrap();
        let source: Arc<dyn TokenSource> =
            Arc::new(StaticToken::new(&token, rx::rxkad::Level::Crypt).unwrap());
        Identity::with_tokens(vec![source])
    };
    let client = Client::new(ClientConfig {
        cellservdb: Some(c.cellservdb.clone()),
        thiscell: Some(c.thiscell.clone()),
        identity: identity(&alice),
        ..ClientConfig::default()
    })
    .await
    .unwrap();
    let as_alice = CacheManager::new(Arc::new(client), Default::default());
    let fetched = || as_alice.client().fs_stats().fetch_data_bytes.load(Relaxed);
    let mut got = Vec::new();
    as_alice
        .read(&private, |b| {
            got.extend_from_slice(b);
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(got, data.as_bytes());
    as_alice.read(&shared, |_| Ok(())).await.unwrap();
    let after_alice = fetched();
    assert!(after_alice >= 2 * data.len() as u64);

    let as_bob = as_alice.as_identity(identity(&bob));
    let as_nobody = as_alice.as_identity(Identity::Anonymous);
    for (view, who) in [(&as_bob, bob.principal.as_str()), (&as_nobody, "anonymous")] {
        let mut leaked = Vec::new();
        let err = view
            .read(&private, |b| {
                leaked.extend_from_slice(b);
                Ok(())
            })
            .await
            .unwrap_err();
        assert!(leaked.is_empty(), "{who} got {} bytes", leaked.len());
        assert_eq!(err.kind(), afs::ErrorKind::PermissionDenied, "{err}");
        assert!(
            err.to_string()
                .contains(&format!("permission denied for {who}")),
            "{err}"
        );
    }
    // Nor by the node alice resolved (as a guest holding an open file would use it).
    let node = as_alice.client().resolve(&private).await.unwrap();
    for view in [&as_bob, &as_nobody] {
        let err = view.read_at(&node, 0, 4096).await.unwrap_err();
        assert_eq!(err.kind(), afs::ErrorKind::PermissionDenied, "{err}");
    }
    // bob may read the public copy: from alice's pages, without fetching it again.
    let mut got = Vec::new();
    as_bob
        .read(&shared, |b| {
            got.extend_from_slice(b);
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(got, data.as_bytes());
    assert_eq!(
        fetched(),
        after_alice,
        "no byte fetched again for bob or refused to anyone"
    );
}

/// The guest's identity from a keytab, as `run --keytab` makes it (KRB5_CONFIG must be set).
fn keytab_identity(user: &User) -> afs::Identity {
    use std::sync::Arc;
    let c = auth_cell();
    std::env::set_var("KRB5_CONFIG", &c.krb5_config);
    let keytab = std::path::Path::new(c.keytab(user));
    let token = afs_auth::login_from_keytab(&c.name, None, keytab, &user.principal).unwrap();
    let source: Arc<dyn afs::identity::TokenSource> =
        Arc::new(afs_auth::StaticToken::new(&token, rx::rxkad::Level::Crypt).unwrap());
    afs::Identity::with_tokens(vec![source])
}

/// Guests of one host with different identities: alice's guest maps her file, so its
/// pages are in the host's page store; bob's guest, and an anonymous one, are refused the
/// same file and fetch nothing; bob's guest maps a file he may read from alice's pages.
#[test]
fn a_guest_is_refused_what_another_guests_identity_has_cached() {
    use afs_wasm_host::pager::{Access, PagerConfig};
    use afs_wasm_host::runtime::{GuestConfig, Host, HostConfig};
    let c = auth_cell();
    let (alice, bob) = (c.user("alice"), c.user("bob"));
    login(&alice, true);
    let n: u32 = rand::random();
    let private = format!("{}/mapped-{n:08x}", c.alice_dir);
    let shared = format!("{}/mapped-{n:08x}", c.public_dir);
    let data = "mapped by alice\n".repeat(100_000);
    assert!(put(&alice, &private, &data, &[]).0);
    assert!(put(&alice, &shared, &data, &[]).0);

    let client = afs::client::ClientConfig {
        cellservdb: Some(c.cellservdb.clone()),
        thiscell: Some(c.thiscell.clone()),
        ..Default::default()
    };
    let host = Host::new(HostConfig::new(client, PagerConfig::default())).unwrap();
    let fetched = || host.cache().pages().stats().snapshot().bytes_fetched;
    let map = |identity: afs::Identity, path: &str| {
        let grant = host.grant(path, Access::Read).unwrap();
        let mut config = GuestConfig::new("mmap-bench")
            .identity(identity)
            .grant(grant)
            .arg(path)
            .arg("--rounds")
            .arg("1");
        let out = config.capture_stdout(1 << 16);
        let r = host.run_command(&common::guest("mmap-bench"), config);
        (r, String::from_utf8_lossy(&out.contents()).into_owned())
    };
    let (r, out) = map(keytab_identity(&alice), &private);
    assert_eq!(r.unwrap(), 0, "alice maps her file: {out}");
    let after_alice = fetched();
    assert!(after_alice >= data.len() as u64);

    // While alice's reader guest holds the file mapped, the others try.
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let grant = host.grant(&private, Access::Read).unwrap();
            let mut config = GuestConfig::new("mmap-reader")
                .identity(keytab_identity(&alice))
                .grant(grant)
                .arg(&private)
                .arg("--interval-ms")
                .arg("100")
                .arg("--count")
                .arg("30");
            let out = config.capture_stdout(1 << 16);
            let r = host.run_command(&common::guest("mmap-reader"), config);
            (r, String::from_utf8_lossy(&out.contents()).into_owned())
        });
        std::thread::sleep(std::time::Duration::from_millis(1000));
        for (identity, who) in [
            (keytab_identity(&bob), "bob"),
            (afs::Identity::Anonymous, "anonymous"),
        ] {
            let (r, out) = map(identity, &private);
            assert!(
                !matches!(r, Ok(0)),
                "{who}'s guest must not map alice's file: {r:?} {out}"
            );
        }
        let (r, out) = reader.join().unwrap();
        assert_eq!(r.unwrap(), 0, "alice's reader: {out}");
        assert_eq!(out.lines().count(), 30, "{out}");
        assert!(
            out.lines().all(|l| l == "6d"),
            "alice reads her bytes: {out}"
        );
    });
    assert_eq!(fetched(), after_alice, "the refused guests fetched nothing");

    let (r, out) = map(keytab_identity(&alice), &shared);
    assert_eq!(r.unwrap(), 0, "{out}");
    let cached = fetched();
    let (r, out) = map(keytab_identity(&bob), &shared);
    assert_eq!(r.unwrap(), 0, "bob maps the public file: {out}");
    assert_eq!(
        fetched(),
        cached,
        "bob's mapping is served from alice's pages"
    );
    host.shutdown();
}

/// svc's tickets live AFS_SVC_LIFE_S seconds. A guest run with svc's keytab stores a byte
/// every second for three ticket lives: its identity renews itself, and every store lands.
/// Beside it, guests run with plain tokens of the same life fail once they expire: one whose
/// token says so (our own check), and one whose token claims a day more than its ticket has,
/// so that the fileserver is the one to refuse it mid-connection (RXKADEXPIRED).
#[test]
fn a_keytab_identity_renews_itself_and_a_plain_token_expires() {
    let c = auth_cell();
    let svc = c.user("svc");
    let life: u32 = c.env("AFS_SVC_LIFE_S").parse().unwrap();
    let rounds = 3 * life;
    login(&svc, true);
    let path = |tag: &str| format!("{}/{tag}-{:08x}", c.test_dir, rand::random::<u32>());
    let (renewing, honest, lying) = (path("renew"), path("expire"), path("skew"));
    for p in [&renewing, &honest, &lying] {
        let (ok, err) = put(&svc, p, "", &[]);
        assert!(ok, "create {p}: {err}");
    }
    let token_file = |name: &str, edit: &dyn Fn(&str) -> String| {
        let file = svc.home.join(name);
        let (ok, _, err) = outcome(
            c.afs_wasm(&svc)
                .args(["login", "--keytab", c.keytab(&svc)])
                .args([
                    "--principal",
                    &svc.principal,
                    "--out",
                    file.to_str().unwrap(),
                ]),
        );
        assert!(ok, "login --out: {err}");
        let text = std::fs::read_to_string(&file).unwrap();
        let edited: Vec<String> = text.lines().map(edit).collect();
        std::fs::write(&file, edited.join("\n") + "\n").unwrap();
        file
    };
    let honest_token = token_file("honest.token", &|l| l.to_string());
    let lying_token = token_file("lying.token", &|l| match l.strip_prefix("expires ") {
        Some(t) => format!("expires {}", t.parse::<u64>().unwrap() + 86_400),
        None => l.to_string(),
    });
    let writer = |identity: &[&str], path: &str| {
        c.afs_wasm(&svc)
            .arg("run")
            .args(identity)
            .args(["--grant", &format!("{path}:rw")])
            .arg(common::guest("mmap-writer"))
            .args([
                path,
                "--interval-ms",
                "1000",
                "--count",
                &rounds.to_string(),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start afs-wasm run")
    };
    let keytab_args = ["--keytab", c.keytab(&svc), "--principal", &svc.principal];
    let runs = [
        writer(&keytab_args, &renewing),
        writer(&["--token", honest_token.to_str().unwrap()], &honest),
        writer(&["--token", lying_token.to_str().unwrap()], &lying),
    ];
    let [renewed, honest_run, lying_run] = runs.map(|r| r.wait_with_output().unwrap());
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(
        renewed.status.success(),
        "the keytab identity's run failed: {}",
        text(&renewed.stderr)
    );
    let stored = text(&renewed.stdout).lines().count() as u32;
    assert_eq!(stored, rounds, "every round stored");
    login(&svc, true); // the store's token is as short-lived
    let (ok, byte, err) = cat(&svc, &renewing, &[]);
    assert!(ok, "{err}");
    assert_eq!(
        byte.as_bytes(),
        [rounds as u8],
        "the last round's byte is stored"
    );
    for (what, run) in [("its own check", honest_run), ("the fileserver", lying_run)] {
        let err = text(&run.stderr);
        assert!(
            !run.status.success(),
            "a plain token outlived its ticket ({what})"
        );
        assert!(err.contains("token expired"), "{what}: {err}");
        let stored = text(&run.stdout).lines().count() as u32;
        assert!(
            (1..rounds).contains(&stored),
            "{what}: {stored} rounds stored before the token expired"
        );
    }
}
