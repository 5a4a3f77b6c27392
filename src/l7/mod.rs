//! L7 building blocks, not yet wired into the worker: sans-I/O HTTP/1.1
//! heads, bodies and head rewriting ([`http`]), and request routing
//! ([`router`]). The data path that will drive them (userspace TCP on the
//! worker, one smoltcp interface per connection) does not exist yet; its
//! design and measurements are in docs/L7-DESIGN.md.

pub mod http;
pub mod router;
