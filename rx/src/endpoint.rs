//! The endpoint: one UDP socket and the tasks that drive [`proto::Endpoint`].
//!
//! All protocol state lives in the sans-IO [`proto::Endpoint`]; this driver feeds
//! it received datagrams, sends what it produces, wakes the tasks waiting on
//! calls, hands complete requests to services, and sleeps until the state
//! machine's next deadline. An endpoint with no calls has no deadline and uses
//! no CPU.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{debug, trace};

use crate::call::{CallConfig, CallMachine, CallState};
use crate::error::{codes, RxError};
use crate::proto::{self, CallId, Event, Limits};
use crate::security::Security;
use crate::transport::{self, Transport, Udp};

/// Settings of an endpoint.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    pub call: CallConfig,
    /// What peers calling us may make us keep.
    pub limits: Limits,
    /// Socket buffer sizes; large so bursts of a window per call are not dropped.
    pub socket_buffer: usize,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            call: CallConfig::default(),
            limits: Limits::default(),
            socket_buffer: 8 << 20,
        }
    }
}

/// A call that arrived at one of our services, request complete.
#[derive(Debug, Clone)]
pub struct IncomingCall {
    pub peer: SocketAddr,
    pub epoch: u32,
    pub cid: u32,
    pub service_id: u16,
    pub request: Bytes,
}

/// A service's answer: reply bytes or an abort code, and work to run once the
/// reply is on the wire (AFS requires answering a callback break before acting on it).
pub struct Response {
    pub reply: Result<Vec<u8>, i32>,
    pub after_reply: Option<Box<dyn FnOnce() + Send>>,
}

impl Response {
    pub fn reply(data: Vec<u8>) -> Self {
        Self {
            reply: Ok(data),
            after_reply: None,
        }
    }

    pub fn abort(code: i32) -> Self {
        Self {
            reply: Err(code),
            after_reply: None,
        }
    }
}

/// A service reachable on this endpoint's socket.
pub trait Service: Send + Sync + 'static {
    fn serve(&self, call: IncomingCall) -> Pin<Box<dyn Future<Output = Response> + Send>>;
}

/// Counters of an endpoint, for diagnostics.
#[derive(Debug, Default)]
pub struct Stats {
    pub datagrams_in: AtomicU64,
    pub datagrams_out: AtomicU64,
    pub send_drops: AtomicU64,
}

/// The protocol state and who waits on which call.
struct Driven {
    proto: proto::Endpoint,
    waiters: HashMap<CallId, Arc<Notify>>,
    /// The deadline the timer task sleeps until (None: no deadline).
    armed: Option<Instant>,
}

struct Inner {
    socket: Arc<dyn Transport>,
    local_addr: SocketAddr,
    state: Mutex<Driven>,
    /// Wakes the timer task when an earlier deadline appears.
    timer: Notify,
    services: RwLock<HashMap<u16, Arc<dyn Service>>>,
    closed: AtomicBool,
    stats: Stats,
}

/// Aborts the endpoint's tasks when the last `Endpoint` handle goes away.
struct Tasks(Vec<JoinHandle<()>>, Arc<Inner>);

impl Drop for Tasks {
    fn drop(&mut self) {
        self.1.closed.store(true, Ordering::SeqCst);
        for t in &self.0 {
            t.abort();
        }
        for n in self.1.lock().waiters.values() {
            n.notify_one();
        }
    }
}

/// An Rx endpoint: makes calls and serves incoming ones over one UDP socket.
#[derive(Clone)]
pub struct Endpoint {
    inner: Arc<Inner>,
    _tasks: Arc<Tasks>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("local_addr", &self.inner.local_addr)
            .finish()
    }
}

/// What one turn of the state machine produced, acted on outside the lock.
#[derive(Default)]
struct Output {
    datagrams: Vec<(SocketAddr, Bytes)>,
    wake: Vec<Arc<Notify>>,
    incoming: Vec<proto::IncomingRequest>,
    rearm: bool,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Driven> {
        // A panic while holding the lock leaves consistent-enough state; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the state machine, then collects what it wants done.
    fn turn<R>(&self, f: impl FnOnce(&mut proto::Endpoint, Instant) -> R) -> (R, Output) {
        let now = transport::now();
        let mut out = Output::default();
        let mut d = self.lock();
        let r = f(&mut d.proto, now);
        d.proto.drain_transmits(now, &mut out.datagrams);
        while let Some(ev) = d.proto.poll_event() {
            match ev {
                Event::Wake(id) => out.wake.extend(d.waiters.get(&id).cloned()),
                Event::Incoming(req) => out.incoming.push(req),
            }
        }
        let next = d.proto.poll_timeout();
        if next.is_some_and(|n| d.armed.is_none_or(|a| n < a)) {
            d.armed = next;
            out.rearm = true;
        }
        (r, out)
    }

    fn apply(self: &Arc<Self>, out: Output) {
        self.send_all(&out.datagrams);
        for n in out.wake {
            n.notify_one();
        }
        for req in out.incoming {
            self.dispatch(req);
        }
        if out.rearm {
            self.timer.notify_one();
        }
    }

    fn send_all(&self, out: &[(SocketAddr, Bytes)]) {
        if out.is_empty() {
            return;
        }
        let (sent, dropped) = self.socket.send(out);
        self.stats.datagrams_out.fetch_add(sent, Ordering::Relaxed);
        // Dropped sends are recovered by retransmission; counted so they can be noticed.
        self.stats.send_drops.fetch_add(dropped, Ordering::Relaxed);
    }

    fn dispatch(self: &Arc<Self>, req: proto::IncomingRequest) {
        let service = self
            .services
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&req.service_id)
            .cloned();
        let inner = self.clone();
        let call = req.call;
        let incoming = IncomingCall {
            peer: req.peer,
            epoch: req.epoch,
            cid: req.cid,
            service_id: req.service_id,
            request: req.request,
        };
        tokio::spawn(async move {
            let response = match service {
                Some(s) => s.serve(incoming).await,
                None => {
                    debug!(service = req.service_id, "call for unknown service");
                    Response::abort(codes::RX_INVALID_OPERATION)
                }
            };
            let ((), out) = inner.turn(|p, now| p.reply(call, response.reply, now));
            inner.apply(out);
            if let Some(after) = response.after_reply {
                after();
            }
        });
    }

    async fn recv_loop(self: Arc<Self>) {
        loop {
            let batch = match self.socket.recv().await {
                Ok(batch) => batch,
                Err(e) => {
                    // ICMP errors surface here on Linux; they are not fatal.
                    trace!(error = %e, "recv error");
                    continue;
                }
            };
            self.stats
                .datagrams_in
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            let ((), out) = self.turn(|p, now| {
                for (datagram, from) in batch {
                    p.handle(now, from, datagram);
                }
            });
            self.apply(out);
        }
    }

    /// Sleeps until the state machine's next deadline, runs its timers, repeats.
    async fn timer_loop(self: Arc<Self>) {
        loop {
            let armed = self.lock().armed;
            match armed {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at.into()) => {}
                        _ = self.timer.notified() => continue,
                    }
                }
                None => {
                    self.timer.notified().await;
                    continue;
                }
            }
            let ((), out) = self.turn(|p, now| {
                p.handle_timeout(now);
            });
            // Whatever the turn found, the next sleep is until the new earliest deadline.
            {
                let mut d = self.lock();
                d.armed = d.proto.poll_timeout();
            }
            self.apply(out);
        }
    }
}

impl Endpoint {
    /// Binds a UDP socket (port 0 picks one) and starts the endpoint's tasks.
    /// Must be called within a tokio runtime.
    pub async fn bind(addr: SocketAddr, cfg: EndpointConfig) -> io::Result<Self> {
        let socket = Udp::bind(addr, cfg.socket_buffer)?;
        Ok(Self::with_transport(Arc::new(socket), cfg))
    }

    /// An endpoint on any transport (a simulated network in tests). Must be
    /// called within a tokio runtime.
    pub fn with_transport(socket: Arc<dyn Transport>, cfg: EndpointConfig) -> Self {
        let local_addr = socket.local_addr();
        // A random epoch with the high bit set: connections are then identified by
        // epoch and id alone, as in OpenAFS.
        let epoch = rand::random::<u32>() | 0x8000_0000;
        let proto = proto::Endpoint::new(epoch, rand::random(), cfg.call, cfg.limits);
        let inner = Arc::new(Inner {
            socket,
            local_addr,
            state: Mutex::new(Driven {
                proto,
                waiters: HashMap::new(),
                armed: None,
            }),
            timer: Notify::new(),
            services: RwLock::new(HashMap::new()),
            closed: AtomicBool::new(false),
            stats: Stats::default(),
        });
        let tasks = vec![
            tokio::spawn(inner.clone().recv_loop()),
            tokio::spawn(inner.clone().timer_loop()),
        ];
        debug!(%local_addr, epoch, "rx endpoint up");
        Self {
            _tasks: Arc::new(Tasks(tasks, inner.clone())),
            inner,
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// The protocol state machine's counters.
    pub fn counters(&self) -> proto::Counters {
        self.inner.lock().proto.counters()
    }

    /// Connections and calls held now.
    pub fn sizes(&self) -> (usize, usize) {
        self.inner.lock().proto.sizes()
    }

    /// Serves calls for `service_id` that peers make to this endpoint.
    pub fn register_service(&self, service_id: u16, service: Arc<dyn Service>) {
        self.inner
            .services
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(service_id, service);
    }

    /// Starts an anonymous (rxnull) call to `service_id` at `peer`. Nothing is sent until
    /// data is written.
    pub fn call(&self, peer: SocketAddr, service_id: u16) -> Call {
        self.call_as(peer, service_id, &Security::null())
    }

    /// Starts a call to `service_id` at `peer` on a connection of `security`.
    pub fn call_as(&self, peer: SocketAddr, service_id: u16, security: &Security) -> Call {
        let notify = Arc::new(Notify::new());
        let id = {
            let mut d = self.inner.lock();
            let id = d
                .proto
                .start_call(peer, service_id, security, transport::now());
            d.waiters.insert(id, notify.clone());
            id
        };
        Call {
            inner: self.inner.clone(),
            id,
            peer,
            notify,
            pending: Bytes::new(),
        }
    }

    /// Makes a call with a whole request and returns the whole reply, which may
    /// be at most [`MAX_WHOLE_REPLY`] bytes.
    pub async fn make_call(
        &self,
        peer: SocketAddr,
        service_id: u16,
        request: &[u8],
    ) -> Result<Vec<u8>, RxError> {
        self.make_call_as(peer, service_id, &Security::null(), request)
            .await
    }

    /// [`Endpoint::make_call`] on a connection of `security`.
    pub async fn make_call_as(
        &self,
        peer: SocketAddr,
        service_id: u16,
        security: &Security,
        request: &[u8],
    ) -> Result<Vec<u8>, RxError> {
        let mut call = self.call_as(peer, service_id, security);
        call.write(request).await?;
        call.finish_sending().await?;
        let reply = call.read_to_end(MAX_WHOLE_REPLY).await?;
        Ok(reply)
    }
}

/// A client call in progress. Dropping it before it completes aborts it.
pub struct Call {
    inner: Arc<Inner>,
    id: CallId,
    peer: SocketAddr,
    notify: Arc<Notify>,
    /// Reply bytes read from the call but not yet returned (after `read_exact`).
    pending: Bytes,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("id", &self.id)
            .field("peer", &self.peer)
            .finish()
    }
}

/// The largest reply [`Endpoint::make_call`] holds: far above any AFS reply that
/// is not a data stream (a VLDB entry or 50 bulk statuses are a few KiB), far
/// below what would hurt. Data streams are read piece by piece instead.
pub const MAX_WHOLE_REPLY: usize = 1 << 20;

/// Bytes handed to the call state machine per lock acquisition.
const WRITE_CHUNK: usize = 16 * crate::call::MAX_PACKET_DATA;

impl Call {
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Gives up on the peer after `d` without a word from it (see
    /// [`CallMachine::set_dead_time`]).
    pub fn set_dead_time(&self, d: Duration) -> Result<(), RxError> {
        self.with(|m| m.set_dead_time(d))
    }

    /// Runs `f` on the call's state machine, then sends what it produced.
    fn with<R>(&self, f: impl FnOnce(&mut CallMachine) -> R) -> Result<R, RxError> {
        let (r, out) = self.inner.turn(|p, now| p.with_call(self.id, now, f));
        self.inner.apply(out);
        r.ok_or(RxError::Shutdown)
    }

    async fn wait(&self) -> Result<(), RxError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(RxError::Shutdown);
        }
        self.notify.notified().await;
        Ok(())
    }

    fn failure(state: &CallState) -> Option<RxError> {
        match state {
            CallState::Failed(e) => Some(e.clone()),
            _ => None,
        }
    }
    /// Sends request bytes, waiting while the send buffer is full.
    pub async fn write(&mut self, mut data: &[u8]) -> Result<(), RxError> {
        while !data.is_empty() {
            let taken = self.with(|m| {
                if let Some(e) = Self::failure(m.state()) {
                    return Err(e);
                }
                if !m.can_send() {
                    return Ok(0);
                }
                let n = data.len().min(WRITE_CHUNK);
                m.write(&data[..n]);
                Ok(n)
            })??;
            if taken == 0 {
                self.wait().await?;
            }
            data = &data[taken..];
        }
        Ok(())
    }

    /// Ends the request; the server then runs the call and replies.
    pub async fn finish_sending(&mut self) -> Result<(), RxError> {
        self.with(|m| match Self::failure(m.state()) {
            Some(e) => Err(e),
            None => {
                m.finish_sending();
                Ok(())
            }
        })?
    }

    /// The next chunk of the reply in order, or None when the reply is complete.
    pub async fn read(&mut self) -> Result<Option<Bytes>, RxError> {
        if !self.pending.is_empty() {
            return Ok(Some(std::mem::take(&mut self.pending)));
        }
        loop {
            let r = self.with(|m| {
                if let Some(e) = Self::failure(m.state()) {
                    return Err(e);
                }
                if let Some(chunk) = m.read() {
                    return Ok(Some(Some(chunk)));
                }
                Ok(m.at_eof().then_some(None))
            })??;
            match r {
                Some(chunk) => return Ok(chunk),
                None => self.wait().await?,
            }
        }
    }

    /// Fills `buf` from the reply; fails with `Eof` if the reply is shorter.
    pub async fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), RxError> {
        let mut filled = 0;
        let mut pending = Bytes::new();
        while filled < buf.len() {
            if pending.is_empty() {
                pending = self.read().await?.ok_or(RxError::Eof { peer: self.peer })?;
            }
            let n = pending.len().min(buf.len() - filled);
            buf[filled..filled + n].copy_from_slice(&pending[..n]);
            filled += n;
            pending = pending.slice(n..);
        }
        self.pending = pending;
        Ok(())
    }

    /// Reads the rest of the reply, which may be at most `limit` bytes: a reply is
    /// the server's to size, so whoever holds it whole says how much is sane. A
    /// longer one aborts the call.
    pub async fn read_to_end(&mut self, limit: usize) -> Result<Vec<u8>, RxError> {
        let mut out = BytesMut::new();
        while let Some(chunk) = self.read().await? {
            if out.len() + chunk.len() > limit {
                let _ = self.with(|m| m.abort(crate::error::codes::RX_PROTOCOL_ERROR));
                return Err(RxError::ReplyTooLong {
                    peer: self.peer,
                    limit,
                });
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out.to_vec())
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        let ((), out) = self.inner.turn(|p, now| p.release(self.id, now));
        self.inner.lock().waiters.remove(&self.id);
        self.inner.apply(out);
    }
}
