//! Runs requests from any transport on a pool of worker threads.
//!
//! The seam between a transport and the server is [`RequestSource`]: a
//! worker receives one request at a time. Its header and arguments are
//! copied into the worker's buffer (the server checks them there, never
//! in memory the client can still change); file payloads may stay where
//! the transport has them ([`Payload`]): WRITE data as a [`DataSource`],
//! the place for READ data as a [`ReplySink`]. The request itself
//! ([`Incoming`]) knows how to deliver its reply, so a request deferred to
//! a thread of its own (a blocked F_SETLKW) carries what it needs to
//! complete later.
//!
//! A transport that only moves whole requests and whole replies (the
//! host's /dev/fuse) implements the simpler [`Transport`].

use super::server::{Outcome, Server};
use super::wire::{ReplyBuf, ReplySink};
use ext4::fs::data::io::DataSource;
use std::io;
use std::sync::Arc;

/// File data of one request that the transport keeps in its own memory.
#[derive(Default)]
pub struct Payload<'a> {
    /// A WRITE's data, when it is not among the request bytes.
    pub write: Option<&'a mut dyn DataSource>,
    /// Where READ data goes, when not into the reply buffer.
    pub read: Option<&'a mut dyn ReplySink>,
}

/// One received request: its payload and the way back to its client.
pub trait Incoming: Send {
    /// The payload kept in place (none for a contiguous transport).
    fn payload(&mut self) -> Payload<'_> {
        Payload::default()
    }
    /// Delivers the reply: `reply` is the header and buffered body;
    /// `external` more body bytes were already placed by the payload's
    /// [`ReplySink`] right after it.
    fn reply(self: Box<Self>, reply: &[u8], external: usize) -> io::Result<()>;
    /// Completes a request that takes no reply (FORGET, INTERRUPT, a
    /// request too broken to answer).
    fn no_reply(self: Box<Self>) {}
}

/// Where requests come from: the chain-aware seam.
pub trait RequestSource: Send + Sync {
    /// Waits for the next request; copies its header and arguments into
    /// `buf` and returns their length with the request, or `None` when the
    /// session is over.
    fn receive(&self, buf: &mut [u8]) -> io::Result<Option<(usize, Box<dyn Incoming>)>>;
    /// Size of the buffer `receive` needs.
    fn buffer_size(&self, server: &Server) -> usize {
        server.options().request_buffer_size()
    }
}

/// A transport of whole requests and whole replies.
pub trait Transport: Send + Sync {
    /// Waits for the next request and reads it into `buf` (sized for the
    /// largest request); returns its length, or `None` when the session is
    /// over (the client unmounted or went away).
    fn receive(&self, buf: &mut [u8]) -> io::Result<Option<usize>>;

    /// Sends one whole reply.
    fn send(&self, reply: &[u8]) -> io::Result<()>;
}

/// A [`Transport`] seen as a [`RequestSource`].
struct Contiguous(Arc<dyn Transport>);

struct ContiguousRequest(Arc<dyn Transport>);

impl Incoming for ContiguousRequest {
    fn reply(self: Box<Self>, reply: &[u8], external: usize) -> io::Result<()> {
        debug_assert_eq!(external, 0, "a contiguous transport has no reply sink");
        self.0.send(reply)
    }
}

impl RequestSource for Contiguous {
    fn receive(&self, buf: &mut [u8]) -> io::Result<Option<(usize, Box<dyn Incoming>)>> {
        Ok(self.0.receive(buf)?.map(|n| (n, Box::new(ContiguousRequest(self.0.clone())) as Box<dyn Incoming>)))
    }
}

/// Serves requests from a contiguous `transport` with `threads` workers
/// until the session ends; returns the first transport error, if any.
pub fn serve(server: Arc<Server>, transport: Arc<dyn Transport>, threads: usize) -> io::Result<()> {
    serve_requests(server, Arc::new(Contiguous(transport)), threads)
}

/// Serves requests from `source` with `threads` workers until the session
/// ends; returns the first transport error, if any.
pub fn serve_requests(server: Arc<Server>, source: Arc<dyn RequestSource>, threads: usize) -> io::Result<()> {
    let workers: Vec<_> = (0..threads.max(1))
        .map(|i| {
            let (server, source) = (server.clone(), source.clone());
            std::thread::Builder::new()
                .name(format!("fuse-worker-{i}"))
                .spawn(move || worker(&server, source))
                .expect("spawn worker thread")
        })
        .collect();
    let mut first_err = Ok(());
    for w in workers {
        let r = w.join().unwrap_or_else(|_| Err(io::Error::other("worker thread panicked")));
        if first_err.is_ok() {
            first_err = r;
        }
    }
    first_err
}

/// What a handled request asks of the worker (the reply itself stays in
/// the worker's buffer).
enum Step {
    Reply,
    NoReply,
    Deferred(super::server::DeferredJob),
}

fn worker(server: &Arc<Server>, source: Arc<dyn RequestSource>) -> io::Result<()> {
    let mut buf = vec![0u8; source.buffer_size(server)];
    let mut out = ReplyBuf::new();
    loop {
        let Some((n, mut incoming)) = source.receive(&mut buf)? else { return Ok(()) };
        let req = &buf[..n];
        // A bug in an operation must not take a worker (and with the last
        // one, the daemon) down: the request fails with EIO, and the
        // operation's unfinished journal handle was discarded on unwind.
        let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut payload = incoming.payload();
            match server.handle_with(req, &mut payload, &mut out) {
                Outcome::Reply(_) => Step::Reply,
                Outcome::NoReply => Step::NoReply,
                Outcome::Deferred(job) => Step::Deferred(job),
            }
        }));
        let unique = req.get(8..16).map(|u| u64::from_le_bytes(u.try_into().expect("8 bytes")));
        let step = match step {
            Ok(step) => step,
            Err(_) => {
                log::error!("request of {n} bytes (opcode {:?}) panicked; answered EIO", req.get(4..8));
                match unique {
                    Some(unique) => {
                        out.start();
                        out.finish(unique, -libc::EIO);
                        send_reply(incoming, &out);
                    }
                    None => incoming.no_reply(),
                }
                continue;
            }
        };
        match step {
            Step::Reply => send_reply(incoming, &out),
            Step::NoReply => incoming.no_reply(),
            Step::Deferred(job) => {
                // The server defers only requests whose header it read.
                let Some(unique) = unique else {
                    log::error!("a deferred request of {n} bytes has no header; dropped");
                    incoming.no_reply();
                    continue;
                };
                // The request travels with the job: it completes its own
                // reply (its descriptor chain, on a virtqueue) later.
                let (tx, rx) = std::sync::mpsc::sync_channel::<Box<dyn Incoming>>(1);
                let spawned = std::thread::Builder::new().name("fuse-lock-wait".into()).spawn(move || {
                    if let Ok(incoming) = rx.recv() {
                        run_deferred(job, unique, incoming)
                    }
                });
                match spawned {
                    Ok(_) => {
                        let _ = tx.send(incoming);
                    }
                    Err(e) => {
                        // The job (and the server's waiter slot it holds) is gone with the closure.
                        log::error!("cannot start a thread for a lock wait: {e}; answered ENOLCK");
                        out.start();
                        out.finish(unique, -libc::ENOLCK);
                        send_reply(incoming, &out);
                    }
                }
            }
        }
    }
}

/// Runs a deferred request (on its own thread) and sends its reply; a
/// panic in it is answered EIO, like a panic on a worker.
fn run_deferred(job: super::server::DeferredJob, unique: u64, incoming: Box<dyn Incoming>) {
    let mut out = ReplyBuf::new();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut out))) {
        Ok(()) => send_reply(incoming, &out),
        Err(_) => {
            log::error!("deferred request {unique} panicked; answered EIO");
            out.start();
            out.finish(unique, -libc::EIO);
            send_reply(incoming, &out);
        }
    }
}

/// Sends the reply last finished in `out`; a failure means the request is
/// gone (interrupted, or the client died) and is only logged.
fn send_reply(incoming: Box<dyn Incoming>, out: &ReplyBuf) {
    if let Err(e) = incoming.reply(out.bytes(), out.external_len()) {
        log::debug!("reply not delivered: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Sink(Mutex<Vec<Vec<u8>>>);

    impl Transport for Sink {
        fn receive(&self, _buf: &mut [u8]) -> io::Result<Option<usize>> {
            Ok(None)
        }
        fn send(&self, reply: &[u8]) -> io::Result<()> {
            self.0.lock().unwrap().push(reply.to_vec());
            Ok(())
        }
    }

    fn header(reply: &[u8]) -> (i32, u64) {
        let error = i32::from_le_bytes(reply[4..8].try_into().unwrap());
        (error, u64::from_le_bytes(reply[8..16].try_into().unwrap()))
    }

    #[test]
    fn a_panicking_deferred_request_is_answered_eio() {
        let sink = Arc::new(Sink::default());
        let req = || Box::new(ContiguousRequest(sink.clone() as Arc<dyn Transport>));
        run_deferred(Box::new(|_out: &mut ReplyBuf| panic!("a bug in a lock wait")), 77, req());
        run_deferred(
            Box::new(|out: &mut ReplyBuf| {
                out.start();
                out.finish(78, 0);
            }),
            78,
            req(),
        );
        let replies = sink.0.lock().unwrap();
        assert_eq!(replies.iter().map(|r| header(r)).collect::<Vec<_>>(), vec![(-libc::EIO, 77), (0, 78)]);
    }
}
