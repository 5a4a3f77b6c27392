//! Finding the end of a head while its bytes arrive, so that a head
//! dribbled in one byte at a time costs O(n) in all, not O(n²).
//!
//! [`HeadScan::take`] appends to the caller's head buffer the new bytes up
//! to and including the blank line that ends the head, and no further: what
//! follows (a body, the next pipelined request) stays where it was, in the
//! socket buffer, to be forwarded without a copy. It remembers where its
//! search stopped, so every byte is looked at once.
//!
//! The full parser (`httparse` and the checks of [`super::parse_request_head`])
//! runs only when [`Scanned::parse`] says it is worth it:
//!
//! - the head is complete;
//! - the first bytes of a head arrived (garbage such as a TLS ClientHello is
//!   refused at once, as it was when every segment was parsed);
//! - the start line just became complete (400, 505 without waiting for the
//!   rest of the head);
//! - the request-target seen so far is longer than `max_uri` (414 early);
//! - the buffer reached its maximum (431).
//!
//! That is at most five parses per head, each over at most the head.
//!
//! The end of a head is the first line feed followed by an empty line
//! (`LF LF` or `LF CR LF`) after the empty lines a message may start with
//! (RFC 9112 §2.2), which is where `httparse` ends a head it accepts. A
//! head `httparse` would refuse is refused when it is parsed, whatever the
//! scan found.

/// The scan state of one head. `Default` is a fresh head.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeadScan {
    /// The next index of the head buffer to look at.
    pos: usize,
    /// Past the empty lines before the start line.
    started: bool,
    /// The first and second space of the start line, once seen.
    sp: [Option<usize>; 2],
    /// The line feed that ends the start line, once seen.
    line_end: Option<usize>,
    /// The target was reported too long already.
    uri_flagged: bool,
    /// The head's length, blank line included, once found.
    end: Option<usize>,
}

/// What one [`HeadScan::take`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scanned {
    /// Bytes of the input appended to the head buffer.
    pub taken: usize,
    /// Worth running the parser now (see the module documentation).
    pub parse: bool,
}

impl HeadScan {
    /// The whole head is in the buffer.
    pub fn complete(&self) -> bool {
        self.end.is_some()
    }

    /// Append to `buf` (the head so far, which this scan has seen) the
    /// bytes of `input` that belong to the head, at most `max` bytes in
    /// all.
    pub fn take(&mut self, buf: &mut Vec<u8>, input: &[u8], max: usize, max_uri: usize) -> Scanned {
        let old = buf.len();
        let first = old == 0 && !input.is_empty();
        let avail = &input[..input.len().min(max.saturating_sub(old))];
        if self.end.is_some() {
            return Scanned {
                taken: 0,
                parse: false,
            };
        }
        let total = old + avail.len();
        let at = |j: usize| if j < old { buf[j] } else { avail[j - old] };
        let line_was_done = self.line_end.is_some();
        let mut j = self.pos;
        let mut end = None;
        while j < total {
            let b = at(j);
            if !self.started {
                if b == b'\r' || b == b'\n' {
                    j += 1;
                    continue;
                }
                self.started = true;
            }
            if self.line_end.is_none() && b == b' ' {
                match self.sp {
                    [None, _] => self.sp[0] = Some(j),
                    [Some(_), None] => self.sp[1] = Some(j),
                    _ => {}
                }
            }
            if b == b'\n' {
                if self.line_end.is_none() {
                    self.line_end = Some(j);
                }
                // An empty line next ends the head; not enough bytes to
                // tell: resume at this line feed.
                if j + 1 >= total {
                    break;
                }
                match at(j + 1) {
                    b'\n' => {
                        end = Some(j + 2);
                        break;
                    }
                    b'\r' if j + 2 >= total => break,
                    b'\r' if at(j + 2) == b'\n' => {
                        end = Some(j + 3);
                        break;
                    }
                    _ => {}
                }
            }
            j += 1;
        }
        self.pos = j;
        let taken = match end {
            Some(e) => e - old,
            None => avail.len(),
        };
        buf.extend_from_slice(&avail[..taken]);
        self.end = end;
        let mut parse = first
            || end.is_some()
            || (!line_was_done && self.line_end.is_some())
            || buf.len() >= max;
        if let (Some(s1), false) = (self.sp[0], self.uri_flagged) {
            let target_end = self.sp[1].or(self.line_end).unwrap_or(buf.len());
            if target_end.saturating_sub(s1 + 1) > max_uri {
                self.uri_flagged = true;
                parse = true;
            }
        }
        Scanned { taken, parse }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &[u8] = b"\r\nGET /a HTTP/1.1\r\nHost: x\r\nX-A: b\r\n\r\n";

    fn scan_in(chunks: &[&[u8]], max: usize) -> (Vec<u8>, HeadScan, Vec<usize>, usize) {
        let mut s = HeadScan::default();
        let mut buf = Vec::new();
        let mut parses = 0;
        let mut taken = Vec::new();
        for c in chunks {
            let r = s.take(&mut buf, c, max, 8192);
            parses += r.parse as usize;
            taken.push(r.taken);
        }
        (buf, s, taken, parses)
    }

    #[test]
    fn every_split_finds_the_same_end_and_leaves_the_rest() {
        let mut msg = HEAD.to_vec();
        msg.extend_from_slice(b"BODYGET / HTTP/1.1\r\n\r\n");
        for cut in 0..=msg.len() {
            let (buf, s, taken, _) = scan_in(&[&msg[..cut], &msg[cut..]], 16384);
            assert!(s.complete(), "cut {cut}");
            assert_eq!(buf, HEAD, "cut {cut}");
            assert_eq!(taken.iter().sum::<usize>(), HEAD.len(), "cut {cut}");
        }
    }

    #[test]
    fn byte_at_a_time_parses_a_bounded_number_of_times() {
        let big: Vec<u8> = [
            &b"GET / HTTP/1.1\r\nHost: x\r\n"[..],
            &b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".repeat(200),
            b"\r\n",
        ]
        .concat();
        let bytes: Vec<&[u8]> = big.chunks(1).collect();
        let (buf, s, _, parses) = scan_in(&bytes, 1 << 20);
        assert!(s.complete());
        assert_eq!(buf, big);
        // First byte, start line, end of head.
        assert_eq!(parses, 3);
    }

    #[test]
    fn bare_lf_heads_end_where_httparse_ends_them() {
        for head in [
            &b"GET / HTTP/1.1\nHost: x\n\n"[..],
            b"HTTP/1.1 200 OK\nA: b\r\n\n",
            b"GET / HTTP/1.0\r\n\r\n",
            b"\n\nGET / HTTP/1.0\n\n",
        ] {
            let mut msg = head.to_vec();
            msg.extend_from_slice(b"rest");
            let (buf, s, _, _) = scan_in(&[&msg], 1024);
            assert!(s.complete());
            assert_eq!(buf, head);
            let mut fields = [httparse::EMPTY_HEADER; 8];
            let n = if head.starts_with(b"HTTP") {
                httparse::Response::new(&mut fields).parse(&msg)
            } else {
                httparse::Request::new(&mut fields).parse(&msg)
            };
            assert_eq!(n, Ok(httparse::Status::Complete(head.len())));
        }
    }

    #[test]
    fn asks_for_a_parse_when_it_is_worth_it() {
        let mut s = HeadScan::default();
        let mut buf = Vec::new();
        // The first bytes.
        assert!(s.take(&mut buf, b"GE", 64, 8).parse);
        assert!(!s.take(&mut buf, b"T /abc", 64, 8).parse);
        // The target passed max_uri.
        assert!(s.take(&mut buf, b"defgh", 64, 8).parse);
        assert!(!s.take(&mut buf, b"ij HTTP/1.1\r", 64, 8).parse);
        // The start line is complete.
        assert!(s.take(&mut buf, b"\n", 64, 8).parse);
        assert!(!s.take(&mut buf, b"Host: x\r\n", 64, 8).parse);
        // Full.
        let r = s.take(&mut buf, &[b'a'; 100], 64, 8);
        assert!(r.parse);
        assert_eq!(buf.len(), 64);
        assert!(!s.complete());
    }
}
