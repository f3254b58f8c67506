//! Wake-up hints between replicas. A replica that commits a timer tells the others when it
//! falls due (`NOTIFY`, after the commit and outside any write's transaction), so that one
//! sleeping past it looks sooner. A hint is only a hint: a lost one (a listener reconnecting, a
//! replica starting) is made up for by every replica's polling.
//!
//! Hints are debounced: each replica sends at most one per `HINT_EVERY`, carrying the earliest
//! due time committed since the last, so a busy replica costs the database a few small
//! notifications a second however many timers it commits.

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::mpsc;

/// The channel replicas notify and listen on.
const CHANNEL: &str = "escalade_timers";

/// One hint per this long at most, from each replica.
pub const HINT_EVERY: Duration = Duration::from_millis(50);

/// Hints received and not yet read by the scheduler, at most (a full queue drops the newest:
/// the scheduler is then awake anyway).
const RECEIVED: usize = 64;

/// This replica's side of the hints: what it sends, and (once the scheduler asks) what it
/// receives from the others.
pub(super) struct Hints {
    replica: String,
    pool: PgPool,
    /// Due times (Unix ms) to tell the others, read by the sending task; it ends with the store.
    send: mpsc::UnboundedSender<i64>,
    /// Due times the other replicas told of, once listening started.
    received: tokio::sync::Mutex<Option<mpsc::Receiver<i64>>>,
}

impl Hints {
    /// Starts the sending task (it waits idle until a hint comes).
    pub(super) fn start(pool: PgPool, replica: String) -> Hints {
        let (send, queued) = mpsc::unbounded_channel();
        tokio::spawn(send_hints(pool.clone(), replica.clone(), queued));
        Hints {
            replica,
            pool,
            send,
            received: tokio::sync::Mutex::new(None),
        }
    }

    /// Tells the other replicas a timer falls due at `due_ms`, soon (debounced).
    pub(super) fn hint(&self, due_ms: i64) {
        // The task ends only with the store.
        let _ = self.send.send(due_ms);
    }

    /// The due time of the next hint another replica sends. The first call starts listening;
    /// the listener reconnects by itself when its connection drops. Cancel-safe.
    pub(super) async fn next(&self) -> i64 {
        let mut received = self.received.lock().await;
        let queue = received.get_or_insert_with(|| {
            let (tell, queue) = mpsc::channel(RECEIVED);
            tokio::spawn(listen(self.pool.clone(), self.replica.clone(), tell));
            queue
        });
        match queue.recv().await {
            Some(due) => due,
            // The listener ended (it cannot): nothing more will come.
            None => std::future::pending().await,
        }
    }
}

/// Sends the queued hints, one notification per `HINT_EVERY` with the earliest due time queued
/// meanwhile, until the store is dropped.
async fn send_hints(pool: PgPool, replica: String, mut queued: mpsc::UnboundedReceiver<i64>) {
    while let Some(first) = queued.recv().await {
        let mut due = first;
        while let Ok(d) = queued.try_recv() {
            due = due.min(d);
        }
        let sent = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(format!("{replica} {due}"))
            .execute(&pool)
            .await;
        match sent {
            Ok(_) => crate::metrics::timer_hint("sent"),
            Err(e) => {
                tracing::warn!(error = %e, "telling the other replicas of a timer failed; they find it by polling")
            }
        }
        tokio::time::sleep(HINT_EVERY).await;
    }
}

/// Listens for the other replicas' hints and queues their due times, until the store is
/// dropped. A connection lost is made again (the hints sent meanwhile are lost: polling finds
/// their timers).
async fn listen(pool: PgPool, replica: String, tell: mpsc::Sender<i64>) {
    let mut listener = loop {
        let started = async {
            let mut l = PgListener::connect_with(&pool).await?;
            l.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(l)
        };
        tokio::select! {
            started = started => match started {
                Ok(l) => break l,
                Err(e) => tracing::warn!(error = %e, "listening for the other replicas' timers failed; polling finds them, and listening is tried again in 1 s"),
            },
            _ = tell.closed() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = tell.closed() => return,
        }
    };
    loop {
        tokio::select! {
            got = listener.recv() => match got {
                Ok(n) => {
                    let Some(due) = parse(n.payload(), &replica) else { continue };
                    crate::metrics::timer_hint("received");
                    // A full queue: the scheduler has hints to read, so it is awake anyway.
                    let _ = tell.try_send(due);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "listening for the other replicas' timers failed; reconnecting");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = tell.closed() => return,
                    }
                }
            },
            _ = tell.closed() => return,
        }
    }
}

/// The due time a hint carries (`<replica> <unix ms>`), unless it is this replica's own or not
/// a hint.
fn parse(payload: &str, own: &str) -> Option<i64> {
    let (from, due) = payload.rsplit_once(' ')?;
    if from == own {
        return None;
    }
    due.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn a_hint_names_its_sender_and_due_time() {
        assert_eq!(
            parse("host-1-ab 1700000000123", "host-2-cd"),
            Some(1700000000123)
        );
        assert_eq!(parse("host-1-ab 1700000000123", "host-1-ab"), None);
        assert_eq!(parse("nonsense", "host-1-ab"), None);
        assert_eq!(parse("host-1-ab soon", "host-2-cd"), None);
    }
}
