//! Tokens kept per user: one file per cell, readable by the user alone.
//!
//! OpenAFS and kAFS keep tokens in the kernel (a PAG, a keyring); a user-space client keeps
//! them in files, as a Kerberos FILE ccache does: the directory is 0700 and each token 0600,
//! written to a temporary file and renamed into place. A directory or file that others could
//! read is refused, never used.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::token::{Token, TokenError};

/// Why the store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("token store {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "token store {path} is not private (mode {mode:o}, owner {owner}); refusing to use it"
    )]
    NotPrivate {
        path: PathBuf,
        mode: u32,
        owner: u32,
    },
    #[error("token {path}: {source}")]
    Token { path: PathBuf, source: TokenError },
}

/// The directory of one user's tokens.
#[derive(Debug, Clone)]
pub struct TokenStore {
    dir: PathBuf,
}

impl TokenStore {
    /// The store at `dir` (created 0700 on first write).
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The user's store: `$AFS_WASM_TOKENS`, else `$XDG_RUNTIME_DIR/afs-wasm/tokens` (a
    /// per-login tmpfs, like a kernel keyring that dies with the session), else
    /// `$HOME/.afs-wasm/tokens`, else `/tmp/afs-wasm-tokens-UID`. `$XDG_RUNTIME_DIR` and
    /// `$HOME` count only when they are ours (a process run under another uid with the
    /// caller's environment must not use, or trip over, the caller's store).
    pub fn default_for_user() -> Self {
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        let ours = |d: &std::ffi::OsString| {
            fs::metadata(d).is_ok_and(|m| m.is_dir() && m.uid() == my_uid())
        };
        let dir = if let Some(d) = env("AFS_WASM_TOKENS") {
            PathBuf::from(d)
        } else if let Some(d) = env("XDG_RUNTIME_DIR").filter(ours) {
            Path::new(&d).join("afs-wasm/tokens")
        } else if let Some(h) = env("HOME").filter(ours) {
            Path::new(&h).join(".afs-wasm/tokens")
        } else {
            std::env::temp_dir().join(format!("afs-wasm-tokens-{}", my_uid()))
        };
        Self { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, cell: &str) -> PathBuf {
        self.dir.join(cell.to_ascii_lowercase())
    }

    fn io(&self, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
        let path = path.to_path_buf();
        move |source| StoreError::Io { path, source }
    }

    /// Refuses a path that is not ours alone.
    fn check_private(path: &Path, meta: &fs::Metadata) -> Result<(), StoreError> {
        let mode = meta.permissions().mode() & 0o7777;
        if meta.uid() != my_uid() || mode & 0o077 != 0 {
            return Err(StoreError::NotPrivate {
                path: path.to_path_buf(),
                mode,
                owner: meta.uid(),
            });
        }
        Ok(())
    }

    /// Stores `token` as the one for its cell.
    pub fn save(&self, token: &Token) -> Result<PathBuf, StoreError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(self.io(&self.dir))?;
        let meta = fs::metadata(&self.dir).map_err(self.io(&self.dir))?;
        Self::check_private(&self.dir, &meta)?;
        let path = self.path_of(&token.cell);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(self.io(&tmp))?;
        f.write_all(token.encode().as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(self.io(&tmp))?;
        fs::rename(&tmp, &path).map_err(self.io(&path))?;
        Ok(path)
    }

    /// The token for `cell`, if the store has one.
    pub fn load(&self, cell: &str) -> Result<Option<Token>, StoreError> {
        let path = self.path_of(cell);
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(&path)(e)),
        };
        Self::check_private(&path, &meta)?;
        let dir_meta = fs::metadata(&self.dir).map_err(self.io(&self.dir))?;
        Self::check_private(&self.dir, &dir_meta)?;
        let text = fs::read_to_string(&path).map_err(self.io(&path))?;
        Token::decode(&text)
            .map(Some)
            .map_err(|source| StoreError::Token { path, source })
    }

    /// Every token in the store, by cell name; unreadable files are reported, not skipped.
    pub fn list(&self) -> Result<Vec<Result<Token, StoreError>>, StoreError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io(&self.dir)(e)),
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| !n.contains(".tmp"))
            .collect();
        names.sort();
        Ok(names
            .into_iter()
            .filter_map(|n| self.load(&n).transpose())
            .collect())
    }

    /// Drops the token for `cell` (true if there was one).
    pub fn remove(&self, cell: &str) -> Result<bool, StoreError> {
        let path = self.path_of(cell);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.io(&path)(e)),
        }
    }

    /// Drops every token (the number dropped).
    pub fn remove_all(&self) -> Result<usize, StoreError> {
        let mut n = 0;
        for t in self.list()?.into_iter().flatten() {
            n += usize::from(self.remove(&t.cell)?);
        }
        Ok(n)
    }
}

/// Our effective uid: the owner of our /proc entry (no libc call, no unsafe).
fn my_uid() -> u32 {
    fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn token(cell: &str) -> Token {
        Token {
            cell: cell.into(),
            principal: "alice@EXAMPLE.ORG".into(),
            ticket: vec![1; 40],
            enctype: 18,
            session_key: vec![2; 32],
            // Whole seconds: the file keeps no more.
            expires: SystemTime::UNIX_EPOCH + Duration::from_secs(4_000_000_000),
            ..Token::default()
        }
    }

    #[test]
    fn save_load_list_remove_with_private_modes() {
        let dir = std::env::temp_dir().join(format!("afs-auth-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let store = TokenStore::at(dir.join("tokens"));
        assert!(store.load("example.org").unwrap().is_none());
        let path = store.save(&token("Example.ORG")).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(store.dir()).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(
            store.load("example.org").unwrap().unwrap(),
            token("Example.ORG")
        );
        store.save(&token("other.org")).unwrap();
        assert_eq!(store.list().unwrap().len(), 2);
        // A token file others can read is refused.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            store.load("example.org"),
            Err(StoreError::NotPrivate { .. })
        ));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(store.remove("example.org").unwrap());
        assert!(!store.remove("example.org").unwrap());
        assert_eq!(store.remove_all().unwrap(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}
