//! Telling the service manager how the daemon is doing: systemd's notify protocol
//! (`Type=notify`, and `Type=notify-reload` on systemd 253 and later).
//!
//! `READY=1` once the store is migrated, the rules are loaded and the socket listens; `STATUS=`
//! lines along the way; `RELOADING=1` with `MONOTONIC_USEC=` then `READY=1` around every reload of
//! the rules, whatever asked for it; `STOPPING=1` when a stop begins; and `WATCHDOG=1` pings from
//! the scheduler's loop, so that a scheduler that hangs stops pinging and is restarted
//! (`WatchdogSec=`). Without `NOTIFY_SOCKET` in the environment nothing is sent.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;

/// The service manager the daemon was started by, if it listens for notifications.
#[derive(Clone, Debug, Default)]
pub struct ServiceManager {
    /// `NOTIFY_SOCKET` was set at start.
    notify: bool,
    /// `WATCHDOG_USEC`, when it is meant for this process.
    watchdog: Option<Duration>,
}

impl ServiceManager {
    /// The manager named by the environment: `NOTIFY_SOCKET`, and `WATCHDOG_USEC` (with
    /// `WATCHDOG_PID`, when set, naming this process).
    pub fn from_env() -> ServiceManager {
        let notify = std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty());
        ServiceManager {
            notify,
            watchdog: sd_notify::watchdog_enabled().filter(|d| notify && !d.is_zero()),
        }
    }

    /// One that is told nothing (tests, benchmarks, the daemon started by hand).
    pub fn none() -> ServiceManager {
        ServiceManager::default()
    }

    fn send(&self, states: &[NotifyState]) {
        if !self.notify {
            return;
        }
        if let Err(e) = sd_notify::notify(states) {
            tracing::warn!(error = %e, "cannot notify the service manager");
        }
    }

    /// `STATUS=`: one line shown by `systemctl status`.
    pub fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(&one_line(status))]);
    }

    /// `READY=1` with a status: start-up is done, or a reload is over.
    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(&one_line(status))]);
    }

    /// `RELOADING=1` with the monotonic clock's `MONOTONIC_USEC=` (which `Type=notify-reload`
    /// requires) and a status; `ready` ends the reload.
    pub fn reloading(&self, status: &str) {
        if !self.notify {
            return;
        }
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[
                NotifyState::Reloading,
                now,
                NotifyState::Status(&one_line(status)),
            ]),
            Err(e) => tracing::warn!(error = %e, "cannot read the monotonic clock"),
        }
    }

    /// `STOPPING=1`: the daemon stops accepting and finishes what is in flight.
    pub fn stopping(&self) {
        self.send(&[
            NotifyState::Stopping,
            NotifyState::Status("stopping: finishing requests in flight"),
        ]);
    }

    /// The watchdog the scheduler pings, when the manager asked for one: a ping at least every
    /// half of `WATCHDOG_USEC`.
    pub fn watchdog(&self) -> Option<Watchdog> {
        let every = (self.watchdog? / 2).max(Duration::from_millis(1));
        let manager = self.clone();
        Some(Watchdog::new(every, move || {
            manager.send(&[NotifyState::Watchdog])
        }))
    }
}

/// A notification is a list of `KEY=value` lines: a status keeps to its first line.
fn one_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

/// The watchdog's pings, sent by the scheduler's loop: it wakes at least every `every` and
/// pings at the top of each pass, so that a pass that never ends stops the pings.
#[derive(Clone)]
pub struct Watchdog {
    every: Duration,
    ping: Arc<dyn Fn() + Send + Sync>,
}

impl Watchdog {
    pub fn new(every: Duration, ping: impl Fn() + Send + Sync + 'static) -> Watchdog {
        Watchdog {
            every,
            ping: Arc::new(ping),
        }
    }

    /// The longest the scheduler may sleep between two pings.
    pub fn every(&self) -> Duration {
        self.every
    }

    pub fn ping(&self) {
        (self.ping)()
    }
}

impl std::fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watchdog")
            .field("every", &self.every)
            .finish()
    }
}
