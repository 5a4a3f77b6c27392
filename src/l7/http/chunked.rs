//! Incremental decoder for the chunked transfer coding (RFC 9112 §7.1).
//!
//! The decoder holds a few integers of state and no body bytes: data is
//! handed to the caller's callback as sub-slices of the input, so a body of
//! any length passes through in whatever pieces TCP delivers it.
//!
//! Strictness, chosen so that no backend can frame the same bytes otherwise:
//!
//! - every line ends in CRLF; a bare LF or a CR not followed by LF is an
//!   error (RFC 9112 §2.2 lets recipients accept bare LF; disagreement over
//!   exactly that has been a smuggling vector);
//! - chunk-size is 1 to 16 hex digits, leading zeros included, so it always
//!   fits in a u64; no sign, no `0x`, no whitespace anywhere on the size line
//!   (the grammar's BWS before `;` is refused: senders MUST NOT generate it);
//! - a chunk extension (after `;`) may hold any visible ASCII, SP, HTAB and
//!   obs-text, up to [`MAX_CHUNK_EXT_BYTES`] per line; it is not interpreted;
//! - trailer field lines must be `token ":" field-value`, no obs-fold, at
//!   most `max_trailer_bytes` in all; they are consumed, not delivered;
//! - the data total is checked against the body limit when each chunk-size
//!   line ends, before any of that chunk's data is delivered.
//!
//! After an error the decoder stays failed: the connection must be closed.

use super::fields::{is_field_value_byte, is_tchar};
use super::{HttpError, Limits};

/// Longest chunk extension accepted on one chunk-size line, `;` included.
pub const MAX_CHUNK_EXT_BYTES: u32 = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// In the hex digits of a chunk-size.
    Size {
        digits: u8,
        size: u64,
    },
    /// In a chunk extension; `len` bytes so far.
    Ext {
        len: u32,
        size: u64,
    },
    /// Saw the CR ending a chunk-size line.
    SizeLf {
        size: u64,
    },
    /// In chunk data.
    Data {
        remaining: u64,
    },
    /// Expecting the CRLF after chunk data.
    DataCr,
    DataLf,
    /// At the start of a trailer field line or of the final CRLF.
    TrailerStart,
    TrailerName,
    TrailerValue,
    /// Saw the CR ending a trailer field line.
    TrailerLf,
    /// Saw the CR of the final CRLF.
    EndLf,
    Done,
    Failed(HttpError),
}

/// See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkedDecoder {
    state: State,
    data_bytes: u64,
    max_data_bytes: u64,
    trailer_bytes: usize,
    max_trailer_bytes: usize,
}

impl ChunkedDecoder {
    /// A decoder for a request body: data limited to
    /// `limits.max_body_bytes`, trailers to `limits.max_head_bytes`.
    pub fn for_request(limits: &Limits) -> Self {
        Self::new(limits.max_body_bytes, limits.max_head_bytes)
    }

    /// A decoder with explicit limits; a response body would use
    /// `u64::MAX` for data.
    pub fn new(max_data_bytes: u64, max_trailer_bytes: usize) -> Self {
        ChunkedDecoder {
            state: State::Size { digits: 0, size: 0 },
            data_bytes: 0,
            max_data_bytes,
            trailer_bytes: 0,
            max_trailer_bytes,
        }
    }

    /// Decodes from `input`, calling `out` with each run of data bytes, and
    /// returns how many bytes of `input` belong to the chunked body. That is
    /// all of `input` until the body ends; once [`is_done`](Self::is_done),
    /// the remaining bytes are the next message and are not consumed.
    pub fn feed(&mut self, input: &[u8], out: &mut impl FnMut(&[u8])) -> Result<usize, HttpError> {
        let mut at = 0;
        while at < input.len() {
            match self.state {
                State::Done => break,
                State::Failed(e) => return Err(e),
                State::Data { remaining } => {
                    let available = input.len() - at;
                    let take = usize::try_from(remaining).map_or(available, |r| r.min(available));
                    out(&input[at..at + take]);
                    at += take;
                    let remaining = remaining - take as u64;
                    self.state = if remaining == 0 {
                        State::DataCr
                    } else {
                        State::Data { remaining }
                    };
                }
                state => {
                    self.state = match self.step(state, input[at]) {
                        Ok(next) => next,
                        Err(e) => {
                            self.state = State::Failed(e);
                            return Err(e);
                        }
                    };
                    at += 1;
                }
            }
        }
        if let State::Failed(e) = self.state {
            return Err(e);
        }
        Ok(at)
    }

    /// One byte outside chunk data.
    fn step(&mut self, state: State, b: u8) -> Result<State, HttpError> {
        let bad = HttpError::BadChunk;
        Ok(match state {
            State::Size { digits, size } => match (b, hex_value(b)) {
                (_, Some(_)) if digits == 16 => return Err(bad),
                (_, Some(v)) => State::Size {
                    digits: digits + 1,
                    size: size << 4 | u64::from(v),
                },
                (b';', None) if digits > 0 => State::Ext { len: 1, size },
                (b'\r', None) if digits > 0 => State::SizeLf { size },
                _ => return Err(bad),
            },
            State::Ext { len, size } => match b {
                b'\r' => State::SizeLf { size },
                _ if len >= MAX_CHUNK_EXT_BYTES => return Err(bad),
                _ if is_field_value_byte(b) => State::Ext { len: len + 1, size },
                _ => return Err(bad),
            },
            State::SizeLf { size } => match b {
                b'\n' if size == 0 => State::TrailerStart,
                b'\n' => {
                    self.data_bytes = self
                        .data_bytes
                        .checked_add(size)
                        .filter(|&total| total <= self.max_data_bytes)
                        .ok_or(HttpError::BodyTooLarge)?;
                    State::Data { remaining: size }
                }
                _ => return Err(bad),
            },
            State::DataCr => match b {
                b'\r' => State::DataLf,
                _ => return Err(bad),
            },
            State::DataLf => match b {
                b'\n' => State::Size { digits: 0, size: 0 },
                _ => return Err(bad),
            },
            State::TrailerStart | State::TrailerName | State::TrailerValue | State::TrailerLf => {
                // The CRLF ending the message is not part of a field.
                let ends_message = state == State::TrailerStart && b == b'\r';
                self.trailer_bytes += usize::from(!ends_message);
                if self.trailer_bytes > self.max_trailer_bytes {
                    return Err(HttpError::TrailersTooLarge);
                }
                match (state, b) {
                    (State::TrailerStart, b'\r') => State::EndLf,
                    (State::TrailerStart | State::TrailerName, _) if is_tchar(b) => {
                        State::TrailerName
                    }
                    (State::TrailerName, b':') => State::TrailerValue,
                    (State::TrailerValue, b'\r') => State::TrailerLf,
                    (State::TrailerValue, _) if is_field_value_byte(b) => State::TrailerValue,
                    (State::TrailerLf, b'\n') => State::TrailerStart,
                    _ => return Err(bad),
                }
            }
            State::EndLf => match b {
                b'\n' => State::Done,
                _ => return Err(bad),
            },
            State::Data { .. } | State::Done | State::Failed(_) => state,
        })
    }

    /// The last chunk and trailer section have been consumed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Data bytes announced so far by chunk-size lines (delivered or about
    /// to be).
    pub fn data_bytes(&self) -> u64 {
        self.data_bytes
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}
