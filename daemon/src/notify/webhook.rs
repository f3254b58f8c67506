//! The webhook: every committed event, POSTed as the JSON stored with it in the outbox, signed
//! with HMAC-SHA256 over the raw body (`X-Escalade-Signature: sha256=<hex>`).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::Semaphore;

use super::config::WebhookConfig;
use super::{Failure, http_failure, snippet};

pub struct Webhook {
    client: reqwest::Client,
    url: reqwest::Url,
    secret: Vec<u8>,
    slots: Semaphore,
}

/// `sha256=<hex>`: the HMAC-SHA256 of `body` under `secret`, as the signature header carries it.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl Webhook {
    pub fn new(c: &WebhookConfig) -> Result<Webhook, String> {
        Ok(Webhook {
            client: reqwest::Client::builder()
                .timeout(c.timeout.0)
                .build()
                .map_err(|e| format!("webhook: cannot build the HTTP client: {e}"))?,
            url: reqwest::Url::parse(&c.url).map_err(|e| format!("webhook.url: {e}"))?,
            secret: c.secret.0.as_bytes().to_vec(),
            slots: Semaphore::new(c.concurrency),
        })
    }

    /// Posts one event. `X-Escalade-Delivery` is the outbox row's id: the same on a repeat, so
    /// the receiver can drop a duplicate (delivery is at least once).
    pub async fn send(&self, id: i64, body: &str) -> Result<(), Failure> {
        let _slot = self.slots.acquire().await.expect("never closed");
        let response = self
            .client
            .post(self.url.clone())
            .header("content-type", "application/json")
            .header(
                "x-escalade-signature",
                signature(&self.secret, body.as_bytes()),
            )
            .header("x-escalade-delivery", id.to_string())
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| Failure::Transient {
                error: format!("webhook: {e}"),
                after: None,
            })?;
        let status = response.status();
        let retry_after = super::retry_after(response.headers());
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        Err(
            http_failure("webhook", status, retry_after, &text).unwrap_or_else(|| {
                Failure::Permanent(format!("webhook answered {status}: {}", snippet(&text)))
            }),
        )
    }
}
