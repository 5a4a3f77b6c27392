//! Field-value grammar shared by requests, responses and rewriting: lists,
//! `Content-Length`, `Transfer-Encoding`, `Host`, and the byte classes of
//! RFC 9110 §5.

use super::HttpError;

/// `tchar` (RFC 9110 §5.6.2).
pub(super) fn is_tchar(b: u8) -> bool {
    matches!(b,
        b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`'
        | b'|' | b'~' | b'0'..=b'9' | b'A'..=b'Z' | b'a'..=b'z')
}

/// `field-vchar` or SP / HTAB: what may appear inside a field value
/// (RFC 9110 §5.5, obs-text included as `httparse` does).
pub(super) fn is_field_value_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

/// A field name: one or more `tchar`.
pub fn is_valid_field_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&b| is_tchar(b))
}

/// A field value Sluice is willing to emit: field bytes only (no CR, LF or
/// NUL), no leading or trailing whitespace.
pub fn is_valid_field_value(value: &[u8]) -> bool {
    value.iter().all(|&b| is_field_value_byte(b))
        && !matches!(value.first(), Some(b' ' | b'\t'))
        && !matches!(value.last(), Some(b' ' | b'\t'))
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The elements of a comma-separated list value (RFC 9110 §5.6.1), with
/// surrounding whitespace trimmed. Empty elements are yielded, not skipped:
/// callers that must be strict (framing fields) see them. Quoted strings are
/// not special: none of the lists Sluice reads contain them.
pub fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_ows)
}

/// Whether a `Connection`-style list value contains `token`
/// (case-insensitive).
pub(super) fn list_contains(value: &[u8], token: &[u8]) -> bool {
    list_elements(value).any(|e| e.eq_ignore_ascii_case(token))
}

/// Folds one `Content-Length` field line into `seen`: every element must be
/// 1*DIGIT fitting in u64 and equal to every earlier one (RFC 9110 §8.6).
pub(super) fn fold_content_length(value: &[u8], seen: &mut Option<u64>) -> Result<(), HttpError> {
    for element in list_elements(value) {
        if element.is_empty() {
            return Err(HttpError::BadContentLength);
        }
        let mut n: u64 = 0;
        for &b in element {
            if !b.is_ascii_digit() {
                return Err(HttpError::BadContentLength);
            }
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(b - b'0')))
                .ok_or(HttpError::BadContentLength)?;
        }
        match *seen {
            Some(earlier) if earlier != n => return Err(HttpError::BadContentLength),
            _ => *seen = Some(n),
        }
    }
    Ok(())
}

/// The codings listed across all `Transfer-Encoding` field lines, reduced to
/// what the framing decision needs.
#[derive(Default)]
pub(super) struct TransferCodings {
    pub present: bool,
    count: usize,
    chunked_count: usize,
    last_is_chunked: bool,
}

impl TransferCodings {
    pub fn fold(&mut self, value: &[u8]) {
        self.present = true;
        for element in list_elements(value) {
            let chunked = element.eq_ignore_ascii_case(b"chunked");
            self.count += 1;
            self.chunked_count += usize::from(chunked);
            self.last_is_chunked = chunked;
        }
    }

    /// `Ok(())` only for the single coding `chunked`. RFC 9112 §6.1: a final
    /// coding other than chunked is a 400 in a request; chunked applied twice
    /// is invalid; any other coding before chunked is one Sluice does not
    /// implement, 501.
    pub fn check(&self) -> Result<(), HttpError> {
        if !self.last_is_chunked || self.chunked_count > 1 {
            Err(HttpError::BadTransferEncoding)
        } else if self.count > 1 {
            Err(HttpError::UnsupportedTransferCoding)
        } else {
            Ok(())
        }
    }
}

/// Checks `host [ ":" port ]` (RFC 9110 §7.2, RFC 3986 §3.2.2) with the host
/// a DNS-style name (ALPHA / DIGIT / `-` / `.` / `_`), an IPv4 address, or a
/// bracketed IPv6 literal, and the port at most five digits. Userinfo,
/// percent-escapes, IPvFuture and zone ids are refused: none belongs in a
/// `Host` a reverse proxy routes on. An empty value is allowed (RFC 9112
/// §3.2) and matches no host route.
pub(super) fn check_host(value: &[u8]) -> Result<(), HttpError> {
    let port = match value.first() {
        None => return Ok(()),
        Some(b'[') => {
            let close = value
                .iter()
                .position(|&b| b == b']')
                .ok_or(HttpError::BadHost)?;
            let literal = &value[1..close];
            if literal.is_empty()
                || !literal
                    .iter()
                    .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
            {
                return Err(HttpError::BadHost);
            }
            match &value[close + 1..] {
                [] => return Ok(()),
                [b':', port @ ..] => port,
                _ => return Err(HttpError::BadHost),
            }
        }
        Some(_) => {
            let (name, port) = match value.iter().position(|&b| b == b':') {
                Some(colon) => (&value[..colon], Some(&value[colon + 1..])),
                None => (value, None),
            };
            if name.is_empty()
                || !name
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
            {
                return Err(HttpError::BadHost);
            }
            match port {
                None => return Ok(()),
                Some(port) => port,
            }
        }
    };
    if port.len() <= 5 && port.iter().all(u8::is_ascii_digit) {
        Ok(())
    } else {
        Err(HttpError::BadHost)
    }
}

/// The host part of a `Host` value as routes compare it: port removed, one
/// trailing dot removed (`example.com.` is `example.com` in DNS), brackets
/// kept on IPv6 literals. Case is left alone; compare case-insensitively.
pub fn host_for_routing(host: &[u8]) -> &[u8] {
    let name = if host.first() == Some(&b'[') {
        match host.iter().position(|&b| b == b']') {
            Some(close) => &host[..=close],
            None => host,
        }
    } else {
        match host.iter().position(|&b| b == b':') {
            Some(colon) => &host[..colon],
            None => host,
        }
    };
    name.strip_suffix(b".").unwrap_or(name)
}

/// Whether `head` has a line ended by LF without CR before it.
pub(super) fn has_bare_lf(head: &[u8]) -> bool {
    head.iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'))
}

/// Whether a line after the start line begins with SP or HTAB, up to the end
/// of the field section (or of `buf`). Used to name an `httparse`
/// `HeaderName` error: obs-fold (RFC 9112 §5.2) and whitespace before the
/// first field line (RFC 9112 §2.2) both look like that.
pub(super) fn has_line_starting_with_whitespace(buf: &[u8]) -> bool {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let mut lines = buf[start..].split(|&b| b == b'\n');
    let _start_line = lines.next();
    for line in lines {
        match line.first() {
            Some(b' ' | b'\t') => return true,
            None | Some(b'\r') => return false,
            Some(_) => {}
        }
    }
    false
}
