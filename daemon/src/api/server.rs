//! The HTTP server: how many connections it holds, how long it waits for a client, and how it
//! stops. Every limit is configuration (`http:`), with defaults a city's daemon can take as they
//! are:
//!
//! - at most `max_connections` connections at once; the next waits in the kernel's backlog until
//!   one closes, so a flood of idle connections cannot take the descriptors the store needs;
//! - a connection that sends no complete request head within `header_timeout` (a new one, or one
//!   kept alive between requests) is closed;
//! - a request body is read within `body_timeout` (a multipart upload within `upload_timeout`),
//!   at most `max_body_reads` JSON bodies and `max_uploads` uploads at once; a request that waits
//!   longer than a second for its turn is answered 503 `busy`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use tokio::sync::Semaphore;

use super::AppState;
use crate::notify::config::Dur;

/// The `http:` section of the configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpLimits {
    /// Connections held at once; lowered at start to what the process's descriptor limit
    /// leaves room for.
    pub max_connections: usize,
    /// How long a connection may take to send a request's head, and stay idle between requests.
    pub header_timeout: Dur,
    /// How long a JSON body may take to arrive, from the first byte waited for.
    pub body_timeout: Dur,
    /// How long a multipart upload (photos) may take to arrive.
    pub upload_timeout: Dur,
    /// JSON bodies read at once.
    pub max_body_reads: usize,
    /// Multipart uploads read at once.
    pub max_uploads: usize,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits {
            max_connections: 16_384,
            header_timeout: Dur(Duration::from_secs(10)),
            body_timeout: Dur(Duration::from_secs(30)),
            upload_timeout: Dur(Duration::from_secs(300)),
            max_body_reads: 64,
            max_uploads: 8,
        }
    }
}

impl HttpLimits {
    /// Refuses a limit that would stop the server from serving, naming its key.
    pub fn check(&self) -> Result<(), String> {
        for (key, n) in [
            ("max_connections", self.max_connections),
            ("max_body_reads", self.max_body_reads),
            ("max_uploads", self.max_uploads),
        ] {
            if n == 0 {
                return Err(format!("http.{key}: must be at least 1"));
            }
        }
        for (key, d) in [
            ("header_timeout", self.header_timeout.0),
            ("body_timeout", self.body_timeout.0),
            ("upload_timeout", self.upload_timeout.0),
        ] {
            if d.is_zero() {
                return Err(format!("http.{key}: must be longer than 0s"));
            }
        }
        Ok(())
    }
}

/// The turns of body reading: how many JSON bodies and uploads are read at once.
pub struct Turns {
    pub limits: HttpLimits,
    /// Largest JSON body (or JSON part of a multipart request), in bytes.
    pub max_body_bytes: usize,
    pub bodies: Semaphore,
    pub uploads: Semaphore,
}

impl Turns {
    pub fn new(limits: HttpLimits, max_body_bytes: usize) -> Turns {
        Turns {
            max_body_bytes,
            bodies: Semaphore::new(limits.max_body_reads),
            uploads: Semaphore::new(limits.max_uploads),
            limits,
        }
    }
}

impl Default for Turns {
    fn default() -> Turns {
        Turns::new(HttpLimits::default(), 1 << 20)
    }
}

/// Raises the soft limit on open descriptors to the hard one and returns it: the connection
/// cap is held below it, with room left for the store, photos and delivery.
fn raise_descriptor_limit() -> Option<u64> {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit on this stack frame.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
            return None;
        }
        if l.rlim_cur < l.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: l.rlim_max,
                rlim_max: l.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                l.rlim_cur = l.rlim_max;
            }
        }
    }
    Some(l.rlim_cur)
}

/// Every 10 s, hands the heap memory freed since back to the system: after a burst (thousands
/// of connections, a wave of uploads) the allocator would otherwise keep its peak.
async fn return_freed_memory() {
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only releases free memory at the top of glibc's heaps.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

/// Descriptors kept out of the connection cap, for everything else the daemon opens.
const RESERVED_DESCRIPTORS: u64 = 256;

/// Serves until `shutdown` resolves, then finishes the requests in flight (for at most 10 s).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.turns.limits.clone();
    let mut cap = limits.max_connections;
    if let Some(fds) = raise_descriptor_limit() {
        let room = fds.saturating_sub(RESERVED_DESCRIPTORS).max(1) as usize;
        if room < cap {
            tracing::warn!(
                max_connections = cap,
                descriptors = fds,
                held = room,
                "the descriptor limit leaves room for fewer connections than configured (raise LimitNOFILE)"
            );
            cap = room;
        }
    }
    let connections = Arc::new(Semaphore::new(cap));
    let trimming = tokio::spawn(return_freed_memory());
    let app = super::router(state);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout.0)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut warned_full = false;
    loop {
        // A slot first: at the cap, new connections wait in the backlog.
        let permit = tokio::select! {
            p = connections.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        if connections.available_permits() == 0 && !warned_full {
            tracing::warn!(
                max_connections = cap,
                "the connection cap is reached: new connections wait until one closes"
            );
        }
        warned_full = connections.available_permits() == 0;
        let (stream, _peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: wait, go on.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let conn = http.serve_connection(TokioIo::new(stream), service);
        let watched = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = watched.await;
            drop(permit);
        });
    }
    drop(listener);
    trimming.abort();
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(10)) => {
            tracing::warn!("requests still in flight 10 s after the stop; closing them");
        }
    }
    Ok(())
}
