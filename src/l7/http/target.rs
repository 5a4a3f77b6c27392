//! Request-target forms (RFC 9112 §3.2) and the path rules that let the
//! router and the backend read a path the same way.
//!
//! Routes match the path as sent, without percent-decoding it. That is only
//! safe if every path has one spelling, so the parser refuses (400
//! [`HttpError::AmbiguousPath`]) the spellings RFC 3986 §6.2.2 would
//! normalise away and the ones backends are known to treat differently:
//!
//! - dot segments `.` and `..` (RFC 3986 §5.2.4), including `%2E` forms;
//! - empty segments (`//`), which nginx merges by default;
//! - `%2F`, `%5C` and `%00`, which some backends decode into a separator or
//!   a terminator;
//! - percent-encoded unreserved characters (`%61` for `a`), which URI
//!   producers should not emit (RFC 3986 §2.3) and which would let `/%61dmin`
//!   slip past a route for `/admin`;
//! - `%` not followed by two hex digits.
//!
//! What remains differs from its normal form only in the case of escape hex
//! digits, which [`path_eq`] and [`path_prefix_len`] ignore. Raw bytes outside
//! RFC 3986 `pchar` (non-ASCII, `\`, `"`, `{`, ...) are refused in the path
//! (400 [`HttpError::BadTarget`]); the query is left as `httparse` accepts it,
//! minus `#`.

use super::fields::check_host;
use super::{HttpError, Method, Span};

/// Which of the request-target forms (RFC 9112 §3.2) a request used.
/// Authority-form exists only for `CONNECT`, which Sluice refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetForm {
    /// `/path?query`.
    Origin,
    /// `http://authority/path?query`; the authority overrides `Host`
    /// (RFC 9112 §3.2.2).
    Absolute,
    /// `*`, for server-wide `OPTIONS`.
    Asterisk,
}

pub(super) struct Target {
    pub form: TargetForm,
    /// Empty only for an absolute-form target without a path.
    pub path: Span,
    /// Without the `?`.
    pub query: Option<Span>,
    pub authority: Option<Span>,
}

pub(super) fn parse_target(method: Method, target: Span, buf: &[u8]) -> Result<Target, HttpError> {
    let bytes = target.get(buf);
    if bytes.contains(&b'#') {
        return Err(HttpError::BadTarget);
    }
    if bytes == b"*" {
        return if method == Method::Options {
            Ok(Target {
                form: TargetForm::Asterisk,
                path: target,
                query: None,
                authority: None,
            })
        } else {
            Err(HttpError::BadTarget)
        };
    }
    let (form, authority, rest) = if bytes.first() == Some(&b'/') {
        (TargetForm::Origin, None, 0)
    } else {
        let scheme_len = if starts_with_ignore_case(bytes, b"http://") {
            7
        } else if starts_with_ignore_case(bytes, b"https://") {
            8
        } else {
            return Err(HttpError::BadTarget);
        };
        let authority_end = bytes[scheme_len..]
            .iter()
            .position(|&b| b == b'/' || b == b'?')
            .map_or(bytes.len(), |i| scheme_len + i);
        let authority = &bytes[scheme_len..authority_end];
        if authority.is_empty() {
            return Err(HttpError::BadHost);
        }
        check_host(authority)?;
        let span = target
            .sub(scheme_len, authority_end)
            .ok_or(HttpError::BadTarget)?;
        (TargetForm::Absolute, Some(span), authority_end)
    };
    let path_end = bytes[rest..]
        .iter()
        .position(|&b| b == b'?')
        .map_or(bytes.len(), |i| rest + i);
    check_path(&bytes[rest..path_end])?;
    let path = target.sub(rest, path_end).ok_or(HttpError::BadTarget)?;
    let query = if path_end < bytes.len() {
        Some(
            target
                .sub(path_end + 1, bytes.len())
                .ok_or(HttpError::BadTarget)?,
        )
    } else {
        None
    };
    Ok(Target {
        form,
        path,
        query,
        authority,
    })
}

fn starts_with_ignore_case(bytes: &[u8], prefix: &[u8]) -> bool {
    bytes.len() >= prefix.len() && bytes[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// `unreserved` (RFC 3986 §2.3).
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// `pchar` minus `pct-encoded` (RFC 3986 §3.3).
fn is_pchar_literal(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Checks an absolute path (or the empty path of an absolute-form target)
/// against the rules in the module documentation.
pub fn check_path(path: &[u8]) -> Result<(), HttpError> {
    if !path.is_empty() && path[0] != b'/' {
        return Err(HttpError::BadTarget);
    }
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        if b == b'%' {
            let decoded = match (
                path.get(i + 1).copied().and_then(hex_value),
                path.get(i + 2).copied().and_then(hex_value),
            ) {
                (Some(high), Some(low)) => high << 4 | low,
                _ => return Err(HttpError::AmbiguousPath),
            };
            if is_unreserved(decoded) || matches!(decoded, b'/' | b'\\' | 0) {
                return Err(HttpError::AmbiguousPath);
            }
            i += 3;
        } else if b == b'/' || is_pchar_literal(b) {
            i += 1;
        } else {
            return Err(HttpError::BadTarget);
        }
    }
    let segments = path.split(|&b| b == b'/').count();
    for (index, segment) in path.split(|&b| b == b'/').enumerate().skip(1) {
        let last = index + 1 == segments;
        if segment == b"." || segment == b".." || (segment.is_empty() && !last) {
            return Err(HttpError::AmbiguousPath);
        }
    }
    Ok(())
}

/// Whether `path` begins with `prefix`, comparing the hex digits of `%XX`
/// escapes case-insensitively (RFC 3986 §6.2.2.1) and everything else
/// exactly. Both must be paths [`check_path`] accepts.
fn path_starts_with(path: &[u8], prefix: &[u8]) -> bool {
    if prefix.len() > path.len() {
        return false;
    }
    let mut in_escape = 0u8;
    for (&p, &q) in path.iter().zip(prefix) {
        if in_escape > 0 {
            if !p.eq_ignore_ascii_case(&q) {
                return false;
            }
            in_escape -= 1;
        } else {
            if p != q {
                return false;
            }
            if p == b'%' {
                in_escape = 2;
            }
        }
    }
    true
}

/// Whether two paths are the same resource path: exact, except for the case
/// of escape hex digits.
pub fn path_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && path_starts_with(a, b)
}

/// If `prefix` is a segment-aligned prefix of `path`, its length in `path`.
///
/// `/api` matches `/api` and `/api/x` but not `/apix`; `/api/` matches
/// `/api/` and `/api/x` but not `/api`; `/` matches every path. This is the
/// rule for route prefixes and for prefix rewrites.
pub fn path_prefix_len(path: &[u8], prefix: &[u8]) -> Option<usize> {
    if prefix.is_empty() || !path_starts_with(path, prefix) {
        return None;
    }
    let aligned = prefix.last() == Some(&b'/')
        || path.len() == prefix.len()
        || path.get(prefix.len()) == Some(&b'/');
    aligned.then_some(prefix.len())
}
