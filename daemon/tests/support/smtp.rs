//! An SMTP server in the test's process (`mailin-embedded`), which keeps what it receives and
//! refuses the recipients it is told to: what email delivery is tested against.

use std::collections::HashSet;
use std::net::TcpListener as StdListener;
use std::sync::{Arc, Mutex};

use mailin_embedded::{Handler, Response, Server as SmtpServer, response};

#[derive(Clone, Debug)]
pub struct Mail {
    pub to: Vec<String>,
    pub data: Vec<u8>,
}

/// What the SMTP server received, and the recipients it refuses with 550.
#[derive(Clone, Default)]
pub struct Mailbox {
    pub received: Arc<Mutex<Vec<Mail>>>,
    pub refuse: Arc<Mutex<HashSet<String>>>,
    /// The message being received on this connection (the handler is cloned per connection).
    current: Option<Mail>,
}

pub fn bare(address: &str) -> String {
    address.trim().trim_matches(['<', '>']).to_string()
}

impl Handler for Mailbox {
    fn rcpt(&mut self, to: &str) -> Response {
        if self.refuse.lock().unwrap().contains(&bare(to)) {
            response::NO_MAILBOX
        } else {
            response::OK
        }
    }

    fn data_start(&mut self, _domain: &str, _from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.current = Some(Mail {
            to: to.iter().map(|t| bare(t)).collect(),
            data: Vec::new(),
        });
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if let Some(m) = &mut self.current {
            m.data.extend_from_slice(buf);
        }
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        if let Some(m) = self.current.take() {
            self.received.lock().unwrap().push(m);
        }
        response::OK
    }
}

impl Mailbox {
    pub fn mails(&self) -> Vec<Mail> {
        self.received.lock().unwrap().clone()
    }

    pub fn to(&self, address: &str) -> Vec<Mail> {
        self.mails()
            .into_iter()
            .filter(|m| m.to.iter().any(|t| t == address))
            .collect()
    }
}

/// Serves SMTP on `listener` in a thread of its own (the server is blocking).
pub fn start_smtp(listener: StdListener, mailbox: Mailbox) {
    std::thread::spawn(move || {
        let mut server = SmtpServer::new(mailbox);
        server
            .with_name("smtp.test")
            .with_num_threads(8)
            .with_tcp_listener(listener);
        let _ = server.serve();
    });
}

/// A port nobody listens on (bound, then closed), for a server that is down.
pub fn closed_port() -> u16 {
    let l = StdListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

pub fn smtp_running() -> (Mailbox, u16) {
    let l = StdListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let mailbox = Mailbox::default();
    start_smtp(l, mailbox.clone());
    (mailbox, port)
}

pub fn smtp_yaml(port: u16) -> String {
    format!(
        "smtp:\n  host: 127.0.0.1\n  port: {port}\n  tls: none\n  from: \"网格化管理 <escalade@city.example>\"\n  timeout: 5s\n"
    )
}
