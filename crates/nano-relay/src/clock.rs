//! The relay's clock as its storage keeps it: [`nano_proto::now_ms`] as a signed integer (the
//! databases' `BIGINT`).

/// Milliseconds since the Unix epoch, as stored.
pub(crate) fn now_ms() -> i64 {
    i64::try_from(nano_proto::now_ms()).unwrap_or(i64::MAX)
}
