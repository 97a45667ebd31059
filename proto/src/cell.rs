//! Cell configuration: `CellServDB` and `ThisCell`, in the OpenAFS formats.
//!
//! `CellServDB` lists, for each cell, the volume location (database)
//! servers:
//!
//! ```text
//! >example.org        #Example Organisation
//! 192.0.2.10          #db1.example.org
//! [192.0.2.11]        #db2.example.org (bracketed: non-voting clone, still usable)
//! ```
//!
//! `ThisCell` holds the name of the local cell on its first line.
//!
//! Paths default to `/etc/openafs/{CellServDB,ThisCell}`, can be overridden
//! by the `AFS_CELLSERVDB` / `AFS_THISCELL` environment variables, and by
//! explicit paths, which win over both.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Volume location server port.
pub const VL_PORT: u16 = 7003;
/// Fileserver port.
pub const FS_PORT: u16 = 7000;
/// Port OpenAFS cache managers use for the callback service.
pub const CM_PORT: u16 = 7001;

/// Default `CellServDB` location.
pub const DEFAULT_CELLSERVDB: &str = "/etc/openafs/CellServDB";
/// Default `ThisCell` location.
pub const DEFAULT_THISCELL: &str = "/etc/openafs/ThisCell";
/// Environment variable overriding the `CellServDB` path.
pub const ENV_CELLSERVDB: &str = "AFS_CELLSERVDB";
/// Environment variable overriding the `ThisCell` path.
pub const ENV_THISCELL: &str = "AFS_THISCELL";

/// Why cell configuration could not be loaded.
#[derive(Debug, Error)]
pub enum CellError {
    /// A configuration file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A line of `CellServDB` is malformed.
    #[error("CellServDB line {line}: {message}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// `ThisCell` is empty.
    #[error("ThisCell names no cell")]
    NoThisCell,
    /// The cell is not in `CellServDB`.
    #[error("cell {0} is not listed in CellServDB")]
    UnknownCell(String),
    /// The cell is listed without any servers.
    #[error("cell {0} has no database servers in CellServDB")]
    NoServers(String),
}

/// One cell and where its volume location servers are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellConfig {
    /// Cell name, e.g. `example.org`.
    pub name: String,
    /// VL servers (port 7003).
    pub vlservers: Vec<SocketAddrV4>,
}

/// Parsed `CellServDB`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CellServDb {
    /// Cells in file order.
    pub cells: Vec<CellConfig>,
}

/// Text before any `#` comment, trimmed.
fn strip_comment(line: &str) -> &str {
    line.split('#').next().unwrap_or("").trim()
}

fn parse_err(line: usize, message: impl Into<String>) -> CellError {
    CellError::Parse {
        line,
        message: message.into(),
    }
}

fn parse_host(text: &str, line: usize) -> Result<SocketAddrV4, CellError> {
    // Only the first token is the address; anything after it is ignored.
    let token = text.split_whitespace().next().unwrap_or("");
    let token = token
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(token);
    let addr: Ipv4Addr = token
        .parse()
        .map_err(|_| parse_err(line, format!("invalid server address {token:?}")))?;
    Ok(SocketAddrV4::new(addr, VL_PORT))
}

impl CellServDb {
    /// Parse `CellServDB` text. Blank lines and lines starting with `#` are
    /// ignored; a server line before the first cell line is an error.
    pub fn parse(text: &str) -> Result<Self, CellError> {
        let mut db = CellServDb::default();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if let Some(rest) = trimmed.strip_prefix('>') {
                // ">name [linkedcell] #comment": only the name matters here.
                let name = strip_comment(rest)
                    .split_whitespace()
                    .next()
                    .ok_or_else(|| parse_err(line, "cell line without a name"))?;
                db.cells.push(CellConfig {
                    name: name.to_string(),
                    vlservers: Vec::new(),
                });
                continue;
            }
            let addr = parse_host(strip_comment(trimmed), line)?;
            let cell = db
                .cells
                .last_mut()
                .ok_or_else(|| parse_err(line, "server listed before any >cell line"))?;
            if !cell.vlservers.contains(&addr) {
                cell.vlservers.push(addr);
            }
        }
        Ok(db)
    }

    /// Read and parse a `CellServDB` file.
    pub fn load(path: &Path) -> Result<Self, CellError> {
        Self::parse(&read(path)?)
    }

    /// Find a cell by name (case-insensitive, as cell names are DNS-like);
    /// the first listing wins if a cell appears twice.
    pub fn get(&self, name: &str) -> Option<&CellConfig> {
        self.cells
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }
}

/// Reads a configuration file as text. The CellServDB that OpenAFS and Debian ship has
/// Latin-1 bytes in its comments, so bytes that are not UTF-8 become U+FFFD instead of
/// failing the whole file: names and addresses are ASCII.
fn read(path: &Path) -> Result<String, CellError> {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .map_err(|source| CellError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// Parse `ThisCell` text: the first word of the first non-blank line.
pub fn parse_this_cell(text: &str) -> Result<String, CellError> {
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .next()
        .map(str::to_string)
        .ok_or(CellError::NoThisCell)
}

/// Where to find the configuration files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellPaths {
    /// `CellServDB` path.
    pub cellservdb: PathBuf,
    /// `ThisCell` path.
    pub thiscell: PathBuf,
}

impl CellPaths {
    /// Resolve paths: explicit argument, else environment variable, else the
    /// OpenAFS default.
    pub fn resolve(cellservdb: Option<&Path>, thiscell: Option<&Path>) -> Self {
        Self::resolve_with(cellservdb, thiscell, |k| std::env::var_os(k))
    }

    /// [`CellPaths::resolve`] with an injectable environment, for tests.
    pub fn resolve_with(
        cellservdb: Option<&Path>,
        thiscell: Option<&Path>,
        env: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Self {
        let pick = |explicit: Option<&Path>, var: &str, default: &str| {
            explicit
                .map(Path::to_path_buf)
                .or_else(|| env(var).filter(|v| !v.is_empty()).map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from(default))
        };
        Self {
            cellservdb: pick(cellservdb, ENV_CELLSERVDB, DEFAULT_CELLSERVDB),
            thiscell: pick(thiscell, ENV_THISCELL, DEFAULT_THISCELL),
        }
    }
}

/// Load the configuration of `cell`, or of the local cell named in
/// `ThisCell` when `cell` is `None`. Fails if the cell has no servers.
pub fn load_cell(cell: Option<&str>, paths: &CellPaths) -> Result<CellConfig, CellError> {
    let name = match cell {
        Some(c) => c.to_string(),
        None => parse_this_cell(&read(&paths.thiscell)?)?,
    };
    let db = CellServDb::load(&paths.cellservdb)?;
    let found = db
        .get(&name)
        .cloned()
        .ok_or_else(|| CellError::UnknownCell(name.clone()))?;
    if found.vlservers.is_empty() {
        return Err(CellError::NoServers(found.name));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
# a comment line
>grand.central.org      #GCO Public CellServDB 01 Jan 2024
18.9.48.14                      #grand.mit.edu
128.2.13.208                    #grand-old-opry.central.org

>example.org   #Example
  192.0.2.10   #db1.example.org
[192.0.2.11]   #db2.example.org
192.0.2.10     #duplicate
>empty.cell
";

    #[test]
    fn parses_cells() {
        let db = CellServDb::parse(SAMPLE).unwrap();
        assert_eq!(db.cells.len(), 3);
        let gco = db.get("GRAND.central.org").unwrap();
        assert_eq!(gco.name, "grand.central.org");
        assert_eq!(
            gco.vlservers,
            vec![
                SocketAddrV4::new(Ipv4Addr::new(18, 9, 48, 14), 7003),
                SocketAddrV4::new(Ipv4Addr::new(128, 2, 13, 208), 7003),
            ]
        );
        let ex = db.get("example.org").unwrap();
        assert_eq!(ex.vlservers.len(), 2);
        assert_eq!(*ex.vlservers[1].ip(), Ipv4Addr::new(192, 0, 2, 11));
        assert!(db.get("empty.cell").unwrap().vlservers.is_empty());
        assert!(db.get("nope").is_none());
    }

    #[test]
    fn a_latin1_comment_does_not_spoil_the_file() {
        let dir = std::env::temp_dir().join(format!("cellservdb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("CellServDB");
        let mut text = b">uni.example #Bergische Universit\xe4t\n".to_vec();
        text.extend_from_slice(b"192.0.2.7 #afs.uni.example\n");
        std::fs::write(&path, text).unwrap();
        let db = CellServDb::load(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let cell = db.get("uni.example").expect("the cell is listed");
        assert_eq!(cell.vlservers, ["192.0.2.7:7003".parse().unwrap()]);
    }

    #[test]
    fn parse_errors() {
        assert!(matches!(
            CellServDb::parse("1.2.3.4 #x\n"),
            Err(CellError::Parse { line: 1, .. })
        ));
        assert!(matches!(
            CellServDb::parse(">c\nnot-an-ip #x\n"),
            Err(CellError::Parse { line: 2, .. })
        ));
        assert!(matches!(
            CellServDb::parse(">  #no name\n"),
            Err(CellError::Parse { line: 1, .. })
        ));
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = crate::xdr::test_util::XorShift::new(7);
        let alphabet = b">#[]. \n\t0123456789abc\xff";
        for _ in 0..3000 {
            let len = rng.below(200);
            let bytes: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
            let text = String::from_utf8_lossy(&bytes);
            let _ = CellServDb::parse(&text);
            let _ = parse_this_cell(&text);
        }
    }

    #[test]
    fn this_cell() {
        assert_eq!(parse_this_cell("example.org\n").unwrap(), "example.org");
        assert_eq!(
            parse_this_cell("\n  example.org  \n").unwrap(),
            "example.org"
        );
        assert!(matches!(parse_this_cell(" \n"), Err(CellError::NoThisCell)));
    }

    #[test]
    fn path_resolution() {
        let none = |_: &str| None;
        let p = CellPaths::resolve_with(None, None, none);
        assert_eq!(p.cellservdb, PathBuf::from(DEFAULT_CELLSERVDB));
        assert_eq!(p.thiscell, PathBuf::from(DEFAULT_THISCELL));
        let env = |k: &str| match k {
            ENV_CELLSERVDB => Some("/tmp/csdb".into()),
            ENV_THISCELL => Some("/tmp/tc".into()),
            _ => None,
        };
        let p = CellPaths::resolve_with(None, None, env);
        assert_eq!(p.cellservdb, PathBuf::from("/tmp/csdb"));
        assert_eq!(p.thiscell, PathBuf::from("/tmp/tc"));
        let p = CellPaths::resolve_with(Some(Path::new("/x")), None, env);
        assert_eq!(p.cellservdb, PathBuf::from("/x"));
        assert_eq!(p.thiscell, PathBuf::from("/tmp/tc"));
    }

    #[test]
    fn load_from_files() {
        let dir = std::env::temp_dir().join(format!("afs-cell-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let csdb = dir.join("CellServDB");
        let tc = dir.join("ThisCell");
        std::fs::write(&csdb, SAMPLE).unwrap();
        std::fs::write(&tc, "example.org\n").unwrap();
        let paths = CellPaths::resolve_with(Some(&csdb), Some(&tc), |_| None);
        let c = load_cell(None, &paths).unwrap();
        assert_eq!(c.name, "example.org");
        assert_eq!(c.vlservers.len(), 2);
        assert!(matches!(
            load_cell(Some("empty.cell"), &paths),
            Err(CellError::NoServers(_))
        ));
        assert!(matches!(
            load_cell(Some("other.org"), &paths),
            Err(CellError::UnknownCell(_))
        ));
        assert_eq!(CellServDb::load(&csdb).unwrap().cells.len(), 3);
        let missing = CellPaths::resolve_with(Some(&dir.join("none")), Some(&tc), |_| None);
        assert!(matches!(
            load_cell(None, &missing),
            Err(CellError::Io { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
