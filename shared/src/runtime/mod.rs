//! What every process runs on: the worker skeleton (inherited sockets,
//! configuration from the master, privilege drop, events), one log format
//! and its file, the calendar and a clock tests can set, files replaced
//! whole or not at all, and the buffered reader of SMTP lines.

pub mod bufread;
pub mod durable;
pub mod logging;
pub mod time;
#[cfg(feature = "tls")]
pub mod tls;
pub mod worker;
