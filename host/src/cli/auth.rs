//! `login`, `tokens` and `unlog`, and the identity every other command runs as.

use std::path::PathBuf;
use std::sync::Arc;

use afs::identity::{format_time, Identity, TokenSource};
use afs_auth::{login_from_ccache, login_from_keytab, StaticToken, TokenStore};
use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;
use rx::rxkad::Level;

/// `afs-wasm login`: an AFS token from Kerberos, kept in the user's token store.
#[derive(Debug, ClapArgs)]
pub struct LoginArgs {
    /// The Kerberos realm of the cell's AFS service (default: the cell name upper-cased).
    #[arg(long, value_name = "REALM")]
    pub realm: Option<String>,
    /// Log in with this keytab's key instead of the ticket cache (for services).
    #[arg(long, value_name = "FILE", requires = "principal")]
    pub keytab: Option<PathBuf>,
    /// The principal whose key the keytab holds.
    #[arg(long, value_name = "PRINCIPAL", requires = "keytab")]
    pub principal: Option<String>,
    /// Write the token to FILE (0600) instead of the token store: a guest's identity for
    /// `run --token FILE`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// The cell commands without a cell in their path use: `--cell`, else ThisCell.
pub fn default_cell(cell: Option<&str>, thiscell: Option<&PathBuf>) -> Result<String> {
    if let Some(c) = cell {
        return Ok(c.to_ascii_lowercase());
    }
    let path = thiscell
        .cloned()
        .or_else(|| std::env::var_os("AFS_THISCELL").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/etc/openafs/ThisCell"));
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no cell: give --cell, or configure ThisCell ({})",
            path.display()
        )
    })?;
    match text.split_whitespace().next() {
        Some(c) => Ok(c.to_ascii_lowercase()),
        None => bail!("{} names no cell", path.display()),
    }
}

pub fn login(cell: &str, args: &LoginArgs) -> Result<()> {
    let realm = args.realm.as_deref();
    let token = match (&args.keytab, &args.principal) {
        (Some(kt), Some(p)) => login_from_keytab(cell, realm, kt, p)?,
        _ => login_from_ccache(cell, realm)?,
    };
    let path = match &args.out {
        Some(file) => {
            save_token_file(file, &token)?;
            file.clone()
        }
        None => TokenStore::default_for_user().save(&token)?,
    };
    println!(
        "token for {} in cell {} until {} ({})",
        token.principal,
        token.cell,
        format_time(token.expires),
        path.display()
    );
    Ok(())
}

/// `afs-wasm tokens`: the tokens the store holds, as OpenAFS's `tokens` lists them.
pub fn tokens() -> Result<()> {
    let store = TokenStore::default_for_user();
    println!("Tokens held by afs-wasm ({}):", store.dir().display());
    for t in store.list()? {
        match t {
            Ok(t) => println!(
                "  {} in cell {}: {} {}",
                t.principal,
                t.cell,
                if t.is_expired() {
                    "EXPIRED at"
                } else {
                    "expires"
                },
                format_time(t.expires)
            ),
            Err(e) => println!("  unusable: {e}"),
        }
    }
    println!("--End of list--");
    Ok(())
}

/// `afs-wasm unlog`: drops the token of `cell`, or all of them.
pub fn unlog(cell: Option<&str>) -> Result<()> {
    let store = TokenStore::default_for_user();
    match cell {
        Some(c) => {
            if !store.remove(c)? {
                bail!("no token for cell {c}");
            }
        }
        None => {
            store.remove_all()?;
        }
    }
    Ok(())
}

/// Who a command runs as: anonymous with `--anonymous`, else with every token in the
/// user's store (a cell without one is reached anonymously). An expired token is kept, so
/// that calls to its cell fail with "token expired" rather than silently go anonymous.
pub fn identity(anonymous: bool, level: Level) -> Result<Identity> {
    if anonymous {
        return Ok(Identity::Anonymous);
    }
    // A store that cannot be read, or a token that cannot be used, leaves its cell
    // anonymous, said once on stderr (as OpenAFS goes on without tokens); `tokens` shows
    // the details.
    let store = TokenStore::default_for_user();
    let mut sources: Vec<Arc<dyn TokenSource>> = Vec::new();
    let listed = match store.list() {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!("{e}; going on without tokens");
            Vec::new()
        }
    };
    for t in listed {
        let source = match t {
            Ok(t) => StaticToken::new(&t, level).map_err(anyhow::Error::from),
            Err(e) => Err(e.into()),
        };
        match source {
            Ok(s) => sources.push(Arc::new(s)),
            Err(e) => tracing::warn!("unusable token: {e:#}"),
        }
    }
    Ok(Identity::with_tokens(sources))
}

/// Writes a token file readable by its owner alone.
fn save_token_file(file: &std::path::Path, token: &afs_auth::Token) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(file);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .with_context(|| format!("cannot write {}", file.display()))?;
    f.write_all(token.encode().as_bytes())?;
    Ok(())
}

/// A guest's own identity (`run --token` or `run --keytab --principal`), or None to run
/// it as the user's tokens.
pub fn guest_identity(
    token: Option<&std::path::Path>,
    keytab: Option<(&std::path::Path, &str)>,
    cell: Option<&str>,
    level: Level,
) -> Result<Option<Identity>> {
    if let Some(file) = token {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read token {}", file.display()))?;
        let token =
            afs_auth::Token::decode(&text).with_context(|| format!("token {}", file.display()))?;
        let source: Arc<dyn TokenSource> = Arc::new(StaticToken::new(&token, level)?);
        return Ok(Some(Identity::with_tokens(vec![source])));
    }
    if let Some((keytab, principal)) = keytab {
        let cell = cell.context("--keytab needs a cell: give --cell or configure ThisCell")?;
        let source: Arc<dyn TokenSource> = Arc::new(afs_auth::KeytabSource::new(
            cell,
            None,
            keytab.to_path_buf(),
            principal,
            level,
        )?);
        return Ok(Some(Identity::with_tokens(vec![source])));
    }
    Ok(None)
}
