//! Tables: request in, verdict out. Then every prefix, every split point and
//! a few thousand mutated inputs, to hold the no-panic contract.
// Tables are tuples on purpose: one row per case, read left to right.
#![allow(clippy::type_complexity)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;
use HttpError::*;

const LIMITS: Limits = Limits {
    max_head_bytes: 1024,
    max_headers: 16,
    max_uri_bytes: 128,
    max_body_bytes: 1000,
};

fn parse(bytes: &[u8]) -> Result<Option<RequestHead>, HttpError> {
    parse_request_head(bytes, &LIMITS)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Requests as browsers, curl and load generators send them.
#[rustfmt::skip]
const REAL_REQUESTS: &[&[u8]] = &[
    b"GET /index.html HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n",
    b"GET /api/v1/items?page=2&sort=name HTTP/1.1\r\nHost: api.example.com:8443\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0\r\nAccept: text/html,application/xhtml+xml;q=0.9,*/*;q=0.8\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\nCookie: session=abc123; theme=dark\r\nConnection: keep-alive\r\n\r\n",
    b"POST /upload HTTP/1.1\r\nHost: upload.example.com\r\nContent-Type: application/json\r\nContent-Length: 13\r\nExpect: 100-continue\r\n\r\n{\"a\": \"b\"}\r\n\r\n",
    b"PUT /objects/7 HTTP/1.1\r\nHost: store.example.com\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"GET /chat HTTP/1.1\r\nHost: ws.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: www.example.com\r\n\r\n",
    b"GET http://www.example.com/a/b?c HTTP/1.1\r\nHost: www.example.com\r\n\r\n",
];

// ---------------------------------------------------------------- requests

/// What an accepted request must look like.
struct Accepted {
    path: &'static str,
    query: Option<&'static str>,
    host: Option<&'static str>,
    body: BodyKind,
    keep_alive: bool,
    expects_continue: bool,
    upgrade: bool,
}

const GET: Accepted = Accepted {
    path: "/",
    query: None,
    host: Some("a.example"),
    body: BodyKind::None,
    keep_alive: true,
    expects_continue: false,
    upgrade: false,
};

#[test]
fn requests_accepted() {
    use BodyKind::{Chunked, ContentLength};
    #[rustfmt::skip]
    let cases: &[(&str, &[u8], Accepted)] = &[
        ("plain GET", b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n", GET),
        ("1.1 with Connection: close", b"GET / HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
            Accepted { keep_alive: false, ..GET }),
        ("Connection tokens are a case-insensitive list", b"GET / HTTP/1.1\r\nHost: a.example\r\nConnection: foo, CLOSE\r\n\r\n",
            Accepted { keep_alive: false, ..GET }),
        ("1.0 without Host closes", b"GET / HTTP/1.0\r\n\r\n",
            Accepted { host: None, keep_alive: false, ..GET }),
        ("1.0 with keep-alive", b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
            Accepted { host: None, ..GET }),
        ("leading empty line is skipped (RFC 9112 2.2)", b"\r\nGET / HTTP/1.1\r\nHost: a.example\r\n\r\n", GET),
        ("Content-Length", b"POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\n\r\n",
            Accepted { body: ContentLength(5), ..GET }),
        ("Content-Length: 0", b"POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 0\r\n\r\n",
            Accepted { body: ContentLength(0), ..GET }),
        ("Content-Length at the body limit", b"POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 1000\r\n\r\n",
            Accepted { body: ContentLength(1000), ..GET }),
        ("identical duplicate Content-Length lines fold", b"POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
            Accepted { body: ContentLength(3), ..GET }),
        ("identical Content-Length list folds", b"POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 3, 3\r\n\r\n",
            Accepted { body: ContentLength(3), ..GET }),
        ("leading zeros are still 1*DIGIT", b"POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 007\r\n\r\n",
            Accepted { body: ContentLength(7), ..GET }),
        ("chunked", b"POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n",
            Accepted { body: Chunked, ..GET }),
        ("chunked is case-insensitive, OWS trimmed", b"POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding:  Chunked \r\n\r\n",
            Accepted { body: Chunked, ..GET }),
        ("Expect: 100-continue", b"POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\nExpect: 100-Continue\r\n\r\n",
            Accepted { body: ContentLength(5), expects_continue: true, ..GET }),
        ("1.0 Expect is ignored (RFC 9110 10.1.1)", b"POST / HTTP/1.0\r\nHost: a.example\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
            Accepted { body: ContentLength(5), keep_alive: false, ..GET }),
        ("other expectations are ignored", b"GET / HTTP/1.1\r\nHost: a.example\r\nExpect: teapot\r\n\r\n", GET),
        ("WebSocket upgrade", b"GET /chat HTTP/1.1\r\nHost: a.example\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n",
            Accepted { path: "/chat", upgrade: true, ..GET }),
        ("Upgrade without Connection: upgrade", b"GET / HTTP/1.1\r\nHost: a.example\r\nUpgrade: websocket\r\n\r\n", GET),
        ("1.0 Upgrade is ignored (RFC 9110 7.8)", b"GET / HTTP/1.0\r\nHost: a.example\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            Accepted { keep_alive: false, ..GET }),
        ("absolute-form: authority wins over Host", b"GET http://b.example:81/x?y=1 HTTP/1.1\r\nHost: a.example\r\n\r\n",
            Accepted { path: "/x", query: Some("y=1"), host: Some("b.example:81"), ..GET }),
        ("absolute-form without path", b"GET HTTPS://b.example HTTP/1.1\r\nHost: b.example\r\n\r\n",
            Accepted { host: Some("b.example"), ..GET }),
        ("asterisk-form OPTIONS", b"OPTIONS * HTTP/1.1\r\nHost: a.example\r\n\r\n",
            Accepted { path: "*", ..GET }),
        ("query keeps what httparse accepts", b"GET /s?q=a|b{c}&x=%ZZ HTTP/1.1\r\nHost: a.example\r\n\r\n",
            Accepted { path: "/s", query: Some("q=a|b{c}&x=%ZZ"), ..GET }),
        ("empty query", b"GET /s? HTTP/1.1\r\nHost: a.example\r\n\r\n",
            Accepted { path: "/s", query: Some(""), ..GET }),
        ("escaped reserved and non-ASCII bytes in the path", b"GET /a%20b/caf%C3%A9/%3F HTTP/1.1\r\nHost: a.example\r\n\r\n",
            Accepted { path: "/a%20b/caf%C3%A9/%3F", ..GET }),
        ("sub-delims, colon and at in the path", b"GET /a:b@c!$&'()*+,;=/-._~ HTTP/1.1\r\nHost: a.example\r\n\r\n",
            Accepted { path: "/a:b@c!$&'()*+,;=/-._~", ..GET }),
        ("trailing slash is not an empty segment", b"GET /a/ HTTP/1.1\r\nHost: a.example\r\n\r\n",
            Accepted { path: "/a/", ..GET }),
        ("dots inside a segment are fine", b"GET /a..b/.c/d. HTTP/1.1\r\nHost: a.example\r\n\r\n",
            Accepted { path: "/a..b/.c/d.", ..GET }),
        ("empty Host is valid (RFC 9112 3.2)", b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
            Accepted { host: Some(""), ..GET }),
        ("IPv6 literal Host with port", b"GET / HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\n\r\n",
            Accepted { host: Some("[2001:db8::1]:8080"), ..GET }),
        ("Host with empty port (RFC 3986 3.2.3)", b"GET / HTTP/1.1\r\nHost: a.example:\r\n\r\n",
            Accepted { host: Some("a.example:"), ..GET }),
        ("lowercase method is an extension method", b"get / HTTP/1.1\r\nHost: a.example\r\n\r\n", GET),
    ];
    for (description, bytes, want) in cases {
        let head = match parse(bytes) {
            Ok(Some(head)) => head,
            other => panic!("{description}: {other:?}"),
        };
        assert_eq!(head.head_len(), bytes.len(), "{description}");
        assert_eq!(text(head.path(bytes)), want.path, "{description}");
        assert_eq!(
            head.query(bytes).map(text).as_deref(),
            want.query,
            "{description}"
        );
        assert_eq!(
            head.host(bytes).map(text).as_deref(),
            want.host,
            "{description}"
        );
        assert_eq!(head.body(), want.body, "{description}");
        assert_eq!(head.keep_alive(), want.keep_alive, "{description}");
        assert_eq!(
            head.expects_continue(),
            want.expects_continue,
            "{description}"
        );
        assert_eq!(head.is_upgrade(), want.upgrade, "{description}");
    }
}

#[test]
fn requests_rejected() {
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(128));
    let many_headers = format!("GET / HTTP/1.1\r\nHost: a\r\n{}\r\n", "X: 1\r\n".repeat(16));
    #[rustfmt::skip]
    let cases: &[(&str, &[u8], HttpError)] = &[
        // Framing (RFC 9112 6.1, 6.3; RFC 9110 8.6).
        ("CL and TE", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", ContentLengthAndTransferEncoding),
        ("TE and CL", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", ContentLengthAndTransferEncoding),
        ("CL and unknown TE", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\n", ContentLengthAndTransferEncoding),
        ("TE identity", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", BadTransferEncoding),
        ("TE chunked not final", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", BadTransferEncoding),
        ("TE gzip then chunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", UnsupportedTransferCoding),
        ("TE chunked twice", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", BadTransferEncoding),
        ("TE chunked on two lines", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", BadTransferEncoding),
        ("TE trailing comma", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n\r\n", BadTransferEncoding),
        ("TE empty", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", BadTransferEncoding),
        ("TE chunked with a parameter", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n", BadTransferEncoding),
        ("TE lookalike", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", BadTransferEncoding),
        ("TE in HTTP/1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", BadTransferEncoding),
        ("TE with vertical tab", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0bchunked\r\n\r\n", BadHeaderValue),
        ("CL not a number", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3a\r\n\r\n", BadContentLength),
        ("CL with plus sign", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n", BadContentLength),
        ("CL negative", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", BadContentLength),
        ("CL hex", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x3\r\n\r\n", BadContentLength),
        ("CL empty", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", BadContentLength),
        ("CL with inner space", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n", BadContentLength),
        ("CL overflows u64", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n", BadContentLength),
        ("CL differing lines", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", BadContentLength),
        ("CL differing list", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4\r\n\r\n", BadContentLength),
        ("CL list with empty element", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3,\r\n\r\n", BadContentLength),
        ("CL over the body limit", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n", BodyTooLarge),
        // Line syntax (RFC 9112 2.2, 5).
        ("obs-fold with SP", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\r\n b\r\n\r\n", ObsFold),
        ("obs-fold with HTAB", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\r\n\tb\r\n\r\n", ObsFold),
        ("whitespace before the first field", b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", ObsFold),
        ("space before colon", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", BadHeaderName),
        ("empty field name", b"GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n", BadHeaderName),
        ("delimiter in field name", b"GET / HTTP/1.1\r\nHost: a\r\nX(A): x\r\n\r\n", BadHeaderName),
        ("non-ASCII field name", b"GET / HTTP/1.1\r\nHost: a\r\nX\xc3\xa9: x\r\n\r\n", BadHeaderName),
        ("NUL in value", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n", BadHeaderValue),
        ("DEL in value", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x7fb\r\n\r\n", BadHeaderValue),
        ("bare CR in value", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n", BadHeaderValue),
        ("bare LF after request line", b"GET / HTTP/1.1\nHost: a\r\n\r\n", BareLf),
        ("bare LF after a field", b"GET / HTTP/1.1\r\nHost: a\n\r\n", BareLf),
        ("bare LF ending the head", b"GET / HTTP/1.1\r\nHost: a\r\n\n", BareLf),
        ("bare LF as leading empty line", b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", BareLf),
        ("two spaces in request line", b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", BadStartLine),
        ("HTTP/0.9 request line", b"GET /\r\n\r\n", BadStartLine),
        ("junk after version", b"GET / HTTP/1.1x\r\nHost: a\r\n\r\n", BadStartLine),
        ("control byte in method", b"G\x01T / HTTP/1.1\r\nHost: a\r\n\r\n", BadStartLine),
        // Versions.
        ("HTTP/2.0", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", VersionNotSupported),
        ("HTTP/1.2", b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", VersionNotSupported),
        ("HTTP/2 connection preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", VersionNotSupported),
        ("lowercase version", b"GET / http/1.1\r\nHost: a\r\n\r\n", BadVersion),
        ("two-digit version", b"GET / HTTP/11\r\nHost: a\r\n\r\n", BadVersion),
        // Host (RFC 9112 3.2).
        ("1.1 without Host", b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", MissingHost),
        ("two Host lines", b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", DuplicateHost),
        ("two Host lines in 1.0", b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", DuplicateHost),
        ("Host with userinfo", b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", BadHost),
        ("Host with path", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", BadHost),
        ("Host with space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", BadHost),
        ("Host list", b"GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", BadHost),
        ("Host with bad port", b"GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", BadHost),
        ("Host with six-digit port", b"GET / HTTP/1.1\r\nHost: a:123456\r\n\r\n", BadHost),
        ("Host with unclosed IPv6", b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", BadHost),
        ("Host with percent escape", b"GET / HTTP/1.1\r\nHost: a%2eb\r\n\r\n", BadHost),
        // Request target (RFC 9112 3.2).
        ("CONNECT", b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", MethodNotSupported),
        ("relative target", b"GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", BadTarget),
        ("fragment", b"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", BadTarget),
        ("asterisk with GET", b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", BadTarget),
        ("other scheme", b"GET ftp://a/b HTTP/1.1\r\nHost: a\r\n\r\n", BadTarget),
        ("absolute-form with userinfo", b"GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n", BadHost),
        ("absolute-form without authority", b"GET http:///a HTTP/1.1\r\nHost: a\r\n\r\n", BadHost),
        ("raw backslash", b"GET /a\\b HTTP/1.1\r\nHost: a\r\n\r\n", BadTarget),
        ("raw non-ASCII", b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", BadTarget),
        ("raw quote", b"GET /a\"b HTTP/1.1\r\nHost: a\r\n\r\n", BadTarget),
        // Paths with a second reading (target module docs).
        ("dot-dot segment", b"GET /a/../b HTTP/1.1\r\nHost: a\r\n\r\n", AmbiguousPath),
        ("dot segment", b"GET /./b HTTP/1.1\r\nHost: a\r\n\r\n", AmbiguousPath),
        ("trailing dot-dot", b"GET /a/.. HTTP/1.1\r\nHost: a\r\n\r\n", AmbiguousPath),
        ("dot-dot in absolute-form", b"GET http://a/x/../y HTTP/1.1\r\nHost: a\r\n\r\n", AmbiguousPath),
        ("encoded dot-dot", b"GET /a/%2e%2E/b HTTP/1.1\r\nHost: a\r\n\r\n", AmbiguousPath),
        ("encoded slash", b"GET /a%2Fb HTTP/1.1\r\nHost: a\r\n\r\n", AmbiguousPath),
        ("encoded slash lowercase", b"GET /a%2fb HTTP/1.1\r\nHost: a\r\n\r\n", AmbiguousPath),
        ("encoded backslash", b"GET /a%5cb HTTP/1.1\r\nHost: a\r\n\r\n", AmbiguousPath),
        ("encoded NUL", b"GET /a%00 HTTP/1.1\r\nHost: a\r\n\r\n", AmbiguousPath),
        ("encoded letter", b"GET /%61dmin HTTP/1.1\r\nHost: a\r\n\r\n", AmbiguousPath),
        ("encoded tilde", b"GET /%7Euser HTTP/1.1\r\nHost: a\r\n\r\n", AmbiguousPath),
        ("malformed escape", b"GET /a%G1 HTTP/1.1\r\nHost: a\r\n\r\n", AmbiguousPath),
        ("truncated escape", b"GET /a%4 HTTP/1.1\r\nHost: a\r\n\r\n", AmbiguousPath),
        ("empty segment", b"GET /a//b HTTP/1.1\r\nHost: a\r\n\r\n", AmbiguousPath),
        ("leading empty segment", b"GET //a HTTP/1.1\r\nHost: a\r\n\r\n", AmbiguousPath),
        // Limits.
        ("target over max_uri_bytes", long_target.as_bytes(), UriTooLong),
        ("fields over max_headers", many_headers.as_bytes(), TooManyHeaders),
    ];
    for (description, bytes, want) in cases {
        assert_eq!(parse(bytes), Err(*want), "{description}: {}", text(bytes));
    }
}

#[test]
fn limits_are_inclusive() {
    let target = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(127));
    let fields = format!("GET / HTTP/1.1\r\nHost: a\r\n{}\r\n", "X: 1\r\n".repeat(15));
    let mut head = b"GET / HTTP/1.1\r\nHost: a\r\nX: \r\n\r\n".to_vec();
    let value_at = head.len() - 4;
    let pad = LIMITS.max_head_bytes - head.len();
    head.splice(value_at..value_at, std::iter::repeat_n(b'v', pad));
    #[rustfmt::skip]
    let cases: &[(&str, &[u8])] = &[
        ("target of exactly max_uri_bytes", target.as_bytes()),
        ("exactly max_headers fields", fields.as_bytes()),
        ("head of exactly max_head_bytes", &head),
    ];
    for (description, bytes) in cases {
        assert!(matches!(parse(bytes), Ok(Some(_))), "{description}");
    }
    let mut one_more = head.clone();
    one_more.insert(value_at, b'v');
    assert_eq!(
        parse(&one_more),
        Err(HeadTooLarge),
        "one byte over max_head_bytes"
    );
}

#[test]
fn incomplete_heads() {
    #[rustfmt::skip]
    let cases: &[(&str, Vec<u8>, Result<Option<()>, HttpError>)] = &[
        ("empty", b"".to_vec(), Ok(None)),
        ("no blank line yet", b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec(), Ok(None)),
        ("head buffer full without a blank line", [&b"GET / HTTP/1.1\r\nX: "[..], &[b'a'; 1024]].concat(), Err(HeadTooLarge)),
        ("one byte short of full", [&b"GET / HTTP/1.1\r\nX: "[..], &[b'a'; 1004]].concat(), Ok(None)),
        ("target already too long, line unfinished", [&b"GET /"[..], &[b'a'; 200]].concat(), Err(UriTooLong)),
        ("2.0 version still ambiguous", b"GET / HTTP/2".to_vec(), Ok(None)),
        ("2.0 version decided", b"GET / HTTP/2.0".to_vec(), Err(VersionNotSupported)),
        ("bad version decided early", b"GET / HTTQ".to_vec(), Err(BadVersion)),
    ];
    for (description, bytes, want) in cases {
        let got = parse(bytes).map(|head| head.map(|_| ()));
        assert_eq!(&got, want, "{description}");
    }
}

#[test]
fn every_prefix_of_a_real_request_is_incomplete() {
    for request in REAL_REQUESTS {
        let head = parse(request).expect("valid").expect("complete");
        for len in 0..head.head_len() {
            assert_eq!(
                parse(&request[..len]),
                Ok(None),
                "{} at {len}",
                text(request)
            );
        }
        for len in head.head_len()..=request.len() {
            assert_eq!(parse(&request[..len]).expect("valid").as_ref(), Some(&head));
        }
    }
}

#[test]
fn every_prefix_of_a_505_is_incomplete_then_505() {
    let request = b"GET / HTTP/2.0\r\nHost: a\r\n\r\n";
    let first_error = (0..=request.len())
        .position(|len| parse(&request[..len]).is_err())
        .expect("rejected");
    for len in 0..=request.len() {
        let want = if len < first_error {
            Ok(None)
        } else {
            Err(VersionNotSupported)
        };
        assert_eq!(parse(&request[..len]), want, "prefix {len}");
    }
}

#[test]
fn pipelined_requests_parse_in_order() {
    let stream = b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nxyzGET /b HTTP/1.1\r\nHost: a\r\n\r\nGET /c HTTP/1.1\r\nHost: a\r\n\r\n";
    let mut at = 0;
    let mut paths = Vec::new();
    while at < stream.len() {
        let rest = &stream[at..];
        let head = parse(rest).expect("valid").expect("complete");
        paths.push(text(head.path(rest)));
        at += head.head_len();
        if let BodyKind::ContentLength(len) = head.body() {
            at += len as usize;
        }
    }
    assert_eq!(paths, ["/a", "/b", "/c"]);
}

#[test]
fn header_values_are_trimmed_and_in_order() {
    let bytes = b"GET / HTTP/1.1\r\nHost: a\r\nX-A:  1 \r\nx-a:2\r\nX-B: \r\n\r\n";
    let head = parse(bytes).unwrap().unwrap();
    let values: Vec<_> = head.header_values(bytes, b"X-A").map(text).collect();
    assert_eq!(values, ["1", "2"]);
    let empty: Vec<_> = head.header_values(bytes, b"x-b").map(text).collect();
    assert_eq!(empty, [""]);
    assert_eq!(head.headers().len(), 4);
    // The wrong buffer gives empty slices, not a panic.
    assert_eq!(head.path(b""), b"");
    assert_eq!(head.header_values(b"", b"x-a").count(), 0);
}

#[test]
fn hosts_as_routes_see_them() {
    #[rustfmt::skip]
    let cases: &[(&str, &str)] = &[
        ("a.example", "a.example"),
        ("A.Example:8080", "A.Example"),
        ("a.example.", "a.example"),
        ("a.example.:80", "a.example"),
        ("[2001:db8::1]:443", "[2001:db8::1]"),
        ("[::1]", "[::1]"),
        ("", ""),
    ];
    for (host, want) in cases {
        assert_eq!(text(host_for_routing(host.as_bytes())), *want, "{host}");
    }
}

#[test]
fn path_comparisons() {
    #[rustfmt::skip]
    let cases: &[(&str, &str, bool, Option<usize>)] = &[
        // path, literal, path_eq, path_prefix_len
        ("/api", "/api", true, Some(4)),
        ("/api/x", "/api", false, Some(4)),
        ("/apix", "/api", false, None),
        ("/api", "/api/", false, None),
        ("/api/", "/api/", true, Some(5)),
        ("/api/x", "/api/", false, Some(5)),
        ("/x", "/", false, Some(1)),
        ("/caf%c3%a9", "/caf%C3%A9", true, Some(10)),
        ("/CAF", "/caf", false, None),
        ("/a", "", false, None),
    ];
    for (path, literal, eq, prefix) in cases {
        let (path, literal) = (path.as_bytes(), literal.as_bytes());
        assert_eq!(path_eq(path, literal), *eq, "{path:?} {literal:?}");
        assert_eq!(
            path_prefix_len(path, literal),
            *prefix,
            "{path:?} {literal:?}"
        );
    }
}

// ---------------------------------------------------------------- errors

#[test]
fn every_error_has_a_canned_response() {
    let all = [
        BadStartLine,
        BadVersion,
        VersionNotSupported,
        BadTarget,
        AmbiguousPath,
        UriTooLong,
        BadHeaderName,
        BadHeaderValue,
        BareLf,
        ObsFold,
        HeadTooLarge,
        TooManyHeaders,
        MissingHost,
        DuplicateHost,
        BadHost,
        BadContentLength,
        ContentLengthAndTransferEncoding,
        BadTransferEncoding,
        UnsupportedTransferCoding,
        MethodNotSupported,
        BodyTooLarge,
        BadChunk,
        TrailersTooLarge,
        BadStatus,
    ];
    for error in all {
        let status = error.status();
        let response = error_response(status);
        assert!(
            response.starts_with(format!("HTTP/1.1 {status} ").as_bytes()),
            "{error:?}"
        );
        assert!(!error.reason().is_empty());
    }
}

#[test]
fn canned_responses_are_well_framed() {
    for status in [
        400, 404, 408, 413, 414, 431, 500, 501, 502, 503, 504, 505, 999,
    ] {
        let response = error_response(status);
        let head = parse_response_head(response, &Limits::default(), Method::Get)
            .expect("valid")
            .expect("complete");
        let body = &response[head.head_len()..];
        assert_eq!(
            head.body(),
            BodyKind::ContentLength(body.len() as u64),
            "{status}"
        );
        assert!(!head.keep_alive(), "{status} closes");
        let want = if status == 999 { 500 } else { status };
        assert_eq!(head.status(), want);
        assert_eq!(body, [head.reason(response), b"\n"].concat());
    }
}

// ---------------------------------------------------------------- responses

#[test]
fn responses() {
    use BodyKind::{Chunked, CloseDelimited, ContentLength};
    #[rustfmt::skip]
    let cases: &[(&str, &[u8], Method, BodyKind, Option<u64>, bool)] = &[
        ("200 with CL", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", Method::Get, ContentLength(5), Some(5), true),
        ("200 chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", Method::Get, Chunked, None, true),
        ("200 without framing reads to close", b"HTTP/1.1 200 OK\r\n\r\n", Method::Get, CloseDelimited, None, false),
        ("Connection: close", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", Method::Get, ContentLength(0), Some(0), false),
        ("1.0 closes by default", b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", Method::Get, ContentLength(1), Some(1), false),
        ("1.0 keep-alive", b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\n", Method::Get, ContentLength(1), Some(1), true),
        ("HEAD: no body, CL forwarded", b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", Method::Head, BodyKind::None, Some(100), true),
        ("HEAD: chunked ignored", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", Method::Head, BodyKind::None, None, true),
        ("204 ignores CL", b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n", Method::Get, BodyKind::None, None, true),
        ("304 forwards CL", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n", Method::Get, BodyKind::None, Some(7), true),
        ("304 with bad CL is still bodiless", b"HTTP/1.1 304 Not Modified\r\nContent-Length: x\r\n\r\n", Method::Get, BodyKind::None, None, true),
        ("100 Continue is interim", b"HTTP/1.1 100 Continue\r\n\r\n", Method::Post, BodyKind::None, None, true),
        ("101 is a tunnel, not keep-alive", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", Method::Get, BodyKind::None, None, false),
        ("bare LF accepted from backends", b"HTTP/1.1 200 OK\nContent-Length: 2\n\n", Method::Get, ContentLength(2), Some(2), true),
        ("no reason phrase", b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", Method::Get, ContentLength(0), Some(0), true),
    ];
    for (description, bytes, method, body, declared, keep_alive) in cases {
        let head = match parse_response_head(bytes, &LIMITS, *method) {
            Ok(Some(head)) => head,
            other => panic!("{description}: {other:?}"),
        };
        assert_eq!(head.head_len(), bytes.len(), "{description}");
        assert_eq!(head.body(), *body, "{description}");
        assert_eq!(head.declared_len(), *declared, "{description}");
        assert_eq!(head.keep_alive(), *keep_alive, "{description}");
    }
}

#[test]
fn responses_rejected() {
    #[rustfmt::skip]
    let cases: &[(&str, &[u8], HttpError)] = &[
        ("CL and TE", b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", ContentLengthAndTransferEncoding),
        ("TE gzip", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", BadTransferEncoding),
        ("TE in 1.0", b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", BadTransferEncoding),
        ("CL not a number", b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", BadContentLength),
        ("CL differing", b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", BadContentLength),
        ("status 600", b"HTTP/1.1 600 What\r\n\r\n", BadStatus),
        ("status 099", b"HTTP/1.1 099 What\r\n\r\n", BadStatus),
        ("two-digit status", b"HTTP/1.1 20 OK\r\n\r\n", BadStartLine),
        ("obs-fold", b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", ObsFold),
        ("HTTP/2.0", b"HTTP/2.0 200 OK\r\n\r\n", VersionNotSupported),
        ("not HTTP", b"ICY 200 OK\r\n\r\n", BadVersion),
        ("no status code", b"HTTP/1.1\r\nContent-Length: 0\r\n\r\n", BadStartLine),
        ("junk after version", b"HTTP/1.1x 200 OK\r\n\r\n", BadStartLine),
    ];
    for (description, bytes, want) in cases {
        assert_eq!(
            parse_response_head(bytes, &LIMITS, Method::Get),
            Err(*want),
            "{description}"
        );
    }
}

#[test]
fn every_prefix_of_a_response_is_incomplete() {
    let response = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\nSet-Cookie: a=b\r\n\r\nhello";
    let head = parse_response_head(response, &LIMITS, Method::Get)
        .unwrap()
        .unwrap();
    for len in 0..head.head_len() {
        assert_eq!(
            parse_response_head(&response[..len], &LIMITS, Method::Get),
            Ok(None),
            "{len}"
        );
    }
}

// ---------------------------------------------------------------- chunked

fn decode_all(
    decoder: &mut ChunkedDecoder,
    pieces: &[&[u8]],
) -> Result<(Vec<u8>, usize), HttpError> {
    let mut data = Vec::new();
    let mut consumed = 0;
    for piece in pieces {
        consumed += decoder.feed(piece, &mut |bytes| data.extend_from_slice(bytes))?;
    }
    Ok((data, consumed))
}

#[rustfmt::skip]
const VALID_CHUNKED: &[(&str, &[u8], &[u8])] = &[
    ("one chunk", b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
    ("several chunks, mixed-case hex", b"3\r\nabc\r\nA\r\n0123456789\r\n1\r\nz\r\n0\r\n\r\n", b"abc0123456789z"),
    ("empty body", b"0\r\n\r\n", b""),
    ("extensions", b"4;name=value;q=\"a b\"\r\nwxyz\r\n0;last\r\n\r\n", b"wxyz"),
    ("sixteen hex digits", b"0000000000000002\r\nhi\r\n0\r\n\r\n", b"hi"),
    ("trailers", b"2\r\nok\r\n0\r\nX-Checksum: abc\r\nX-Empty:\r\n\r\n", b"ok"),
    ("data containing CRLF and digits", b"6\r\n\r\n0\r\n\r\r\n0\r\n\r\n", b"\r\n0\r\n\r"),
];

#[test]
fn chunked_bodies_decode() {
    for (description, input, want) in VALID_CHUNKED {
        let mut decoder = ChunkedDecoder::new(u64::MAX, 1024);
        let (data, consumed) = decode_all(&mut decoder, &[input]).expect(description);
        assert_eq!(data, *want, "{description}");
        assert_eq!(consumed, input.len(), "{description}");
        assert!(decoder.is_done(), "{description}");
        assert_eq!(decoder.data_bytes(), want.len() as u64, "{description}");
    }
}

#[test]
fn chunked_every_split_point_gives_the_same_data() {
    for (description, input, want) in VALID_CHUNKED {
        for split in 0..=input.len() {
            let mut decoder = ChunkedDecoder::new(u64::MAX, 1024);
            let (first, second) = input.split_at(split);
            let (data, consumed) = decode_all(&mut decoder, &[first, second]).expect(description);
            assert_eq!(
                (data.as_slice(), consumed),
                (*want, input.len()),
                "{description} split at {split}"
            );
            assert!(decoder.is_done());
        }
        let mut decoder = ChunkedDecoder::new(u64::MAX, 1024);
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        let (data, _) = decode_all(&mut decoder, &bytes).expect(description);
        assert_eq!(data, *want, "{description} byte by byte");
    }
}

/// xorshift64: a deterministic source of "random" for property-style loops.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn chunked_random_pieces_give_the_same_data() {
    let mut rng = Rng(0x5eed);
    for (description, input, want) in VALID_CHUNKED {
        for _ in 0..200 {
            let mut pieces = Vec::new();
            let mut rest: &[u8] = input;
            while !rest.is_empty() {
                let (piece, tail) = rest.split_at(1 + rng.below(rest.len()));
                pieces.push(piece);
                rest = tail;
            }
            let mut decoder = ChunkedDecoder::new(u64::MAX, 1024);
            let (data, _) = decode_all(&mut decoder, &pieces).expect(description);
            assert_eq!(data, *want, "{description} in {} pieces", pieces.len());
        }
    }
}

#[test]
fn chunked_rejected() {
    let long_ext = [&b"1;"[..], &[b'e'; 1024], b"\r\nx\r\n0\r\n\r\n"].concat();
    #[rustfmt::skip]
    let cases: &[(&str, &[u8], HttpError)] = &[
        ("0x prefix", b"0x10\r\n", BadChunk),
        ("negative size", b"-1\r\n", BadChunk),
        ("plus sign", b"+1\r\n", BadChunk),
        ("space before extension", b"1 ;ext\r\nx\r\n", BadChunk),
        ("space after size", b"1 \r\nx\r\n", BadChunk),
        ("leading space", b" 1\r\nx\r\n", BadChunk),
        ("empty size", b"\r\n", BadChunk),
        ("extension without size", b";x\r\n", BadChunk),
        ("seventeen hex digits", b"00000000000000001\r\nx\r\n", BadChunk),
        ("u64::MAX over the body limit", b"ffffffffffffffff\r\n", BodyTooLarge),
        ("bare LF after size", b"1\nx\r\n", BadChunk),
        ("bare LF after extension", b"1;a\nx\r\n", BadChunk),
        ("CR not followed by LF", b"1\rx\r\n", BadChunk),
        ("control byte in extension", b"1;a\x01\r\nx\r\n", BadChunk),
        ("extension too long", &long_ext, BadChunk),
        ("data longer than its size", b"1\r\nxy\r\n", BadChunk),
        ("bare LF after data", b"1\r\nx\n0\r\n\r\n", BadChunk),
        ("bare LF ending the body", b"0\r\n\n", BadChunk),
        ("bare LF after a trailer", b"0\r\nX: 1\n\r\n", BadChunk),
        ("trailer obs-fold", b"0\r\nX: 1\r\n 2\r\n\r\n", BadChunk),
        ("trailer without colon", b"0\r\nX\r\n\r\n", BadChunk),
        ("trailer with space before colon", b"0\r\nX : 1\r\n\r\n", BadChunk),
        ("trailer with NUL", b"0\r\nX: \x00\r\n\r\n", BadChunk),
        ("CR then junk at the end", b"0\r\n\rX", BadChunk),
        ("second chunk over the body limit", b"6\r\nabcdef\r\n6\r\n", BodyTooLarge),
        ("trailers over their limit", b"0\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n", TrailersTooLarge),
    ];
    for (description, input, want) in cases {
        let mut decoder = ChunkedDecoder::new(10, 32);
        let mut data = Vec::new();
        let got = decoder.feed(input, &mut |bytes| data.extend_from_slice(bytes));
        assert_eq!(got, Err(*want), "{description}");
        assert!(data.len() <= 10, "{description}: no data past the limit");
        // A failed decoder stays failed.
        assert_eq!(
            decoder.feed(b"0\r\n\r\n", &mut |_| {}),
            Err(*want),
            "{description}"
        );
        assert_eq!(decoder.feed(b"", &mut |_| {}), Err(*want), "{description}");
    }
}

#[test]
fn chunked_stops_at_the_end_of_the_body() {
    let input = b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
    let mut decoder = ChunkedDecoder::for_request(&LIMITS);
    let (data, consumed) = decode_all(&mut decoder, &[input]).unwrap();
    assert_eq!((data.as_slice(), consumed), (&b"abc"[..], 13));
    assert!(decoder.is_done());
    assert_eq!(
        decoder.feed(b"more", &mut |_| panic!("no data after the end")),
        Ok(0)
    );
}

#[test]
fn chunked_data_is_passed_through_not_copied() {
    // One feed of a large chunk yields one callback with the whole run.
    let mut input = b"400\r\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', 0x400));
    input.extend_from_slice(b"\r\n0\r\n\r\n");
    let mut decoder = ChunkedDecoder::new(u64::MAX, 0);
    let mut calls = Vec::new();
    decoder
        .feed(&input, &mut |bytes| calls.push(bytes.len()))
        .unwrap();
    assert_eq!(calls, [0x400]);
}

// ---------------------------------------------------------------- rewriting

static NO_EDITS: HeaderEdits = HeaderEdits {
    remove: Vec::new(),
    set: Vec::new(),
    add: Vec::new(),
};

fn edits<'a>(headers: &'a HeaderEdits, rewrite: Option<&'a PrefixRewrite>) -> HeadEdits<'a> {
    HeadEdits {
        headers,
        rewrite_prefix: rewrite,
        client_addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
        server: (IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), 443),
        proto: Proto::Https,
        tls: None,
        request_id: b"rid-1",
    }
}

fn rewrite(request: &[u8], edits: &HeadEdits<'_>) -> String {
    let head = parse(request).expect("valid").expect("complete");
    let mut out = Vec::new();
    rewrite_request_head(&head, request, edits, &mut out);
    text(&out)
}

fn strings(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

#[test]
fn request_heads_rewritten() {
    let route = HeaderEdits {
        remove: vec!["Cookie".into()],
        set: strings(&[("X-Tenant", "blue"), ("Host", "backend.internal")]),
        add: strings(&[("X-Route", "api")]),
    };
    let distrust = HeaderEdits {
        remove: vec!["X-Forwarded-For".into(), "x-request-id".into()],
        ..HeaderEdits::default()
    };
    let override_proxy = HeaderEdits {
        set: strings(&[("X-Forwarded-Proto", "http"), ("Via", "1.1 edge")]),
        ..HeaderEdits::default()
    };
    let api = PrefixRewrite {
        from: "/api".into(),
        to: "/v2".into(),
    };
    #[rustfmt::skip]
    let cases: &[(&str, &[u8], HeadEdits<'_>, &str)] = &[
        ("hop-by-hop fields dropped, proxy fields added",
            b"GET /x?q=1 HTTP/1.1\r\nHost: a.example\r\nUser-Agent: t\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: x\r\nTrailer: X-T\r\nUpgrade: h2c\r\n\r\n",
            edits(&NO_EDITS, None),
            "GET /x?q=1 HTTP/1.1\r\nHost: a.example\r\nUser-Agent: t\r\nConnection: keep-alive\r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: https\r\nX-Request-Id: rid-1\r\nVia: 1.1 sluice\r\n\r\n"),
        ("existing proxy fields kept or appended to",
            b"GET / HTTP/1.1\r\nX-Forwarded-For: 203.0.113.1\r\nHost: a\r\nX-Request-Id: abc\r\nVia: 1.0 cdn\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: gopher\r\nvia: 1.1 lb\r\n\r\n",
            edits(&NO_EDITS, None),
            "GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: abc\r\nConnection: keep-alive\r\nX-Forwarded-For: 203.0.113.1, 10.0.0.1, 192.0.2.7\r\nX-Forwarded-Proto: https\r\nVia: 1.0 cdn, 1.1 lb, 1.1 sluice\r\n\r\n"),
        ("route removes the client's X-Forwarded-For and X-Request-Id",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\nX-Request-Id: forged\r\n\r\n",
            edits(&distrust, None),
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: https\r\nX-Request-Id: rid-1\r\nVia: 1.1 sluice\r\n\r\n"),
        ("route set replaces proxy fields",
            b"GET / HTTP/1.1\r\nHost: a\r\nVia: 1.1 cdn\r\n\r\n",
            edits(&override_proxy, None),
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nX-Forwarded-For: 192.0.2.7\r\nX-Request-Id: rid-1\r\nX-Forwarded-Proto: http\r\nVia: 1.1 edge\r\n\r\n"),
        ("route remove, set (Host too) and add",
            b"POST /api/items HTTP/1.1\r\nHost: a\r\nCookie: s=1\r\nx-tenant: red\r\nX-Route: client\r\nContent-Length: 2\r\n\r\n",
            edits(&route, Some(&api)),
            "POST /v2/items HTTP/1.1\r\nHost: backend.internal\r\nX-Route: client\r\nContent-Length: 2\r\nConnection: keep-alive\r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: https\r\nX-Request-Id: rid-1\r\nVia: 1.1 sluice\r\nX-Tenant: blue\r\nX-Route: api\r\n\r\n"),
        ("duplicate Content-Length folded to one",
            b"POST / HTTP/1.1\r\nContent-Length: 03\r\nHost: a\r\ncontent-length: 3, 3\r\n\r\n",
            edits(&NO_EDITS, None),
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: keep-alive\r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: https\r\nX-Request-Id: rid-1\r\nVia: 1.1 sluice\r\n\r\n"),
        ("chunked spelled canonically",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n",
            edits(&NO_EDITS, None),
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: https\r\nX-Request-Id: rid-1\r\nVia: 1.1 sluice\r\n\r\n"),
        ("WebSocket upgrade keeps Upgrade",
            b"GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, X-Hop\r\nUpgrade: websocket\r\nX-Hop: 1\r\nSec-WebSocket-Key: k\r\n\r\n",
            edits(&NO_EDITS, None),
            "GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\nConnection: upgrade\r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: https\r\nX-Request-Id: rid-1\r\nVia: 1.1 sluice\r\n\r\n"),
        ("absolute-form becomes origin-form with the authority as Host",
            b"GET http://b.example:81?x HTTP/1.1\r\nHost: a\r\n\r\n",
            edits(&NO_EDITS, None),
            "GET /?x HTTP/1.1\r\nHost: b.example:81\r\nConnection: keep-alive\r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: https\r\nX-Request-Id: rid-1\r\nVia: 1.1 sluice\r\n\r\n"),
        ("HTTP/1.0 is forwarded as 1.1, Via says 1.0, Expect dropped",
            b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n",
            edits(&NO_EDITS, None),
            "POST / HTTP/1.1\r\nHost: 198.51.100.1\r\nContent-Length: 0\r\nConnection: keep-alive\r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: https\r\nX-Request-Id: rid-1\r\nVia: 1.0 sluice\r\n\r\n"),
        ("Connection naming end-to-end fields cannot strip framing or Host",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nConnection: host, content-length, x-forwarded-for\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n",
            edits(&NO_EDITS, None),
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nConnection: keep-alive\r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: https\r\nX-Request-Id: rid-1\r\nVia: 1.1 sluice\r\n\r\n"),
        ("OPTIONS * is not prefix-rewritten",
            b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
            edits(&NO_EDITS, Some(&api)),
            "OPTIONS * HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: https\r\nX-Request-Id: rid-1\r\nVia: 1.1 sluice\r\n\r\n"),
    ];
    for (description, request, edits, want) in cases {
        assert_eq!(rewrite(request, edits), *want, "{description}");
    }
}

#[test]
fn client_addresses_and_request_ids() {
    let request = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    #[rustfmt::skip]
    let cases: &[(&str, IpAddr, &[u8], &str)] = &[
        ("IPv6 client", IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)), b"r", "X-Forwarded-For: 2001:db8::1\r\n"),
        ("IPv4-mapped client written as IPv4", IpAddr::V6(Ipv4Addr::new(198, 51, 100, 2).to_ipv6_mapped()), b"r", "X-Forwarded-For: 198.51.100.2\r\n"),
        ("request id with CRLF is not written", IpAddr::V4(Ipv4Addr::LOCALHOST), b"a\r\nX-Evil: 1", "X-Forwarded-For: 127.0.0.1\r\n"),
        ("empty request id is not written", IpAddr::V4(Ipv4Addr::LOCALHOST), b"", "X-Forwarded-For: 127.0.0.1\r\n"),
    ];
    for (description, client, id, want_xff) in cases {
        let edits = HeadEdits {
            client_addr: *client,
            request_id: id,
            ..edits(&NO_EDITS, None)
        };
        let out = rewrite(request, &edits);
        assert!(out.contains(want_xff), "{description}: {out}");
        assert_eq!(
            out.contains("X-Request-Id"),
            id == b"r",
            "{description}: {out}"
        );
        assert!(!out.contains("X-Evil"), "{description}");
    }
}

#[test]
fn prefix_rewrites() {
    #[rustfmt::skip]
    let cases: &[(&str, &str, &str, &str)] = &[
        // from, to, request path, path sent
        ("/api", "/v2", "/api", "/v2"),
        ("/api", "/v2", "/api/x", "/v2/x"),
        ("/api", "/v2", "/apix", "/apix"),
        ("/api", "/", "/api", "/"),
        ("/api", "/", "/api/x", "/x"),
        ("/api/", "/", "/api/x", "/x"),
        ("/api/", "/", "/api/", "/"),
        ("/api/", "/v2", "/api/x", "/v2/x"),
        ("/api", "/v2/", "/api/x", "/v2/x"),
        ("/api", "/v2/", "/api", "/v2/"),
        ("/", "/v2", "/x/y", "/v2/x/y"),
        ("/", "/v2/", "/x", "/v2/x"),
        ("/a%2a", "/b", "/a%2A/c", "/b/c"),
        ("/api", "/bad path", "/api/x", "/api/x"),
    ];
    for (from, to, path, want) in cases {
        let request = format!("GET {path}?k=v HTTP/1.1\r\nHost: a\r\n\r\n");
        let rewrite_prefix = PrefixRewrite {
            from: from.to_string(),
            to: to.to_string(),
        };
        let out = rewrite(request.as_bytes(), &edits(&NO_EDITS, Some(&rewrite_prefix)));
        let want = format!("GET {want}?k=v HTTP/1.1\r\n");
        assert!(out.starts_with(&want), "{from} -> {to} on {path}: {out}");
    }
}

#[test]
fn bad_route_edits_are_refused_and_never_written() {
    #[rustfmt::skip]
    let cases: &[(&str, HeaderEdits)] = &[
        ("framing field", HeaderEdits { set: strings(&[("Content-Length", "0")]), ..HeaderEdits::default() }),
        ("hop-by-hop field", HeaderEdits { add: strings(&[("Connection", "close")]), ..HeaderEdits::default() }),
        ("removing Host", HeaderEdits { remove: vec!["host".into()], ..HeaderEdits::default() }),
        ("adding Host", HeaderEdits { add: strings(&[("Host", "b")]), ..HeaderEdits::default() }),
        ("name with space", HeaderEdits { add: strings(&[("X A", "1")]), ..HeaderEdits::default() }),
        ("value with CRLF", HeaderEdits { add: strings(&[("X-A", "1\r\nX-Evil: 1")]), ..HeaderEdits::default() }),
        ("value with leading space", HeaderEdits { set: strings(&[("X-A", " 1")]), ..HeaderEdits::default() }),
        ("Host that is not host[:port]", HeaderEdits { set: strings(&[("Host", "a/b")]), ..HeaderEdits::default() }),
    ];
    for (description, route) in cases {
        assert!(route.check().is_err(), "{description}");
        let out = rewrite(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n",
            &edits(route, None),
        );
        assert!(
            !out.contains("X-Evil") && !out.contains("X A") && !out.contains("Connection: close"),
            "{description}: {out}"
        );
        assert_eq!(out.matches("Content-Length").count(), 1, "{description}");
        assert!(out.contains("Host: a\r\n"), "{description}");
    }
    assert_eq!(NO_EDITS.check(), Ok(()));
    assert!(NO_EDITS.is_empty());
}

fn rewrite_response(
    response: &[u8],
    method: Method,
    client_version: Version,
    keep_alive: bool,
    route: &HeaderEdits,
) -> (String, ResponseFraming) {
    let head = parse_response_head(response, &LIMITS, method)
        .unwrap()
        .unwrap();
    let mut out = Vec::new();
    let edits = ResponseEdits {
        headers: route,
        client_version,
        keep_alive,
    };
    let framing = rewrite_response_head(&head, response, &edits, &mut out);
    (text(&out), framing)
}

#[test]
fn response_heads_rewritten() {
    use BodyKind::{Chunked, CloseDelimited, ContentLength};
    use Version::{Http10, Http11};
    let route = HeaderEdits {
        remove: vec!["Server".into()],
        set: strings(&[("Cache-Control", "no-store")]),
        add: strings(&[("X-Served-By", "sluice")]),
    };
    #[rustfmt::skip]
    let cases: &[(&str, &[u8], Method, Version, bool, &HeaderEdits, &str, BodyKind, bool)] = &[
        ("keep-alive 1.1, hop-by-hop dropped",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n",
            Method::Get, Http11, true, &NO_EDITS,
            "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 2\r\nVia: 1.1 sluice\r\n\r\n",
            ContentLength(2), true),
        ("proxy closes the client connection",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
            Method::Get, Http11, false, &NO_EDITS,
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\nVia: 1.1 sluice\r\n\r\n",
            ContentLength(2), false),
        ("1.0 client kept alive is told so",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
            Method::Get, Http10, true, &NO_EDITS,
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\nVia: 1.1 sluice\r\n\r\n",
            ContentLength(2), true),
        ("chunked to a 1.0 client becomes close-delimited",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            Method::Get, Http10, true, &NO_EDITS,
            "HTTP/1.1 200 OK\r\nConnection: close\r\nVia: 1.1 sluice\r\n\r\n",
            CloseDelimited, false),
        ("chunked to a 1.1 client stays chunked",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            Method::Get, Http11, true, &NO_EDITS,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nVia: 1.1 sluice\r\n\r\n",
            Chunked, true),
        ("close-delimited closes the client too",
            b"HTTP/1.0 200 OK\r\nVia: 1.1 app\r\n\r\n",
            Method::Get, Http11, true, &NO_EDITS,
            "HTTP/1.1 200 OK\r\nConnection: close\r\nVia: 1.1 app, 1.0 sluice\r\n\r\n",
            CloseDelimited, false),
        ("HEAD keeps the declared length",
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
            Method::Head, Http11, true, &NO_EDITS,
            "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nVia: 1.1 sluice\r\n\r\n",
            BodyKind::None, true),
        ("204 drops Content-Length",
            b"HTTP/1.1 204 No Content\r\nContent-Length: 100\r\n\r\n",
            Method::Get, Http11, true, &NO_EDITS,
            "HTTP/1.1 204 No Content\r\nVia: 1.1 sluice\r\n\r\n",
            BodyKind::None, true),
        ("101 keeps Upgrade",
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n",
            Method::Get, Http11, true, &NO_EDITS,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: x\r\nConnection: upgrade\r\nVia: 1.1 sluice\r\n\r\n",
            BodyKind::None, false),
        ("100 Continue passes bare",
            b"HTTP/1.1 100 Continue\r\nX-A: 1\r\n\r\n",
            Method::Post, Http11, true, &route,
            "HTTP/1.1 100 Continue\r\nX-A: 1\r\n\r\n",
            BodyKind::None, true),
        ("route edits",
            b"HTTP/1.1 404 Not Found\r\nServer: app/1.0\r\ncache-control: max-age=60\r\nContent-Length: 0\r\n\r\n",
            Method::Get, Http11, true, &route,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nVia: 1.1 sluice\r\nCache-Control: no-store\r\nX-Served-By: sluice\r\n\r\n",
            ContentLength(0), true),
    ];
    for (description, response, method, client, keep_alive, route, want, body, kept) in cases {
        let (out, framing) = rewrite_response(response, *method, *client, *keep_alive, route);
        assert_eq!(out, *want, "{description}");
        assert_eq!(
            framing,
            ResponseFraming {
                body: *body,
                keep_alive: *kept
            },
            "{description}"
        );
    }
}

// ---------------------------------------------------------------- robustness

/// Bytes that sit on parser decision points.
const INTERESTING: &[u8] = b"\r\n \t:;,%/.?#*0aF\x00\x7f\x80\xff";

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(bytes.len() + 1);
        let byte = if rng.below(2) == 0 {
            INTERESTING[rng.below(INTERESTING.len())]
        } else {
            rng.next() as u8
        };
        match rng.below(4) {
            0 if at < bytes.len() => bytes[at] = byte,
            1 => bytes.insert(at, byte),
            2 if at < bytes.len() => {
                bytes.remove(at);
            }
            _ => {
                // Duplicate a run: repeated fields, repeated lines.
                let end = (at + 1 + rng.below(40)).min(bytes.len());
                let run = bytes[at.min(end)..end].to_vec();
                bytes.splice(at..at, run);
            }
        }
    }
    bytes
}

/// What the fuzz target checks, on one input.
fn check_invariants(bytes: &[u8]) {
    let tight = Limits {
        max_head_bytes: 512,
        max_headers: 8,
        max_uri_bytes: 64,
        max_body_bytes: 64,
    };
    let Ok(Some(head)) = parse_request_head(bytes, &tight) else {
        return;
    };
    assert!(head.head_len() <= bytes.len().min(512));
    let rewrite = PrefixRewrite {
        from: "/a".into(),
        to: "/b/".into(),
    };
    let mut out = Vec::new();
    rewrite_request_head(&head, bytes, &edits(&NO_EDITS, Some(&rewrite)), &mut out);
    // What Sluice sends must be a request Sluice itself accepts, framed the
    // same way.
    let again = parse_request_head(&out, &Limits::default())
        .unwrap_or_else(|e| panic!("{e:?} re-parsing {}", text(&out)))
        .unwrap_or_else(|| panic!("incomplete: {}", text(&out)));
    assert_eq!(again.head_len(), out.len());
    assert_eq!(again.method_bytes(&out), head.method_bytes(bytes));
    assert_eq!(again.body(), head.body());
    assert_eq!(again.is_upgrade(), head.is_upgrade());
    assert_eq!(again.query(&out), head.query(bytes));
    assert!(again.keep_alive());
}

#[test]
fn mutated_requests_never_panic_and_rewrite_to_valid_requests() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut accepted = 0;
    for i in 0..20_000 {
        let seed = REAL_REQUESTS[i % REAL_REQUESTS.len()];
        let bytes = mutate(&mut rng, seed);
        accepted += usize::from(matches!(parse(&bytes), Ok(Some(_))));
        check_invariants(&bytes);
        let _ = parse_response_head(&bytes, &LIMITS, Method::Get);
        let mut decoder = ChunkedDecoder::new(64, 64);
        let split = rng.below(bytes.len() + 1);
        let _ = decoder.feed(&bytes[..split], &mut |_| {});
        let _ = decoder.feed(&bytes[split..], &mut |_| {});
    }
    // The mutations must leave enough requests valid to exercise rewriting.
    assert!(accepted > 2_000, "only {accepted} mutated requests parsed");
}

#[test]
fn real_requests_satisfy_the_invariants_at_every_prefix() {
    for request in REAL_REQUESTS {
        for len in 0..=request.len() {
            check_invariants(&request[..len]);
        }
    }
}

#[test]
fn mutated_chunked_bodies_never_panic_and_split_points_agree() {
    let mut rng = Rng(0xfeed_f00d);
    for i in 0..5_000 {
        let (_, seed, _) = VALID_CHUNKED[i % VALID_CHUNKED.len()];
        let bytes = mutate(&mut rng, seed);
        let whole = decode_all(&mut ChunkedDecoder::new(64, 64), &[&bytes]);
        let split = rng.below(bytes.len() + 1);
        let (first, second) = bytes.split_at(split);
        let pieces = decode_all(&mut ChunkedDecoder::new(64, 64), &[first, second]);
        // An error may surface in either piece; success must be identical.
        match (&whole, &pieces) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{}", text(&bytes)),
            (Err(a), Err(b)) => assert_eq!(a, b, "{}", text(&bytes)),
            _ => panic!("split at {split} changed the verdict on {:?}", text(&bytes)),
        }
    }
}

/// A request without `Host` (HTTP/1.0 allows that) goes to the backend as
/// HTTP/1.1 with the listener's address as its `Host` (the port only when
/// it is not the scheme's default), never with an empty one, which
/// HTTP/1.1 servers such as nginx answer with 400. A request with a Host
/// keeps it.
#[test]
fn a_request_without_host_gets_the_listener_as_host() {
    let cases: &[(&[u8], IpAddr, u16, Proto, &str)] = &[
        (
            b"GET / HTTP/1.0\r\n\r\n",
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100)),
            80,
            Proto::Http,
            "Host: 10.0.0.100\r\n",
        ),
        (
            b"GET / HTTP/1.0\r\n\r\n",
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100)),
            8080,
            Proto::Http,
            "Host: 10.0.0.100:8080\r\n",
        ),
        (
            b"GET / HTTP/1.0\r\n\r\n",
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100)),
            443,
            Proto::Https,
            "Host: 10.0.0.100\r\n",
        ),
        (
            b"GET / HTTP/1.0\r\n\r\n",
            "2001:db8::1".parse().unwrap(),
            8443,
            Proto::Https,
            "Host: [2001:db8::1]:8443\r\n",
        ),
        (
            b"GET / HTTP/1.0\r\nHost: www.example\r\n\r\n",
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100)),
            80,
            Proto::Http,
            "Host: www.example\r\n",
        ),
    ];
    for (request, addr, port, proto, want) in cases {
        let e = HeadEdits {
            server: (*addr, *port),
            proto: *proto,
            ..edits(&NO_EDITS, None)
        };
        let out = rewrite(request, &e);
        assert!(out.starts_with("GET / HTTP/1.1\r\n"), "{out}");
        assert!(out.contains(want), "want {want:?} in:\n{out}");
        assert_eq!(out.matches("Host:").count(), 1, "{out}");
    }
}
