//! Per-guest limits: what one guest may take from the host (memory, time, mappings,
//! pinned page-store bytes, bytes per copy), so that a hostile or broken guest fails
//! alone, with a message naming the limit, while the host and its other guests go on.
//!
//! Linear memory and tables are limited through wasmtime's `ResourceLimiter` (a denied
//! growth is remembered, so the trap that usually follows is explained); time through
//! epoch deadlines driven by one ticker thread that runs only while some guest has a
//! deadline; mappings, pinned bytes and copies by the `afs:client` imports themselves.

use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use wasmtime::Engine;

/// Limits for one guest. The defaults protect a host running many guests; raise them
/// for a guest that needs more.
///
/// A guest past its memory or time limit traps, and its run fails with a message naming
/// the limit; past the others, the `afs:client` call fails with `limit-exceeded`. The
/// host and its other guests go on either way.
///
/// ```
/// use std::time::Duration;
/// use afs_wasm_host::runtime::{parse_bytes, parse_duration, GuestLimits};
///
/// # fn main() -> Result<(), String> {
/// // As an operator writes them (`-W max-memory-size=256M,timeout=1.5s`).
/// let limits = GuestLimits::default()
///     .max_memory_bytes(parse_bytes("256M")?)
///     .timeout(parse_duration("1.5s")?)
///     .max_mappings(16);
/// assert_eq!(limits.max_memory_bytes, 256 << 20);
/// assert_eq!(limits.timeout, Some(Duration::from_millis(1500)));
/// assert_eq!(limits.max_copy_bytes, 64 << 20); // untouched: the default
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestLimits {
    /// Bytes each linear memory may grow to (wasmtime's `-W max-memory-size`).
    pub max_memory_bytes: u64,
    /// Elements each table may grow to.
    pub max_table_elements: usize,
    /// Wall-clock time the guest may run (wasmtime's `-W timeout`); None: no limit.
    /// Checked at epoch ticks of [`TICK`], so it holds to within a tick.
    pub timeout: Option<Duration>,
    /// Mappings the guest may hold at once (they share the host process's
    /// `vm.max_map_count` with every other guest).
    pub max_mappings: usize,
    /// Bytes of file pages the guest may keep mapped at once: the mapped ranges,
    /// rounded up to pages, zero-filled pages past the end of a file included.
    pub max_mapped_bytes: u64,
    /// Bytes one `read` or `write` by copy may carry (the host allocates that much).
    pub max_copy_bytes: u64,
}

impl Default for GuestLimits {
    fn default() -> Self {
        GuestLimits {
            max_memory_bytes: 1 << 30,
            max_table_elements: 1 << 20,
            timeout: None,
            max_mappings: 1024,
            max_mapped_bytes: 1 << 30,
            max_copy_bytes: 64 << 20,
        }
    }
}

impl GuestLimits {
    /// Bytes each linear memory may grow to: raise it for a guest that holds large data
    /// in its own memory (the regions it maps files onto are part of it). Default:
    /// 1 GiB.
    pub fn max_memory_bytes(mut self, bytes: u64) -> Self {
        self.max_memory_bytes = bytes;
        self
    }

    /// Elements each table may grow to; only guests that grow tables at run time come
    /// near it. Default: 2^20.
    pub fn max_table_elements(mut self, elements: usize) -> Self {
        self.max_table_elements = elements;
        self
    }

    /// Wall-clock time the guest may run, so that a spinning or stuck guest cannot hold
    /// its thread (or a request) forever; checked every [`TICK`]. Default: no limit.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Mappings the guest may hold at once: all guests share the process's
    /// `vm.max_map_count`, so keep it low for many guests. Default: 1024.
    pub fn max_mappings(mut self, mappings: usize) -> Self {
        self.max_mappings = mappings;
        self
    }

    /// Bytes of file pages the guest may keep mapped at once (pages past the end of a
    /// file included), which it pins in the shared page store. Default: 1 GiB.
    pub fn max_mapped_bytes(mut self, bytes: u64) -> Self {
        self.max_mapped_bytes = bytes;
        self
    }

    /// Bytes one `read` or `write` by copy may carry, since the host allocates that much
    /// for the call. Default: 64 MiB.
    pub fn max_copy_bytes(mut self, bytes: u64) -> Self {
        self.max_copy_bytes = bytes;
        self
    }
}

/// Which limit a guest ran into, for its error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    Memory,
    Table,
}

/// The store's `ResourceLimiter`: the guest's limits and the last growth it denied.
#[derive(Debug)]
pub(crate) struct Limiter {
    pub(crate) limits: GuestLimits,
    pub(crate) denied: Option<(Limit, u64)>,
}

impl Limiter {
    pub(crate) fn new(limits: GuestLimits) -> Self {
        Limiter {
            limits,
            denied: None,
        }
    }

    /// Why the guest failed, if it was denied growth: the trap that follows a failed
    /// allocation (an abort, `unreachable`) says nothing about it.
    pub(crate) fn explain(&self) -> Option<String> {
        let (limit, wanted) = self.denied?;
        Some(match limit {
            Limit::Memory => format!(
                "the guest's linear memory reached its limit of {} bytes (it asked for {wanted}; \
                 raise it with -W max-memory-size=BYTES)",
                self.limits.max_memory_bytes
            ),
            Limit::Table => format!(
                "a table of the guest reached its limit of {} elements (it asked for {wanted})",
                self.limits.max_table_elements
            ),
        })
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = desired as u64 <= self.limits.max_memory_bytes;
        if !ok {
            tracing::debug!(
                desired,
                limit = self.limits.max_memory_bytes,
                "memory growth denied"
            );
            self.denied = Some((Limit::Memory, desired as u64));
        }
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = desired <= self.limits.max_table_elements;
        if !ok {
            self.denied = Some((Limit::Table, desired as u64));
        }
        Ok(ok)
    }
}

/// The epoch period: timeouts are counted in these.
pub const TICK: Duration = Duration::from_millis(10);

/// Epoch deadlines for stores without a timeout: never reached.
pub(crate) const NO_DEADLINE: u64 = u64::MAX / 2;

/// The ticks a timeout lasts (at least one).
pub(crate) fn ticks(timeout: Duration) -> u64 {
    (timeout.as_nanos() / TICK.as_nanos()).clamp(1, u128::from(NO_DEADLINE)) as u64
}

/// Increments the engine's epoch every [`TICK`] while some guest has a deadline, and
/// sleeps otherwise (an idle host costs no wakeups).
pub(crate) struct EpochTicker {
    engine: Engine,
    state: Arc<(Mutex<TickerState>, Condvar)>,
    thread: OnceLock<()>,
}

#[derive(Default)]
struct TickerState {
    timed_guests: usize,
    stopped: bool,
}

/// Held while a guest with a deadline runs: keeps the ticker going.
pub(crate) struct Ticking(Arc<(Mutex<TickerState>, Condvar)>);

impl Drop for Ticking {
    fn drop(&mut self) {
        let (lock, _) = &*self.0;
        lock.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .timed_guests -= 1;
    }
}

impl EpochTicker {
    pub(crate) fn new(engine: Engine) -> Self {
        EpochTicker {
            engine,
            state: Arc::default(),
            thread: OnceLock::new(),
        }
    }

    /// Starts ticking (the thread on first use) until the returned guard drops.
    pub(crate) fn start(&self) -> std::io::Result<Ticking> {
        if self.thread.get().is_none() {
            let (engine, state) = (self.engine.clone(), self.state.clone());
            std::thread::Builder::new()
                .name("afs-epoch".into())
                .spawn(move || tick(&engine, &state))?;
            let _ = self.thread.set(());
        }
        let (lock, wake) = &*self.state;
        lock.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .timed_guests += 1;
        wake.notify_one();
        Ok(Ticking(self.state.clone()))
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        let (lock, wake) = &*self.state;
        lock.lock().unwrap_or_else(PoisonError::into_inner).stopped = true;
        wake.notify_one();
    }
}

fn tick(engine: &Engine, state: &(Mutex<TickerState>, Condvar)) {
    let (lock, wake) = state;
    let mut st = lock.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        if st.stopped {
            return;
        }
        if st.timed_guests == 0 {
            st = wake.wait(st).unwrap_or_else(PoisonError::into_inner);
            continue;
        }
        drop(st);
        std::thread::sleep(TICK);
        engine.increment_epoch();
        st = lock.lock().unwrap_or_else(PoisonError::into_inner);
    }
}

/// Parses a byte count: digits with an optional K, M, G or T suffix (powers of 1024,
/// as wasmtime's CLI reads sizes), optionally followed by `B` or `iB`. For limits an
/// embedder reads from its own configuration, in the CLI's words.
///
/// ```
/// use afs_wasm_host::runtime::parse_bytes;
/// assert_eq!(parse_bytes("64M"), Ok(64 << 20));
/// assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
/// assert!(parse_bytes("12X").is_err());
/// ```
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("{s:?}: unknown size suffix {c:?}")),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?}: expected a number of bytes (like 64M)"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?}: too large"))
}

/// Parses a duration: a number with `ms`, `s`, `m` or `h` (`s` if none), like wasmtime's
/// `-W timeout`.
///
/// ```
/// use std::time::Duration;
/// use afs_wasm_host::runtime::parse_duration;
/// assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
/// assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: f64 = num
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n >= 0.0)
        .ok_or_else(|| format!("{s:?}: expected a duration (like 500ms, 10s, 2m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_parse_as_wasmtime_reads_them() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("64M"), Ok(64 << 20));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("2k"), Ok(2048));
        assert!(parse_bytes("12X").is_err());
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes("99999999999T").is_err());
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("3 fortnights").is_err());
        assert_eq!(ticks(Duration::from_millis(1)), 1);
        assert_eq!(ticks(Duration::from_secs(1)), 100);
    }

    #[test]
    fn denied_growth_is_explained() {
        use wasmtime::ResourceLimiter;
        let mut l = Limiter::new(GuestLimits {
            max_memory_bytes: 1 << 20,
            ..GuestLimits::default()
        });
        assert!(l.memory_growing(0, 1 << 20, None).unwrap());
        assert!(l.explain().is_none());
        assert!(!l.memory_growing(1 << 20, 2 << 20, None).unwrap());
        let why = l.explain().unwrap();
        assert!(why.contains("limit of 1048576 bytes"), "{why}");
        assert!(why.contains("max-memory-size"), "{why}");
    }
}
