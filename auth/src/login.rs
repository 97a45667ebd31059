//! Getting a token from Kerberos: the AFS service ticket `afs/CELL@REALM`.
//!
//! `aklog` does this from the user's ticket cache: it asks the KDC (with the cached TGT) for
//! a ticket to the cell's AFS service and keeps the ticket and its session key as the token.
//! A service has no TGT and no password, so [`login_from_keytab`] first gets a TGT with its
//! key. No DNS is needed when krb5.conf names the realm's KDCs, as it must here.

use std::path::Path;
use std::time::{Duration, SystemTime};

use krb5::{CacheName, ClientError, Credentials, KdcClient, Keytab, Krb5Conf, Principal};
use rx::rxkad::KVNO_KERBEROS_V5;

use crate::token::Token;

/// Why no token could be made.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("krb5.conf: {0}")]
    Config(String),
    #[error("Kerberos ticket cache: {0}")]
    Cache(String),
    #[error("keytab {path}: {reason}")]
    Keytab { path: String, reason: String },
    #[error("{0}")]
    Principal(String),
    #[error("no AFS service ticket for cell {cell} in realm {realm}: {source}")]
    Service {
        cell: String,
        realm: String,
        source: ClientError,
    },
    #[error("Kerberos login as {principal} failed: {source}")]
    Login {
        principal: String,
        source: ClientError,
    },
}

/// The realm a cell's AFS service is in, unless given: the cell name upper-cased (what
/// aklog assumes when the cell's servers' hostnames name no realm, and what OpenAFS servers
/// take as their local realm).
pub fn default_realm(cell: &str) -> String {
    cell.to_ascii_uppercase()
}

fn conf() -> Result<Krb5Conf, LoginError> {
    Krb5Conf::load_default().map_err(|e| LoginError::Config(e.to_string()))
}

fn kdc(conf: &Krb5Conf, realm: &str) -> Result<KdcClient, LoginError> {
    KdcClient::from_config(conf, realm).map_err(|e| LoginError::Config(e.to_string()))
}

/// The service principals to try: `afs/cell@REALM`, then the older `afs@REALM` (which
/// aklog also accepts when the realm is the cell's name).
fn services(cell: &str, realm: &str) -> Vec<Principal> {
    let mut v = vec![Principal::new(1, ["afs", cell], realm)];
    if realm.eq_ignore_ascii_case(cell) {
        v.push(Principal::new(1, ["afs"], realm));
    }
    v
}

/// Tries each service principal; a KDC that does not know one ("principal unknown") moves
/// on to the next.
fn service_ticket(
    cell: &str,
    realm: &str,
    mut get: impl FnMut(&Principal) -> Result<Credentials, ClientError>,
) -> Result<Credentials, LoginError> {
    const KDC_ERR_S_PRINCIPAL_UNKNOWN: i32 = 7;
    let mut last = None;
    for service in services(cell, realm) {
        match get(&service) {
            Ok(c) => return Ok(c),
            Err(e) if e.kdc_code() == Some(KDC_ERR_S_PRINCIPAL_UNKNOWN) => last = Some(e),
            Err(source) => {
                return Err(LoginError::Service {
                    cell: cell.into(),
                    realm: realm.into(),
                    source,
                })
            }
        }
    }
    Err(LoginError::Service {
        cell: cell.into(),
        realm: realm.into(),
        source: last.expect("at least one service principal"),
    })
}

fn token_of(cell: &str, c: Credentials) -> Token {
    let time = |t: i64| SystemTime::UNIX_EPOCH + Duration::from_secs(t.max(0) as u64);
    Token {
        cell: cell.to_ascii_lowercase(),
        principal: c.client.to_string(),
        kvno: KVNO_KERBEROS_V5,
        ticket: c.ticket,
        enctype: c.session_key.enctype(),
        session_key: c.session_key.bytes().to_vec(),
        starts: time(c.starttime.unwrap_or(c.authtime)),
        expires: time(c.endtime),
    }
}

/// A token for `cell` from the ticket cache (`KRB5CCNAME`, else krb5.conf's default), as
/// `aklog` makes one. The service ticket is cached there too, as kvno and aklog do.
pub fn login_from_ccache(cell: &str, realm: Option<&str>) -> Result<Token, LoginError> {
    let conf = conf()?;
    let realm = realm.map_or_else(|| default_realm(cell), str::to_string);
    let cache = CacheName::default(&conf).map_err(|e| LoginError::Cache(e.to_string()))?;
    let kdc = kdc(&conf, &realm)?;
    let creds = service_ticket(cell, &realm, |s| kdc.service_ticket_cached(&cache, s))?;
    Ok(token_of(cell, creds))
}

/// A token for `cell` as `principal`, with its key from `keytab` (for services).
pub fn login_from_keytab(
    cell: &str,
    realm: Option<&str>,
    keytab: &Path,
    principal: &str,
) -> Result<Token, LoginError> {
    let conf = conf()?;
    let client = Principal::parse(principal)
        .map_err(|e| LoginError::Principal(format!("bad principal {principal:?}: {e}")))?;
    let realm = realm.map_or_else(|| default_realm(cell), str::to_string);
    let keytab_err = |reason: String| LoginError::Keytab {
        path: keytab.display().to_string(),
        reason,
    };
    let kt = Keytab::load(keytab).map_err(|e| keytab_err(e.to_string()))?;
    let tgt = kdc(&conf, &client.realm)?
        .login_with_keytab(&client, &kt)
        .map_err(|source| LoginError::Login {
            principal: principal.into(),
            source,
        })?;
    let kdc = kdc(&conf, &realm)?;
    let creds = service_ticket(cell, &realm, |s| kdc.service_ticket(&tgt, s))?;
    Ok(token_of(cell, creds))
}
