//! The on-disk cache of compiled code, as `wasmtime run` keeps one: wasmtime's own
//! (`Config::cache`), keyed on the component's bytes and everything in the engine
//! configuration that changes the code (wasmtime's version, compiler settings, memory
//! reservation and guards, wasm features), so a new process finds what an earlier one
//! compiled instead of compiling again. Components are cached like modules; the custom
//! memory creator plays no part in the code and does not matter.
//!
//! The cache is never a reason to fail: a directory that cannot be created or written
//! (a test user without a home, a read-only file system) means no cache, with a log
//! line (debug for the default directory, which may well not be ours to write; warn
//! for a directory or configuration someone asked for).

use std::path::{Path, PathBuf};

use wasmtime::{Cache, CacheConfig};

/// Where compiled code is cached between processes.
///
/// [`HostConfig::new`](super::HostConfig::new) leaves it [`CodeCache::Off`], as
/// wasmtime's `Config` does, so an embedder writes nothing under the user's home
/// unless it says so; `afs-wasm run` uses [`CodeCache::Default`], as `wasmtime run`
/// does, unless given `-C cache=n`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CodeCache {
    /// No cache: every new host compiles again (within one host a file is compiled
    /// once per version all the same).
    #[default]
    Off,
    /// [`CodeCache::default_directory`], with wasmtime's default cache settings
    /// (size limits, compression, cleanup).
    Default,
    /// This directory, with wasmtime's default cache settings.
    Directory(PathBuf),
    /// A wasmtime cache configuration file (TOML, a `[cache]` table: `directory`,
    /// limits, compression), as `wasmtime run -C cache-config=FILE` reads it.
    ConfigFile(PathBuf),
}

impl CodeCache {
    /// `$XDG_CACHE_HOME/afs-wasm`, else `$HOME/.cache/afs-wasm` (wasmtime's CLI uses
    /// `.../wasmtime` there; ours is separate, its entries could not be shared
    /// anyway: our engine configuration differs). `None` without either variable.
    pub fn default_directory() -> Option<PathBuf> {
        let absolute = |v: std::ffi::OsString| {
            let p = PathBuf::from(v);
            p.is_absolute().then_some(p)
        };
        std::env::var_os("XDG_CACHE_HOME")
            .and_then(absolute)
            .or_else(|| {
                std::env::var_os("HOME")
                    .and_then(absolute)
                    .map(|h| h.join(".cache"))
            })
            .map(|d| d.join("afs-wasm"))
    }

    /// The wasmtime cache to configure the engine with, if there is one and it works.
    pub(crate) fn open(&self) -> Option<Cache> {
        let (cache, asked) = match self {
            CodeCache::Off => return None,
            CodeCache::Default => {
                let Some(dir) = Self::default_directory() else {
                    tracing::debug!("no code cache: neither XDG_CACHE_HOME nor HOME is set");
                    return None;
                };
                (in_directory(&dir), false)
            }
            CodeCache::Directory(dir) => (in_directory(dir), true),
            CodeCache::ConfigFile(file) => (
                Cache::from_file(Some(file))
                    .map_err(|e| format!("{}: {e:#}", file.display()))
                    .and_then(|c| {
                        writable(c.directory())
                            .map(|()| c)
                            .map_err(|e| format!("{}: {e}", file.display()))
                    }),
                true,
            ),
        };
        match cache {
            Ok(cache) => {
                tracing::debug!(directory = %cache.directory().display(), "code cache");
                Some(cache)
            }
            Err(why) if asked => {
                tracing::warn!("no code cache, compiling without: {why}");
                None
            }
            Err(why) => {
                tracing::debug!("no code cache, compiling without: {why}");
                None
            }
        }
    }
}

fn in_directory(dir: &Path) -> Result<Cache, String> {
    let dir = std::path::absolute(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::create_dir_all(&dir)
        .map_err(|e| format!("cannot create the directory {}: {e}", dir.display()))?;
    writable(&dir)?;
    let mut config = CacheConfig::new();
    config.with_directory(&dir);
    Cache::new(config).map_err(|e| format!("{}: {e:#}", dir.display()))
}

/// Checks that files can be made in `dir` (wasmtime would otherwise warn at each
/// compilation that it cannot store the result).
fn writable(dir: &Path) -> Result<(), String> {
    let probe = dir.join(format!(".afs-wasm-probe-{}", std::process::id()));
    std::fs::File::create(&probe).map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use wasmtime::component::Component;
    use wasmtime::Engine;

    use super::super::engine::Engines;
    use super::super::{adapt, engine_config, WasmFeatures};
    use super::*;

    /// A fresh directory of this test's own (no shared cache state), removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static N: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "afs-wasm-code-cache-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const P1: &str = r#"(module
        (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
        (memory (export "memory") 1)
        (func (export "_start") (call $exit (i32.const 3))))"#;

    /// A new engine with a new `Cache` on the same directory (what a new process has)
    /// finds the component the first one compiled.
    #[test]
    fn a_new_engine_finds_components_in_the_cache() {
        let dir = TempDir::new();
        let module = wat::parse_str(P1).unwrap();
        let component = adapt::component_bytes(&module).unwrap();
        for (hits, misses) in [(0, 1), (1, 0)] {
            let cache = CodeCache::Directory(dir.0.clone()).open().unwrap();
            let mut config = engine_config(&WasmFeatures::default());
            config.cache(Some(cache.clone()));
            let engine = Engine::new(&config).unwrap();
            Component::new(&engine, &component).unwrap();
            assert_eq!((cache.cache_hits(), cache.cache_misses()), (hits, misses));
        }
        // The features are part of the key: another set compiles again.
        let cache = CodeCache::Directory(dir.0.clone()).open().unwrap();
        let mut features = WasmFeatures::default();
        features.set(super::super::WasmFeature::WideArithmetic, true);
        let mut config = engine_config(&features);
        config.cache(Some(cache.clone()));
        Component::new(&Engine::new(&config).unwrap(), &component).unwrap();
        assert_eq!((cache.cache_hits(), cache.cache_misses()), (0, 1));
    }

    /// The host's engines write through the cache too (adapted modules included).
    #[test]
    fn engines_use_the_configured_cache() {
        let dir = TempDir::new();
        let engines = Engines::new(
            &WasmFeatures::default(),
            &CodeCache::Directory(dir.0.clone()),
        )
        .unwrap();
        engines.load_bytes(&wat::parse_str(P1).unwrap()).unwrap();
        let modules = dir.0.join("modules");
        let entries: usize = std::fs::read_dir(&modules)
            .unwrap()
            .map(|d| {
                // The cache's worker may add `HASH.stats` files beside entries.
                std::fs::read_dir(d.unwrap().path())
                    .unwrap()
                    .filter(|e| {
                        !e.as_ref()
                            .unwrap()
                            .file_name()
                            .to_string_lossy()
                            .contains('.')
                    })
                    .count()
            })
            .sum();
        assert_eq!(
            entries,
            1,
            "one compiled component under {}",
            modules.display()
        );
    }

    /// A directory that cannot be made is no cache, not an error.
    #[test]
    fn an_unusable_directory_means_no_cache() {
        let dir = TempDir::new();
        std::fs::write(&dir.0, b"a file, not a directory").unwrap();
        assert!(CodeCache::Directory(dir.0.join("cache")).open().is_none());
        assert!(CodeCache::ConfigFile(dir.0.join("no-such.toml"))
            .open()
            .is_none());
        assert!(CodeCache::Off.open().is_none());
        Engines::new(
            &WasmFeatures::default(),
            &CodeCache::Directory(dir.0.join("cache")),
        )
        .unwrap();
        let _ = std::fs::remove_file(&dir.0);
    }
}
