//! WebSocket frame decoding, binary and JSON, both directions: errors, never panics; anything
//! that decodes re-encodes to an equal frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nano_proto::{ClientFrame, RelayFrame};

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = ClientFrame::from_binary(data) {
        assert_eq!(ClientFrame::from_binary(&f.to_binary()).ok(), Some(f));
    }
    if let Ok(f) = RelayFrame::from_binary(data) {
        assert_eq!(RelayFrame::from_binary(&f.to_binary()).ok(), Some(f));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(f) = ClientFrame::from_json(text) {
            assert_eq!(ClientFrame::from_json(&f.to_json()).ok(), Some(f));
        }
        let _ = RelayFrame::from_json(text);
    }
});
