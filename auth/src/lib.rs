//! AFS tokens, the OpenAFS way: a Kerberos 5 service ticket for `afs/CELL@REALM` and its
//! session key, turned into an rxkad credential.
//!
//! * [`login`] gets one from the user's ticket cache (what `aklog` does) or from a keytab
//!   (what a service does, without a password);
//! * [`store`] keeps tokens per user and cell in files only the user can read;
//! * [`source`] hands them to the AFS client ([`afs::identity::TokenSource`]), renewing a
//!   keytab-backed one before it expires.
#![forbid(unsafe_code)]

pub mod login;
pub mod source;
pub mod store;
pub mod token;

pub use login::{login_from_ccache, login_from_keytab, LoginError};
pub use source::{KeytabSource, StaticToken};
pub use store::TokenStore;
pub use token::{Token, TokenError};
