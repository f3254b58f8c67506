//! The body of `POST /api/v1/issues` as JSON, through the real router on a temp store: never a
//! server error, and an issue it creates reads back.
#![no_main]

use escalade_fuzz::{Http, id_of};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let http = Http::get();
    let (status, answer) =
        http.send_ok("POST", "/api/v1/issues", "application/json", data.to_vec());
    if status.is_success() {
        let id = id_of(&answer).expect("a created issue's id");
        let (status, answer) = http.send_ok("GET", &format!("/api/v1/issues/{id}"), "", vec![]);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    }
});
