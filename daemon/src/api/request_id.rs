//! Every request has an id: the client's `X-Request-Id` when it sends a usable one (1 to 200
//! visible ASCII characters), else one made here. It is answered in `X-Request-Id`, carried by
//! every log line written while the request is served, and named in error bodies
//! (`error.request_id`), so a complaint can be matched to the log.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

tokio::task_local! {
    static REQUEST_ID: Arc<str>;
}

/// The id of the request being served, if any.
pub(crate) fn current() -> Option<Arc<str>> {
    REQUEST_ID.try_with(Arc::clone).ok()
}

/// The longest request id taken from a client.
const MAX_LEN: usize = 200;

fn usable(v: &HeaderValue) -> Option<Arc<str>> {
    let s = v.to_str().ok()?.trim();
    (!s.is_empty() && s.len() <= MAX_LEN && s.bytes().all(|b| b.is_ascii_graphic()))
        .then(|| Arc::from(s))
}

fn fresh() -> Arc<str> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the system's random source");
    Arc::from(hex::encode(b))
}

pub(crate) async fn tag(request: Request, next: Next) -> Response {
    // The route as declared (`/api/v1/issues/{id}`), so that ids do not make new series.
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().to_string();
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(usable)
        .unwrap_or_else(fresh);
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path()
    );
    let started = Instant::now();
    let mut response = REQUEST_ID
        .scope(id.clone(), next.run(request))
        .instrument(span.clone())
        .await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    crate::metrics::answered(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    span.in_scope(|| {
        tracing::debug!(
            status = response.status().as_u16(),
            micros = started.elapsed().as_micros() as u64,
            "answered"
        )
    });
    response
}
