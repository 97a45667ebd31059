//! Operations: what a host has done, as metrics.
//!
//! The host's components count their work in lock-free counters of their own (the
//! fileserver calls in [`afs::fs::FsStats`], callbacks in
//! [`afs::callback::CallbackStats`], the page store's [`PageStats`](afs::cache::pages::PageStats),
//! the [pager's](crate::pager::PagerStats)), which embedders read directly. Latencies are
//! recorded where they happen as histograms through the [`metrics`] facade, so an embedder
//! chooses the exporter (or none: without a recorder a record is a no-op).
//!
//! [`publish`] copies a host's counters into the installed recorder, under the names
//! below; [`Prometheus`] installs a Prometheus recorder and renders the text format that
//! `afs-wasm serve --metrics-addr` serves.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ::metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, Unit};
use metrics_exporter_prometheus::{BuildError, PrometheusBuilder, PrometheusHandle};

use crate::runtime::Host;

/// Time from a guest's page fault to its resolution; label `path`: `fast` (from cached
/// pages on the fault thread) or `slow` (validation or fetching).
pub const FAULT_SECONDS: &str = "afs_fault_seconds";
/// Time to revalidate a mapped file with its fileserver after a zap or an expiry.
pub const REVALIDATION_SECONDS: &str = "afs_revalidation_seconds";
/// Time from a callback break's (or a server reset's) arrival until every mapping of the
/// files it names is stripped: how long guests may still see the old bytes.
pub const CHANGE_SECONDS: &str = "afs_change_seconds";
/// Requests served by `afs-wasm serve`, by response status.
pub const HTTP_REQUESTS: &str = "afs_http_requests_total";
/// Time from a request's arrival until its response head is ready.
pub const HTTP_REQUEST_SECONDS: &str = "afs_http_request_seconds";

/// Bucket bounds of every latency histogram: 50 µs (a fault from cache) to 10 s (a
/// fileserver that is being waited for), about three per decade.
const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// Records one fault's resolution.
pub(crate) fn record_fault(fast: bool, took: Duration) {
    let path = if fast { "fast" } else { "slow" };
    ::metrics::histogram!(FAULT_SECONDS, "path" => path).record(took.as_secs_f64());
}

pub(crate) fn record_revalidation(took: Duration) {
    ::metrics::histogram!(REVALIDATION_SECONDS).record(took.as_secs_f64());
}

pub(crate) fn record_change(took: Duration) {
    ::metrics::histogram!(CHANGE_SECONDS).record(took.as_secs_f64());
}

/// Records one HTTP response (status, and the time to its head).
pub fn record_http(status: u16, took: Duration) {
    ::metrics::counter!(HTTP_REQUESTS, "status" => status.to_string()).increment(1);
    ::metrics::histogram!(HTTP_REQUEST_SECONDS).record(took.as_secs_f64());
}

/// Names and explains every metric to the installed recorder.
pub fn describe() {
    describe_histogram!(
        FAULT_SECONDS,
        Unit::Seconds,
        "Guest page faults, to resolution"
    );
    describe_histogram!(
        REVALIDATION_SECONDS,
        Unit::Seconds,
        "Revalidations of mapped files with their fileserver"
    );
    describe_histogram!(
        CHANGE_SECONDS,
        Unit::Seconds,
        "Callback break or server reset arrival, to every affected mapping stripped"
    );
    describe_counter!(HTTP_REQUESTS, "HTTP requests served, by status");
    describe_histogram!(
        HTTP_REQUEST_SECONDS,
        Unit::Seconds,
        "HTTP request arrival to response head"
    );
    for (name, unit, help) in COUNTERS {
        describe_counter!(*name, *unit, *help);
    }
    for (name, unit, help) in GAUGES {
        describe_gauge!(*name, *unit, *help);
    }
}

const COUNTERS: &[(&str, Unit, &str)] = &[
    (
        "afs_fileserver_calls_total",
        Unit::Count,
        "Calls made to fileservers, by call",
    ),
    (
        "afs_fileserver_bytes_total",
        Unit::Bytes,
        "File bytes moved, by direction",
    ),
    (
        "afs_fileserver_busy_retries_total",
        Unit::Count,
        "Calls retried because the volume was busy",
    ),
    (
        "afs_callback_breaks_total",
        Unit::Count,
        "CallBack calls received from fileservers",
    ),
    (
        "afs_callback_fids_broken_total",
        Unit::Count,
        "Files named by callback breaks",
    ),
    (
        "afs_callback_resets_total",
        Unit::Count,
        "InitCallBackState calls: a server dropped every promise",
    ),
    (
        "afs_callback_refused_total",
        Unit::Count,
        "Callback calls refused: not from a known fileserver",
    ),
    (
        "afs_faults_total",
        Unit::Count,
        "Guest page faults, by kind",
    ),
    (
        "afs_faults_resolved_total",
        Unit::Count,
        "Faults resolved, by path (fast: from cache; slow: network)",
    ),
    (
        "afs_zaps_total",
        Unit::Count,
        "Files whose mappings were stripped",
    ),
    (
        "afs_revalidations_total",
        Unit::Count,
        "Revalidations of mapped files",
    ),
    (
        "afs_pages_mapped_total",
        Unit::Count,
        "Pages mapped into guest memories",
    ),
    (
        "afs_poisoned_total",
        Unit::Count,
        "Accesses made to trap (unreachable server)",
    ),
    (
        "afs_page_store_fetched_pages_total",
        Unit::Count,
        "Pages filled from fileservers",
    ),
    (
        "afs_page_store_hits_total",
        Unit::Count,
        "Pages read without fetching",
    ),
    (
        "afs_page_store_evicted_pages_total",
        Unit::Count,
        "Clean pages dropped to stay within the budget",
    ),
    (
        "afs_page_store_invalidated_pages_total",
        Unit::Count,
        "Pages dropped because their data version was superseded",
    ),
    (
        "afs_page_store_flushed_pages_total",
        Unit::Count,
        "Dirty pages stored",
    ),
    (
        "afs_rx_datagrams_total",
        Unit::Count,
        "Rx datagrams, by direction",
    ),
];

const GAUGES: &[(&str, Unit, &str)] = &[
    (
        "afs_page_store_bytes",
        Unit::Bytes,
        "Bytes cached in the page store, by state (present includes dirty)",
    ),
    (
        "afs_page_store_budget_bytes",
        Unit::Bytes,
        "The page store's memory budget",
    ),
    (
        "afs_mapped_files",
        Unit::Count,
        "Files mapped into guests now",
    ),
];

/// Copies `host`'s counters into the installed recorder as absolute values. Call it before
/// each export; the values are the host's since it started (one host per recorder).
pub fn publish(host: &Host) {
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let client = host.client();

    let fs = client.fs_stats();
    for (call, c) in [
        ("FetchStatus", &fs.fetch_status),
        ("InlineBulkStatus", &fs.bulk_status),
        ("FetchData", &fs.fetch_data),
        ("StoreData", &fs.store_data),
        ("other", &fs.other),
    ] {
        counter!("afs_fileserver_calls_total", "call" => call).absolute(get(c));
    }
    counter!("afs_fileserver_bytes_total", "direction" => "fetched")
        .absolute(get(&fs.fetch_data_bytes));
    counter!("afs_fileserver_bytes_total", "direction" => "stored")
        .absolute(get(&fs.store_data_bytes));
    counter!("afs_fileserver_busy_retries_total").absolute(get(&fs.busy_retries));

    let cb = client.callback_stats();
    counter!("afs_callback_breaks_total").absolute(get(&cb.breaks));
    counter!("afs_callback_fids_broken_total").absolute(get(&cb.fids_broken));
    counter!("afs_callback_resets_total").absolute(get(&cb.resets));
    counter!("afs_callback_refused_total").absolute(get(&cb.refused));

    let rx = client.endpoint().stats();
    counter!("afs_rx_datagrams_total", "direction" => "in").absolute(get(&rx.datagrams_in));
    counter!("afs_rx_datagrams_total", "direction" => "out").absolute(get(&rx.datagrams_out));

    let p = host.pager().stats();
    counter!("afs_faults_total", "kind" => "missing").absolute(p.faults_missing);
    counter!("afs_faults_total", "kind" => "minor").absolute(p.faults_minor);
    counter!("afs_faults_total", "kind" => "write_protect").absolute(p.faults_write_protect);
    counter!("afs_faults_resolved_total", "path" => "fast").absolute(p.resolved_fast);
    counter!("afs_faults_resolved_total", "path" => "slow").absolute(p.resolved_slow);
    counter!("afs_zaps_total").absolute(p.zaps);
    counter!("afs_revalidations_total").absolute(p.revalidations);
    counter!("afs_pages_mapped_total").absolute(p.pages_mapped);
    counter!("afs_poisoned_total").absolute(p.poisoned);
    gauge!("afs_mapped_files").set(host.pager().mapped_files().len() as f64);

    let pages = host.cache().pages();
    let s = pages.stats().snapshot();
    counter!("afs_page_store_fetched_pages_total").absolute(s.pages_fetched);
    counter!("afs_page_store_hits_total").absolute(s.hits);
    counter!("afs_page_store_evicted_pages_total").absolute(s.pages_evicted);
    counter!("afs_page_store_invalidated_pages_total").absolute(s.pages_invalidated);
    counter!("afs_page_store_flushed_pages_total").absolute(s.pages_flushed);
    let page = crate::memory::host_page_size() as f64;
    gauge!("afs_page_store_bytes", "state" => "present").set(s.pages_present as f64 * page);
    gauge!("afs_page_store_bytes", "state" => "dirty").set(s.pages_dirty as f64 * page);
    gauge!("afs_page_store_budget_bytes").set(pages.budget_bytes() as f64);
}

/// Why the Prometheus recorder could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("installing the Prometheus recorder: {0}")]
    Install(#[from] BuildError),
    #[error("starting the metrics upkeep thread: {0}")]
    Upkeep(std::io::Error),
}

/// The process's metrics as Prometheus text.
pub struct Prometheus {
    handle: PrometheusHandle,
}

impl Prometheus {
    /// Installs a Prometheus recorder as the process's `metrics` recorder (there can be
    /// one) and describes the metrics. A thread drains the histograms' samples into their
    /// buckets every few seconds, so memory stays bounded however rarely anyone scrapes.
    pub fn install() -> Result<Prometheus, MetricsError> {
        let handle = PrometheusBuilder::new()
            .set_buckets(LATENCY_BUCKETS)?
            .install_recorder()?;
        describe();
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_secs(5));
                upkeep.run_upkeep();
            })
            .map_err(MetricsError::Upkeep)?;
        Ok(Prometheus { handle })
    }

    /// The text exposition of every metric, `host`'s counters brought up to date first.
    pub fn render(&self, host: &Host) -> String {
        publish(host);
        self.handle.render()
    }
}
