//! Paths a guest names relative to a descriptor, taken lexically and kept beneath
//! the descriptor's preopen, as wasmtime-wasi (cap-std) keeps them beneath a preopened
//! local directory.

use afs::path::AfsPath;

use super::bindings::wasi::filesystem::types::ErrorCode;

/// The longest name AFS directories hold (and Linux allows).
const NAME_MAX: usize = 255;
/// The longest path Linux resolves (PATH_MAX, its NUL included).
const PATH_MAX: usize = 4096;

/// A guest's path, resolved lexically against a descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Joined {
    /// The logical path named.
    pub(crate) path: AfsPath,
    /// It ended in `/` (or `/.`): only a directory will do.
    pub(crate) wants_dir: bool,
    /// Directories the path passes through before a `..` (`a` in `a/../b`): each must
    /// exist and be a directory, as it must for the kernel and cap-std, which walk
    /// `..` physically.
    pub(crate) passes: Vec<AfsPath>,
    /// The path climbs above the preopen once `passes` are walked: `not-permitted`.
    pub(crate) escapes: bool,
}

/// `relative` from the directory at `from` (logical path), which lies at or beneath
/// `root` (the preopen's prefix): `.` vanishes, `..` takes a component away but never
/// above `root`. An absolute path, or one that climbs above `root`, is `not-permitted`
/// (cap-std's answer for a path leading out of its directory), an empty one
/// `no-entry`, a name past 255 bytes `name-too-long`.
pub(crate) fn join(root: &AfsPath, from: &AfsPath, relative: &str) -> Result<Joined, ErrorCode> {
    if relative.is_empty() {
        return Err(ErrorCode::NoEntry);
    }
    if relative.starts_with('/') {
        return Err(ErrorCode::NotPermitted);
    }
    if relative.len() >= PATH_MAX {
        return Err(ErrorCode::NameTooLong);
    }
    let mut path = from.clone();
    let mut wants_dir = false;
    let mut passes: Vec<AfsPath> = Vec::new();
    for part in relative.split('/') {
        wants_dir = matches!(part, "" | "." | "..");
        match part {
            "" | "." => {}
            ".." => {
                if path.components.len() <= root.components.len() {
                    return Ok(Joined {
                        path,
                        wants_dir,
                        passes,
                        escapes: true,
                    });
                }
                if !passes.contains(&path) {
                    passes.push(path.clone());
                }
                path.components.pop();
            }
            name if name.len() > NAME_MAX => return Err(ErrorCode::NameTooLong),
            name => path.components.push(name.to_string()),
        }
    }
    Ok(Joined {
        path,
        wants_dir,
        passes,
        escapes: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> AfsPath {
        AfsPath::parse(s).unwrap()
    }

    #[test]
    fn paths_stay_beneath_the_preopen() {
        let root = p("/afs/c/test/d");
        let sub = p("/afs/c/test/d/sub");
        let j = |from: &AfsPath, rel: &str| {
            join(&root, from, rel).map(|j| {
                let passes: Vec<String> = j.passes.iter().map(|p| p.to_string()).collect();
                (j.path.to_string(), j.wants_dir, passes, j.escapes)
            })
        };
        let ok = |p: &str, dir: bool| Ok((p.to_string(), dir, vec![], false));
        assert_eq!(j(&root, "a/b"), ok("/afs/c/test/d/a/b", false));
        assert_eq!(
            j(&root, "a/../b/"),
            Ok((
                "/afs/c/test/d/b".into(),
                true,
                vec!["/afs/c/test/d/a".into()],
                false
            ))
        );
        assert_eq!(j(&root, "."), ok("/afs/c/test/d", true));
        assert_eq!(
            j(&sub, ".."),
            Ok((
                "/afs/c/test/d".into(),
                true,
                vec!["/afs/c/test/d/sub".into()],
                false
            ))
        );
        assert!(j(&root, "..").unwrap().3);
        assert!(j(&sub, "../../x").unwrap().3);
        let climb = j(&root, "a/../../x").unwrap();
        assert_eq!(
            (climb.2, climb.3),
            (vec!["/afs/c/test/d/a".to_string()], true)
        );
        assert_eq!(j(&root, "/etc/passwd"), Err(ErrorCode::NotPermitted));
        assert_eq!(j(&root, ""), Err(ErrorCode::NoEntry));
        assert_eq!(j(&root, &"x".repeat(256)), Err(ErrorCode::NameTooLong));
        assert!(j(&root, &"x".repeat(255)).is_ok());
        assert_eq!(j(&root, &"./".repeat(2048)), Err(ErrorCode::NameTooLong));
    }
}
