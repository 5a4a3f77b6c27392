//! Request heads: parse, validate, decide framing (RFC 9112 §3, §6).

use super::fields::{
    check_host, fold_content_length, has_bare_lf, has_line_starting_with_whitespace, list_contains,
    TransferCodings,
};
use super::target::parse_target;
pub use super::target::TargetForm;
use super::{BodyKind, HeaderLine, HttpError, Limits, Method, Span, Version, MAX_HEADERS};

/// A parsed and validated request head, as offsets into the buffer it was
/// parsed from. Every accessor that returns bytes takes that buffer again;
/// given another buffer it returns garbage or empty slices, never panics.
///
/// The field lines live in a `Vec` (16 bytes per field line), instead of a
/// fixed `MAX_HEADERS`-slot array carried by every connection. A caller
/// that parses head after head hands the `Vec` of the last head back
/// ([`RequestHead::into_lines`], [`parse_request_head_reusing`]), so that a
/// keep-alive connection stops allocating once it has seen its largest
/// head. `Ok(None)` and errors allocate nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    method: Method,
    method_span: Span,
    target: Span,
    form: TargetForm,
    path: Span,
    query: Option<Span>,
    version: Version,
    headers: Vec<HeaderLine>,
    host: Option<Span>,
    body: BodyKind,
    keep_alive: bool,
    expects_continue: bool,
    upgrade: bool,
    head_len: usize,
}

/// Parses the request head at the start of `buf`.
///
/// `Ok(None)`: the head is not complete yet; call again with more bytes
/// (a cheap pre-check is whether the new bytes contain `\n`). Once
/// `limits.max_head_bytes` bytes are buffered without a complete head, the
/// answer is [`HttpError::HeadTooLarge`]. Only that many bytes are ever
/// examined. Bytes after [`RequestHead::head_len`] are body or the next
/// pipelined request and are not looked at.
pub fn parse_request_head(buf: &[u8], limits: &Limits) -> Result<Option<RequestHead>, HttpError> {
    parse_request_head_reusing(buf, limits, &mut Vec::new())
}

/// [`parse_request_head`], with the field lines written into `spare` (a
/// `Vec` from [`RequestHead::into_lines`]; cleared first), which the head
/// then owns. On `Ok(None)` and errors `spare` is left as it was.
pub fn parse_request_head_reusing(
    buf: &[u8],
    limits: &Limits,
    spare: &mut Vec<HeaderLine>,
) -> Result<Option<RequestHead>, HttpError> {
    let max_head = limits.max_head_bytes.min(u32::MAX as usize);
    let window = &buf[..buf.len().min(max_head)];
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields[..limits.max_headers.min(MAX_HEADERS)]);
    let error = match req.parse(window) {
        Ok(httparse::Status::Complete(head_len)) => {
            return build(&req, buf, head_len, limits, spare).map(Some)
        }
        Ok(httparse::Status::Partial) => None,
        Err(e) => classify(e, window),
    };
    if let Some(e) = error {
        return Err(e);
    }
    check_target_len(window, limits)?;
    if buf.len() >= max_head {
        Err(HttpError::HeadTooLarge)
    } else {
        Ok(None)
    }
}

/// The start line, after the empty lines RFC 9112 §2.2 lets a server skip.
fn start_line(buf: &[u8]) -> &[u8] {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let rest = &buf[start..];
    let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    &rest[..end]
}

/// 414 as soon as the target seen so far is too long, without waiting for
/// the head to fill `max_head_bytes`.
fn check_target_len(buf: &[u8], limits: &Limits) -> Result<(), HttpError> {
    let line = start_line(buf);
    let Some(space) = line.iter().position(|&b| b == b' ') else {
        return Ok(());
    };
    let target = &line[space + 1..];
    let len = target
        .iter()
        .position(|&b| b == b' ')
        .unwrap_or(target.len());
    if len > limits.max_uri_bytes {
        Err(HttpError::UriTooLong)
    } else {
        Ok(())
    }
}

/// Names an `httparse` error; `None` when the bytes so far cannot tell a
/// 400 from a 505 yet, which the caller treats as an incomplete head.
fn classify(e: httparse::Error, buf: &[u8]) -> Option<HttpError> {
    Some(match e {
        httparse::Error::Version => {
            let line = start_line(buf);
            let version = line.splitn(3, |&b| b == b' ').nth(2).unwrap_or(&[]);
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

/// `HTTP/<digit>.<digit>` that is not 1.0 or 1.1 is a 505 (RFC 9110
/// §15.6.6), anything else a 400. `None` while `version` could still
/// become either. `httparse` also reports a status line whose valid version
/// is not followed by SP as a version error: that is a bad start line.
pub(super) fn version_error(version: &[u8]) -> Option<HttpError> {
    const SHAPE: &[u8] = b"HTTP/0.0";
    if version.starts_with(b"HTTP/1.0") || version.starts_with(b"HTTP/1.1") {
        return Some(HttpError::BadStartLine);
    }
    let version = version.strip_suffix(b"\r").unwrap_or(version);
    let fits = version.iter().zip(SHAPE).all(|(&b, &s)| {
        if s == b'0' {
            b.is_ascii_digit()
        } else {
            b == s
        }
    });
    match (fits, version.len()) {
        (false, _) => Some(HttpError::BadVersion),
        (true, 0..=7) => None,
        (true, 8) => Some(HttpError::VersionNotSupported),
        (true, _) if matches!(version[8], b'\r' | b'\n') => Some(HttpError::VersionNotSupported),
        (true, _) => Some(HttpError::BadVersion),
    }
}

/// Field lines as spans; an empty value `httparse` did not point into `buf`
/// is placed just after its name.
pub(super) fn header_lines(
    fields: &[httparse::Header<'_>],
    buf: &[u8],
    spare: &mut Vec<HeaderLine>,
) -> Result<Vec<HeaderLine>, HttpError> {
    let mut lines = std::mem::take(spare);
    lines.clear();
    lines.reserve(fields.len());
    for field in fields {
        let name = Span::within(buf, field.name.as_bytes()).ok_or(HttpError::BadHeaderName)?;
        let value = match Span::within(buf, field.value) {
            Some(value) => value,
            None if field.value.is_empty() => name.sub(name.len(), name.len()).unwrap_or(name),
            None => return Err(HttpError::BadHeaderValue),
        };
        lines.push(HeaderLine { name, value });
    }
    Ok(lines)
}

fn build(
    req: &httparse::Request<'_, '_>,
    buf: &[u8],
    head_len: usize,
    limits: &Limits,
    spare: &mut Vec<HeaderLine>,
) -> Result<RequestHead, HttpError> {
    let head = buf.get(..head_len).ok_or(HttpError::HeadTooLarge)?;
    if has_bare_lf(head) {
        return Err(HttpError::BareLf);
    }
    let method_span =
        Span::within(buf, req.method.unwrap_or("").as_bytes()).ok_or(HttpError::BadStartLine)?;
    let target =
        Span::within(buf, req.path.unwrap_or("").as_bytes()).ok_or(HttpError::BadStartLine)?;
    if target.len() > limits.max_uri_bytes {
        return Err(HttpError::UriTooLong);
    }
    let version = match req.version {
        Some(0) => Version::Http10,
        Some(1) => Version::Http11,
        _ => return Err(HttpError::BadVersion),
    };
    let method = Method::from_bytes(method_span.get(buf));
    if method == Method::Connect {
        return Err(HttpError::MethodNotSupported);
    }
    let target_parts = parse_target(method, target, buf)?;
    let headers = header_lines(req.headers, buf, spare)?;

    let mut content_length = None;
    let mut codings = TransferCodings::default();
    let mut host_field = None;
    let (mut close, mut keep_alive_token, mut upgrade_token) = (false, false, false);
    let (mut upgrade_field, mut continue_expected) = (false, false);
    for line in &headers {
        let (name, value) = (line.name.get(buf), line.value.get(buf));
        if name.eq_ignore_ascii_case(b"content-length") {
            fold_content_length(value, &mut content_length)?;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            codings.fold(value);
        } else if name.eq_ignore_ascii_case(b"host") {
            if host_field.is_some() {
                return Err(HttpError::DuplicateHost);
            }
            check_host(value)?;
            host_field = Some(line.value);
        } else if name.eq_ignore_ascii_case(b"connection") {
            close |= list_contains(value, b"close");
            keep_alive_token |= list_contains(value, b"keep-alive");
            upgrade_token |= list_contains(value, b"upgrade");
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            upgrade_field |= !value.is_empty();
        } else if name.eq_ignore_ascii_case(b"expect") {
            continue_expected |= value.eq_ignore_ascii_case(b"100-continue");
        }
    }

    // RFC 9112 §6.1: CL with TE is the classic smuggling shape; TE in
    // HTTP/1.0 is "faulty framing". Sluice refuses both outright.
    let body = if codings.present {
        if content_length.is_some() {
            return Err(HttpError::ContentLengthAndTransferEncoding);
        }
        if version == Version::Http10 {
            return Err(HttpError::BadTransferEncoding);
        }
        codings.check()?;
        BodyKind::Chunked
    } else {
        match content_length {
            Some(len) if len > limits.max_body_bytes => return Err(HttpError::BodyTooLarge),
            Some(len) => BodyKind::ContentLength(len),
            None => BodyKind::None,
        }
    };
    if version == Version::Http11 && host_field.is_none() {
        return Err(HttpError::MissingHost);
    }
    let http11 = version == Version::Http11;
    Ok(RequestHead {
        method,
        method_span,
        target,
        form: target_parts.form,
        path: target_parts.path,
        query: target_parts.query,
        version,
        headers,
        // RFC 9112 §3.2.2: the authority of an absolute-form target wins.
        host: target_parts.authority.or(host_field),
        body,
        keep_alive: !close && (http11 || keep_alive_token),
        // RFC 9110 §10.1.1: an HTTP/1.0 100-continue is ignored. §7.8: so is
        // an HTTP/1.0 Upgrade.
        expects_continue: http11 && continue_expected,
        upgrade: http11 && upgrade_token && upgrade_field,
        head_len,
    })
}

impl RequestHead {
    pub fn method(&self) -> Method {
        self.method
    }

    pub fn method_bytes<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        self.method_span.get(buf)
    }

    /// The request-target as sent.
    pub fn target<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        self.target.get(buf)
    }

    pub fn target_form(&self) -> TargetForm {
        self.form
    }

    /// The path, without query, as sent (not percent-decoded; see the
    /// `target` module for why that is safe). `/` for an absolute-form
    /// target without a path, `*` for asterisk-form.
    pub fn path<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        if self.path.is_empty() {
            b"/"
        } else {
            self.path.get(buf)
        }
    }

    /// The query, without the `?`; `None` if the target has no `?`.
    pub fn query<'b>(&self, buf: &'b [u8]) -> Option<&'b [u8]> {
        self.query.map(|q| q.get(buf))
    }

    pub fn version(&self) -> Version {
        self.version
    }

    pub fn headers(&self) -> &[HeaderLine] {
        &self.headers
    }

    /// The values of every field line named `name` (case-insensitive), in
    /// order.
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

    /// The host the request is for: the authority of an absolute-form
    /// target, else the `Host` value; `None` only for HTTP/1.0 without
    /// `Host`. Validated as `host[:port]`, port and case as sent; see
    /// [`super::host_for_routing`].
    pub fn host<'b>(&self, buf: &'b [u8]) -> Option<&'b [u8]> {
        self.host.map(|h| h.get(buf))
    }

    pub fn body(&self) -> BodyKind {
        self.body
    }

    /// Whether the client lets the connection stay open after this exchange
    /// (RFC 9112 §9.3): HTTP/1.1 unless `Connection: close`, HTTP/1.0 only
    /// with `Connection: keep-alive`.
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// HTTP/1.1 with `Expect: 100-continue`: the client may wait for a
    /// `100 Continue` before sending the body (RFC 9110 §10.1.1). Other
    /// expectations are ignored, as that section allows.
    pub fn expects_continue(&self) -> bool {
        self.expects_continue
    }

    /// HTTP/1.1 with an `Upgrade` field and `upgrade` in `Connection`
    /// (RFC 9110 §7.8): after a 101 the connection becomes a tunnel.
    pub fn is_upgrade(&self) -> bool {
        self.upgrade
    }

    /// Bytes of `buf` the head occupies, blank line included.
    pub fn head_len(&self) -> usize {
        self.head_len
    }

    /// The field-line `Vec`, to parse the next head into.
    pub fn into_lines(self) -> Vec<HeaderLine> {
        self.headers
    }

    /// This head bound to its buffer, for the router.
    pub fn view<'a>(&'a self, buf: &'a [u8]) -> RequestRef<'a> {
        RequestRef { head: self, buf }
    }
}

/// A [`RequestHead`] together with the buffer it was parsed from.
#[derive(Clone, Copy, Debug)]
pub struct RequestRef<'a> {
    pub head: &'a RequestHead,
    pub buf: &'a [u8],
}
