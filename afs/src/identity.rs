//! Who the client is to a cell's servers.
//!
//! Anonymous calls go on rxnull connections; an authenticated identity proves itself with
//! rxkad and a token. Servers attribute every call on a connection to the identity that
//! authenticated it, so each identity has connections of its own (rx pools connections by
//! [`Security`]); a token that is renewed gets new ones.
//!
//! Where tokens come from (a Kerberos ticket cache, a keytab, a token file) is not this
//! crate's business: a [`TokenSource`] hands the client the credential to use now.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use rx::security::Security;

/// An identity's credential for calls made now.
#[derive(Debug, Clone)]
pub struct Session {
    /// What connections are made with: the same value for as long as the token is the
    /// same, so that calls share connections.
    pub security: Security,
    /// When the token stops working; calls after it fail with "token expired".
    pub expires: SystemTime,
}

/// Why an identity has no usable credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("token expired for {name} in cell {cell} (at {at})")]
    Expired {
        name: String,
        cell: String,
        at: String,
    },
    #[error("no token for cell {cell}")]
    NoToken { cell: String },
    #[error("{0}")]
    Renewal(String),
}

/// Hands out the credential of one identity in one cell, renewing it if it can.
pub trait TokenSource: Send + Sync + fmt::Debug {
    /// The identity's name as a user knows it, e.g. `alice@EXAMPLE.ORG`.
    fn name(&self) -> &str;
    /// The cell the token is good for.
    fn cell(&self) -> &str;
    /// The credential to use now.
    fn session(&self) -> Result<Session, AuthError>;
}

/// Who calls the servers.
#[derive(Debug, Clone, Default)]
pub enum Identity {
    /// rxnull: only what `system:anyuser` may do.
    #[default]
    Anonymous,
    /// rxkad with a token per cell (as a PAG holds them); cells without one are reached
    /// anonymously, as OpenAFS's cache manager does.
    Tokens(Arc<[Arc<dyn TokenSource>]>),
}

impl Identity {
    /// An identity with these tokens (anonymous if there are none).
    pub fn with_tokens(tokens: Vec<Arc<dyn TokenSource>>) -> Self {
        if tokens.is_empty() {
            Identity::Anonymous
        } else {
            Identity::Tokens(tokens.into())
        }
    }

    fn token_for(&self, cell: &str) -> Option<&Arc<dyn TokenSource>> {
        match self {
            Identity::Anonymous => None,
            Identity::Tokens(ts) => ts.iter().find(|t| t.cell().eq_ignore_ascii_case(cell)),
        }
    }

    /// The name to put in messages about `cell` ("permission denied for alice@REALM on ...").
    pub fn name_in(&self, cell: &str) -> &str {
        self.token_for(cell).map_or("anonymous", |t| t.name())
    }

    /// What connections to `cell`'s servers are made with.
    pub fn security(&self, cell: &str) -> Result<Security, AuthError> {
        match self.token_for(cell) {
            Some(t) => {
                let session = t.session()?;
                if session.expires <= SystemTime::now() {
                    return Err(AuthError::Expired {
                        name: t.name().to_string(),
                        cell: t.cell().to_string(),
                        at: format_time(session.expires),
                    });
                }
                Ok(session.security)
            }
            None => Ok(Security::null()),
        }
    }
}

/// A time as seconds since the epoch and UTC date, for messages.
pub fn format_time(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_utc_dates() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        assert_eq!(format_time(t), "2026-11-18 11:06:40 UTC");
        assert_eq!(
            format_time(SystemTime::UNIX_EPOCH),
            "1970-01-01 00:00:00 UTC"
        );
    }
}
