//! Sans-I/O HTTP/1.1 (RFC 9110, RFC 9112) for the L7 proxy.
//!
//! Nothing here reads a socket or a clock: the caller hands in the bytes it
//! has buffered and gets back a parsed head, a verdict, or bytes to send. The
//! worker's userspace TCP stack owns I/O; these functions own the protocol.
//!
//! - [`parse_request_head`] / [`parse_response_head`] run `httparse` with a
//!   fixed `[httparse::EMPTY_HEADER; MAX_HEADERS]` on the stack and keep the
//!   result as [`Span`]s into the caller's buffer (pingora
//!   `protocols/http/v1/server.rs`), then decide the message framing
//!   (RFC 9112 §6) and reject everything that could let Sluice and a backend
//!   disagree about where a request ends.
//! - [`ChunkedDecoder`] walks a chunked body incrementally, handing data bytes
//!   to a callback without buffering them.
//! - [`rewrite_request_head`] / [`rewrite_response_head`] write the head
//!   Sluice forwards: hop-by-hop fields dropped, exactly one canonical
//!   framing field, route edits and the proxy fields applied.
//!
//! # Contract
//!
//! No function in this module panics, whatever the bytes: a [`Span`] read
//! against the wrong buffer yields an empty slice instead of panicking, and
//! the parsers only ever index through checked accessors. The tests feed
//! every prefix of real messages and a few thousand mutated ones; the fuzz
//! target `http_head` does the rest.
//!
//! # Strictness, in one place
//!
//! A request Sluice accepts must have exactly one reading (RFC 9112 §11.2,
//! request smuggling). It therefore rejects with 400, and closes:
//!
//! - a request line or field line ending in a bare LF (RFC 9112 §2.2 allows a
//!   recipient to accept it; Sluice does not, because a backend might not);
//! - obs-fold (RFC 9112 §5.2) and whitespace before the first field line;
//! - both `Content-Length` and `Transfer-Encoding`, `Transfer-Encoding` in an
//!   HTTP/1.0 request, and any `Transfer-Encoding` other than the single
//!   coding `chunked` (501 if `chunked` is final but follows another coding,
//!   RFC 9112 §6.1; 400 otherwise);
//! - a `Content-Length` that is not 1*DIGIT, overflows u64, or appears more
//!   than once with differing values. Identical duplicates (`42, 42` or two
//!   lines of `42`) are folded, as RFC 9110 §8.6 allows: the rewritten head
//!   carries a single canonical `Content-Length`, so the backend never sees
//!   the duplicate;
//! - a missing `Host` in HTTP/1.1, more than one `Host`, or a `Host` that is
//!   not `host[:port]` (RFC 9112 §3.2);
//! - request targets whose path a backend could read differently from the
//!   router (see [`RequestHead::path`]); `CONNECT` is refused with 501.
//!
//! Response heads from backends are parsed more leniently in one respect only:
//! a bare LF ends a line, because Sluice writes a fresh head towards the
//! client and the bare LF never reaches it. Errors in a response are all a
//! 502 towards the client, whatever [`HttpError::status`] says.

mod chunked;
mod fields;
mod request;
mod response;
mod rewrite;
mod scan;
mod target;

#[cfg(test)]
mod tests;

pub use chunked::{ChunkedDecoder, MAX_CHUNK_EXT_BYTES};
pub use fields::{host_for_routing, is_valid_field_name, is_valid_field_value, list_elements};
pub use request::{
    parse_request_head, parse_request_head_reusing, RequestHead, RequestRef, TargetForm,
};
pub use response::{parse_response_head, parse_response_head_reusing, ResponseHead};
pub use rewrite::{
    rewrite_request_head, rewrite_response_head, HeadEdits, HeaderEdits, PrefixRewrite, Proto,
    ResponseEdits, ResponseFraming, TlsFields, TLS_FIELDS,
};
pub use scan::HeadScan;
pub use target::{check_path, path_eq, path_prefix_len};

/// Capacity of the on-stack `httparse` header array. [`Limits::max_headers`]
/// above this is clamped to it.
pub const MAX_HEADERS: usize = 128;

/// Per-listener bounds on what a client may send. The defaults follow common
/// proxy practice (nginx `large_client_header_buffers`, Envoy
/// `max_request_headers_kb`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest head (request line, field lines and the blank line), in bytes.
    /// Beyond it: 431. A caller may size its head buffer to exactly this.
    pub max_head_bytes: usize,
    /// Most field lines in a head, at most [`MAX_HEADERS`]. Beyond it: 431.
    pub max_headers: usize,
    /// Longest request-target, in bytes. Beyond it: 414.
    pub max_uri_bytes: usize,
    /// Largest request body, by `Content-Length` or as chunked data so far.
    /// Beyond it: 413. Not applied to responses, which are streamed.
    pub max_body_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 16 * 1024,
            max_headers: 100,
            max_uri_bytes: 8 * 1024,
            max_body_bytes: 10 * 1024 * 1024,
        }
    }
}

/// A byte range into the buffer a head was parsed from.
///
/// [`Span::get`] never panics: against a buffer shorter than the span (the
/// wrong buffer), it returns an empty slice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// The span covering `part`, which must lie inside `base`; `None` if it
    /// does not (`httparse` hands out some `""` literals of its own) or if it
    /// ends beyond `u32::MAX`.
    fn within(base: &[u8], part: &[u8]) -> Option<Span> {
        let start = (part.as_ptr() as usize).checked_sub(base.as_ptr() as usize)?;
        let end = start.checked_add(part.len())?;
        if end > base.len() {
            return None;
        }
        Some(Span {
            start: u32::try_from(start).ok()?,
            end: u32::try_from(end).ok()?,
        })
    }

    /// `start..end` relative to this span's start; `None` if out of range.
    fn sub(self, start: usize, end: usize) -> Option<Span> {
        if start > end || end > self.len() {
            return None;
        }
        let base = self.start as usize;
        Some(Span {
            start: u32::try_from(base + start).ok()?,
            end: u32::try_from(base + end).ok()?,
        })
    }

    pub fn start(self) -> usize {
        self.start as usize
    }

    pub fn end(self) -> usize {
        self.end as usize
    }

    pub fn len(self) -> usize {
        (self.end - self.start) as usize
    }

    pub fn is_empty(self) -> bool {
        self.start == self.end
    }

    /// The bytes of this span in `buf`, or `&[]` if `buf` is too short.
    pub fn get(self, buf: &[u8]) -> &[u8] {
        buf.get(self.start as usize..self.end as usize)
            .unwrap_or(&[])
    }
}

/// One field line of a head: name and value, the value without leading or
/// trailing whitespace (RFC 9112 §5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderLine {
    pub name: Span,
    pub value: Span,
}

/// The HTTP versions Sluice speaks. Anything else that looks like
/// `HTTP/x.y` is a 505.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    /// `1.0` or `1.1`, as written in a `Via` field (RFC 9110 §7.6.3).
    pub fn number(self) -> &'static str {
        match self {
            Version::Http10 => "1.0",
            Version::Http11 => "1.1",
        }
    }
}

/// Request methods (RFC 9110 §9). Methods are case-sensitive: `get` is
/// `Other`. The router matches on the method bytes, so extension methods
/// route like any other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Connect,
    Options,
    Trace,
    Patch,
    Other,
}

impl Method {
    pub fn from_bytes(method: &[u8]) -> Method {
        match method {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"CONNECT" => Method::Connect,
            b"OPTIONS" => Method::Options,
            b"TRACE" => Method::Trace,
            b"PATCH" => Method::Patch,
            _ => Method::Other,
        }
    }
}

/// How the body after a head is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// No body: a request with neither `Content-Length` nor
    /// `Transfer-Encoding`, or a response to HEAD, a 1xx, 204 or 304.
    None,
    /// Exactly this many bytes follow the head.
    ContentLength(u64),
    /// A chunked body follows; walk it with [`ChunkedDecoder`].
    Chunked,
    /// Responses only: the body runs until the backend closes the
    /// connection, which therefore cannot be reused.
    CloseDelimited,
}

/// Why a head or body was refused. Small and `Copy`: the data plane counts
/// these, it does not format them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// Malformed request line or status line.
    BadStartLine,
    /// The version is not `HTTP/<digit>.<digit>`.
    BadVersion,
    /// `HTTP/<digit>.<digit>` other than 1.0 and 1.1.
    VersionNotSupported,
    /// The request-target is not origin-, absolute- or asterisk-form, has a
    /// fragment, or has bytes RFC 3986 does not allow.
    BadTarget,
    /// The path has a form backends disagree on: dot segments, empty
    /// segments, encoded `/`, `\` or NUL, encoded unreserved characters, or
    /// a malformed `%` escape.
    AmbiguousPath,
    /// The request-target is longer than [`Limits::max_uri_bytes`].
    UriTooLong,
    /// A byte not allowed in a field name (RFC 9110 §5.1).
    BadHeaderName,
    /// A byte not allowed in a field value (RFC 9110 §5.5), including a CR
    /// not followed by LF.
    BadHeaderValue,
    /// A line ended by LF without CR.
    BareLf,
    /// A field line starting with whitespace (RFC 9112 §5.2).
    ObsFold,
    /// The head is longer than [`Limits::max_head_bytes`].
    HeadTooLarge,
    /// More field lines than [`Limits::max_headers`].
    TooManyHeaders,
    /// HTTP/1.1 request without `Host`.
    MissingHost,
    /// More than one `Host` field line.
    DuplicateHost,
    /// `Host` (or the authority of an absolute-form target) is not
    /// `host[:port]`.
    BadHost,
    /// `Content-Length` not 1*DIGIT, too large for u64, or duplicated with
    /// differing values.
    BadContentLength,
    /// Both `Content-Length` and `Transfer-Encoding`.
    ContentLengthAndTransferEncoding,
    /// `Transfer-Encoding` whose final coding is not `chunked`, that applies
    /// `chunked` twice, or that appears in an HTTP/1.0 message.
    BadTransferEncoding,
    /// `Transfer-Encoding` ending in `chunked` but with other codings before
    /// it, which Sluice does not implement (RFC 9112 §6.1: 501).
    UnsupportedTransferCoding,
    /// `CONNECT`: Sluice is a reverse proxy, not a tunnel.
    MethodNotSupported,
    /// The body is larger than [`Limits::max_body_bytes`].
    BodyTooLarge,
    /// A malformed chunk-size line, chunk extension, chunk terminator or
    /// trailer field.
    BadChunk,
    /// The trailer section is longer than [`Limits::max_head_bytes`].
    TrailersTooLarge,
    /// Responses only: a status code outside 100..=599.
    BadStatus,
}

impl HttpError {
    /// The status to answer a client with when this error is in its request.
    /// An error in a backend's response is a 502 to the client regardless.
    pub fn status(self) -> u16 {
        use HttpError::*;
        match self {
            UriTooLong => 414,
            HeadTooLarge | TooManyHeaders | TrailersTooLarge => 431,
            BodyTooLarge => 413,
            VersionNotSupported => 505,
            UnsupportedTransferCoding | MethodNotSupported => 501,
            BadStatus => 502,
            BadStartLine
            | BadVersion
            | BadTarget
            | AmbiguousPath
            | BadHeaderName
            | BadHeaderValue
            | BareLf
            | ObsFold
            | MissingHost
            | DuplicateHost
            | BadHost
            | BadContentLength
            | ContentLengthAndTransferEncoding
            | BadTransferEncoding
            | BadChunk => 400,
        }
    }

    /// A short description, for logs and counter labels.
    pub fn reason(self) -> &'static str {
        use HttpError::*;
        match self {
            BadStartLine => "malformed start line",
            BadVersion => "malformed HTTP version",
            VersionNotSupported => "HTTP version not supported",
            BadTarget => "malformed request target",
            AmbiguousPath => "ambiguous request path",
            UriTooLong => "request target too long",
            BadHeaderName => "invalid byte in field name",
            BadHeaderValue => "invalid byte in field value",
            BareLf => "line ended by bare LF",
            ObsFold => "obsolete line folding",
            HeadTooLarge => "head too large",
            TooManyHeaders => "too many field lines",
            MissingHost => "missing Host",
            DuplicateHost => "duplicate Host",
            BadHost => "invalid Host",
            BadContentLength => "invalid Content-Length",
            ContentLengthAndTransferEncoding => "both Content-Length and Transfer-Encoding",
            BadTransferEncoding => "invalid Transfer-Encoding",
            UnsupportedTransferCoding => "unsupported transfer coding",
            MethodNotSupported => "method not supported",
            BodyTooLarge => "body too large",
            BadChunk => "malformed chunked encoding",
            TrailersTooLarge => "trailer section too large",
            BadStatus => "invalid status code",
        }
    }
}

/// A complete canned response with `Content-Length` and `Connection: close`,
/// for `status`. Unknown statuses get the 500 response. Every response Sluice
/// generates itself closes the connection: after an error the rest of the
/// client's bytes cannot be trusted to be framed as the client meant.
pub fn error_response(status: u16) -> &'static [u8] {
    macro_rules! canned {
        ($status:literal, $reason:literal, $len:literal) => {
            concat!(
                "HTTP/1.1 ",
                $status,
                " ",
                $reason,
                "\r\nContent-Type: text/plain\r\nContent-Length: ",
                $len,
                "\r\nConnection: close\r\n\r\n",
                $reason,
                "\n"
            )
            .as_bytes()
        };
    }
    // The lengths are the reason phrase plus the newline; a test checks them.
    match status {
        400 => canned!("400", "Bad Request", "12"),
        404 => canned!("404", "Not Found", "10"),
        408 => canned!("408", "Request Timeout", "16"),
        413 => canned!("413", "Content Too Large", "18"),
        414 => canned!("414", "URI Too Long", "13"),
        431 => canned!("431", "Request Header Fields Too Large", "32"),
        501 => canned!("501", "Not Implemented", "16"),
        502 => canned!("502", "Bad Gateway", "12"),
        503 => canned!("503", "Service Unavailable", "20"),
        504 => canned!("504", "Gateway Timeout", "16"),
        505 => canned!("505", "HTTP Version Not Supported", "27"),
        _ => canned!("500", "Internal Server Error", "22"),
    }
}
