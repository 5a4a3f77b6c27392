//! Active health checks of backends, for L7 listeners and L4 services.
//!
//! One worker (worker 0) probes: every `interval_ms` it opens a TCP
//! connection to each checked backend through its own userspace stack (the
//! data ports belong to DPDK, so the kernel usually has no route to the
//! backends). An HTTP check sends `GET <path>` with `Connection: close` and
//! reads the status line: a status in the expected range within
//! `timeout_ms` is a success, anything else (refused, reset, timeout, other
//! status) a failure. A TCP check succeeds when the connection is
//! accepted. In a cluster with `[cluster.tls]` both go over TLS with the
//! cluster's settings, so that a backend its requests could not verify is
//! down: an HTTP check is HTTP over TLS, a TCP check succeeds when the
//! handshake is done. `rise` successes in a row bring a backend up, `fall` failures
//! take it down. The verdict is published in [`HealthState`]: L7 workers
//! read it when they pick a backend for a request; for L4 services the
//! control thread watches [`HealthState::generation`] and publishes a plane
//! whose Maglev tables leave the down backends out (`control::compile`).
//! Backends start up, so that a restart does not turn away traffic while
//! the first probes run; connection failures are retried on another
//! backend meanwhile.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use crate::net::services::MAX_BACKENDS;

const UP: u8 = 0;
const DOWN: u8 = 1;

/// Health of every backend id, shared by all workers and the admin thread.
/// Written by the probing worker only.
pub struct HealthState {
    state: Vec<AtomicU8>,
    /// Checks passed and failed, by backend id.
    passed: Vec<AtomicU64>,
    failed: Vec<AtomicU64>,
    /// Bumped after every change of a backend's state.
    generation: AtomicU64,
}

impl Default for HealthState {
    fn default() -> Self {
        HealthState {
            state: (0..MAX_BACKENDS).map(|_| AtomicU8::new(UP)).collect(),
            passed: (0..MAX_BACKENDS).map(|_| AtomicU64::new(0)).collect(),
            failed: (0..MAX_BACKENDS).map(|_| AtomicU64::new(0)).collect(),
            generation: AtomicU64::new(0),
        }
    }
}

impl HealthState {
    #[inline]
    pub fn is_up(&self, id: u32) -> bool {
        self.state
            .get(id as usize)
            .is_none_or(|s| s.load(Ordering::Relaxed) == UP)
    }

    pub fn set(&self, id: u32, up: bool) {
        if let Some(s) = self.state.get(id as usize) {
            let new = if up { UP } else { DOWN };
            if s.swap(new, Ordering::Relaxed) != new {
                self.generation.fetch_add(1, Ordering::Release);
            }
        }
    }

    /// Changes so far: the control thread republishes the plane when this
    /// moves.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Count one check result of `id` (single writer: the probing worker).
    pub fn count(&self, id: u32, ok: bool) {
        let v = if ok { &self.passed } else { &self.failed };
        if let Some(c) = v.get(id as usize) {
            c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
    }

    /// (passed, failed) checks of `id`.
    pub fn checks(&self, id: u32) -> (u64, u64) {
        let get = |v: &Vec<AtomicU64>| v.get(id as usize).map_or(0, |c| c.load(Ordering::Relaxed));
        (get(&self.passed), get(&self.failed))
    }
}

/// Probe state of one backend.
#[derive(Clone, Debug, Default)]
pub struct Probe {
    /// When the next probe starts (ns).
    pub next_ns: u64,
    /// The probe connection in flight, if any.
    pub conn: Option<u32>,
    pub started_ns: u64,
    pub sent: bool,
    pub buf: Vec<u8>,
    pub successes: u32,
    pub failures: u32,
}

/// The status code of an HTTP/1.x status line at the start of `buf`, once
/// the line is complete. `Some(Err(()))`: not a status line.
pub fn status_of(buf: &[u8]) -> Option<Result<u16, ()>> {
    let end = buf.windows(2).position(|w| w == b"\r\n")?;
    let line = &buf[..end];
    if line.len() < 12 || !line.starts_with(b"HTTP/1.") || line[8] != b' ' {
        return Some(Err(()));
    }
    let code = &line[9..12];
    if !code.iter().all(u8::is_ascii_digit) {
        return Some(Err(()));
    }
    Some(Ok(code
        .iter()
        .fold(0u16, |a, d| a * 10 + (d - b'0') as u16)))
}

/// How much of a probe's answer is read to find its status line.
pub const STATUS_LINE_MAX: usize = 256;

/// The verdict on a probe from what it has read so far (`buf`, at most
/// [`STATUS_LINE_MAX`] bytes) and whether its connection is still opening
/// or open: `Some(true)` for a status within `expect`, `Some(false)` for
/// anything else that is final (another status, not HTTP, no status line
/// in [`STATUS_LINE_MAX`] bytes, the connection ended first), `None` to
/// wait for more.
pub fn verdict(buf: &[u8], expect: (u16, u16), open: bool) -> Option<bool> {
    match status_of(buf) {
        Some(Ok(code)) => Some(code >= expect.0 && code <= expect.1),
        Some(Err(())) => Some(false),
        None if buf.len() >= STATUS_LINE_MAX => Some(false),
        None if !open => Some(false),
        None => None,
    }
}

/// The verdict on a TCP check: passed once the connection is established,
/// failed once it is closed (refused or reset) without having been, `None`
/// while it is still opening. The timeout is the caller's.
pub fn verdict_tcp(established: bool, open: bool) -> Option<bool> {
    match (established, open) {
        (true, _) => Some(true),
        (false, false) => Some(false),
        (false, true) => None,
    }
}

/// Apply one probe result; returns `Some(new state)` when the backend
/// changes state.
pub fn record(p: &mut Probe, ok: bool, was_up: bool, rise: u32, fall: u32) -> Option<bool> {
    if ok {
        p.successes = p.successes.saturating_add(1);
        p.failures = 0;
        (!was_up && p.successes >= rise).then_some(true)
    } else {
        p.failures = p.failures.saturating_add(1);
        p.successes = 0;
        (was_up && p.failures >= fall).then_some(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\n"), Some(Ok(200)));
        assert_eq!(status_of(b"HTTP/1.0 503 x\r\nA: b\r\n"), Some(Ok(503)));
        assert_eq!(status_of(b"HTTP/1.1 200 OK"), None);
        assert_eq!(status_of(b"SSH-2.0-OpenSSH\r\n"), Some(Err(())));
        assert_eq!(status_of(b"HTTP/1.1 2x0 OK\r\n"), Some(Err(())));
    }

    #[test]
    fn rise_and_fall() {
        let mut p = Probe::default();
        // Up; two failures are not enough with fall = 3.
        assert_eq!(record(&mut p, false, true, 2, 3), None);
        assert_eq!(record(&mut p, false, true, 2, 3), None);
        assert_eq!(record(&mut p, false, true, 2, 3), Some(false));
        // Down; one success then a failure resets the count.
        assert_eq!(record(&mut p, true, false, 2, 3), None);
        assert_eq!(record(&mut p, false, false, 2, 3), None);
        assert_eq!(record(&mut p, true, false, 2, 3), None);
        assert_eq!(record(&mut p, true, false, 2, 3), Some(true));
    }

    #[test]
    fn verdicts() {
        let long = [b'x'; STATUS_LINE_MAX];
        // (what was read, connection open, verdict) with expect 200..=399.
        let cases: &[(&[u8], bool, Option<bool>)] = &[
            (b"HTTP/1.1 200 OK\r\n", true, Some(true)),
            (b"HTTP/1.1 399 X\r\n", false, Some(true)),
            (b"HTTP/1.1 404 Not Found\r\n", true, Some(false)),
            (b"HTTP/1.1 500 Oops\r\n", true, Some(false)),
            (b"HTTP/1.1 20", true, None),
            (b"HTTP/1.1 20", false, Some(false)),
            (b"", true, None),
            (b"", false, Some(false)),
            (b"SSH-2.0-OpenSSH_9\r\n", true, Some(false)),
            (&long, true, Some(false)),
        ];
        for &(buf, open, want) in cases {
            assert_eq!(
                verdict(buf, (200, 399), open),
                want,
                "{:?} open {open}",
                String::from_utf8_lossy(buf)
            );
        }
    }

    /// A probe sequence against rise 2 / fall 2, from up: the published
    /// state after each result.
    #[test]
    fn flapping_needs_rise_and_fall_in_a_row() {
        let results = [
            true, false, true, false, false, true, false, true, true, true,
        ];
        let want = [
            true, true, true, true, false, false, false, false, true, true,
        ];
        let mut p = Probe::default();
        let mut up = true;
        for (i, (&ok, &w)) in results.iter().zip(&want).enumerate() {
            if let Some(s) = record(&mut p, ok, up, 2, 2) {
                up = s;
            }
            assert_eq!(up, w, "after result {i}");
        }
    }

    #[test]
    fn state_defaults_up() {
        let s = HealthState::default();
        assert!(s.is_up(7));
        assert_eq!(s.generation(), 0);
        s.set(7, false);
        assert!(!s.is_up(7));
        assert!(s.is_up(8));
        assert!(s.is_up(u32::MAX));
        // Only changes move the generation.
        assert_eq!(s.generation(), 1);
        s.set(7, false);
        s.set(8, true);
        assert_eq!(s.generation(), 1);
        s.set(7, true);
        assert_eq!(s.generation(), 2);
        s.count(7, true);
        s.count(7, false);
        s.count(7, false);
        assert_eq!(s.checks(7), (1, 2));
    }

    #[test]
    fn tcp_verdicts() {
        assert_eq!(verdict_tcp(true, true), Some(true));
        assert_eq!(verdict_tcp(true, false), Some(true));
        assert_eq!(verdict_tcp(false, true), None);
        assert_eq!(verdict_tcp(false, false), Some(false));
    }
}
