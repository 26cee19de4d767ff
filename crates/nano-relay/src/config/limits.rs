//! `[limits]`.

use serde::{Deserialize, Serialize};

use crate::error::StartupError;

use super::{invalid, range};

/// `[limits]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest WebSocket frame accepted, in bytes.
    pub max_frame_bytes: usize,
    /// Largest `send_message` payload, in bytes.
    pub max_message_bytes: usize,
    /// Most undelivered messages one inbox holds.
    pub inbox_quota: u64,
    /// Seconds without traffic (pings answered count) before a connection is closed.
    pub idle_timeout_seconds: u64,
    /// Frames queued for one connection before it is disconnected as a slow reader.
    pub send_queue_depth: usize,
    /// Payload bytes queued for one connection before it is disconnected as a slow reader.
    pub send_queue_bytes: usize,
    /// HTTP API connections open at once; beyond it, accepting waits for one to close.
    pub max_http_connections: usize,
    /// Seconds an HTTP API connection has to send a complete request head, counted from its
    /// opening or its previous response (so also the idle keep-alive timeout).
    pub http_header_timeout_seconds: u64,
    /// Seconds an HTTP API request has, from its head to its answer (body included); `408
    /// request_timeout` after.
    pub http_request_timeout_seconds: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_frame_bytes: 256 * 1024,
            max_message_bytes: nano_proto::MAX_MESSAGE_BYTES,
            inbox_quota: 10_000,
            idle_timeout_seconds: 300,
            send_queue_depth: 256,
            send_queue_bytes: 4 * 1024 * 1024,
            max_http_connections: 1024,
            http_header_timeout_seconds: 10,
            http_request_timeout_seconds: 30,
        }
    }
}

impl LimitsConfig {
    /// Checks ranges and combinations the types alone cannot express.
    pub(super) fn validate(&self) -> Result<(), StartupError> {
        let l = self;
        // A frame must fit the largest auth signature (a quantum one is ~6.2 KiB in base64) and
        // a whole message with its fields; a frame is parsed in memory, so it stays small.
        range(
            "limits.max_frame_bytes",
            l.max_frame_bytes,
            16 * 1024,
            4 * 1024 * 1024,
        )?;
        // Above the protocol's limit no valid frame could use the room; below it the largest
        // plaintext shrinks, and clients learn by how much from `GET /v1/relay`.
        range(
            "limits.max_message_bytes",
            l.max_message_bytes,
            1,
            nano_proto::MAX_MESSAGE_BYTES,
        )?;
        // A JSON frame carries the payload as base64.
        if nano_proto::base64_len(l.max_message_bytes) + 16 * 1024 > l.max_frame_bytes {
            return Err(invalid(
                "limits.max_message_bytes",
                "its base64 must be at least 16 KiB smaller than limits.max_frame_bytes",
            ));
        }
        range("limits.inbox_quota", l.inbox_quota, 1, 100_000_000)?;
        range(
            "limits.idle_timeout_seconds",
            l.idle_timeout_seconds,
            5,
            86_400,
        )?;
        range("limits.send_queue_depth", l.send_queue_depth, 1, 1_000_000)?;
        range(
            "limits.send_queue_bytes",
            l.send_queue_bytes,
            64 * 1024,
            1024 * 1024 * 1024,
        )?;
        if l.send_queue_bytes < l.max_message_bytes {
            return Err(invalid(
                "limits.send_queue_bytes",
                "must be at least limits.max_message_bytes",
            ));
        }
        range(
            "limits.max_http_connections",
            l.max_http_connections,
            1,
            1_000_000,
        )?;
        range(
            "limits.http_header_timeout_seconds",
            l.http_header_timeout_seconds,
            1,
            3600,
        )?;
        range(
            "limits.http_request_timeout_seconds",
            l.http_request_timeout_seconds,
            1,
            3600,
        )?;
        Ok(())
    }
}
