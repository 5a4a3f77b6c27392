//! Response heads from backends: parse and decide framing (RFC 9112 §6.3).

use super::fields::{
    fold_content_length, has_line_starting_with_whitespace, list_contains, TransferCodings,
};
use super::request::{header_lines, version_error};
use super::{BodyKind, HeaderLine, HttpError, Limits, Method, Span, Version, MAX_HEADERS};

/// A parsed response head, as offsets into its buffer (see
/// [`super::RequestHead`] for the buffer contract).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    version: Version,
    status: u16,
    reason: Span,
    headers: Vec<HeaderLine>,
    body: BodyKind,
    declared_len: Option<u64>,
    keep_alive: bool,
    head_len: usize,
}

/// Parses the response head at the start of `buf`; `request_method` is the
/// method of the request it answers, which decides whether a body follows.
/// `Ok(None)` and [`HttpError::HeadTooLarge`] as for
/// [`super::parse_request_head`]; `max_uri_bytes` and `max_body_bytes` are
/// not used. Any error is a 502 to the client.
///
/// Framing, strictest reading of RFC 9112 §6.3:
/// 1. a response to HEAD, any 1xx, 204 and 304 have no body, whatever their
///    fields say;
/// 2. otherwise `Transfer-Encoding` must be exactly `chunked`, must not come
///    with `Content-Length`, and must not be in an HTTP/1.0 response (RFC
///    9112 allows more here; a backend has no reason to send it, and
///    refusing keeps one framing rule for both directions);
/// 3. otherwise a valid `Content-Length` gives the length;
/// 4. otherwise the body runs until the backend closes.
pub fn parse_response_head(
    buf: &[u8],
    limits: &Limits,
    request_method: Method,
) -> Result<Option<ResponseHead>, HttpError> {
    parse_response_head_reusing(buf, limits, request_method, &mut Vec::new())
}

/// [`parse_response_head`] with a reused field-line `Vec`, as
/// [`super::parse_request_head_reusing`].
pub fn parse_response_head_reusing(
    buf: &[u8],
    limits: &Limits,
    request_method: Method,
    spare: &mut Vec<HeaderLine>,
) -> Result<Option<ResponseHead>, HttpError> {
    let max_head = limits.max_head_bytes.min(u32::MAX as usize);
    let window = &buf[..buf.len().min(max_head)];
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut fields[..limits.max_headers.min(MAX_HEADERS)]);
    let error = match resp.parse(window) {
        Ok(httparse::Status::Complete(head_len)) => {
            return build(&resp, buf, head_len, request_method, spare).map(Some)
        }
        Ok(httparse::Status::Partial) => None,
        Err(e) => classify(e, window),
    };
    if let Some(e) = error {
        return Err(e);
    }
    if buf.len() >= max_head {
        Err(HttpError::HeadTooLarge)
    } else {
        Ok(None)
    }
}

fn classify(e: httparse::Error, buf: &[u8]) -> Option<HttpError> {
    Some(match e {
        httparse::Error::Version => {
            let start = buf
                .iter()
                .position(|&b| b != b'\r' && b != b'\n')
                .unwrap_or(buf.len());
            let version = buf[start..].split(|&b| b == b' ').next().unwrap_or(&[]);
            let version = version.split(|&b| b == b'\n').next().unwrap_or(&[]);
            return version_error(version);
        }
        httparse::Error::HeaderName if has_line_starting_with_whitespace(buf) => HttpError::ObsFold,
        httparse::Error::HeaderName => HttpError::BadHeaderName,
        httparse::Error::HeaderValue => HttpError::BadHeaderValue,
        httparse::Error::TooManyHeaders => HttpError::TooManyHeaders,
        httparse::Error::Token | httparse::Error::NewLine | httparse::Error::Status => {
            HttpError::BadStartLine
        }
    })
}

fn build(
    resp: &httparse::Response<'_, '_>,
    buf: &[u8],
    head_len: usize,
    request_method: Method,
    spare: &mut Vec<HeaderLine>,
) -> Result<ResponseHead, HttpError> {
    let version = match resp.version {
        Some(0) => Version::Http10,
        Some(1) => Version::Http11,
        _ => return Err(HttpError::BadVersion),
    };
    let status = resp.code.unwrap_or(0);
    if !(100..=599).contains(&status) {
        return Err(HttpError::BadStatus);
    }
    // `httparse` returns a literal "" for a reason phrase with obs-text;
    // Sluice then sends an empty reason phrase (RFC 9112 §4 allows it).
    let reason = resp
        .reason
        .and_then(|r| Span::within(buf, r.as_bytes()))
        .unwrap_or_default();
    let headers = header_lines(resp.headers, buf, spare)?;

    let mut content_length = Ok(None);
    let mut codings = TransferCodings::default();
    let (mut close, mut keep_alive_token) = (false, false);
    for line in &headers {
        let (name, value) = (line.name.get(buf), line.value.get(buf));
        if name.eq_ignore_ascii_case(b"content-length") {
            if let Ok(seen) = &mut content_length {
                if let Err(e) = fold_content_length(value, seen) {
                    content_length = Err(e);
                }
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            codings.fold(value);
        } else if name.eq_ignore_ascii_case(b"connection") {
            close |= list_contains(value, b"close");
            keep_alive_token |= list_contains(value, b"keep-alive");
        }
    }

    let interim_or_empty = (100..200).contains(&status) || status == 204;
    let bodiless = interim_or_empty || status == 304 || request_method == Method::Head;
    let (body, declared_len) = if bodiless {
        // RFC 9110 §8.6: in a response to HEAD or a 304, Content-Length is
        // the length the GET / 200 would have had; forwarded if valid.
        let declared = match content_length {
            Ok(len) if !interim_or_empty && !codings.present => len,
            _ => None,
        };
        (BodyKind::None, declared)
    } else if codings.present {
        if !matches!(content_length, Ok(None)) {
            return Err(HttpError::ContentLengthAndTransferEncoding);
        }
        if version == Version::Http10 {
            return Err(HttpError::BadTransferEncoding);
        }
        codings.check()?;
        (BodyKind::Chunked, None)
    } else {
        match content_length? {
            Some(len) => (BodyKind::ContentLength(len), Some(len)),
            None => (BodyKind::CloseDelimited, None),
        }
    };
    let persistent = match version {
        Version::Http11 => !close,
        Version::Http10 => keep_alive_token && !close,
    };
    Ok(ResponseHead {
        version,
        status,
        reason,
        headers,
        body,
        declared_len,
        keep_alive: persistent && status != 101 && body != BodyKind::CloseDelimited,
        head_len,
    })
}

impl ResponseHead {
    pub fn version(&self) -> Version {
        self.version
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    /// The reason phrase as sent; empty if absent or not plain text.
    pub fn reason<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        self.reason.get(buf)
    }

    pub fn headers(&self) -> &[HeaderLine] {
        &self.headers
    }

    /// The values of every field line named `name` (case-insensitive).
    pub fn header_values<'a>(
        &'a self,
        buf: &'a [u8],
        name: &'a [u8],
    ) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |line| line.name.get(buf).eq_ignore_ascii_case(name))
            .map(move |line| line.value.get(buf))
    }

    pub fn body(&self) -> BodyKind {
        self.body
    }

    /// The `Content-Length` to forward: the body length, or for a response
    /// to HEAD or a 304 the length the full response would have had.
    pub fn declared_len(&self) -> Option<u64> {
        self.declared_len
    }

    /// 1xx other than 101: another head follows on the same connection.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }

    /// 101 Switching Protocols: after this head the connection is a tunnel.
    pub fn is_upgrade(&self) -> bool {
        self.status == 101
    }

    /// Whether the backend connection can carry another request after this
    /// response's body: persistent per RFC 9112 §9.3, not close-delimited,
    /// not upgraded.
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    pub fn head_len(&self) -> usize {
        self.head_len
    }

    /// The field-line `Vec`, to parse the next head into.
    pub fn into_lines(self) -> Vec<HeaderLine> {
        self.headers
    }
}
