//! The limit reference (`volley-bench __reference`): a fan-out server that does nothing but the
//! fan-out, so every benchmark run can show Volley beside what one core can do at all. One
//! thread, mio, every published message framed once into the current tick's batch, and every
//! 10 ms one vectored write per connection of the batches it has not had yet. No topics (every
//! connection gets every message), no envelope, no session, no metrics beyond a few counters:
//! only the fan-out scenario means the same thing to it as to a gateway.
//!
//! With `--io uring` (engine `reference-uring`) a pass hands its writes to the kernel through
//! one io_uring submission queue, [`uring::BATCH`] connections per `io_uring_enter`, instead of
//! one `writev` system call each; everything else (batches, bounds, the tick, the event-driven
//! writes after a full socket) is the same code.
//!
//! It speaks just enough to be driven by the same clients and publishers as a gateway: the
//! WebSocket upgrade on the client port, `POST /v1/publish/{topic}` (answered 202) and
//! `GET /metrics` (its passes, frames and writes under the gateway's series names) on the admin
//! port, and the gateway's `listening client=… admin=…` line on stdout.
//!
//! Folding (`__reference --fold`, engine `reference-fold`): the plain reference holds what is
//! published during a pass for the next pass; folding puts it in the current pass for the
//! connections not yet written, as a Volley shard does with its inbox, so it bounds Volley's
//! latency fairly. `--fold` and `--io` are independent (`--io uring --fold` folds through
//! io_uring).

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

pub mod metrics;
pub mod parse;
#[cfg(test)]
mod tests;
pub mod uring;

pub use metrics::Counts;

/// The engine name that selects the reference in `volley-bench run --engines`.
pub const ENGINE: &str = "reference";
/// The engine name of the variant that folds mid-pass publishes into the current pass.
pub const FOLD_ENGINE: &str = "reference-fold";
/// The engine name of its io_uring variant.
pub const ENGINE_URING: &str = "reference-uring";

/// How a pass writes to the connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Io {
    /// One `writev` system call per connection.
    Writev,
    /// One `IORING_OP_WRITEV` per connection, submitted [`uring::BATCH`] at a time.
    Uring,
}

impl Io {
    /// Its `--io` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Io::Writev => "writev",
            Io::Uring => "uring",
        }
    }
}

/// One variant of the reference: how a pass writes, and whether it folds mid-pass publishes
/// into the current pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    pub io: Io,
    pub fold: bool,
}

impl Variant {
    /// The `__reference` flags that select it.
    pub fn args(self) -> Vec<&'static str> {
        let mut args = vec!["--io", self.io.as_str()];
        if self.fold {
            args.push("--fold");
        }
        args
    }
}

/// The reference variant `engine` names, if it names one.
pub fn variant(engine: &str) -> Option<Variant> {
    let (io, fold) = match engine {
        ENGINE => (Io::Writev, false),
        FOLD_ENGINE => (Io::Writev, true),
        ENGINE_URING => (Io::Uring, false),
        _ => return None,
    };
    Some(Variant { io, fold })
}

/// Whether `engine` is served by this tool's `__reference` mode rather than a gateway.
pub fn is_engine(engine: &str) -> bool {
    variant(engine).is_some()
}

const CLIENTS: Token = Token(0);
const ADMIN: Token = Token(1);
const FIRST_PEER: usize = 2;
/// Start-to-start time of two passes: a pass that takes longer is followed by the next at once.
pub const TICK: Duration = Duration::from_millis(10);
/// Batches one `writev` carries at most (under Linux's `IOV_MAX` of 1024). With folding a
/// connection gets up to two batches per `ADMIN_EVERY` connections in a pass (its own pass's
/// folds and the previous pass's it missed) plus the pass's own: 512 keeps that to one
/// `writev` per connection per pass up to ~32,000 connections.
const MAX_IOVECS: usize = 512;
/// A connection with more than this waiting is closed (slow consumer): every queue is bounded.
const MAX_QUEUED_BYTES: usize = 16 * 1024 * 1024;
/// Largest publish body taken (the gateway's default message limit is far below).
const MAX_BODY: usize = 1024 * 1024;
/// Bytes a published message may wait for the next pass in total; publishes beyond are answered
/// 503, as an overloaded gateway does.
const MAX_PENDING_BYTES: usize = 64 * 1024 * 1024;
const READ_BUF: usize = 64 * 1024;
/// A pass answers the publishers after every this many connections written. A pass over
/// 10,000 sockets takes ~100 ms; a publisher waiting for its 202 all that time would cap the
/// offered rate (the gateway answers publishes on another thread). What they publish meanwhile
/// waits for the next pass, or with `fold` is frozen into a further batch for the connections
/// not yet written (the others get it in the next pass): one write per connection per pass
/// stays the rule either way.
const ADMIN_EVERY: usize = 128;

/// One accepted socket.
struct Peer {
    socket: TcpStream,
    kind: Kind,
}

enum Kind {
    /// A client before its upgrade completed: the request bytes so far.
    Upgrading(Vec<u8>),
    /// A WebSocket client: the batches it has not been sent (all of them shared), and how much
    /// of the front one went out already.
    Open {
        queue: VecDeque<Rc<[u8]>>,
        offset: usize,
        queued: usize,
    },
    /// An admin (publish) connection: request bytes read, answer bytes not yet written.
    Admin { inbuf: Vec<u8>, out: Vec<u8> },
}

/// A batch folded into a pass after it had written the connections before `first`.
struct Folded {
    first: usize,
    batch: Rc<[u8]>,
    /// Frames in `batch`.
    frames: u64,
}

/// The reference server on its two listeners.
pub struct Reference {
    poll: Poll,
    clients: TcpListener,
    admin: TcpListener,
    peers: Slab<Peer>,
    /// Keys of the admin (publish) connections.
    admins: Vec<usize>,
    /// Frames published since the last pass, concatenated, and how many.
    pending: Vec<u8>,
    pending_frames: u64,
    /// Fold mid-pass publishes into the current pass (`reference-fold`).
    fold: bool,
    /// Batches folded in during the last pass, each with the first key that had it: the keys
    /// before it get it at the start of the next pass.
    folded: Vec<Folded>,
    /// Bytes of `folded` plus the batches folded in the current pass: they count towards
    /// `MAX_PENDING_BYTES` with `pending`, as they too wait for (part of) a pass.
    folded_bytes: usize,
    /// The submission queue of `--io uring` (None: writev).
    ring: Option<uring::Ring>,
    last_pass: Option<Instant>,
    read_buf: Vec<u8>,
    counts: Counts,
    pass_times: metrics::PassTimes,
}

impl Reference {
    /// The writev reference.
    pub fn bind(client: SocketAddr, admin: SocketAddr) -> io::Result<Reference> {
        Reference::bind_with(client, admin, Io::Writev)
    }

    /// With `Io::Uring` the ring is set up here; where that fails (no io_uring in this kernel
    /// or sandbox) it says so once on stderr and writes with `writev`.
    pub fn bind_with(client: SocketAddr, admin: SocketAddr, io: Io) -> io::Result<Reference> {
        let ring = match io {
            Io::Writev => None,
            Io::Uring => match uring::Ring::new(uring::BATCH as u32) {
                Ok(ring) => Some(ring),
                Err(e) => {
                    eprintln!("volley-bench reference: io_uring unavailable ({e}); using writev");
                    None
                }
            },
        };
        let poll = Poll::new()?;
        let mut clients = TcpListener::bind(client)?;
        let mut admin = TcpListener::bind(admin)?;
        poll.registry()
            .register(&mut clients, CLIENTS, Interest::READABLE)?;
        poll.registry()
            .register(&mut admin, ADMIN, Interest::READABLE)?;
        Ok(Reference {
            poll,
            clients,
            admin,
            peers: Slab::new(),
            admins: Vec::new(),
            pending: Vec::new(),
            pending_frames: 0,
            fold: false,
            folded: Vec::new(),
            folded_bytes: 0,
            ring,
            last_pass: None,
            read_buf: vec![0; READ_BUF],
            counts: Counts::default(),
            pass_times: metrics::PassTimes::default(),
        })
    }

    /// The `reference-fold` variant when `on`: what publishers send during a pass goes to the
    /// connections this pass has not written yet.
    pub fn set_fold(&mut self, on: bool) {
        self.fold = on;
    }

    /// (client address, admin address) it listens on.
    pub fn addrs(&self) -> io::Result<(SocketAddr, SocketAddr)> {
        Ok((self.clients.local_addr()?, self.admin.local_addr()?))
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Whether passes write through io_uring (false: `writev`, asked for or fallen back to).
    pub fn uses_uring(&self) -> bool {
        self.ring.is_some()
    }

    /// Serves until `stop` says so (checked once per loop turn; the loop turns at least every
    /// tick while anything is pending, else every `idle` at most).
    pub fn run_until(&mut self, idle: Duration, stop: impl Fn() -> bool) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        while !stop() {
            let timeout = match self.next_pass() {
                Some(at) => at.saturating_duration_since(Instant::now()).min(idle),
                None => idle,
            };
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in events.iter() {
                match event.token() {
                    CLIENTS => self.accept(false),
                    ADMIN => self.accept(true),
                    Token(t) => self.on_event(t - FIRST_PEER),
                }
            }
            if self.next_pass().is_some_and(|at| Instant::now() >= at) {
                self.pass();
            }
        }
        Ok(())
    }

    /// When the next pass is due: never with nothing pending (nor folded batches owed to the
    /// connections a pass had written before), else one tick after the last pass started (at
    /// once when that is past).
    fn next_pass(&self) -> Option<Instant> {
        if self.pending.is_empty() && self.folded.is_empty() {
            return None;
        }
        Some(self.last_pass.map_or_else(Instant::now, |t| t + TICK))
    }

    fn accept(&mut self, admin: bool) {
        loop {
            let listener = if admin { &self.admin } else { &self.clients };
            let mut socket = match listener.accept() {
                Ok((socket, _)) => socket,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors and the like: the backlog waits for the next event.
                    eprintln!("volley-bench reference: accept: {e}");
                    return;
                }
            };
            // Batches are formed by the tick; Nagle would only delay them further.
            let _ = socket.set_nodelay(true);
            let entry = self.peers.vacant_entry();
            let token = Token(entry.key() + FIRST_PEER);
            // Both directions registered once, edge-triggered: no epoll_ctl per blocked write.
            if self
                .poll
                .registry()
                .register(&mut socket, token, Interest::READABLE | Interest::WRITABLE)
                .is_err()
            {
                continue;
            }
            if admin {
                self.admins.push(entry.key());
            }
            let kind = if admin {
                Kind::Admin {
                    inbuf: Vec::new(),
                    out: Vec::new(),
                }
            } else {
                Kind::Upgrading(Vec::new())
            };
            entry.insert(Peer { socket, kind });
        }
    }

    fn remove(&mut self, key: usize) {
        self.admins.retain(|&k| k != key);
        if self.peers.contains(key) {
            let mut peer = self.peers.remove(key);
            let _ = self.poll.registry().deregister(&mut peer.socket);
        }
    }

    /// Readiness of a peer: read what there is, then write what waits.
    fn on_event(&mut self, key: usize) {
        if !self.read_all(key) {
            self.remove(key);
            return;
        }
        if !self.write(key) {
            self.remove(key);
        }
    }

    /// Reads until the socket would block; false when the peer is gone or misbehaved.
    fn read_all(&mut self, key: usize) -> bool {
        loop {
            let Some(peer) = self.peers.get_mut(key) else {
                return false;
            };
            let n = match peer.socket.read(&mut self.read_buf) {
                Ok(0) => return false,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            };
            let data = &self.read_buf[..n];
            let ok = match &mut peer.kind {
                Kind::Upgrading(buf) => {
                    buf.extend_from_slice(data);
                    upgrade(&mut peer.kind)
                }
                // Clients only answer pings (never sent) and closes: nothing to act on.
                Kind::Open { .. } => true,
                Kind::Admin { inbuf, out } => {
                    inbuf.extend_from_slice(data);
                    let state = Admin {
                        pending: &mut self.pending,
                        pending_frames: &mut self.pending_frames,
                        room: MAX_PENDING_BYTES.saturating_sub(self.folded_bytes),
                        counts: &mut self.counts,
                        pass_times: &self.pass_times,
                    };
                    serve_admin(inbuf, out, state)
                }
            };
            if !ok {
                // Say why first where there is something to say; then the connection ends.
                let _ = self.write(key);
                return false;
            }
        }
    }

    /// Writes what `key` has waiting; false when the socket failed or the peer is too slow.
    fn write(&mut self, key: usize) -> bool {
        let Some(peer) = self.peers.get_mut(key) else {
            return false;
        };
        match &mut peer.kind {
            Kind::Upgrading(_) => true,
            Kind::Admin { out, .. } => write_buf(&mut peer.socket, out),
            Kind::Open {
                queue,
                offset,
                queued,
            } => match write_queue(&mut peer.socket, queue, offset, queued) {
                Ok(calls) => {
                    self.counts.writes += calls;
                    *queued <= MAX_QUEUED_BYTES
                }
                Err(_) => false,
            },
        }
    }

    /// The fan-out: the pending frames become one shared batch, queued on every open
    /// connection and written with one `writev` each (or one io_uring write each). With `fold`,
    /// a connection first gets the last pass's folded batches it missed (folded in after it was
    /// written), then the batch, then this pass's folded batches so far: each frame once, in
    /// publish order.
    fn pass(&mut self) {
        let started = Instant::now();
        self.last_pass = Some(started);
        self.counts.passes += 1;
        let batch: Rc<[u8]> = Rc::from(std::mem::take(&mut self.pending).into_boxed_slice());
        let frames = std::mem::take(&mut self.pending_frames);
        let owed = std::mem::take(&mut self.folded);
        // The owed batches are being delivered now, like `batch`: only new folds count.
        self.folded_bytes = 0;
        // The pass's own batch, for every connection (`first` is not used for it).
        let this = Folded {
            first: 0,
            batch,
            frames,
        };
        match self.ring.take() {
            Some(mut ring) => {
                self.pass_uring(&mut ring, &this, &owed);
                self.counts.enters = ring.enters();
                self.ring = Some(ring);
            }
            None => self.pass_writev(&this, &owed),
        }
        self.pass_times.observe(started.elapsed());
    }

    /// Between two connections of a pass: answers the publishers and, with `fold`, freezes
    /// what they published into a batch for the connections from `key` on.
    fn serve_admins_mid_pass(&mut self, key: usize) {
        self.serve_admins();
        if self.fold && !self.pending.is_empty() {
            let batch: Rc<[u8]> = Rc::from(std::mem::take(&mut self.pending).into_boxed_slice());
            self.folded_bytes += batch.len();
            self.folded.push(Folded {
                first: key,
                batch,
                frames: std::mem::take(&mut self.pending_frames),
            });
        }
    }

    /// Queues this pass's batches on `key`: the folds of the last pass it missed, `this`, the
    /// folds of this pass so far. True when `key` is an open connection with something to write.
    fn queue_pass(&mut self, key: usize, this: &Folded, owed: &[Folded]) -> bool {
        let Some(Peer {
            kind: Kind::Open { queue, queued, .. },
            ..
        }) = self.peers.get_mut(key)
        else {
            return false;
        };
        // Folds are made in key order: the ones this key missed are a suffix of `owed`.
        let missed = &owed[owed.partition_point(|f| f.first <= key)..];
        for part in missed.iter().chain([this]).chain(&self.folded) {
            if !part.batch.is_empty() {
                queue.push_back(part.batch.clone());
                *queued += part.batch.len();
                self.counts.frames += part.frames;
            }
        }
        !queue.is_empty()
    }

    fn pass_writev(&mut self, this: &Folded, owed: &[Folded]) {
        let mut gone = Vec::new();
        // By key rather than through an iterator, so publishers can be answered in between.
        for key in 0..self.peers.capacity() {
            if key % ADMIN_EVERY == ADMIN_EVERY - 1 {
                self.serve_admins_mid_pass(key);
            }
            if !self.queue_pass(key, this, owed) {
                continue;
            }
            let Some(Peer {
                socket,
                kind:
                    Kind::Open {
                        queue,
                        offset,
                        queued,
                    },
            }) = self.peers.get_mut(key)
            else {
                continue;
            };
            match write_queue(socket, queue, offset, queued) {
                Ok(calls) if *queued <= MAX_QUEUED_BYTES => self.counts.writes += calls,
                _ => gone.push(key),
            }
        }
        for key in gone {
            self.remove(key);
        }
    }

    /// The pass through io_uring: connections in chunks of [`uring::BATCH`] (publishers
    /// answered, and with `fold` their publishes folded in, between chunks, as often as the
    /// writev pass does), each chunk's writes
    /// submitted together; a write that went out whole with more queued, or only in part, is
    /// submitted again with the chunk's next round, as `write_queue` loops; a full socket
    /// (`EAGAIN`) waits for its writable event, as in the writev pass.
    fn pass_uring(&mut self, ring: &mut uring::Ring, this: &Folded, owed: &[Folded]) {
        let chunk = ring.capacity().min(ADMIN_EVERY);
        let mut gone = Vec::new();
        let mut keys = Vec::with_capacity(chunk);
        let mut start = 0;
        while start < self.peers.capacity() {
            let end = (start + chunk).min(self.peers.capacity());
            if start > 0 {
                self.serve_admins_mid_pass(start);
            }
            keys.clear();
            // Only connections with something to write: an empty `writev` would read as a
            // closed socket (0 bytes written).
            keys.extend((start..end).filter(|&key| self.queue_pass(key, this, owed)));
            self.write_uring(ring, &mut keys, &mut gone);
            start = end;
        }
        for key in gone {
            self.remove(key);
        }
    }

    /// Writes the queues of `keys` (open connections, at most the ring's capacity) in rounds of
    /// one submission each until every one is empty, full or failed; failed and too-slow ones go
    /// to `gone`.
    fn write_uring(
        &mut self,
        ring: &mut uring::Ring,
        keys: &mut Vec<usize>,
        gone: &mut Vec<usize>,
    ) {
        let mut results = Vec::with_capacity(keys.len());
        let mut jobs = Vec::with_capacity(keys.len());
        while !keys.is_empty() {
            jobs.clear();
            let mut slices = Vec::with_capacity(keys.len());
            for &key in keys.iter() {
                let first = slices.len();
                if let Some(Peer {
                    socket,
                    kind: Kind::Open { queue, offset, .. },
                }) = self.peers.get(key)
                {
                    for (i, batch) in queue.iter().take(MAX_IOVECS).enumerate() {
                        let start = if i == 0 { *offset } else { 0 };
                        slices.push(IoSlice::new(batch.get(start..).unwrap_or_default()));
                    }
                    jobs.push(uring::Job {
                        fd: socket.as_raw_fd(),
                        first,
                        len: slices.len() - first,
                    });
                } else {
                    // Not reachable (keys are open connections, none removed mid-chunk); an
                    // empty job on no descriptor keeps jobs and keys in step and fails (EBADF).
                    jobs.push(uring::Job {
                        fd: -1,
                        first,
                        len: 0,
                    });
                }
            }
            if ring.writev_all(&jobs, &slices, &mut results).is_err() {
                // More jobs than the ring takes: not reachable with chunks of its capacity.
                gone.append(keys);
                return;
            }
            drop(slices);
            let mut again = 0;
            for i in 0..keys.len() {
                let key = keys[i];
                let Some(Peer {
                    kind:
                        Kind::Open {
                            queue,
                            offset,
                            queued,
                        },
                    ..
                }) = self.peers.get_mut(key)
                else {
                    continue;
                };
                let result = std::mem::replace(&mut results[i], Ok(0));
                let retry = match result {
                    Ok(0) => {
                        gone.push(key);
                        continue;
                    }
                    Ok(n) => {
                        self.counts.writes += 1;
                        consume(queue, offset, queued, n);
                        !queue.is_empty()
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.counts.writes += 1;
                        false
                    }
                    Err(_) => {
                        gone.push(key);
                        continue;
                    }
                };
                if *queued > MAX_QUEUED_BYTES {
                    gone.push(key);
                } else if retry {
                    keys[again] = key;
                    again += 1;
                }
            }
            keys.truncate(again);
        }
    }

    /// Reads and answers the publish connections (during a pass).
    fn serve_admins(&mut self) {
        for i in (0..self.admins.len()).rev() {
            // Removing one (its peer left) shifts only those after it: already served.
            if let Some(&key) = self.admins.get(i) {
                self.on_event(key);
            }
        }
    }
}

/// Completes an upgrade once its head is in: queues nothing, answers 101 (or 400 and false).
fn upgrade(kind: &mut Kind) -> bool {
    let Kind::Upgrading(buf) = kind else {
        return true;
    };
    let answer = match parse::head(buf) {
        Ok(None) => return true,
        Ok(Some(head)) => match head.websocket_key {
            Some(key) if head.method == "GET" => {
                parse::switching_protocols(key, head.volley_protocol)
            }
            _ => {
                *kind = Kind::Admin {
                    inbuf: Vec::new(),
                    out: parse::status(400, "Bad Request", true),
                };
                return false;
            }
        },
        Err(_) => {
            *kind = Kind::Admin {
                inbuf: Vec::new(),
                out: parse::status(400, "Bad Request", true),
            };
            return false;
        }
    };
    let len = answer.len();
    *kind = Kind::Open {
        queue: VecDeque::from([Rc::from(answer.into_boxed_slice())]),
        offset: 0,
        queued: len,
    };
    true
}

/// What an admin request may read and change.
struct Admin<'a> {
    pending: &'a mut Vec<u8>,
    pending_frames: &'a mut u64,
    /// Bytes `pending` may hold (`MAX_PENDING_BYTES` less what folded batches hold).
    room: usize,
    counts: &'a mut Counts,
    pass_times: &'a metrics::PassTimes,
}

/// Answers every complete request in `inbuf`; false (with the answer queued) on one it cannot
/// serve or after `/metrics`, after which the connection closes.
fn serve_admin(inbuf: &mut Vec<u8>, out: &mut Vec<u8>, state: Admin<'_>) -> bool {
    let Admin {
        pending,
        pending_frames,
        room,
        counts,
        pass_times,
    } = state;
    loop {
        let head = match parse::head(inbuf) {
            Ok(None) => return true,
            Ok(Some(head)) => head,
            Err(_) => {
                out.extend_from_slice(&parse::status(400, "Bad Request", true));
                return false;
            }
        };
        if head.content_length > MAX_BODY {
            out.extend_from_slice(&parse::status(413, "Payload Too Large", true));
            return false;
        }
        let end = head.len + head.content_length;
        if inbuf.len() < end {
            return true;
        }
        if head.method == "GET" && head.path == "/metrics" {
            let body = metrics::render(counts, pass_times);
            out.extend_from_slice(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
            return false;
        }
        if parse::publish_topic(&head).is_none() {
            out.extend_from_slice(&parse::status(404, "Not Found", true));
            return false;
        }
        if pending.len() >= room {
            out.extend_from_slice(&parse::status(503, "Service Unavailable", false));
        } else {
            parse::push_frame(pending, &inbuf[head.len..end]);
            *pending_frames += 1;
            counts.published += 1;
            out.extend_from_slice(&parse::status(202, "Accepted", false));
        }
        inbuf.drain(..end);
    }
}

/// Writes as much of `out` as the socket takes; false when it failed.
fn write_buf(socket: &mut TcpStream, out: &mut Vec<u8>) -> bool {
    while !out.is_empty() {
        match socket.write(out) {
            Ok(0) => return false,
            Ok(n) => {
                out.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

/// Writes the queued batches, one `writev` per up to [`MAX_IOVECS`] of them, until done or the
/// socket is full; returns the calls made.
fn write_queue(
    socket: &mut TcpStream,
    queue: &mut VecDeque<Rc<[u8]>>,
    offset: &mut usize,
    queued: &mut usize,
) -> io::Result<u64> {
    let mut calls = 0;
    while !queue.is_empty() {
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let mut count = 0;
        for (i, batch) in queue.iter().take(MAX_IOVECS).enumerate() {
            let start = if i == 0 { *offset } else { 0 };
            slices[i] = IoSlice::new(batch.get(start..).unwrap_or_default());
            count = i + 1;
        }
        calls += 1;
        let n = match socket.write_vectored(&slices[..count]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(calls),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        consume(queue, offset, queued, n);
    }
    Ok(calls)
}

/// Drops the `n` bytes written from the front of a queue.
fn consume(queue: &mut VecDeque<Rc<[u8]>>, offset: &mut usize, queued: &mut usize, mut n: usize) {
    *queued -= n;
    while let Some(front) = queue.front() {
        let left = front.len() - *offset;
        if n < left {
            *offset += n;
            break;
        }
        n -= left;
        *offset = 0;
        queue.pop_front();
    }
}

/// `volley-bench __reference [--io writev|uring] [--fold]`: binds, prints the listening line a
/// gateway prints, serves until killed.
pub fn main(client: SocketAddr, admin: SocketAddr, variant: Variant) -> anyhow::Result<()> {
    let mut server = Reference::bind_with(client, admin, variant.io)?;
    server.set_fold(variant.fold);
    let (c, a) = server.addrs()?;
    println!("volley-bench reference listening client={c} admin={a}");
    io::stdout().flush()?;
    server.run_until(Duration::from_secs(1), || false)?;
    Ok(())
}
