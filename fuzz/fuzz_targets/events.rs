//! Event bodies (`POST /api/v1/issues/{id}/events`): the first byte chooses the category of a
//! fresh issue; the rest, split at 0xFF bytes (never in UTF-8 text), is up to 8 event bodies
//! posted to it in turn. Never a server error, and the issue still reads back.
#![no_main]

use escalade_fuzz::Http;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let http = Http::get();
    let id = http.report(selector);
    let path = format!("/api/v1/issues/{id}/events");
    for body in rest.split(|&b| b == 0xFF).take(8) {
        http.send_ok("POST", &path, "application/json", body.to_vec());
    }
    let (status, answer) = http.send_ok("GET", &format!("/api/v1/issues/{id}"), "", vec![]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
});
