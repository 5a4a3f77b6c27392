//! L7: HTTP/1.1 termination and proxying on the worker cores.
//!
//! - [`tcp`]: userspace TCP, one smoltcp interface per connection, picked by
//!   Sluice's own table, with the mbuf device glue (docs/L7-DESIGN.md);
//! - [`engine`]: a worker's listeners, sessions, upstream pool and timers;
//! - [`session`]: the HTTP/1.1 proxy state machine of one client, sans-I/O:
//!   driven by the engine through [`session::Env`], tested without DPDK;
//! - [`http`]: sans-I/O request/response heads, bodies and rewriting;
//! - [`router`]: per-request routing; [`balance`]: per-request backend
//!   choice; [`health`]: active health checks;
//! - [`tls`]: TLS termination of client connections (rustls, sans-I/O),
//!   a layer between the client socket and the session; [`x509`]: the
//!   expiry and subject of a certificate;
//! - [`syncookie`]: SYN cookies for listeners under a SYN flood;
//! - [`plane`]: the compiled L7 configuration the workers read.

pub mod balance;
pub mod engine;
pub mod health;
pub mod http;
pub mod plane;
pub mod router;
pub mod session;
pub mod syncookie;
pub mod tcp;
pub mod tls;
pub mod x509;
