//! The AFS side of the host runs on a tokio runtime of its own.
//!
//! Guest code blocks: in page faults, and in host calls that wait for the network. If
//! the cache manager shared a runtime with guests (an embedder running async wasmtime on
//! tokio, say), a blocked guest could starve the very task that would unblock it. So the
//! Rx endpoint, the callback service, fetches and validations run here, and guests (and
//! the fault handler) hand work over with [`AfsRuntime::block_on`], which never enters
//! the calling thread's runtime.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::runtime::{Handle, Runtime};

/// The cache manager's runtime.
pub struct AfsRuntime {
    runtime: Runtime,
}

impl AfsRuntime {
    /// A multi-threaded runtime with `workers` threads named `afs-io`.
    pub fn new(workers: usize) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers.max(1))
            .thread_name("afs-io")
            .enable_all()
            .build()?;
        Ok(Self { runtime })
    }

    pub fn handle(&self) -> &Handle {
        self.runtime.handle()
    }

    /// Runs `future` on this runtime and waits for it on the calling thread, which may be
    /// any thread: a guest's, the fault handler's, or a worker of another runtime.
    pub fn block_on<F>(&self, future: F) -> Result<F::Output, RuntimeGone>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        block_on(self.handle(), future)
    }
}

/// [`AfsRuntime::block_on`] for a runtime known by its handle.
pub fn block_on<F>(handle: &Handle, future: F) -> Result<F::Output, RuntimeGone>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let future = match poll_here(handle, future) {
        Ok(done) => return Ok(done),
        Err(pending) => pending,
    };
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = tx.send(future.await);
    });
    // The task can only vanish if the runtime shut down under us.
    rx.recv().map_err(|_| RuntimeGone)
}

/// Polls `future` once on the calling thread, in the runtime's context (so what it
/// registers, timers and sockets, is the runtime's): most AFS work answers from the cache
/// (a promise in force, pages present) and then costs no hop to a runtime thread and
/// back, two wake-ups on the way of every request. A future that would wait is returned
/// to go on there; it registered only a no-op waker, and the runtime's first poll
/// registers its own (futures are polled again with whatever waker is current). The
/// poll does not block: the calling thread's runtime, if any, is not held up.
pub fn poll_here<F: Future>(handle: &Handle, future: F) -> Result<F::Output, Pin<Box<F>>> {
    let mut future = Box::pin(future);
    let _context = handle.enter();
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(done) => Ok(done),
        Poll::Pending => Err(future),
    }
}

/// The AFS runtime shut down while a caller waited on it (the host is exiting).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the AFS runtime has shut down")]
pub struct RuntimeGone;
