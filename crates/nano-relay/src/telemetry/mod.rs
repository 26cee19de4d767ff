//! What the relay tells its operator.
//!
//! ```text
//! metrics     Prometheus metrics with the guide's names
//! log_limit   repeated failures logged once per interval with a count
//! profiling   pprof flame graphs (feature `profiling`)
//! ```

pub(crate) mod log_limit;
pub mod metrics;
pub(crate) mod profiling;
