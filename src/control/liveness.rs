//! Watching the workers: a worker that died (its function returned or
//! panicked while Sluice was running) or is stuck (its heartbeat has not
//! advanced for `dataplane.worker_stuck_ms`) is a failure. RSS keeps feeding
//! its queues, so its share of the traffic is lost: the control thread logs
//! it as an error, `/healthz` fails, and by default (`on_worker_failure =
//! "exit"`) Sluice exits non-zero for a supervisor to restart it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::worker::liveness::Heartbeat;

/// Extra time a worker gets to start its loop (it builds its connection
/// table first, which takes seconds on a loaded machine).
pub const STARTUP_GRACE: Duration = Duration::from_secs(30);

/// How a worker failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Its function ended while Sluice was running (a caught panic).
    Died,
    /// No heartbeat for at least this long.
    Stuck(Duration),
}

/// A change in a worker's state, as seen by [`Monitor::check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Failed(usize, Failure),
    /// A stuck worker's heartbeat advanced again.
    Resumed(usize),
}

struct Watch {
    heartbeat: Arc<Heartbeat>,
    last: u64,
    since: Instant,
    failed: Option<Failure>,
}

/// The control thread's view of every worker's heartbeat.
pub struct Monitor {
    watches: Vec<Watch>,
    stuck: Duration,
    /// When [`Monitor::check`] last ran (the control thread calls it every
    /// 10 ms).
    last_check: Instant,
}

impl Monitor {
    /// Start watching, `now` being when the workers were launched.
    pub fn new(heartbeats: &[Arc<Heartbeat>], stuck: Duration, now: Instant) -> Monitor {
        Monitor {
            watches: heartbeats
                .iter()
                .map(|h| Watch {
                    heartbeat: h.clone(),
                    last: 0,
                    since: now,
                    failed: None,
                })
                .collect(),
            stuck,
            last_check: now,
        }
    }

    /// Compare every heartbeat with the previous check; returns what
    /// changed. A death is final; a stuck worker may resume.
    pub fn check(&mut self, now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        // A gap of a whole stuck period between two checks means the
        // control thread itself did not run: the process was paused
        // (SIGSTOP, a debugger, a frozen VM) or the machine starved it.
        // The workers were paused too, so that time is not counted
        // against them; otherwise every worker would be declared stuck
        // the moment the process resumes, before it could beat again.
        let gap = now.saturating_duration_since(self.last_check);
        self.last_check = now;
        if gap > self.stuck {
            for w in &mut self.watches {
                w.since += gap;
            }
        }
        for (i, w) in self.watches.iter_mut().enumerate() {
            if w.failed == Some(Failure::Died) {
                continue;
            }
            let beats = w.heartbeat.beats();
            if w.heartbeat.exited() {
                w.failed = Some(Failure::Died);
                events.push(Event::Failed(i, Failure::Died));
            } else if beats != w.last {
                w.last = beats;
                w.since = now;
                if w.failed.take().is_some() {
                    events.push(Event::Resumed(i));
                }
            } else if w.failed.is_none() {
                let limit = if beats == 0 {
                    self.stuck + STARTUP_GRACE
                } else {
                    self.stuck
                };
                let quiet = now.saturating_duration_since(w.since);
                if quiet >= limit {
                    w.failed = Some(Failure::Stuck(quiet));
                    events.push(Event::Failed(i, Failure::Stuck(quiet)));
                }
            }
        }
        events
    }
}

/// What `/healthz` reports: one line per failed worker, or none.
#[derive(Default)]
pub struct WorkerHealth {
    failures: Mutex<Vec<(usize, String)>>,
}

impl WorkerHealth {
    pub fn set_failed(&self, worker: usize, why: String) {
        let mut f = self.failures.lock().unwrap();
        f.retain(|(w, _)| *w != worker);
        f.push((worker, why));
        f.sort_unstable();
    }

    pub fn clear(&self, worker: usize) {
        self.failures.lock().unwrap().retain(|(w, _)| *w != worker);
    }

    /// The failures, one line each; empty when every worker is alive.
    pub fn failures(&self) -> Vec<String> {
        self.failures
            .lock()
            .unwrap()
            .iter()
            .map(|(_, s)| s.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::liveness::ExitGuard;

    const STUCK: Duration = Duration::from_millis(500);

    #[test]
    fn table() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let hbs: Vec<Arc<Heartbeat>> = (0..3).map(|_| Arc::default()).collect();
        let mut m = Monitor::new(&hbs, STUCK, t0);
        // Nobody has started: within the start-up grace, nothing to report.
        assert_eq!(m.check(ms(5_000)), vec![]);
        for h in &hbs {
            h.beat();
        }
        assert_eq!(m.check(ms(5_010)), vec![]);
        // Worker 0 keeps beating, worker 1 stops, worker 2 dies.
        drop(ExitGuard(hbs[2].clone()));
        hbs[0].beat();
        assert_eq!(m.check(ms(5_020)), vec![Event::Failed(2, Failure::Died)]);
        hbs[0].beat();
        assert_eq!(m.check(ms(5_400)), vec![]);
        hbs[0].beat();
        assert_eq!(
            m.check(ms(5_600)),
            vec![Event::Failed(1, Failure::Stuck(Duration::from_millis(590)))]
        );
        // Reported once; a death is final; a stuck worker may resume.
        hbs[0].beat();
        assert_eq!(m.check(ms(5_700)), vec![]);
        hbs[0].beat();
        hbs[1].beat();
        assert_eq!(m.check(ms(5_710)), vec![Event::Resumed(1)]);
    }

    #[test]
    fn never_started_is_stuck_after_the_grace() {
        let t0 = Instant::now();
        let hbs: Vec<Arc<Heartbeat>> = vec![Arc::default()];
        let mut m = Monitor::new(&hbs, STUCK, t0);
        let tick = Duration::from_millis(10);
        let mut t = t0;
        while t + tick < t0 + STARTUP_GRACE + STUCK {
            t += tick;
            assert_eq!(m.check(t), vec![]);
        }
        assert!(matches!(
            m.check(t + tick)[..],
            [Event::Failed(0, Failure::Stuck(_))]
        ));
    }

    /// A process stopped and resumed (SIGSTOP, SIGCONT) froze its workers
    /// and the control thread alike: the pause does not count, so no worker
    /// is declared stuck on resuming; a worker that then stays quiet for a
    /// stuck period still is.
    #[test]
    fn a_paused_process_is_not_a_stuck_worker() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let hbs: Vec<Arc<Heartbeat>> = vec![Arc::default()];
        let mut m = Monitor::new(&hbs, STUCK, t0);
        hbs[0].beat();
        assert_eq!(m.check(ms(10)), vec![]);
        // Stopped for 20 s; the first check after resuming sees no beat yet.
        assert_eq!(m.check(ms(20_010)), vec![]);
        hbs[0].beat();
        assert_eq!(m.check(ms(20_020)), vec![]);
        // Then quiet for longer than STUCK, checked every 10 ms.
        let mut t = 20_020;
        let mut events = vec![];
        while events.is_empty() && t < 21_000 {
            t += 10;
            events = m.check(ms(t));
        }
        assert!(
            matches!(events[..], [Event::Failed(0, Failure::Stuck(_))]),
            "{events:?}"
        );
        assert!(t >= 20_020 + STUCK.as_millis() as u64, "stuck after {t} ms");
    }

    #[test]
    fn health_lines() {
        let h = WorkerHealth::default();
        assert!(h.failures().is_empty());
        h.set_failed(1, "worker 1 stuck".into());
        h.set_failed(0, "worker 0 died".into());
        assert_eq!(h.failures(), vec!["worker 0 died", "worker 1 stuck"]);
        h.clear(1);
        assert_eq!(h.failures(), vec!["worker 0 died"]);
    }
}
