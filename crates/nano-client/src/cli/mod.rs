//! The CLI's commands that need more than a few lines (`main.rs` parses and dispatches).
//!
//! ```text
//! receive   print, acknowledge and remember what comes in
//! text      sender text made safe for a terminal; UTC times
//! ```

pub(crate) mod receive;
pub(crate) mod text;
