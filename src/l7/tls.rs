//! TLS of a connection: a rustls [`ServerConnection`] (termination, on
//! client connections of https listeners) or [`ClientConnection`]
//! (re-encryption, on upstream connections to a cluster with
//! `[cluster.tls]`), driven sans-I/O between the connection's TCP socket
//! and the session.
//!
//! ```text
//!   smoltcp rx ──read_from──▶ read_tls → process_new_packets ──recv──▶ session
//!   session ──send──▶ pending / writer() (encrypts) ──write_to──▶ write_tls → smoltcp tx
//! ```
//!
//! [`Tls`] owns only the rustls state and a few facts about it; the
//! engine hands it the socket as an [`io::Read`] / [`io::Write`]
//! ([`SocketIo`]) and tells it how much room the socket has. The session
//! never sees it: the engine's `Env` goes through it for whichever side
//! is TLS, and `Cx::tls` tells the session the client's scheme.
//!
//! # Buffers
//!
//! - Received plaintext stays in rustls' own buffer, which
//!   `read_tls` refuses to grow past its limit (`wants_read()` turns
//!   false), so the socket's receive window closes behind it: the peer is
//!   flow-controlled as on a plain connection.
//! - Plaintext is taken from the session only when rustls has nothing left
//!   to write and only as much as, once encrypted, fits the socket's free
//!   send space ([`Tls::plain_room`]). What rustls holds between
//!   encryption and `write_tls` is therefore about one socket's worth
//!   (the room allows for one record header and tag per 16 KiB; a
//!   response written in many pieces may take a few dozen bytes more,
//!   which wait for the next room), and normally nothing (a session
//!   ticket or an alert may wait a round). A close waits for it: the FIN
//!   goes only once rustls has written everything
//!   ([`Tls::drained_for_fin`]), or the response's tail would be cut.
//! - Small plaintext writes of one engine step (a response head, then a
//!   short body) wait in [`Tls`]'s `pending` (at most 2 KiB) and are
//!   encrypted together at the step's end ([`Tls::write_to`]): one record,
//!   one AEAD seal and one 22-byte header and tag per small response
//!   instead of two. [`Tls::push_to`] sends only what is already
//!   encrypted, so a head sent early still joins its body.
//!
//! # Quiet steps
//!
//! A session's step pulls from and flushes both sides whatever woke it
//! (an ACK, the other side's data), and with many connections each
//! one's rustls state is cold by then: looking into it costs cache
//! misses, not instructions. So [`Tls::pull`] reads only when the socket
//! has bytes or its end, and [`Tls::push_to`] asks rustls for output only
//! after a call that can have queued some (`queued`); the handshake's end
//! is kept as `established`. A step with nothing for TLS touches only the
//! few fields of [`Tls`] itself. (Measured in docs/BENCHMARKS.md 7.6.)
//!
//! # Limits
//!
//! A peer's handshake flight may be at most [`MAX_HANDSHAKE_BYTES`]
//! (rustls itself allows 64 KiB per handshake message); more is refused
//! as [`Failure::TooLarge`]. Every failure has a reason with its own
//! counter ([`Failure::counter`]).

use std::io::{self, BufRead, Read, Write};
use std::sync::Arc;

use hashbrown::HashMap;
use rustls::pki_types::ServerName;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, ClientConnection, Connection, Error, HandshakeKind, InvalidMessage,
    PeerIncompatible, ServerConfig, ServerConnection,
};
use smoltcp::socket::tcp;

use crate::config::{LoadedCertificate, LoadedClusterTls, TlsVersion};
use crate::net::counters::Counter;

/// The crypto provider of every TLS configuration Sluice builds:
/// aws-lc-rs, chosen by measurement (`benches/tls_provider.rs`,
/// docs/BENCHMARKS.md section 7): 1.6-2.0x ring's RSA-2048 and about 1.14x
/// its ECDSA P-256 full handshakes on the worker, bulk AES-GCM about even.
pub fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

/// Most ciphertext bytes a client may send before its handshake completes.
pub const MAX_HANDSHAKE_BYTES: usize = 32 * 1024;

/// Largest TLS record plaintext (RFC 8446 §5.1) and an upper bound of the
/// bytes a record adds to it (header 5, explicit nonce 8 for TLS 1.2 GCM,
/// content type 1, tag 16), rounded up.
const RECORD: usize = 16 * 1024;
/// Plaintext writes of one engine step that fit this together are
/// encrypted as one record (a response head and a short body: one seal,
/// one record header and tag, instead of two).
const COALESCE: usize = 2048;
const RECORD_OVERHEAD: usize = 40;

/// Why a TLS connection was given up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Bytes that are not TLS records where a ClientHello was expected.
    NotTls,
    /// A plain HTTP request on the TLS port (answered with a plain 400).
    PlainHttp,
    /// A client that offers only versions older than the listener's
    /// minimum (TLS 1.0/1.1, or 1.2 on a 1.3-only listener).
    OldVersion,
    /// A handshake flight larger than [`MAX_HANDSHAKE_BYTES`].
    TooLarge,
    /// No cipher suite, group, signature scheme or protocol in common.
    Incompatible,
    /// The client sent a fatal alert.
    AlertReceived,
    /// No client certificate on a listener that requires one, or one that
    /// does not verify against its `client_ca`.
    ClientCert,
    /// A server name no certificate answers (or none) on a listener with
    /// `sni_strict`: refused with an `unrecognized_name` alert
    /// (RFC 6066 §3).
    UnknownSni,
    /// Anything else the peer did wrong (bad records, bad MACs, unexpected
    /// messages), during or after the handshake.
    Protocol,
    /// Upstream only: the backend's certificate does not verify (unknown
    /// issuer, wrong name, expired, ...).
    BackendCert,
    /// After the handshake, the peer's TCP stream ended (FIN or RST)
    /// inside a TLS record: the record can never be authenticated, so
    /// whatever the peer meant to say is lost (a truncation, RFC 8446
    /// §6.1 asks for close_notify instead).
    Truncated,
    /// A second TLS 1.2 renegotiation attempt on one connection (the
    /// first gets a `no_renegotiation` warning and the connection goes
    /// on, see [`Tls::take_renegotiations`]).
    Renegotiation,
}

impl Failure {
    pub fn counter(self) -> Counter {
        match self {
            Failure::NotTls => Counter::l7_tls_not_tls,
            Failure::PlainHttp => Counter::l7_tls_plain_http,
            Failure::OldVersion => Counter::l7_tls_old_version,
            Failure::TooLarge => Counter::l7_tls_too_large,
            Failure::Incompatible => Counter::l7_tls_incompatible,
            Failure::AlertReceived => Counter::l7_tls_alerts_received,
            Failure::UnknownSni => Counter::l7_tls_unknown_sni,
            Failure::ClientCert => Counter::l7_tls_client_cert_refused,
            Failure::Protocol => Counter::l7_tls_protocol_errors,
            Failure::BackendCert => Counter::l7_upstream_tls_verify_failed,
            Failure::Truncated => Counter::l7_tls_truncated,
            Failure::Renegotiation => Counter::l7_tls_renegotiation_refused,
        }
    }

    /// The counter of a failure of an upstream connection: a certificate
    /// that does not verify, or anything else.
    pub fn upstream_counter(self) -> Counter {
        match self {
            Failure::BackendCert => Counter::l7_upstream_tls_verify_failed,
            _ => Counter::l7_upstream_tls_failed,
        }
    }

    fn of(e: &Error) -> Failure {
        use InvalidMessage as M;
        use PeerIncompatible as P;
        match e {
            Error::InvalidMessage(M::HandshakePayloadTooLarge | M::MessageTooLarge) => {
                Failure::TooLarge
            }
            Error::InvalidMessage(M::InvalidContentType | M::UnknownProtocolVersion) => {
                Failure::NotTls
            }
            Error::PeerIncompatible(
                P::Tls12NotOffered
                | P::Tls12NotOfferedOrEnabled
                | P::SupportedVersionsExtensionRequired,
            ) => Failure::OldVersion,
            Error::PeerIncompatible(_) => Failure::Incompatible,
            Error::NoApplicationProtocol => Failure::Incompatible,
            Error::AlertReceived(_) => Failure::AlertReceived,
            Error::PeerMisbehaved(rustls::PeerMisbehaved::TooManyRenegotiationRequests) => {
                Failure::Renegotiation
            }
            Error::NoCertificatesPresented | Error::InvalidCertificate(_) => Failure::ClientCert,
            // What rustls says when the resolver has no certificate: only
            // `ByName` in strict mode returns none.
            Error::General(m) if m == NO_CERTIFICATE => Failure::UnknownSni,
            _ => Failure::Protocol,
        }
    }
}

/// rustls' error when the certificate resolver returns none
/// (`server/hs.rs`); a unit test notices if it changes.
const NO_CERTIFICATE: &str = "no server certificate chain resolved";

/// A fatal `unrecognized_name` alert (RFC 6066 §3, RFC 8446 §6.2) as a
/// plaintext record: it goes before any ServerHello, so it is never
/// encrypted. rustls would send `access_denied` for a resolver without a
/// certificate; Sluice sends this one instead.
const UNRECOGNIZED_NAME_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 112];

/// A fatal `protocol_version` alert as a plaintext record, for a client
/// that offers only versions below the listener's minimum (RFC 8446
/// §4.2.1, RFC 5246 Appendix E.1); rustls would send `handshake_failure`.
/// Bytes 1 and 2 (the record version) become the version the client's
/// hello asks for (0x0301 for TLS 1.0), so that an old client reads it.
const PROTOCOL_VERSION_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 70];

/// The answer to a plain HTTP request on a TLS port (as nginx does; the
/// client sees a reason instead of a decode_error alert it cannot read).
pub const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\
Content-Length: 40\r\nConnection: close\r\n\r\nThis port speaks HTTPS: use https:// .\r\n";

/// The TLS state of one connection, either side.
pub struct Tls {
    conn: Connection,
    /// The first bytes the client sent, to tell plain HTTP from garbage.
    head: [u8; 16],
    head_len: usize,
    /// Ciphertext bytes fed while handshaking.
    handshake_bytes: usize,
    /// Plaintext rustls holds for the session.
    plain: usize,
    /// Plaintext to send, not encrypted yet: small writes wait here until
    /// [`Tls::write_to`] (the end of the engine's step) or a write that
    /// does not fit, and go out as one record.
    pending: Vec<u8>,
    /// The peer's close_notify arrived, or its TCP FIN.
    ended: bool,
    failed: Option<Failure>,
    /// Sluice's own alert of [`Failure::UnknownSni`] or
    /// [`Failure::OldVersion`] is written (rustls' own queued alert never
    /// is).
    own_alert_sent: bool,
    /// Counted in the worker's handshakes in progress (client
    /// connections); handshake not counted yet (upstream connections).
    pub(super) in_progress: bool,
    /// `failed` was handed out by [`Tls::take_failure`].
    reported: bool,
    /// Where the peer's bytes are in the TLS record layer, and its TLS 1.2
    /// renegotiation attempts not yet taken.
    frames: Frames,
    /// rustls may hold bytes to write (handshake messages, records,
    /// alerts): set by every call that can queue some, cleared by
    /// [`Tls::push_to`] once rustls has written all it held. While it is
    /// clear, nothing that only writes or checks for output looks into
    /// the rustls state (see "Quiet steps" in the module doc).
    queued: bool,
    /// The handshake is done (rustls says so after processing the peer's
    /// last flight; it never goes back).
    established: bool,
    /// The connection is to end (close_notify queued) but rustls still
    /// held ciphertext the socket had no room for: the FIN waits until it
    /// is written ([`Tls::drained_for_fin`]), or the tail would be cut.
    fin_after_drain: bool,
    /// Upstream only: the digest of the cluster's TLS settings
    /// ([`settings_digest`]) and the backend's name this connection was
    /// made with, so that a pooled connection is reused only under the
    /// settings it was verified with (a reload may change them).
    made_with: Option<Box<([u8; 32], ServerName<'static>)>>,
}

impl Tls {
    /// The server side of a client connection.
    pub fn new(config: &Arc<ServerConfig>) -> Option<Tls> {
        Some(Tls::of(ServerConnection::new(config.clone()).ok()?.into()))
    }

    /// The client side of an upstream connection to a backend known as
    /// `name` (SNI, unless an address, and the name verified), under the
    /// cluster settings whose [`settings_digest`] is `settings`.
    pub fn new_client(
        config: &Arc<ClientConfig>,
        name: ServerName<'static>,
        settings: [u8; 32],
    ) -> Option<Tls> {
        let conn = ClientConnection::new(config.clone(), name.clone()).ok()?;
        let mut t = Tls::of(conn.into());
        t.made_with = Some(Box::new((settings, name)));
        Some(t)
    }

    /// An upstream connection made under settings `settings` for a backend
    /// known as `name`.
    pub fn made_with(&self, settings: &[u8; 32], name: &ServerName<'_>) -> bool {
        self.made_with
            .as_deref()
            .is_some_and(|(s, n)| s == settings && n == name)
    }

    fn of(mut conn: Connection) -> Tls {
        // Sluice bounds what rustls holds itself (see the module doc).
        conn.set_buffer_limit(None);
        Tls {
            conn,
            head: [0; 16],
            head_len: 0,
            handshake_bytes: 0,
            plain: 0,
            pending: Vec::new(),
            ended: false,
            failed: None,
            own_alert_sent: false,
            in_progress: false,
            reported: false,
            frames: Frames::default(),
            fin_after_drain: false,
            // A client's ClientHello is queued from the start.
            queued: true,
            established: false,
            made_with: None,
        }
    }

    fn is_client(&self) -> bool {
        matches!(self.conn, Connection::Client(_))
    }

    pub fn handshaking(&self) -> bool {
        !self.established
    }

    pub fn failed(&self) -> Option<Failure> {
        self.failed
    }

    /// The handshake is done, nothing failed, and the peer's bytes end
    /// inside a TLS record: if its stream ends now (a reset the socket
    /// reports before the session reads on), that is a
    /// [`Failure::Truncated`].
    pub fn cut_mid_record(&self) -> bool {
        self.established && self.failed.is_none() && self.frames.mid_record()
    }

    /// TLS 1.2 renegotiation attempts the peer made since the last call:
    /// rustls answers the first with a `no_renegotiation` warning alert
    /// and goes on (RFC 5246 §7.2.2), and fails a second one
    /// ([`Failure::Renegotiation`]).
    pub fn take_renegotiations(&mut self) -> u32 {
        std::mem::take(&mut self.frames.renegotiations)
    }

    /// The failure, the first time it is asked for (to count it once
    /// whoever met it first).
    pub fn take_failure(&mut self) -> Option<Failure> {
        if self.reported {
            return None;
        }
        self.reported = self.failed.is_some();
        self.failed
    }

    /// Nothing more will come from the peer, and the session has read all
    /// it sent.
    pub fn at_eof(&self) -> bool {
        self.ended && self.plain == 0
    }

    pub fn has_plaintext(&self) -> bool {
        self.plain > 0
    }

    pub fn resumed(&self) -> bool {
        self.conn.handshake_kind() == Some(HandshakeKind::Resumed)
    }

    /// The server name the client asked for (SNI), lowercase.
    pub fn server_name(&self) -> Option<&str> {
        match &self.conn {
            Connection::Server(c) => c.server_name(),
            Connection::Client(_) => None,
        }
    }

    pub fn alpn(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// What routing and the backend may learn of this connection, once the
    /// handshake is done.
    pub fn facts(&self) -> TlsFacts {
        use rustls::ProtocolVersion as V;
        TlsFacts {
            sni: self.server_name().map(Box::from),
            version: match self.conn.protocol_version() {
                Some(V::TLSv1_3) => "TLSv1.3",
                Some(V::TLSv1_2) => "TLSv1.2",
                _ => "",
            },
            cipher: self
                .conn
                .negotiated_cipher_suite()
                .and_then(|s| s.suite().as_str())
                .unwrap_or(""),
            client_subject: self
                .conn
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| crate::l7::x509::subject_of(c)),
        }
    }

    /// [`Tls::read_from`] a socket, reading only while it has something
    /// to give (bytes, or the end of its stream): a step with nothing new
    /// from this side (an ACK, the other side's data) does not look into
    /// the rustls state, and a read that would be `WouldBlock` is not
    /// made. The same as `read_from(&mut SocketIo(s))` otherwise; an
    /// error is reported as there, by [`Tls::take_failure`].
    pub fn pull(&mut self, s: &mut tcp::Socket<'static>) {
        fn more(io: &SocketIo<'_>) -> bool {
            io.0.can_recv() || !io.0.may_recv()
        }
        let mut io = SocketIo(s);
        if more(&io) {
            let _ = self.read_while(&mut io, more);
        }
    }

    /// Take ciphertext from `rx` (until it would block, or rustls holds as
    /// much plaintext as it will) and process it. An error is final: the
    /// alert to send waits in rustls for [`Tls::write_to`].
    pub fn read_from(&mut self, rx: &mut impl Read) -> Result<(), Failure> {
        self.read_while(rx, |_| true)
    }

    /// [`Tls::read_from`], reading only while `more(rx)`.
    fn read_while<R: Read>(&mut self, rx: &mut R, more: fn(&R) -> bool) -> Result<(), Failure> {
        if let Some(f) = self.failed {
            return Err(f);
        }
        while self.conn.wants_read() && more(rx) {
            // A handshake record from a TLS 1.2 peer after the handshake
            // can only be a renegotiation: a ClientHello from a client, a
            // HelloRequest from a server (RFC 5246 §7.4.1). A record read
            // in the same chunk as the peer's last flight is not seen as
            // one (rustls refuses it all the same, uncounted).
            let tls12_done = self.established
                && self.conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_2);
            let mut sniff = Sniff {
                inner: &mut *rx,
                head: &mut self.head,
                len: &mut self.head_len,
                frames: &mut self.frames,
                tls12_done,
            };
            match self.conn.read_tls(&mut sniff) {
                Ok(0) => {
                    self.ended = true;
                    if self.established && self.frames.mid_record() {
                        return Err(self.fail(Failure::Truncated));
                    }
                    break;
                }
                Ok(n) => {
                    if !self.established {
                        self.handshake_bytes += n;
                        if self.handshake_bytes > MAX_HANDSHAKE_BYTES {
                            return Err(self.fail(Failure::TooLarge));
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return Err(self.fail(Failure::Protocol)),
            }
            // Processing may queue handshake messages, tickets, alerts.
            self.queued = true;
            let result = self.conn.process_new_packets();
            self.established = !self.conn.is_handshaking();
            match result {
                Ok(io) => {
                    self.plain = io.plaintext_bytes_to_read();
                    if io.peer_has_closed() {
                        self.ended = true;
                    }
                }
                Err(e) => {
                    let f = match Failure::of(&e) {
                        Failure::ClientCert if self.is_client() => Failure::BackendCert,
                        f if self.is_client() => f,
                        _ if self.looks_like_http() => Failure::PlainHttp,
                        // rustls may trip over a missing TLS 1.2 extension
                        // before it looks at the version.
                        Failure::Incompatible if self.offers_before_tls12() => Failure::OldVersion,
                        f => f,
                    };
                    if f == Failure::Renegotiation {
                        // Counted as the failure, not as an attempt too.
                        self.frames.renegotiations = self.frames.renegotiations.saturating_sub(1);
                    }
                    return Err(self.fail(f));
                }
            }
        }
        Ok(())
    }

    fn fail(&mut self, f: Failure) -> Failure {
        self.failed = Some(f);
        self.plain = 0;
        f
    }

    /// A ClientHello whose legacy_version (RFC 8446 §4.1.2) is below
    /// TLS 1.2 (0x0303): record header 5 bytes, handshake type and length
    /// 4, then the version.
    fn offers_before_tls12(&self) -> bool {
        let h = &self.head[..self.head_len];
        h.len() >= 11 && h[0] == 0x16 && h[5] == 0x01 && u16::from_be_bytes([h[9], h[10]]) < 0x0303
    }

    /// An HTTP method token and a space where a TLS record should start.
    fn looks_like_http(&self) -> bool {
        let h = &self.head[..self.head_len];
        match h.iter().position(|&b| b == b' ') {
            Some(sp) => sp >= 3 && h[..sp].iter().all(u8::is_ascii_uppercase),
            None => false,
        }
    }

    /// Encrypt the pending plaintext, then write what rustls has to send
    /// (handshake, records, alerts) to `tx` until it would block; returns
    /// the bytes written.
    pub fn write_to(&mut self, tx: &mut impl Write) -> usize {
        self.seal();
        self.push_to(tx)
    }

    /// Write what rustls has already encrypted (and its handshake
    /// messages and alerts) to `tx`, leaving pending plaintext to join
    /// the next write in one record.
    pub fn push_to(&mut self, tx: &mut impl Write) -> usize {
        // Our alert instead of rustls' access_denied or handshake_failure,
        // once: both go before any ServerHello.
        let own = match self.failed {
            Some(Failure::UnknownSni) => Some(UNRECOGNIZED_NAME_ALERT),
            Some(Failure::OldVersion) if !self.is_client() => {
                let mut a = PROTOCOL_VERSION_ALERT;
                // The hello's legacy_version (see `offers_before_tls12`).
                let h = &self.head[..self.head_len];
                if h.len() >= 11 && h[5] == 0x01 && h[9] == 3 && (1..=3).contains(&h[10]) {
                    a[2] = h[10];
                }
                Some(a)
            }
            _ => None,
        };
        if let Some(alert) = own {
            if std::mem::replace(&mut self.own_alert_sent, true) {
                return 0;
            }
            return tx.write(&alert).unwrap_or(0);
        }
        if !self.queued {
            return 0;
        }
        let mut total = 0;
        while self.conn.wants_write() {
            match self.conn.write_tls(tx) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
        self.queued = self.conn.wants_write();
        total
    }

    /// How many plaintext bytes [`Tls::send`] takes now, given `cipher_room`
    /// bytes free in the socket: none while rustls still has ciphertext to
    /// write or the handshake is not done.
    pub fn plain_room(&self, cipher_room: usize) -> usize {
        if self.rustls_wants_write() || !self.established || self.failed.is_some() {
            return 0;
        }
        cipher_room
            .saturating_sub((cipher_room / RECORD + 1) * RECORD_OVERHEAD)
            .saturating_sub(self.pending.len())
    }

    /// Take at most [`Tls::plain_room`]`(cipher_room)` bytes of `bytes`
    /// to encrypt ([`Tls::write_plain`]); returns how many were taken.
    pub fn send(&mut self, bytes: &[u8], cipher_room: usize) -> usize {
        let n = bytes.len().min(self.plain_room(cipher_room));
        if n == 0 {
            return 0;
        }
        self.write_plain(&bytes[..n]);
        n
    }

    /// Take all of `bytes` to encrypt: the caller has checked
    /// [`Tls::plain_room`].
    /// Small writes wait (see `pending`); a write that does not fit
    /// with them goes out in the same record or records.
    pub fn write_plain(&mut self, bytes: &[u8]) {
        if self.pending.len() + bytes.len() <= COALESCE {
            if self.pending.capacity() == 0 {
                // Once, and never more: at most COALESCE per connection.
                self.pending.reserve_exact(COALESCE);
            }
            self.pending.extend_from_slice(bytes);
            return;
        }
        self.queued = true;
        if self.pending.is_empty() {
            let _ = self.conn.writer().write_all(bytes);
            return;
        }
        let both = [io::IoSlice::new(&self.pending), io::IoSlice::new(bytes)];
        // rustls takes all of it: its buffer limit is off (`Tls::of`),
        // and Sluice writes only after the handshake.
        let n = self.conn.writer().write_vectored(&both).unwrap_or(0);
        let total = self.pending.len() + bytes.len();
        if n < total {
            let rest = n.saturating_sub(self.pending.len());
            let mut w = self.conn.writer();
            if n < self.pending.len() {
                let _ = w.write_all(&self.pending[n..]);
            }
            let _ = w.write_all(&bytes[rest..]);
        }
        self.pending.clear();
    }

    /// Encrypt the pending plaintext (none after a failure: nothing
    /// follows a fatal alert).
    fn seal(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        if self.failed.is_none() {
            self.queued = true;
            let _ = self.conn.writer().write_all(&self.pending);
        }
        self.pending.clear();
    }

    /// Plaintext written and not encrypted yet.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Offer received plaintext to `f`, which returns how many bytes it
    /// took (fewer than offered: stop); returns the total taken.
    pub fn recv(&mut self, mut f: impl FnMut(&[u8]) -> usize) -> usize {
        // `plain` is what rustls holds: none, nothing to look at.
        if self.failed.is_some() || self.plain == 0 {
            return 0;
        }
        let mut total = 0;
        let mut r = self.conn.reader();
        loop {
            let buf = match r.fill_buf() {
                Ok(b) if !b.is_empty() => b,
                _ => break,
            };
            let len = buf.len();
            let n = f(buf).min(len);
            r.consume(n);
            total += n;
            if n < len {
                break;
            }
        }
        self.plain = self.plain.saturating_sub(total);
        total
    }

    /// Ciphertext (or an alert) is waiting in rustls for room in the
    /// socket.
    pub fn wants_write(&self) -> bool {
        self.rustls_wants_write() || !self.pending.is_empty()
    }

    /// rustls holds bytes to write (looked at only when it may).
    fn rustls_wants_write(&self) -> bool {
        self.queued && self.conn.wants_write()
    }

    /// After [`Tls::close_notify`] and a write: whether the FIN may go now
    /// (rustls has written everything); if not, remembers that the FIN
    /// is owed, and a later call (after more writes) says when.
    pub fn drained_for_fin(&mut self) -> bool {
        self.fin_after_drain = self.wants_write() && self.failed.is_none();
        !self.fin_after_drain
    }

    /// A FIN is owed once rustls has written what it holds.
    pub fn fin_owed(&self) -> bool {
        self.fin_after_drain
    }

    /// Queue a close_notify alert (RFC 8446 §6.1).
    pub fn close_notify(&mut self) {
        self.seal();
        self.queued = true;
        self.conn.send_close_notify();
    }
}

/// The TLS facts of a client connection that routing (`sni`) and the
/// optional TLS headers to backends use. Made once per connection when its
/// handshake completes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFacts {
    /// The server name the client sent (SNI), lowercase.
    pub sni: Option<Box<str>>,
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: &'static str,
    /// The cipher suite as rustls names it (`TLS13_AES_128_GCM_SHA256`,
    /// `TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256`).
    pub cipher: &'static str,
    /// The subject of the client certificate the listener verified
    /// (`client_auth`), as an RFC 4514 string: `CN=client,O=Example,C=FR`
    /// (the certificate's last RDN first).
    pub client_subject: Option<Box<str>>,
}

/// Copies the first bytes read into `head`, and follows the record
/// framing ([`Frames`]).
struct Sniff<'a, R: Read> {
    inner: &'a mut R,
    head: &'a mut [u8; 16],
    len: &'a mut usize,
    frames: &'a mut Frames,
    /// A TLS 1.2 handshake is done: handshake records are renegotiations.
    tls12_done: bool,
}

impl<R: Read> Read for Sniff<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let take = n.min(self.head.len() - *self.len);
        self.head[*self.len..*self.len + take].copy_from_slice(&buf[..take]);
        *self.len += take;
        self.frames.feed(&buf[..n], self.tls12_done);
        Ok(n)
    }
}

/// The TLS record layer (RFC 8446 §5.1) of what a peer sent, followed
/// from the record headers only (5 bytes each, then `length` bytes of
/// body): whether the stream stands between two records, and how many
/// handshake records arrived after a TLS 1.2 handshake. It costs a few
/// instructions per record, and never looks into a record.
#[derive(Debug, Default)]
struct Frames {
    header: [u8; 5],
    /// Bytes of `header` read so far.
    have: usize,
    /// Bytes of the current record's body still to come.
    left: usize,
    /// Handshake records seen while `tls12_done`.
    renegotiations: u32,
}

impl Frames {
    const HANDSHAKE: u8 = 22;

    fn feed(&mut self, mut b: &[u8], tls12_done: bool) {
        while !b.is_empty() {
            if self.left > 0 {
                let n = self.left.min(b.len());
                self.left -= n;
                b = &b[n..];
                continue;
            }
            let n = (5 - self.have).min(b.len());
            self.header[self.have..self.have + n].copy_from_slice(&b[..n]);
            self.have += n;
            b = &b[n..];
            if self.have == 5 {
                self.have = 0;
                self.left = u16::from_be_bytes([self.header[3], self.header[4]]) as usize;
                if tls12_done && self.header[0] == Self::HANDSHAKE {
                    self.renegotiations += 1;
                }
            }
        }
    }

    /// Part of a record (header or body) has arrived, not all of it.
    fn mid_record(&self) -> bool {
        self.have > 0 || self.left > 0
    }
}

/// A smoltcp socket as the byte stream rustls reads from and writes to:
/// empty is `WouldBlock`, the peer's FIN (all read) is end of file.
pub struct SocketIo<'a>(pub &'a mut tcp::Socket<'static>);

impl Read for SocketIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let s = &mut *self.0;
        if s.can_recv() {
            return s
                .recv_slice(buf)
                .map_err(|_| io::ErrorKind::ConnectionReset.into());
        }
        if !s.may_recv() {
            return Ok(0);
        }
        Err(io::ErrorKind::WouldBlock.into())
    }
}

impl Write for SocketIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let s = &mut *self.0;
        if !s.may_send() {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        match s.send_slice(buf) {
            Ok(0) => Err(io::ErrorKind::WouldBlock.into()),
            Ok(n) => Ok(n),
            Err(_) => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Free send space of a socket.
pub fn send_room(s: &tcp::Socket<'_>) -> usize {
    if !s.may_send() {
        return 0;
    }
    s.send_capacity() - s.send_queue()
}

// ------------------------------------------------------------ configuration

/// Certificates by server name: exact names, then `*.parent` for a name
/// one label under `parent`, then the default (RFC 6125 §6.4.3: a
/// wildcard stands for exactly one label).
#[derive(Debug)]
struct ByName {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
    /// `sni_strict`: no default; a name no certificate has (or none) gets
    /// no certificate, and the handshake ends in `unrecognized_name`.
    strict: bool,
}

impl ByName {
    fn find(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let fallback = (!self.strict).then(|| self.default.clone());
        let Some(name) = name else {
            return fallback;
        };
        let name = name.to_ascii_lowercase();
        if let Some(k) = self.exact.get(&name) {
            return Some(k.clone());
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(k) = self.wildcard.get(parent) {
                return Some(k.clone());
            }
        }
        fallback
    }
}

impl ResolvesServerCert for ByName {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.find(hello.server_name())
    }
}

/// How a listener's TLS is set up, besides its certificates.
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    pub min: TlsVersion,
    /// Refuse clients whose server name no certificate has (or none).
    pub sni_strict: bool,
    /// Client certificates (`client_auth`): the CAs they must chain to,
    /// and whether a client without one is refused (`require`) or served
    /// (`request`).
    pub client_roots: Option<(Arc<rustls::RootCertStore>, bool)>,
    /// The session ticket key source to use; `None`: a new rotating one.
    /// A reload passes the running one on so that tickets stay valid.
    pub ticketer: Option<Arc<dyn rustls::server::ProducesTickets>>,
}

/// The session ticket key source of listener `name`, kept for the life of
/// the process: a reload that compiles the listener again gets the same
/// one, so tickets issued before the reload stay valid (the key source
/// has not changed; a key file, when there is one, is part of the key).
/// Control plane only: the workers see the ticketer inside the
/// `ServerConfig`.
pub fn listener_ticketer(name: &str) -> Result<Arc<dyn rustls::server::ProducesTickets>, String> {
    use std::sync::{Mutex, OnceLock};
    type Map = std::collections::HashMap<String, Arc<dyn rustls::server::ProducesTickets>>;
    static TICKETERS: OnceLock<Mutex<Map>> = OnceLock::new();
    let mut map = TICKETERS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(t) = map.get(name) {
        return Ok(t.clone());
    }
    let t = rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| e.to_string())?;
    map.insert(name.to_string(), t.clone());
    Ok(t)
}

/// Session tickets sealed with keys an operator gives every box (a
/// `ticket_key_file`), so that any of them resumes a session another
/// started. AES-256-GCM with a random 96-bit nonce per ticket; a ticket
/// is `key id (4) ‖ nonce (12) ‖ sealed state ‖ tag (16)`, the key id
/// being the first bytes of the key's SHA-256, so that a ticket sealed
/// with an older key of the file is still opened after a rotation (the
/// operator puts the new key first and keeps the old one for a ticket
/// lifetime). Random nonces are safe up to about 2^32 tickets per key:
/// rotate keys well before that.
pub struct FileTicketer {
    keys: Vec<([u8; 4], ring::aead::LessSafeKey)>,
    rng: ring::rand::SystemRandom,
}

impl std::fmt::Debug for FileTicketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileTicketer({} keys)", self.keys.len())
    }
}

/// How long a ticket from a key file is valid, seconds (as rustls' own
/// rotating ticketer: 6 hours).
const TICKET_LIFETIME: u32 = 6 * 3600;

impl FileTicketer {
    pub fn new(keys: &[[u8; 32]]) -> FileTicketer {
        use ring::aead::{LessSafeKey, UnboundKey, AES_256_GCM};
        let keys = keys
            .iter()
            .map(|k| {
                let digest = ring::digest::digest(&ring::digest::SHA256, k);
                let mut id = [0u8; 4];
                id.copy_from_slice(&digest.as_ref()[..4]);
                let key = UnboundKey::new(&AES_256_GCM, k).expect("32-byte AES-256 key");
                (id, LessSafeKey::new(key))
            })
            .collect();
        FileTicketer {
            keys,
            rng: ring::rand::SystemRandom::new(),
        }
    }
}

impl rustls::server::ProducesTickets for FileTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        TICKET_LIFETIME
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        use ring::aead::{Aad, Nonce};
        use ring::rand::SecureRandom;
        let (id, key) = self.keys.first()?;
        let mut nonce = [0u8; 12];
        self.rng.fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(4 + 12 + plain.len() + 16);
        out.extend_from_slice(id);
        out.extend_from_slice(&nonce);
        let mut sealed = plain.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(id),
            &mut sealed,
        )
        .ok()?;
        out.extend_from_slice(&sealed);
        Some(out)
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        use ring::aead::{Aad, Nonce};
        if ticket.len() < 4 + 12 + 16 {
            return None;
        }
        let (id, rest) = ticket.split_at(4);
        let (nonce, sealed) = rest.split_at(12);
        let (kid, key) = self.keys.iter().find(|(k, _)| k == id)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = sealed.to_vec();
        let plain = key.open_in_place(nonce, Aad::from(kid), &mut buf).ok()?;
        Some(plain.to_vec())
    }
}

/// The rustls configuration of a listener: its certificates (`default` is
/// the index of the one for clients without or with an unknown SNI),
/// the versions from `min` up, ALPN `http/1.1`, the ring provider, and
/// stateless session tickets whose key every worker shares (the config is
/// shared) and which rotates every 6 hours.
pub fn server_config(
    certs: &[LoadedCertificate],
    default: usize,
    opts: &ServerOptions,
) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(crate::l7::tls::provider());
    let mut exact = HashMap::new();
    let mut wildcard = HashMap::new();
    let mut keys = Vec::new();
    for c in certs {
        let key = Arc::new(
            CertifiedKey::from_der(c.chain.clone(), c.key.clone_key(), &provider)
                .map_err(|e| e.to_string())?,
        );
        for n in &c.names {
            match n.strip_prefix("*.") {
                Some(parent) => wildcard.insert(parent.to_string(), key.clone()),
                None => exact.insert(n.clone(), key.clone()),
            };
        }
        keys.push(key);
    }
    let default = keys
        .get(default)
        .cloned()
        .ok_or_else(|| "no certificate".to_string())?;
    let versions: &[&'static rustls::SupportedProtocolVersion] = match opts.min {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| e.to_string())?;
    let builder = match &opts.client_roots {
        None => builder.with_no_client_auth(),
        Some((roots, required)) => {
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                roots.clone(),
                provider.clone(),
            );
            let v = if *required {
                v
            } else {
                v.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(v.build().map_err(|e| e.to_string())?)
        }
    };
    let mut cfg = builder.with_cert_resolver(Arc::new(ByName {
        exact,
        wildcard,
        default,
        strict: opts.sni_strict,
    }));
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg.ticketer = match &opts.ticketer {
        Some(t) => t.clone(),
        None => rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| e.to_string())?,
    };
    Ok(Arc::new(cfg))
}

/// The rustls configuration of a cluster's upstream connections
/// (`[cluster.tls]`): the backends' certificates verified against the
/// cluster's CA roots, TLS 1.2 and 1.3, ALPN `http/1.1`, the client
/// certificate when there is one, and rustls' default in-memory session
/// cache (256 sessions), shared by all workers through the config, so a
/// new connection to a backend usually resumes (the cache takes a lock
/// once per handshake, not per record).
pub fn client_config(tls: &LoadedClusterTls) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(crate::l7::tls::provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(tls.roots.clone());
    let mut cfg = match &tls.client_cert {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => builder
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(|e| e.to_string())?,
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The client configuration of `type = "https"` health checks with
/// `verify = false`: as [`client_config`] without a client certificate,
/// but any server certificate is taken. The handshake signatures are still
/// checked against the certificate's key (a check proves that the backend
/// holds the key of the certificate it shows, not who issued it).
pub fn client_config_unverified() -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(crate::l7::tls::provider());
    let verifier = Arc::new(AnyServerCert(provider.clone()));
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A server certificate verifier that takes any certificate and name
/// (see [`client_config_unverified`]).
#[derive(Debug)]
struct AnyServerCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// SHA-256 of everything in a `[cluster.tls]` that decides how a backend
/// is verified and what it is shown: the CA roots and the client
/// certificate chain and key. Two compiles of the same files give the
/// same digest, so a reload that changes nothing keeps the pool.
pub fn settings_digest(tls: &LoadedClusterTls) -> [u8; 32] {
    let mut h = ring::digest::Context::new(&ring::digest::SHA256);
    // Length-prefixed, so that no two lists of items hash alike.
    let mut item = |b: &[u8]| {
        h.update(&(b.len() as u64).to_be_bytes());
        h.update(b);
    };
    item(b"roots");
    for r in &tls.roots.roots {
        item(&r.subject);
        item(&r.subject_public_key_info);
        item(r.name_constraints.as_deref().unwrap_or(b"-"));
    }
    item(b"client");
    if let Some((chain, key)) = &tls.client_cert {
        for c in chain {
            item(c);
        }
        item(b"key");
        item(key.secret_der());
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(h.finish().as_ref());
    out
}

#[cfg(test)]
pub(crate) mod tests;
