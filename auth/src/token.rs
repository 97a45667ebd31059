//! A token: what `afs-wasm login` stores and every command uses.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rx::rxkad::{self, Credential, Level, Rxkad, KVNO_KERBEROS_V5};
use rx::security::Security;

/// A token for one cell.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    pub cell: String,
    /// The Kerberos client principal, `name[/instance]@REALM`.
    pub principal: String,
    /// [`KVNO_KERBEROS_V5`]: the ticket is a whole DER Kerberos 5 Ticket.
    pub kvno: u32,
    pub ticket: Vec<u8>,
    /// The session key's Kerberos enctype and bytes (rxkad derives its key from them).
    pub enctype: i32,
    pub session_key: Vec<u8>,
    pub starts: SystemTime,
    pub expires: SystemTime,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("cell", &self.cell)
            .field("principal", &self.principal)
            .field("enctype", &self.enctype)
            .field("expires", &afs::identity::format_time(self.expires))
            .finish_non_exhaustive()
    }
}

/// Why a token cannot be read or used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token file: {0}")]
    Malformed(String),
    #[error(transparent)]
    Key(#[from] rxkad::KeyError),
}

const MAGIC: &str = "afs-wasm-token 1";

impl Token {
    /// The rxkad security class for this token at `level`.
    pub fn security(&self, level: Level) -> Result<Security, TokenError> {
        let key = rxkad::session_key(self.enctype, &self.session_key)?;
        Ok(Security::new(Rxkad::new(
            Credential {
                kvno: self.kvno,
                ticket: Arc::from(self.ticket.as_slice()),
                key,
            },
            level,
        )))
    }

    pub fn is_expired(&self) -> bool {
        self.expires <= SystemTime::now()
    }

    /// The file form: one `key value` line each, binary values in hex.
    pub fn encode(&self) -> String {
        format!(
            "{MAGIC}\ncell {}\nprincipal {}\nkvno {}\nenctype {}\nkey {}\nticket {}\nstarts {}\nexpires {}\n",
            self.cell,
            self.principal,
            self.kvno,
            self.enctype,
            hex(&self.session_key),
            hex(&self.ticket),
            unix(self.starts),
            unix(self.expires),
        )
    }

    pub fn decode(text: &str) -> Result<Self, TokenError> {
        let bad = |what: &str| TokenError::Malformed(what.to_string());
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err(bad("not an afs-wasm token"));
        }
        let mut field = |name: &str| -> Result<String, TokenError> {
            let line = lines
                .next()
                .ok_or_else(|| bad(&format!("{name} missing")))?;
            match line.split_once(' ') {
                Some((k, v)) if k == name && !v.is_empty() => Ok(v.to_string()),
                _ => Err(bad(&format!("expected {name}"))),
            }
        };
        let number = |s: String, name: &str| s.parse::<i64>().map_err(|_| bad(name));
        let cell = field("cell")?;
        let principal = field("principal")?;
        let kvno = number(field("kvno")?, "kvno")?;
        let enctype = number(field("enctype")?, "enctype")?;
        let session_key = unhex(&field("key")?).ok_or_else(|| bad("key"))?;
        let ticket = unhex(&field("ticket")?).ok_or_else(|| bad("ticket"))?;
        let starts = number(field("starts")?, "starts")?;
        let expires = number(field("expires")?, "expires")?;
        let time = |t: i64| SystemTime::UNIX_EPOCH + Duration::from_secs(t.max(0) as u64);
        Ok(Token {
            cell,
            principal,
            kvno: u32::try_from(kvno).map_err(|_| bad("kvno"))?,
            ticket,
            enctype: i32::try_from(enctype).map_err(|_| bad("enctype"))?,
            session_key,
            starts: time(starts),
            expires: time(expires),
        })
    }
}

impl Default for Token {
    fn default() -> Self {
        Token {
            cell: String::new(),
            principal: String::new(),
            kvno: KVNO_KERBEROS_V5,
            ticket: Vec::new(),
            enctype: 0,
            session_key: Vec::new(),
            starts: SystemTime::UNIX_EPOCH,
            expires: SystemTime::UNIX_EPOCH,
        }
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_form_round_trips_and_refuses_damage() {
        let t = Token {
            cell: "example.org".into(),
            principal: "alice@EXAMPLE.ORG".into(),
            ticket: vec![1, 2, 3, 255],
            enctype: 18,
            session_key: vec![7; 32],
            starts: SystemTime::UNIX_EPOCH + Duration::from_secs(100),
            expires: SystemTime::UNIX_EPOCH + Duration::from_secs(200),
            ..Token::default()
        };
        let text = t.encode();
        assert_eq!(Token::decode(&text).unwrap(), t);
        assert!(Token::decode(&text.replace("ticket 010203ff", "ticket 0102x")).is_err());
        assert!(Token::decode(&text.replace("kvno", "kvn0")).is_err());
        assert!(Token::decode("afs-wasm-token 1\ncell x\n").is_err());
        assert!(Token::decode("").is_err());
        assert!(t.security(Level::Crypt).is_ok());
        let des3 = Token { enctype: 16, ..t };
        assert!(des3.security(Level::Crypt).is_err());
    }
}
