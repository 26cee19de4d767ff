//! WebSocket frame decoding, binary and JSON, both directions: errors, never panics; anything
//! that decodes re-encodes to an equal frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nano_proto::{ClientFrame, RelayFrame};

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = ClientFrame::from_binary(data) {
        let again = f
            .to_binary()
            .ok()
            .and_then(|b| ClientFrame::from_binary(&b).ok());
        assert_eq!(again, Some(f));
    }
    if let Ok(f) = RelayFrame::from_binary(data) {
        let again = f
            .to_binary()
            .ok()
            .and_then(|b| RelayFrame::from_binary(&b).ok());
        assert_eq!(again, Some(f));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(f) = ClientFrame::from_json(text) {
            let again = f
                .to_json()
                .ok()
                .and_then(|j| ClientFrame::from_json(&j).ok());
            assert_eq!(again, Some(f));
        }
        let _ = RelayFrame::from_json(text);
    }
});
