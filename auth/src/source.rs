//! Tokens as the AFS client takes them: a fixed token, or one a keytab keeps fresh.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use afs::identity::{AuthError, Session, TokenSource};
use rx::rxkad::Level;
use tracing::{debug, warn};

use crate::login::login_from_keytab;
use crate::token::Token;

fn session_of(token: &Token, level: Level) -> Result<Session, AuthError> {
    Ok(Session {
        security: token
            .security(level)
            .map_err(|e| AuthError::Renewal(format!("token for {}: {e}", token.principal)))?,
        expires: token.expires,
    })
}

/// A token used as it is (from the store or a `--token` file) until it expires.
#[derive(Debug)]
pub struct StaticToken {
    name: String,
    cell: String,
    session: Session,
}

impl StaticToken {
    pub fn new(token: &Token, level: Level) -> Result<Self, AuthError> {
        Ok(Self {
            name: token.principal.clone(),
            cell: token.cell.clone(),
            session: session_of(token, level)?,
        })
    }
}

impl TokenSource for StaticToken {
    fn name(&self) -> &str {
        &self.name
    }
    fn cell(&self) -> &str {
        &self.cell
    }
    fn session(&self) -> Result<Session, AuthError> {
        Ok(self.session.clone())
    }
}

/// How long before expiry a keytab-backed token is renewed.
pub const RENEW_BEFORE: Duration = Duration::from_secs(10 * 60);

/// A service's identity: a token from a keytab, renewed when it is within [`RENEW_BEFORE`]
/// of expiring (or a quarter of its life, for short-lived tickets). A failed renewal keeps
/// the old token while it lasts and is tried again at the next call.
#[derive(Debug)]
pub struct KeytabSource {
    name: String,
    cell: String,
    realm: Option<String>,
    keytab: PathBuf,
    level: Level,
    current: Mutex<(Token, Session)>,
}

impl KeytabSource {
    /// Logs in once (so a bad keytab fails now, not at the first call).
    pub fn new(
        cell: &str,
        realm: Option<&str>,
        keytab: PathBuf,
        principal: &str,
        level: Level,
    ) -> Result<Self, crate::LoginError> {
        let token = login_from_keytab(cell, realm, &keytab, principal)?;
        let session =
            session_of(&token, level).map_err(|e| crate::LoginError::Principal(e.to_string()))?;
        Ok(Self {
            name: token.principal.clone(),
            cell: token.cell.clone(),
            realm: realm.map(str::to_string),
            keytab,
            level,
            current: Mutex::new((token, session)),
        })
    }

    fn due(token: &Token, now: SystemTime) -> bool {
        let life = token
            .expires
            .duration_since(token.starts)
            .unwrap_or_default();
        let margin = RENEW_BEFORE.min(life / 4);
        token.expires.checked_sub(margin).is_none_or(|at| now >= at)
    }
}

impl TokenSource for KeytabSource {
    fn name(&self) -> &str {
        &self.name
    }
    fn cell(&self) -> &str {
        &self.cell
    }
    fn session(&self) -> Result<Session, AuthError> {
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if Self::due(&cur.0, SystemTime::now()) {
            match login_from_keytab(&self.cell, self.realm.as_deref(), &self.keytab, &self.name) {
                Ok(token) => {
                    debug!(name = %self.name, "renewed the keytab token");
                    let session = session_of(&token, self.level)?;
                    *cur = (token, session);
                }
                Err(e) if !cur.0.is_expired() => {
                    warn!(name = %self.name, error = %e, "token renewal failed; the old token still holds");
                }
                Err(e) => return Err(AuthError::Renewal(e.to_string())),
            }
        }
        Ok(cur.1.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_near_expiry() {
        let now = SystemTime::now();
        let t = |life: u64, left: u64| Token {
            starts: now + Duration::from_secs(left) - Duration::from_secs(life),
            expires: now + Duration::from_secs(left),
            ..Token::default()
        };
        assert!(!KeytabSource::due(&t(36_000, 3_600), now));
        assert!(KeytabSource::due(&t(36_000, 300), now));
        // A 2-minute ticket is renewed in its last 30 s.
        assert!(!KeytabSource::due(&t(120, 60), now));
        assert!(KeytabSource::due(&t(120, 20), now));
    }
}
