//! Runs requests from any transport on a pool of worker threads. A
//! transport only has to receive whole requests and send whole replies,
//! from several threads at once; requests that may block for long (lock
//! waits) finish on threads of their own so the pool never stalls.

use super::server::{Outcome, Server};
use super::wire::ReplyBuf;
use std::io;
use std::sync::Arc;

/// Where requests come from and replies go.
pub trait Transport: Send + Sync {
    /// Waits for the next request and reads it into `buf` (sized for the
    /// largest request); returns its length, or `None` when the session is
    /// over (the client unmounted or went away).
    fn receive(&self, buf: &mut [u8]) -> io::Result<Option<usize>>;

    /// Sends one whole reply.
    fn send(&self, reply: &[u8]) -> io::Result<()>;
}

/// Serves requests from `transport` with `threads` workers until the
/// session ends; returns the first transport error, if any.
pub fn serve(server: Arc<Server>, transport: Arc<dyn Transport>, threads: usize) -> io::Result<()> {
    let workers: Vec<_> = (0..threads.max(1))
        .map(|i| {
            let (server, transport) = (server.clone(), transport.clone());
            std::thread::Builder::new()
                .name(format!("fuse-worker-{i}"))
                .spawn(move || worker(&server, transport))
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

fn worker(server: &Arc<Server>, transport: Arc<dyn Transport>) -> io::Result<()> {
    let mut buf = vec![0u8; server.options().request_buffer_size()];
    let mut out = ReplyBuf::new();
    loop {
        let Some(n) = transport.receive(&mut buf)? else { return Ok(()) };
        let req = &buf[..n];
        // A bug in an operation must not take a worker (and with the last
        // one, the daemon) down: the request fails with EIO, and the
        // operation's unfinished journal handle was discarded on unwind.
        let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match server.handle(req, &mut out) {
            Outcome::Reply(_) => Step::Reply,
            Outcome::NoReply => Step::NoReply,
            Outcome::Deferred(job) => Step::Deferred(job),
        }));
        let unique = req.get(8..16).map(|u| u64::from_le_bytes(u.try_into().expect("8 bytes")));
        let step = match step {
            Ok(step) => step,
            Err(_) => {
                log::error!("request of {n} bytes (opcode {:?}) panicked; answered EIO", req.get(4..8));
                if let Some(unique) = unique {
                    out.start();
                    send_reply(transport.as_ref(), out.finish(unique, -libc::EIO));
                }
                continue;
            }
        };
        match step {
            Step::Reply => send_reply(transport.as_ref(), out.bytes()),
            Step::NoReply => {}
            Step::Deferred(job) => {
                // Deferred requests always have a whole header.
                let unique = unique.unwrap_or_default();
                let t = transport.clone();
                let spawned = std::thread::Builder::new().name("fuse-lock-wait".into()).spawn(move || run_deferred(job, unique, t.as_ref()));
                if let Err(e) = spawned {
                    // The job (and the server's waiter slot it holds) is gone with the closure.
                    log::error!("cannot start a thread for a lock wait: {e}; answered ENOLCK");
                    out.start();
                    send_reply(transport.as_ref(), out.finish(unique, -libc::ENOLCK));
                }
            }
        }
    }
}

/// Runs a deferred request (on its own thread) and sends its reply; a
/// panic in it is answered EIO, like a panic on a worker.
fn run_deferred(job: super::server::DeferredJob, unique: u64, t: &dyn Transport) {
    let mut out = ReplyBuf::new();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut out))) {
        Ok(()) => send_reply(t, out.bytes()),
        Err(_) => {
            log::error!("deferred request {unique} panicked; answered EIO");
            out.start();
            send_reply(t, out.finish(unique, -libc::EIO));
        }
    }
}

/// Sends a reply; a failure means the request is gone (interrupted, or
/// the client died) and is only logged.
fn send_reply(t: &dyn Transport, bytes: &[u8]) {
    if let Err(e) = t.send(bytes) {
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
        let sink = Sink::default();
        run_deferred(Box::new(|_out: &mut ReplyBuf| panic!("a bug in a lock wait")), 77, &sink);
        run_deferred(
            Box::new(|out: &mut ReplyBuf| {
                out.start();
                out.finish(78, 0);
            }),
            78,
            &sink,
        );
        let replies = sink.0.lock().unwrap();
        assert_eq!(replies.iter().map(|r| header(r)).collect::<Vec<_>>(), vec![(-libc::EIO, 77), (0, 78)]);
    }
}
