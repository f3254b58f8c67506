//! Multipart submissions (`multipart/form-data; boundary=fuzz`): the first byte chooses a
//! report (`POST /api/v1/issues`, even) or an event on a fresh issue (odd); the rest is the
//! body. Never a server error.
#![no_main]

use escalade_fuzz::Http;
use libfuzzer_sys::fuzz_target;

const CONTENT_TYPE: &str = "multipart/form-data; boundary=fuzz";

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let http = Http::get();
    let path = if selector % 2 == 0 {
        "/api/v1/issues".to_string()
    } else {
        format!("/api/v1/issues/{}/events", http.report(selector / 2))
    };
    http.send_ok("POST", &path, CONTENT_TYPE, body.to_vec());
});
