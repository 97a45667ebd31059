//! What each identity may do with a file: the server's CallerAccess, per caller.
//!
//! A file's pages and status are shared by every identity of the client, but its rights
//! are not: the server computes CallerAccess for the caller of each call. Like kAFS's permit
//! cache (fs/afs/security.c) and OpenAFS's axscache, a file keeps the rights each identity
//! was told, and each is good only under the promise it came with: a break of the file, of
//! its volume, or a reset of its server voids it, and the identity asks again. An identity
//! that was never told is not given another identity's answer.

use std::sync::Arc;

use super::ServerId;

/// The name anonymous (rxnull) callers are known by here. Every status also carries
/// AnonymousAccess, which is this identity's rights.
pub const ANONYMOUS: &str = "anonymous";

/// Identities remembered per file; the oldest is forgotten past this (and asks again).
const MAX_PERMITS: usize = 16;

/// The break counters a permit was learnt under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Generation {
    pub server: ServerId,
    pub server_epoch: u64,
    pub volume_breaks: u64,
    pub file_breaks: u64,
}

#[derive(Debug, Clone)]
struct Permit {
    who: Arc<str>,
    access: u32,
    at: Generation,
}

/// The permits of one file.
#[derive(Debug, Clone, Default)]
pub(crate) struct Permits(Vec<Permit>);

impl Permits {
    /// Notes that the server told `who` its rights are `access`, under `at`.
    pub fn grant(&mut self, who: &Arc<str>, access: u32, at: Generation) {
        self.0.retain(|p| *p.who != **who);
        if self.0.len() >= MAX_PERMITS {
            self.0.remove(0);
        }
        self.0.push(Permit {
            who: who.clone(),
            access,
            at,
        });
    }

    /// `who`'s rights, if it learnt them under `now` (the file's current counters).
    pub fn get(&self, who: &str, now: Generation) -> Option<u32> {
        self.0
            .iter()
            .find(|p| &*p.who == who && p.at == now)
            .map(|p| p.access)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(file_breaks: u64) -> Generation {
        Generation {
            server: ServerId(0),
            server_epoch: 0,
            volume_breaks: 0,
            file_breaks,
        }
    }

    #[test]
    fn a_permit_holds_for_its_identity_and_generation_only() {
        let (alice, bob): (Arc<str>, Arc<str>) = ("alice@R".into(), "bob@R".into());
        let mut p = Permits::default();
        p.grant(&alice, 0x7f, at(0));
        assert_eq!(p.get("alice@R", at(0)), Some(0x7f));
        assert_eq!(p.get("bob@R", at(0)), None, "bob was never told");
        assert_eq!(p.get("alice@R", at(1)), None, "a break voids it");
        p.grant(&bob, 0, at(0));
        assert_eq!(p.get("bob@R", at(0)), Some(0));
        p.grant(&alice, 9, at(1));
        assert_eq!(p.get("alice@R", at(1)), Some(9));
        for i in 0..MAX_PERMITS {
            p.grant(&Arc::from(format!("u{i}")), 1, at(1));
        }
        assert_eq!(p.get("alice@R", at(1)), None, "the oldest is forgotten");
        assert!(p.0.len() <= MAX_PERMITS);
    }
}
