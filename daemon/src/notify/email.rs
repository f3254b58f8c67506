//! Email over SMTP with lettre (async on tokio, TLS by rustls): lettre builds the messages and
//! speaks SMTP (EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA); the pool of open connections is ours.
//!
//! Why not lettre's pooled `AsyncSmtpTransport`: it connects its sockets itself and leaves
//! Nagle's algorithm on. lettre writes a message's content and its final `.` in two writes, and
//! the server acknowledges the first only with its delayed ACK (40 ms on Linux), having nothing
//! to answer yet: every email on a reused connection waited about 44 ms, 23 emails/s per
//! connection (BENCHMARKS.md). Connecting the socket here lets us set `TCP_NODELAY`. With
//! `tls: tls` (TLS from the first byte) lettre must connect the socket itself, and that stall
//! remains; `starttls` and `none` are free of it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use escalade_rules::template::Rendered;
use lettre::address::Envelope;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use tokio::sync::Semaphore;

use super::Failure;
use super::config::{SmtpConfig, TlsMode};

/// An idle connection is closed after this long rather than reused (servers drop idle clients).
const IDLE: Duration = Duration::from_secs(60);

pub struct Email {
    host: String,
    port: u16,
    tls: TlsMode,
    timeout: Duration,
    hello: ClientId,
    credentials: Option<Credentials>,
    from: Mailbox,
    /// The domain of Message-IDs: the sender's.
    domain: String,
    /// Connections open and idle, the most recently used last.
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
    /// Sends at once at most, so connections at most: the pool's size.
    slots: Semaphore,
    /// Authorities trusted besides the system's (`ca_file`).
    roots: Vec<Certificate>,
}

impl Email {
    pub fn new(c: &SmtpConfig) -> Result<Email, String> {
        let from: Mailbox = c
            .from
            .parse()
            .map_err(|e| format!("smtp.from: `{}`: {e}", c.from))?;
        let roots = match &c.ca_file {
            None => Vec::new(),
            Some(f) => {
                let pem = std::fs::read(f)
                    .map_err(|e| format!("smtp.ca_file: cannot read {}: {e}", f.display()))?;
                vec![Certificate::from_pem(&pem).map_err(|e| {
                    format!(
                        "smtp.ca_file: {} is not a PEM certificate: {e}",
                        f.display()
                    )
                })?]
            }
        };
        Ok(Email {
            roots,
            host: c.host.clone(),
            port: c.port(),
            tls: c.tls,
            timeout: c.timeout.0,
            hello: ClientId::default(),
            credentials: c
                .username
                .clone()
                .zip(c.password.clone())
                .map(|(u, p)| Credentials::new(u, p.0)),
            domain: from.email.domain().to_string(),
            from,
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(c.pool as usize),
        })
    }

    /// Sends one email: plain text, with an HTML alternative when the template has one. The
    /// subject (and the recipient's name) are RFC 2047-encoded by lettre when not ASCII. The
    /// Message-ID is derived from `id`, so a message sent twice (at-least-once delivery) has
    /// the same Message-ID both times.
    pub async fn send(
        &self,
        address: &str,
        name: Option<&str>,
        rendered: &Rendered,
        id: &str,
    ) -> Result<(), Failure> {
        let to = address
            .parse()
            .map(|a| Mailbox::new(name.filter(|n| !n.is_empty()).map(str::to_string), a))
            .map_err(|e| Failure::Permanent(format!("bad recipient address `{address}`: {e}")))?;
        let builder = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(rendered.subject.clone().unwrap_or_default())
            .message_id(Some(format!("<{id}@{}>", self.domain)));
        let message = match &rendered.html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(
                rendered.body.clone(),
                html.clone(),
            )),
            None => builder.singlepart(SinglePart::plain(rendered.body.clone())),
        }
        .map_err(|e| Failure::Permanent(format!("cannot build the email: {e}")))?;
        let (envelope, bytes) = (message.envelope().clone(), message.formatted());
        let _slot = self.slots.acquire().await.expect("never closed");
        match tokio::time::timeout(self.timeout, self.transmit(&envelope, &bytes)).await {
            Ok(r) => r,
            Err(_) => Err(Failure::Transient {
                error: format!("SMTP: no answer within {:?}", self.timeout),
                after: None,
            }),
        }
    }

    /// Sends on an idle connection, or a new one. A pooled connection the server closed while
    /// it was idle fails before any answer: the message then goes once more on a new one.
    async fn transmit(&self, envelope: &Envelope, bytes: &[u8]) -> Result<(), Failure> {
        let mut pooled = self.take_idle();
        loop {
            let (mut conn, fresh) = match pooled.take() {
                Some(c) => (c, false),
                None => (self.connect().await?, true),
            };
            match conn.send(envelope, bytes).await {
                Ok(_) => {
                    self.put_idle(conn);
                    return Ok(());
                }
                Err(e) if !fresh && !e.is_response() => continue,
                Err(e) => {
                    if !conn.has_broken() {
                        self.put_idle(conn);
                    }
                    return Err(classify(&e));
                }
            }
        }
    }

    fn take_idle(&self) -> Option<AsyncSmtpConnection> {
        let mut idle = self.idle.lock().expect("pool lock");
        idle.retain(|(_, since)| since.elapsed() < IDLE);
        idle.pop().map(|(c, _)| c)
    }

    fn put_idle(&self, conn: AsyncSmtpConnection) {
        self.idle
            .lock()
            .expect("pool lock")
            .push((conn, Instant::now()));
    }

    /// A new connection: TCP with `TCP_NODELAY` (not for implicit TLS, which lettre connects),
    /// EHLO, STARTTLS if asked (required then), AUTH if configured. Every failure here is the
    /// relay's or the configuration's, not the message's: transient, retried until fixed.
    async fn connect(&self) -> Result<AsyncSmtpConnection, Failure> {
        let transient = |error: String| Failure::Transient { error, after: None };
        let classify = |e: lettre::transport::smtp::Error| transient(format!("SMTP: {e}"));
        let tls = || {
            self.roots
                .iter()
                .fold(TlsParameters::builder(self.host.clone()), |b, c| {
                    b.add_root_certificate(c.clone())
                })
                .build_rustls()
                .map_err(classify)
        };
        let mut conn = match self.tls {
            TlsMode::Tls => AsyncSmtpConnection::connect_tokio1(
                (self.host.as_str(), self.port),
                Some(self.timeout),
                &self.hello,
                Some(tls()?),
                None,
            )
            .await
            .map_err(classify)?,
            TlsMode::None | TlsMode::Starttls => {
                let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
                    .await
                    .map_err(|e| {
                        transient(format!(
                            "SMTP: cannot connect to {}:{}: {e}",
                            self.host, self.port
                        ))
                    })?;
                tcp.set_nodelay(true)
                    .map_err(|e| transient(format!("SMTP: {e}")))?;
                let mut conn =
                    AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello)
                        .await
                        .map_err(classify)?;
                if self.tls == TlsMode::Starttls {
                    conn.starttls(tls()?, &self.hello).await.map_err(classify)?;
                }
                conn
            }
        };
        if let Some(c) = &self.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], c)
                .await
                .map_err(classify)?;
        }
        Ok(conn)
    }
}

/// A permanent SMTP answer (5xx) or a message the client refuses is permanent; anything else (a
/// 4xx answer, no connection, a timeout, a TLS failure) may pass later.
fn classify(e: &lettre::transport::smtp::Error) -> Failure {
    let error = format!("SMTP: {e}");
    if e.is_permanent() || e.is_client() {
        Failure::Permanent(error)
    } else {
        Failure::Transient { error, after: None }
    }
}
