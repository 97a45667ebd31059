//! The harness for tests against the real OpenAFS test cell.
//!
//! The cell is started by the repo's own script (testcell/cell.sh), which installs
//! OpenAFS when it is missing. Tests that break the cell (restarts, loss,
//! partitions) take the fault lock exclusively; the others share it.
//!
//! The tests need no privilege themselves: testcell/test.sh runs them as an ordinary
//! user (testcell/as-test-user), and everything that needs root goes through
//! [`cell_command`], which runs cell.sh through `sudo -n` when we are not root.
//!
//! With `AFS_TEST_AS=alice` (or `bob`) the same tests run against the cell that requires
//! authentication (`cell.sh --auth`), as that user: our client, hosts and `afs-wasm`
//! commands hold the user's rxkad token (crypt level), and the test directory is the auth
//! cell's `open` volume. The third party stays anonymous there: afsio 1.8.9 can only
//! authenticate with a DES session key (libafscp asks the KDC for DES-CBC-CRC), which a
//! current KDC no longer issues, and `open`'s ACL lets system:anyuser write.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use afs::client::{Client, ClientConfig};

pub struct Cell {
    pub name: String,
    pub server: String,
    /// The address of the second fileserver `cell.sh fs2-up` starts.
    pub server2: String,
    pub cellservdb: PathBuf,
    pub thiscell: PathBuf,
    pub test_dir: String,
    pub script: PathBuf,
    /// Who the tests are (`AFS_TEST_AS`): None for anonymous on the open cell.
    pub user: Option<TestUser>,
}

/// The user the tests run as on the auth cell, with a token in a store of its own.
pub struct TestUser {
    pub name: String,
    /// A token store (`AFS_WASM_TOKENS`) holding the user's token, for `afs-wasm` commands.
    pub store: PathBuf,
    pub token: afs_auth::Token,
    pub krb5_config: PathBuf,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `AFS_TEST_AS`: the auth cell's user the tests run as, if any.
fn test_as() -> Option<String> {
    std::env::var("AFS_TEST_AS").ok().filter(|u| !u.is_empty())
}

/// cell.sh's arguments that pick the cell the tests use.
fn cell_args() -> &'static [&'static str] {
    if test_as().is_some() {
        &["--auth"]
    } else {
        &[]
    }
}

/// Brings a cell up (`cell.sh [--auth] up`) and reads its env file.
fn bring_up(args: &[&str]) -> HashMap<String, String> {
    let script = repo_root().join("testcell/cell.sh");
    let run = |what: &str| {
        let out = cell_script_command(&script)
            .args(args)
            .arg(what)
            .output()
            .expect("run testcell/cell.sh");
        assert!(
            out.status.success(),
            "cell.sh {args:?} {what} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    run("up");
    let env_path = run("env");
    let text = std::fs::read_to_string(env_path.trim()).expect("read the cell's env file");
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().into(), v.trim().trim_matches('"').into()))
        .collect()
}

/// Brings the cell up once per test binary and reads its env file.
pub fn cell() -> &'static Cell {
    static CELL: OnceLock<Cell> = OnceLock::new();
    CELL.get_or_init(|| {
        let env = bring_up(cell_args());
        let user = test_as().map(|name| test_user(&name, &env));
        let cell = Cell {
            name: env["AFS_CELL"].clone(),
            server: env["AFS_SERVER"].clone(),
            server2: env["AFS_SERVER2"].clone(),
            cellservdb: env["AFS_CELLSERVDB"].clone().into(),
            thiscell: env["AFS_THISCELL"].clone().into(),
            test_dir: match user {
                Some(_) => env["AFS_OPEN_DIR"].clone(),
                None => env["AFS_TEST_DIR"].clone(),
            },
            script: repo_root().join("testcell/cell.sh"),
            user,
        };
        if let Some(u) = &cell.user {
            check_authenticated(&cell, u);
        }
        cell
    })
}

/// Logs `name` in from its keytab with `afs-wasm login`, as a service would, and keeps
/// the token in a store of the tests' own.
fn test_user(name: &str, env: &HashMap<String, String>) -> TestUser {
    let var = |k: &str| env[&format!("AFS_{}_{k}", name.to_uppercase())].clone();
    let store = tempdir().join("tokens");
    let out = Command::new(env!("CARGO_BIN_EXE_afs-wasm"))
        .arg("--cellservdb")
        .arg(&env["AFS_CELLSERVDB"])
        .arg("--thiscell")
        .arg(&env["AFS_THISCELL"])
        .args(["login", "--keytab", &var("KEYTAB"), "--principal"])
        .arg(format!("{name}@{}", env["AFS_REALM"]))
        .env("AFS_WASM_TOKENS", &store)
        .env("KRB5_CONFIG", &env["AFS_KRB5_CONFIG"])
        .stdin(Stdio::null())
        .output()
        .expect("run afs-wasm login");
    assert!(
        out.status.success(),
        "afs-wasm login as {name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = afs_auth::TokenStore::at(&store)
        .load(&env["AFS_CELL"])
        .expect("read the token store")
        .expect("login saved a token");
    TestUser {
        name: name.into(),
        store,
        token,
        krb5_config: env["AFS_KRB5_CONFIG"].clone().into(),
    }
}

/// Fails unless the fileserver sees the tests' client as an authenticated user: the test
/// directory's ACL gives system:authuser the `a` right, and anonymous callers not. (A
/// client that fell back to rxnull would pass every test of the open volume.)
fn check_authenticated(cell: &Cell, user: &TestUser) {
    use afs::types::rights::ADMINISTER;
    let config = ClientConfig {
        cellservdb: Some(cell.cellservdb.clone()),
        thiscell: Some(cell.thiscell.clone()),
        identity: token_identity(&user.token),
        ..ClientConfig::default()
    };
    let dir = cell.test_dir.clone();
    // Its own thread and runtime: cell() is also called from inside the tests' runtimes.
    let status = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let client = Client::new(config).await.expect("start the AFS client");
            client.resolve(&dir).await.map(|n| n.status)
        })
    })
    .join()
    .unwrap()
    .expect("look up the test directory as the test user");
    assert!(
        status.caller_has(ADMINISTER),
        "the fileserver does not see {} as authenticated on {} (CallerAccess {:#x})",
        user.name,
        cell.test_dir,
        status.caller_access
    );
}

static FAULTS: RwLock<()> = RwLock::new(());

/// Held by tests that only use the cell.
pub fn shared() -> RwLockReadGuard<'static, ()> {
    FAULTS.read().unwrap_or_else(|e| e.into_inner())
}

/// Held by tests that restart, partition or degrade the cell.
pub fn exclusive() -> RwLockWriteGuard<'static, ()> {
    FAULTS.write().unwrap_or_else(|e| e.into_inner())
}

/// A fresh path in the test volume for this test.
pub fn unique_path(tag: &str) -> String {
    let n: u32 = rand::random();
    format!("{}/{tag}-{n:08x}", cell().test_dir)
}

pub fn config() -> ClientConfig {
    let c = cell();
    ClientConfig {
        cellservdb: Some(c.cellservdb.clone()),
        thiscell: Some(c.thiscell.clone()),
        identity: identity(),
        ..ClientConfig::default()
    }
}

/// Who the tests' clients are: the test user's token at the crypt level, or anonymous.
pub fn identity() -> afs::Identity {
    match &cell().user {
        None => afs::Identity::Anonymous,
        Some(u) => token_identity(&u.token),
    }
}

fn token_identity(token: &afs_auth::Token) -> afs::Identity {
    let source =
        afs_auth::StaticToken::new(token, rx::rxkad::Level::Crypt).expect("a usable token");
    afs::Identity::with_tokens(vec![
        std::sync::Arc::new(source) as std::sync::Arc<dyn afs::identity::TokenSource>
    ])
}

pub async fn client() -> Client {
    Client::new(config()).await.expect("start the AFS client")
}

/// A command that runs testcell/cell.sh (the cell's own script, which needs root):
/// through `sudo -n` unless this process is root. testcell/test.sh runs the tests as an
/// unprivileged user whom a sudoers drop-in lets run exactly this script as root
/// (testcell/as-test-user --setup).
pub fn cell_command() -> Command {
    let mut cmd = cell_script_command(&cell().script);
    cmd.args(cell_args());
    cmd
}

fn cell_script_command(script: &Path) -> Command {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        Command::new(script)
    } else {
        let mut sudo = Command::new("sudo");
        sudo.arg("-n").arg("--").arg(script);
        sudo
    }
}

/// Runs `cell.sh ARGS` and returns its output; panics on failure.
pub fn cell_sh(args: &[&str]) -> Output {
    let out = cell_command().args(args).output().expect("run cell.sh");
    assert!(
        out.status.success(),
        "cell.sh {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Reads a whole AFS file with OpenAFS's afsio.
pub fn afsio_read(path: &str) -> Vec<u8> {
    cell_sh(&["afsio", "read", "-file", path]).stdout
}

/// Writes `data` over an existing AFS file with OpenAFS's afsio (in 64 MiB pieces,
/// working around afsio's bugs; see testcell/cell.sh).
pub fn afsio_write(path: &str, data: &[u8]) {
    let dir = tempdir();
    let local = dir.join("data");
    std::fs::write(&local, data).unwrap();
    // afsio itself sometimes gives up mid-store under load ("Only -1 instead of N bytes
    // transferred by rx_Write()"): that is the third party failing, not the test; it
    // tries again, twice, saying so.
    let args = ["afsio-put", local.to_str().unwrap(), path, "-force"];
    for attempt in 1.. {
        let out = cell_command().args(args).output().expect("run cell.sh");
        if out.status.success() {
            break;
        }
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            attempt < 3,
            "cell.sh {args:?} failed {attempt} times:\n{err}"
        );
        eprintln!("afsio failed (attempt {attempt}), trying again: {err}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

pub fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("afs-wasm-test-{:08x}", rand::random::<u32>()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Deterministic pseudo-random bytes (cheap to make, easy to compare).
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Reads a whole file with our client.
pub async fn read_all(client: &Client, path: &str) -> afs::rpc::Result<Vec<u8>> {
    let mut out = Vec::new();
    client
        .read(path, |c| {
            out.extend_from_slice(c);
            Ok(())
        })
        .await?;
    Ok(out)
}

/// Writes a whole file with our client.
pub async fn write_all(client: &Client, path: &str, data: &[u8]) -> afs::rpc::Result<()> {
    client
        .write(
            path,
            std::io::Cursor::new(data.to_vec()),
            data.len() as u64,
            |_| {},
        )
        .await?;
    Ok(())
}

/// The afs-wasm binary.
pub fn afs_wasm() -> Command {
    let c = cell();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_afs-wasm"));
    cmd.arg("--cellservdb")
        .arg(&c.cellservdb)
        .arg("--thiscell")
        .arg(&c.thiscell)
        .stdin(Stdio::null());
    if let Some(u) = &c.user {
        cmd.env("AFS_WASM_TOKENS", &u.store)
            .env("KRB5_CONFIG", &u.krb5_config);
    }
    cmd
}

pub fn assert_same(what: &str, got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!("{what}: first difference at byte {i}");
    }
}

pub const SHORT: Duration = Duration::from_secs(20);

/// Reads a whole file through a cache manager.
pub async fn cached_read(cache: &afs::cache::manager::CacheManager, path: &str) -> Vec<u8> {
    let mut out = Vec::new();
    cache
        .read(path, |c| {
            out.extend_from_slice(c);
            Ok(())
        })
        .await
        .unwrap();
    out
}

/// A guest built by examples/build-guests.sh (which testcell/test.sh runs first).
pub fn guest(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    assert!(
        p.exists(),
        "{} is missing: run examples/build-guests.sh first (testcell/test.sh does)",
        p.display()
    );
    p
}

/// `afs-wasm run` of a guest in its own process (its own AFS client), its stdout
/// collected line by line as it comes; killed if still running when dropped.
pub struct GuestProcess {
    child: std::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl GuestProcess {
    pub fn run(wasm: &str, grant: &str, args: &[&str]) -> Self {
        use std::io::{BufRead, BufReader};
        let mut child = afs_wasm()
            .arg("run")
            .arg("--grant")
            .arg(grant)
            .arg(guest(wasm))
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start afs-wasm run");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, lines }
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn wait_for_lines(&self, n: usize, within: Duration) -> Vec<String> {
        let deadline = std::time::Instant::now() + within;
        loop {
            let lines = self.lines();
            if lines.len() >= n || std::time::Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until the last line printed is `want`; how long that took.
    pub fn wait_for_last(&self, want: &str, within: Duration) -> Option<Duration> {
        let start = std::time::Instant::now();
        while start.elapsed() < within {
            if self.lines().last().is_some_and(|l| l == want) {
                return Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }
}

impl Drop for GuestProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `data` as a whole file with the host's own client (on its runtime).
pub fn put(host: &afs_wasm_host::runtime::Host, path: &str, data: &[u8]) {
    let client = host.client().clone();
    let (path, data) = (path.to_string(), data.to_vec());
    host.afs_runtime()
        .block_on(async move { write_all(&client, &path, &data).await })
        .unwrap()
        .unwrap();
}

/// This process's resident memory, in KiB.
pub fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The cell that requires authentication (`cell.sh --auth`), with its KDC and test users.
pub struct AuthCell {
    pub name: String,
    pub realm: String,
    pub cellservdb: PathBuf,
    pub thiscell: PathBuf,
    pub krb5_config: PathBuf,
    pub alice_dir: String,
    pub public_dir: String,
    pub test_dir: String,
    env: HashMap<String, String>,
}

/// Brings the auth cell up once per test binary and reads its env file.
pub fn auth_cell() -> &'static AuthCell {
    static CELL: OnceLock<AuthCell> = OnceLock::new();
    CELL.get_or_init(|| {
        let env = bring_up(&["--auth"]);
        AuthCell {
            name: env["AFS_CELL"].clone(),
            realm: env["AFS_REALM"].clone(),
            cellservdb: env["AFS_CELLSERVDB"].clone().into(),
            thiscell: env["AFS_THISCELL"].clone().into(),
            krb5_config: env["AFS_KRB5_CONFIG"].clone().into(),
            alice_dir: env["AFS_ALICE_DIR"].clone(),
            public_dir: env["AFS_PUBLIC_DIR"].clone(),
            test_dir: env["AFS_TEST_DIR"].clone(),
            env,
        }
    })
}

/// A test user of the auth cell, with a token store and a ticket cache of its own.
pub struct User {
    pub name: &'static str,
    pub principal: String,
    pub home: PathBuf,
}

impl AuthCell {
    pub fn user(&self, name: &'static str) -> User {
        let home = tempdir();
        User {
            name,
            principal: format!("{name}@{}", self.realm),
            home,
        }
    }

    /// A variable of the cell's env file.
    pub fn env(&self, name: &str) -> &str {
        &self.env[name]
    }

    pub fn password(&self, user: &User) -> &str {
        &self.env[&format!("AFS_{}_PASSWORD", user.name.to_uppercase())]
    }

    pub fn keytab(&self, user: &User) -> &str {
        &self.env[&format!("AFS_{}_KEYTAB", user.name.to_uppercase())]
    }

    /// `afs-wasm` run as `user`: its own token store and ticket cache.
    pub fn afs_wasm(&self, user: &User) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_afs-wasm"));
        cmd.arg("--cellservdb")
            .arg(&self.cellservdb)
            .arg("--thiscell")
            .arg(&self.thiscell)
            .env("AFS_WASM_TOKENS", user.home.join("tokens"))
            .env("KRB5_CONFIG", &self.krb5_config)
            .env(
                "KRB5CCNAME",
                format!("FILE:{}", user.home.join("ccache").display()),
            )
            .stdin(Stdio::null());
        cmd
    }

    /// MIT `kinit` with the user's password: a real ticket cache, as a user has one.
    pub fn kinit(&self, user: &User) {
        use std::io::Write;
        let mut child = Command::new("kinit")
            .arg(&user.principal)
            .env("KRB5_CONFIG", &self.krb5_config)
            .env(
                "KRB5CCNAME",
                format!("FILE:{}", user.home.join("ccache").display()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kinit");
        writeln!(child.stdin.take().unwrap(), "{}", self.password(user)).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "kinit {} failed: {}",
            user.principal,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Runs a command and returns (success, stdout, stderr).
pub fn outcome(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().expect("run the command");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `cell.sh --auth ARGS`; panics on failure.
pub fn auth_cell_sh(args: &[&str]) -> Output {
    auth_cell();
    let out = cell_script_command(&repo_root().join("testcell/cell.sh"))
        .arg("--auth")
        .args(args)
        .output()
        .expect("run cell.sh --auth");
    assert!(
        out.status.success(),
        "cell.sh --auth {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
