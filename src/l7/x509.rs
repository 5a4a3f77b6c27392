//! A minimal DER walk through an X.509 certificate (RFC 5280 §4.1) to the
//! two facts Sluice needs that webpki checks but does not expose: the end of
//! its validity (expiry warnings of `sluice check`, the expiry metric) and the
//! subject (`X-Forwarded-TLS-Client-Subject`). Malformed input yields `None`,
//! never a panic.

/// One TLV: (tag, contents, rest).
fn der(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = buf.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |a, &b| (a << 8) | b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// notAfter of a DER certificate, seconds since the epoch.
pub fn not_after(cert: &[u8]) -> Option<i64> {
    let (_, certificate, _) = der(cert)?;
    let (_, tbs, _) = der(certificate)?;
    let mut rest = tbs;
    let (tag, _, r) = der(rest)?;
    if tag == 0xa0 {
        rest = r; // version
    }
    let (_, _, rest) = der(rest)?; // serialNumber
    let (_, _, rest) = der(rest)?; // signature
    let (_, _, rest) = der(rest)?; // issuer
    let (_, validity, _) = der(rest)?;
    let (_, _, validity) = der(validity)?; // notBefore
    let (tag, time, _) = der(validity)?;
    let text = std::str::from_utf8(time).ok()?;
    let digits = |s: &str| s.parse::<i64>().ok();
    let (year, rest) = match tag {
        // UTCTime: YYMMDDHHMMSSZ, 50..99 are 19xx.
        0x17 if text.len() >= 12 => {
            let y = digits(&text[..2])?;
            (if y >= 50 { 1900 + y } else { 2000 + y }, &text[2..])
        }
        // GeneralizedTime: YYYYMMDDHHMMSSZ.
        0x18 if text.len() >= 14 => (digits(&text[..4])?, &text[4..]),
        _ => return None,
    };
    let (mo, d, h, mi, s) = (
        digits(&rest[0..2])?,
        digits(&rest[2..4])?,
        digits(&rest[4..6])?,
        digits(&rest[6..8])?,
        digits(&rest[8..10])?,
    );
    Some(days_from_civil(year, mo, d) * 86_400 + h * 3600 + mi * 60 + s)
}

/// The subject of a DER certificate as an RFC 4514 string (last RDN first:
/// `CN=client,O=Example,C=FR`), with the usual attribute names (CN, O,
/// OU, C, L, ST, emailAddress as `E`; others by dotted OID is not done:
/// they are left out). Special and non-printable characters are escaped
/// (`\,`, `\0A`), so the result is a valid header value.
pub fn subject_of(cert: &[u8]) -> Option<Box<str>> {
    let (_, certificate, _) = der(cert)?;
    let (_, tbs, _) = der(certificate)?;
    let mut rest = tbs;
    let (tag, _, r) = der(rest)?;
    if tag == 0xa0 {
        rest = r; // version
    }
    let (_, _, rest) = der(rest)?; // serialNumber
    let (_, _, rest) = der(rest)?; // signature
    let (_, _, rest) = der(rest)?; // issuer
    let (_, _, rest) = der(rest)?; // validity
    let (_, mut rdns, _) = der(rest)?; // subject
    let mut parts: Vec<String> = Vec::new();
    while !rdns.is_empty() {
        let (_, set, next) = der(rdns)?;
        rdns = next;
        let mut set = set;
        let mut rdn: Vec<String> = Vec::new();
        while !set.is_empty() {
            let (_, atv, next) = der(set)?;
            set = next;
            let (_, oid, atv) = der(atv)?;
            let (vtag, value, _) = der(atv)?;
            let name = match oid {
                [0x55, 0x04, 0x03] => "CN",
                [0x55, 0x04, 0x0a] => "O",
                [0x55, 0x04, 0x0b] => "OU",
                [0x55, 0x04, 0x06] => "C",
                [0x55, 0x04, 0x07] => "L",
                [0x55, 0x04, 0x08] => "ST",
                [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01] => "E",
                _ => continue,
            };
            // UTF8String, PrintableString, IA5String, TeletexString.
            if !matches!(vtag, 0x0c | 0x13 | 0x16 | 0x14) {
                continue;
            }
            let text = String::from_utf8_lossy(value);
            let mut v = String::with_capacity(text.len());
            for (k, ch) in text.chars().enumerate() {
                let edge = k == 0 || k + 1 == text.chars().count();
                match ch {
                    ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' => {
                        v.push('\\');
                        v.push(ch);
                    }
                    ' ' | '#' if edge => {
                        v.push('\\');
                        v.push(ch);
                    }
                    c if c.is_control() => {
                        let mut b = [0u8; 4];
                        for byte in c.encode_utf8(&mut b).bytes() {
                            v.push_str(&format!("\\{byte:02X}"));
                        }
                    }
                    c => v.push(c),
                }
            }
            rdn.push(format!("{name}={v}"));
        }
        if !rdn.is_empty() {
            parts.push(rdn.join("+"));
        }
    }
    parts.reverse();
    (!parts.is_empty()).then(|| parts.join(",").into_boxed_str())
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2038, 1, 19), 24_855);
    }

    #[test]
    fn der_walk_survives_every_prefix() {
        // A truncated certificate never panics and never yields a time.
        let cert = b"\x30\x82\x01\x00\x30\x81\xf0\xa0\x03\x02\x01\x02\x02\x01\x01";
        for n in 0..cert.len() {
            assert_eq!(not_after(&cert[..n]), None);
        }
    }
}
