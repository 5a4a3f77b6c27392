use super::*;
use std::collections::HashMap;
use std::net::Ipv4Addr;

const S: u64 = NANOS_PER_SEC;
const TICK: u64 = TICK_NANOS;
const O: Direction = Direction::Original;
const R: Direction = Direction::Reply;

/// Client `n` to the VIP.
fn key(n: u32) -> FlowKey {
    FlowKey::v4(
        Ipv4Addr::from(0x0a00_0000 | (n >> 16)),
        Ipv4Addr::new(192, 0, 2, 1),
        n as u16,
        80,
        proto::TCP,
    )
}

/// Reply of a backend to SNAT port `n`.
fn rkey(n: u32) -> FlowKey {
    FlowKey::v4(
        Ipv4Addr::new(10, 1, 0, (n >> 16) as u8),
        Ipv4Addr::new(198, 51, 100, 1),
        8080,
        n as u16,
        proto::TCP,
    )
}

fn config(max_flows: usize) -> ConntrackConfig {
    ConntrackConfig {
        max_flows,
        timeouts: Timeouts::default(),
        new_flow_rate: None,
    }
}

fn table(max_flows: usize) -> Conntrack {
    Conntrack::new(&config(max_flows))
}

/// The arguments of [`Conntrack::insert`], so that tests can name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct NewConn {
    fwd: FlowKey,
    rev: Option<FlowKey>,
    backend: u32,
    service: u16,
    state: ConnState,
    nat: u64,
}

impl Conntrack {
    fn add(
        &mut self,
        c: NewConn,
        now: u64,
        on_expire: impl FnMut(ConnId, &Conn),
    ) -> Result<ConnId, InsertError> {
        self.insert(
            c.fwd, c.rev, c.backend, c.service, c.state, c.nat, now, on_expire,
        )
    }
}

/// A full-NAT TCP connection for client `n` through SNAT port `n`.
fn nat(n: u32) -> NewConn {
    NewConn {
        fwd: key(n),
        rev: Some(rkey(n)),
        backend: n,
        service: 1,
        state: ConnState::SynSent,
        nat: u64::from(n),
    }
}

fn dsr(n: u32) -> NewConn {
    NewConn {
        rev: None,
        ..nat(n)
    }
}

fn with_state(mut c: NewConn, state: ConnState) -> NewConn {
    c.state = state;
    c
}

/// An `on_expire` for tests that expect none.
fn none(id: ConnId, c: &Conn) {
    panic!("unexpected expiry of {id:?} {c:?}");
}

fn hit(l: Lookup) -> (ConnId, Direction) {
    match l {
        Lookup::Hit(id, dir) => (id, dir),
        other => panic!("expected a hit, got {other:?}"),
    }
}

/// Deterministic xorshift for randomized tests.
fn rng(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn sizes() {
    assert_eq!(size_of::<FlowKey>(), 38);
    assert_eq!(size_of::<Conn>(), 96);
    assert_eq!(core::mem::align_of::<Conn>(), 32);
    assert_eq!(size_of::<Bucket>(), 8);
    assert_eq!(bytes_per_flow(), 128);
    assert_eq!(index_buckets(0), 8);
    assert_eq!(index_buckets(2), 8);
    assert_eq!(index_buckets(3), 16);
    assert_eq!(index_buckets(1024), 4096);
    assert_eq!(index_buckets(1025), 8192);
}

#[test]
fn allocation_prediction_is_exact() {
    for n in [0, 1, 2, 3, 100, 1024, 1025, 65_536] {
        let t = table(n);
        assert_eq!(t.allocation_bytes(), allocation_for_flows(n), "{n}");
        assert_eq!(t.capacity(), n);
    }
    assert_eq!(allocation_for_flows(1024), 1024 * 128);
    assert_eq!(allocation_for_flows(1025), 1025 * 96 + 8192 * 8);
}

#[test]
fn flows_for_bytes_fits_and_is_maximal() {
    for budget in [0, 63, 64, 100, 10_000, 1 << 20, 3 << 20, 1_000_000_007] {
        let n = flows_for_bytes(budget);
        assert!(allocation_for_flows(n) <= budget || n == 0, "{budget}: {n}");
        assert!(
            allocation_for_flows(n + 1) > budget,
            "{budget}: {n} + 1 fits"
        );
    }
    // The numbers quoted in the docs: flows per core in 1 GiB, exactly
    // 128 bytes each.
    assert_eq!(flows_for_bytes(1 << 30), 8_388_608);
    assert_eq!(allocation_for_flows(8_388_608), 1 << 30);
    assert!(flows_for_bytes(1 << 30) >= 6_000_000);
    assert_eq!(flows_for_bytes(usize::MAX), MAX_FLOWS);
}

/// One step of a state-machine table: flags of the packet, its direction,
/// and the state expected after it.
type Step = (TcpFlags, Direction, ConnState);

#[test]
fn tcp_state_transitions() {
    use ConnState::*;
    const SYN: TcpFlags = TcpFlags::SYN;
    const ACK: TcpFlags = TcpFlags::ACK;
    const FIN: TcpFlags = TcpFlags::FIN;
    const RST: TcpFlags = TcpFlags::RST;
    let synack = SYN | ACK;
    let finack = FIN | ACK;
    let rstack = RST | ACK;
    let data = ACK | TcpFlags::PSH;
    let cases: &[(&str, &[Step], u64)] = &[
        ("SYN only", &[(SYN, O, SynSent)], 30),
        (
            "SYN retransmitted",
            &[(SYN, O, SynSent), (SYN, O, SynSent)],
            30,
        ),
        (
            "NAT handshake",
            &[
                (SYN, O, SynSent),
                (synack, R, SynSent),
                (ACK, O, Established),
            ],
            3600,
        ),
        (
            "DSR handshake (client side only)",
            &[(SYN, O, SynSent), (ACK, O, Established)],
            3600,
        ),
        (
            "data after handshake",
            &[
                (SYN, O, SynSent),
                (ACK, O, Established),
                (data, R, Established),
            ],
            3600,
        ),
        (
            "SYN on established stays",
            &[
                (SYN, O, SynSent),
                (ACK, O, Established),
                (SYN, O, Established),
            ],
            3600,
        ),
        (
            "client closes",
            &[
                (SYN, O, SynSent),
                (ACK, O, Established),
                (finack, O, Closing),
                (finack, R, Closing),
                (ACK, O, Closing),
            ],
            120,
        ),
        (
            "server closes",
            &[
                (SYN, O, SynSent),
                (ACK, O, Established),
                (finack, R, Closing),
                (data, O, Closing),
            ],
            120,
        ),
        (
            "RST from client",
            &[(SYN, O, SynSent), (ACK, O, Established), (RST, O, Closed)],
            10,
        ),
        (
            "RST from backend refuses SYN",
            &[(SYN, O, SynSent), (rstack, R, Closed)],
            10,
        ),
        (
            "RST while closing",
            &[(SYN, O, SynSent), (FIN, O, Closing), (RST, R, Closed)],
            10,
        ),
        (
            "FIN after RST stays closed",
            &[(SYN, O, SynSent), (RST, O, Closed), (finack, R, Closed)],
            10,
        ),
        (
            "ACK after RST stays closed",
            &[(SYN, O, SynSent), (RST, O, Closed), (ACK, O, Closed)],
            10,
        ),
        (
            "tuple reused after close",
            &[
                (SYN, O, SynSent),
                (ACK, O, Established),
                (FIN, O, Closing),
                (SYN, O, SynSent),
            ],
            30,
        ),
        (
            "tuple reused after RST",
            &[(SYN, O, SynSent), (RST, R, Closed), (SYN, O, SynSent)],
            30,
        ),
        (
            "SYN from the reply side does not reopen",
            &[(SYN, O, SynSent), (RST, O, Closed), (SYN, R, Closed)],
            10,
        ),
        (
            "SYN-ACK does not reopen",
            &[(SYN, O, SynSent), (FIN, O, Closing), (synack, O, Closing)],
            120,
        ),
        (
            "no flags",
            &[(SYN, O, SynSent), (TcpFlags::NONE, O, SynSent)],
            30,
        ),
    ];
    let t = Timeouts::default();
    for (desc, steps, timeout_s) in cases {
        // Through the table, as the worker does it.
        let mut ct = table(4);
        let first = initial_state(proto::TCP, steps[0].0);
        assert_eq!(first, steps[0].2, "{desc}: initial");
        let id = ct.add(with_state(nat(1), first), 0, none).unwrap();
        for (i, &(flags, dir, want)) in steps.iter().enumerate().skip(1) {
            let now = i as u64 * S;
            let k = if dir == O { key(1) } else { rkey(1) };
            assert_eq!(hit(ct.lookup(&k, now)), (id, dir), "{desc}: step {i}");
            observe_tcp(ct.conn_mut(id), flags, dir, now);
            assert_eq!(
                ct.conn(id).state(),
                want,
                "{desc}: step {i} ({flags:?} {dir:?})"
            );
        }
        assert_eq!(
            t.for_state(ct.conn(id).state()),
            timeout_s * S,
            "{desc}: timeout"
        );
    }
    // UDP never changes state.
    let mut ct = table(1);
    let udp = initial_state(proto::UDP, TcpFlags::NONE);
    let id = ct.add(with_state(dsr(1), udp), 0, none).unwrap();
    ct.conn_mut(id).observe_tcp(TcpFlags::RST, O, 1);
    assert_eq!(ct.conn(id).state(), ConnState::Udp);
    assert_eq!(initial_state(proto::TCP, ACK), Established);
}

#[test]
fn may_create_rule() {
    let cases: &[(&str, u8, TcpFlags, bool)] = &[
        ("bare SYN", proto::TCP, TcpFlags::SYN, true),
        (
            "SYN with ECN setup",
            proto::TCP,
            TcpFlags::SYN | TcpFlags::ECE | TcpFlags::CWR,
            true,
        ),
        ("SYN-ACK", proto::TCP, TcpFlags::SYN | TcpFlags::ACK, false),
        ("RST", proto::TCP, TcpFlags::RST, false),
        ("SYN+RST", proto::TCP, TcpFlags::SYN | TcpFlags::RST, false),
        ("SYN+FIN", proto::TCP, TcpFlags::SYN | TcpFlags::FIN, false),
        ("ACK", proto::TCP, TcpFlags::ACK, false),
        ("FIN-ACK", proto::TCP, TcpFlags::FIN | TcpFlags::ACK, false),
        ("no flags", proto::TCP, TcpFlags::NONE, false),
        ("UDP", proto::UDP, TcpFlags::NONE, true),
        ("UDP ignores flags", proto::UDP, TcpFlags::RST, true),
        ("ICMP", proto::ICMP, TcpFlags::NONE, true),
    ];
    for &(desc, p, flags, want) in cases {
        assert_eq!(may_create(p, flags), want, "{desc}");
    }
}

type Found = Option<(ConnId, Direction)>;

#[test]
fn both_keys_find_one_connection() {
    let mut ct = table(16);
    let a = ct.add(nat(1), 10, none).unwrap();
    let b = ct.add(dsr(2), 10, none).unwrap();
    assert_ne!(a, b);
    // (description, key, expected)
    let cases: &[(&str, FlowKey, Found)] = &[
        ("NAT fwd", key(1), Some((a, O))),
        ("NAT rev", rkey(1), Some((a, R))),
        ("DSR fwd", key(2), Some((b, O))),
        ("DSR has no reply key", rkey(2), None),
        ("fwd reversed is not the reply key", key(1).reversed(), None),
        ("unknown client", key(3), None),
    ];
    for &(desc, k, want) in cases {
        assert_eq!(ct.get(&k, 20), want, "{desc}: get");
        let got = match ct.lookup(&k, 20) {
            Lookup::Hit(id, dir) => Some((id, dir)),
            Lookup::Miss => None,
            e @ Lookup::Expired(..) => panic!("{desc}: {e:?}"),
        };
        assert_eq!(got, want, "{desc}: lookup");
    }
    let c = ct.conn(a);
    assert_eq!(
        (c.fwd(), c.rev(), c.backend, c.service, c.nat, c.state()),
        (&key(1), Some(&rkey(1)), 1, 1, 1, ConnState::SynSent)
    );
    assert_eq!(c.key(R), Some(&rkey(1)));
    assert_eq!(ct.conn(b).rev(), None);
    assert_eq!(ct.conn(b).key(R), None);
    assert_eq!(ct.len(), 2);
    assert_eq!(ct.index.len, 3);
}

#[test]
fn lookup_refreshes_get_does_not() {
    let mut ct = table(4);
    let id = ct.add(nat(1), 0, none).unwrap();
    assert!(ct.get(&key(1), 25 * S).is_some());
    // get did not refresh: still expires 30 s after the insert...
    assert!(ct.get(&key(1), 31 * S).is_none());
    // ...but a lookup (either direction) does.
    hit(ct.lookup(&rkey(1), 25 * S));
    let idle = ct.conn(id).idle(26 * S);
    assert!((S - TICK..=S + TICK).contains(&idle), "{idle}");
    assert!(ct.get(&key(1), 50 * S).is_some());
    // A packet stamped before last_seen (another burst's clock) neither
    // rewinds last_seen nor counts as idle time.
    hit(ct.lookup(&key(1), 20 * S));
    assert_eq!(ct.conn(id).idle(20 * S), 0);
    assert!(ct.get(&key(1), 55 * S).is_some());
    ct.conn_mut(id).flags = 0x5;
    ct.conn_mut(id).nat = 0xabcd;
    let c = ct.conn(id);
    assert_eq!((c.flags, c.nat), (0x5, 0xabcd));
}

#[test]
fn remove_removes_both_keys() {
    let mut ct = table(4);
    let a = ct.add(nat(1), 0, none).unwrap();
    let b = ct.add(nat(2), 0, none).unwrap();
    let old = ct.remove(a);
    assert_eq!(
        (old.fwd(), old.rev(), old.backend),
        (&key(1), Some(&rkey(1)), 1)
    );
    for k in [key(1), rkey(1)] {
        assert_eq!(ct.lookup(&k, 1), Lookup::Miss, "{k}");
    }
    assert_eq!(hit(ct.lookup(&rkey(2), 1)), (b, R));
    assert_eq!((ct.len(), ct.index.len), (1, 2));
    assert_eq!(ct.counters().removed, 1);
    // The slot is reused, and the old keys can be inserted again.
    let c = ct.add(nat(1), 2, none).unwrap();
    assert_eq!(c, a);
    assert_eq!(hit(ct.lookup(&rkey(1), 2)), (c, R));
    assert_eq!(ct.iter().map(|(id, _)| id).collect::<Vec<_>>(), [a, b]);
}

#[test]
#[should_panic(expected = "remove of free")]
fn double_remove_panics() {
    let mut ct = table(4);
    let a = ct.add(nat(1), 0, none).unwrap();
    ct.remove(a);
    ct.remove(a);
}

#[test]
#[should_panic(expected = "stale")]
fn conn_mut_of_freed_connection_panics() {
    let mut ct = table(4);
    let a = ct.add(nat(1), 0, none).unwrap();
    ct.remove(a);
    ct.conn_mut(a).observe_tcp(TcpFlags::ACK, O, 1);
}

#[test]
fn insert_refuses_existing_keys() {
    let mut ct = table(8);
    ct.add(nat(1), 0, none).unwrap();
    let cases: &[(&str, NewConn)] = &[
        ("same fwd", nat(1)),
        ("same fwd, DSR", dsr(1)),
        (
            "new fwd, rev held as a reply key",
            NewConn {
                fwd: key(2),
                ..nat(1)
            },
        ),
        (
            "new fwd, rev held as a client key",
            NewConn {
                rev: Some(key(1)),
                ..nat(2)
            },
        ),
        (
            "fwd held as a reply key",
            NewConn {
                fwd: rkey(1),
                ..nat(2)
            },
        ),
        (
            "rev equal to fwd",
            NewConn {
                rev: Some(key(3)),
                ..nat(3)
            },
        ),
    ];
    for (i, (desc, c)) in cases.iter().enumerate() {
        assert_eq!(ct.add(*c, 1, none), Err(InsertError::Exists), "{desc}");
        assert_eq!(ct.counters().exists, i as u64 + 1);
    }
    assert_eq!((ct.len(), ct.index.len), (1, 2));
    ct.index.check();
}

#[test]
fn insert_after_miss_is_insert_without_the_probe() {
    // The same connections through `insert` and through a lookup that
    // missed (or freed an expired holder) then `insert_after_miss`: the
    // same answers, connections and counters.
    let mut a = table(8);
    let mut b = table(8);
    let steps: &[(u64, NewConn)] = &[
        (0, nat(1)),
        (0, dsr(2)),
        // Rev held by a live connection, and rev equal to fwd: refused.
        (
            0,
            NewConn {
                fwd: key(3),
                ..nat(1)
            },
        ),
        (
            0,
            NewConn {
                rev: Some(key(4)),
                ..nat(4)
            },
        ),
        // 40 s on, conn 1 has expired: the lookup frees it, and its rev
        // key is free for the new connection.
        (40 * S, nat(1)),
        (
            40 * S,
            NewConn {
                fwd: key(5),
                ..nat(6)
            },
        ),
    ];
    for &(now, c) in steps {
        // Conn 1's expiry is freed by `insert` here, by the lookup there.
        let ra = a.add(c, now, |_, _| {});
        let tag = b.tag(&c.fwd);
        let _ = b.lookup_tagged(&c.fwd, tag, now);
        let rb = b.insert_after_miss(
            &c.fwd,
            tag,
            c.rev.as_ref(),
            c.backend,
            c.service,
            c.state,
            c.nat,
            now,
            |_, _| {},
        );
        assert_eq!(ra.is_ok(), rb.is_ok(), "{c:?}");
        assert_eq!(ra.err(), rb.err(), "{c:?}");
        for k in [c.fwd].into_iter().chain(c.rev) {
            assert_eq!(a.get(&k, now).map(|x| x.1), b.get(&k, now).map(|x| x.1));
        }
    }
    assert_eq!((a.len(), a.index.len), (b.len(), b.index.len));
    assert_eq!(a.counters().exists, 2);
    assert_eq!(b.counters().exists, 2);
    assert_eq!((a.counters().expired, b.counters().expired), (1, 1));
    b.index.check();
}

#[test]
fn insert_replaces_an_expired_holder_of_its_keys() {
    let mut ct = table(8);
    let old = ct.add(nat(1), 0, none).unwrap();
    let other = ct.add(nat(5), 0, none).unwrap();
    // 40 s later conn 1 (SynSent, 30 s) has expired but is not swept. A
    // new connection reusing SNAT port 1 frees it through on_expire.
    let mut seen = vec![];
    let new = NewConn {
        fwd: key(9),
        ..nat(1)
    };
    let id = ct
        .add(new, 40 * S, |id, c: &Conn| seen.push((id, c.nat)))
        .unwrap();
    assert_eq!(seen, [(old, 1)]);
    assert_eq!(ct.get(&key(1), 40 * S), None);
    assert_eq!(ct.get(&rkey(1), 40 * S), Some((id, R)));
    assert_eq!(ct.counters().expired, 1);
    // The other expired one is untouched until the sweep.
    assert!(ct.conn(other).is_live());
    assert_eq!(ct.len(), 2);
}

#[test]
fn full_table_refuses_and_keeps_existing_flows() {
    let mut ct = table(8);
    for i in 0..8 {
        ct.add(nat(i), 0, none).unwrap();
    }
    for n in [100, 101] {
        assert_eq!(ct.add(nat(n), S, none), Err(InsertError::TableFull));
    }
    assert_eq!(ct.counters().table_full, 2);
    for i in 0..8 {
        let (id, dir) = hit(ct.lookup(&rkey(i), 2 * S));
        assert_eq!((ct.conn(id).backend, dir), (i, R));
    }
    assert_eq!(ct.lookup(&key(100), 2 * S), Lookup::Miss);
    // Once connections expire, insert reclaims them itself.
    hit(ct.lookup(&key(3), 20 * S));
    let mut freed = vec![];
    let id = ct
        .add(nat(100), 40 * S, |_, c: &Conn| freed.push(c.backend))
        .unwrap();
    freed.sort_unstable();
    assert_eq!(freed, [0, 1, 2, 4, 5, 6, 7]);
    assert_eq!(ct.len(), 2);
    assert_eq!(ct.get(&rkey(100), 40 * S), Some((id, R)));
    assert_eq!(ct.get(&key(3), 40 * S).map(|(_, d)| d), Some(O));
}

#[test]
fn zero_capacity_is_always_full() {
    let mut ct = table(0);
    assert_eq!(ct.add(nat(1), 0, none), Err(InsertError::TableFull));
    assert_eq!(ct.add(dsr(1), 0, none), Err(InsertError::TableFull));
    assert_eq!(ct.expire(0, 10, none), 0);
    assert_eq!(ct.lookup(&key(1), 0), Lookup::Miss);
    assert_eq!(ct.allocation_bytes(), 8 * 8);
}

#[test]
fn expiry_honours_per_state_timeouts() {
    use ConnState::*;
    let t = Timeouts::default();
    let t0 = 1_000 * S;
    // (state, sweep at which it goes: seconds after t0)
    let cases: &[(ConnState, u64)] = &[
        (SynSent, 60),
        (Established, 3601),
        (Closing, 121),
        (Closed, 11),
        (Udp, 121),
    ];
    let mut ct = table(64);
    let mut ids = vec![];
    for (i, &(s, _)) in cases.iter().enumerate() {
        ids.push(ct.add(with_state(nat(i as u32), s), t0, none).unwrap());
    }
    for (i, &(s, _)) in cases.iter().enumerate() {
        let timeout = t.for_state(s);
        for k in [key(i as u32), rkey(i as u32)] {
            assert!(ct.get(&k, t0 + timeout).is_some(), "{s:?} alive at T");
            assert!(ct.get(&k, t0 + timeout + 2 * TICK).is_none(), "{s:?} gone");
        }
        assert!(!ct.conn(ids[i]).is_expired(t0 + timeout, &t));
        assert!(ct.conn(ids[i]).is_expired(t0 + timeout + 2 * TICK, &t));
    }
    // The sweep frees exactly the ones past their deadline, each once.
    let mut seen: HashMap<ConnId, u32> = HashMap::new();
    let mut sweep = |ct: &mut Conntrack, secs: u64| {
        ct.expire(t0 + secs * S, 100, |id, c: &Conn| {
            assert!(c.is_expired(t0 + secs * S, &t));
            *seen.entry(id).or_default() += 1;
        })
    };
    assert_eq!(sweep(&mut ct, 9), 0);
    assert_eq!(sweep(&mut ct, 11), 1); // Closed
    assert_eq!(sweep(&mut ct, 60), 1); // SynSent
    assert_eq!(sweep(&mut ct, 120), 0);
    assert_eq!(sweep(&mut ct, 121), 2); // Closing, Udp
    assert_eq!(sweep(&mut ct, 3600), 0);
    assert_eq!(sweep(&mut ct, 3601), 1);
    assert_eq!(sweep(&mut ct, 7200), 0);
    assert!(ct.is_empty());
    assert_eq!(ct.index.len, 0);
    assert_eq!(seen.len(), 5);
    assert!(seen.values().all(|&n| n == 1), "{seen:?}");
    assert_eq!(ct.counters().expired, 5);
}

#[test]
fn expired_connection_is_a_miss_in_lookup() {
    let mut ct = table(16);
    let id = ct.add(nat(1), 0, none).unwrap();
    let before = *ct.conn(id);
    // Either key reports the expiry once, with the connection as it was.
    assert_eq!(ct.lookup(&rkey(1), 31 * S), Lookup::Expired(before));
    assert_eq!(ct.lookup(&key(1), 31 * S), Lookup::Miss);
    assert_eq!(ct.lookup(&rkey(1), 31 * S), Lookup::Miss);
    assert!(ct.is_empty());
    assert_eq!(ct.counters().expired, 1);
    // Already freed: the sweep does not report it again.
    assert_eq!(ct.expire(100 * S, 100, none), 0);
    // A new SYN creates a fresh connection.
    let id = ct.add(nat(1), 32 * S, none).unwrap();
    assert_eq!(hit(ct.lookup(&key(1), 33 * S)), (id, O));
}

#[test]
fn expire_is_bounded_by_budget() {
    let mut ct = table(1000);
    for i in 0..1000 {
        ct.add(with_state(nat(i), ConnState::Udp), 0, none).unwrap();
    }
    // Half of them stay alive.
    for i in (0..1000).step_by(2) {
        hit(ct.lookup(&key(i), 100 * S));
    }
    let now = 150 * S;
    let mut calls = 0;
    let mut freed = 0;
    let mut seen = std::collections::HashSet::new();
    while freed < 500 {
        let before = ct.cursor;
        let n = ct.expire(now, 7, |id, _: &Conn| assert!(seen.insert(id)));
        let examined = (ct.cursor + 1000 - before) % 1000;
        assert_eq!(examined, 7, "examines exactly the budget");
        assert!(n <= 7);
        freed += n;
        calls += 1;
        assert!(calls <= 1000 / 7 + 1, "one pass over the slab suffices");
    }
    assert_eq!(ct.len(), 500);
    assert_eq!(ct.expire(now, 1000, none), 0);
    assert_eq!(ct.expire(now, 0, none), 0);
    // A budget above the high-water mark examines each slot once.
    let before = ct.cursor;
    ct.expire(now, 1500, none);
    assert_eq!(ct.cursor, before);
    assert_eq!(ct.len(), 500);
}

#[test]
fn new_connection_rate_limit() {
    let mut ct = Conntrack::new(&ConntrackConfig {
        max_flows: 1000,
        timeouts: Timeouts::default(),
        new_flow_rate: Some(RateLimit {
            per_sec: 10,
            burst: 5,
        }),
    });
    let t0 = 1_000 * S;
    let mut n = 0u32;
    let mut try_insert = |ct: &mut Conntrack, now| {
        n += 1;
        ct.add(nat(n), now, none).map(|_| ())
    };
    let limited = Err(InsertError::RateLimited);
    // (time, expected answer)
    let mut steps = vec![(t0, Ok(())); 5];
    steps.extend([
        (t0, limited),
        // 10/s: one token per 100 ms.
        (t0 + 99_999_999, limited),
        (t0 + 100_000_000, Ok(())),
        (t0 + 100_000_000, limited),
    ]);
    // A long pause refills only up to the burst.
    let later = t0 + 3600 * S;
    steps.extend([(later, Ok(())); 5]);
    steps.push((later, limited));
    for (i, &(now, want)) in steps.iter().enumerate() {
        assert_eq!(try_insert(&mut ct, now), want, "step {i}");
    }
    // Existing flows are unaffected, and refused keys spend no token.
    assert!(ct.get(&key(14), later).is_some());
    assert_eq!(ct.add(nat(14), later, none), Err(InsertError::Exists));
    let c = *ct.counters();
    assert_eq!((c.inserted, c.rate_limited, c.exists), (11, 4, 1));
    assert_eq!(ct.len(), 11);
}

#[test]
fn warm_changes_nothing() {
    let mut ct = table(64);
    for i in 0..40 {
        ct.add(nat(i), 0, none).unwrap();
    }
    let before: Vec<Conn> = ct.iter().map(|(_, c)| *c).collect();
    let keys: Vec<FlowKey> = (0..100).flat_map(|i| [key(i), rkey(i)]).collect();
    for n in [0, 1, 31, 32, 33, 200] {
        ct.warm(&keys[..n]);
    }
    let after: Vec<Conn> = ct.iter().map(|(_, c)| *c).collect();
    assert_eq!(before, after);
    assert_eq!(
        *ct.counters(),
        ConntrackCounters {
            inserted: 40,
            ..Default::default()
        }
    );
}

#[test]
fn clear_reports_everything() {
    let mut ct = table(8);
    for i in 0..5 {
        ct.add(nat(i), 0, none).unwrap();
    }
    let mut n = 0;
    assert_eq!(ct.clear(|_, _: &Conn| n += 1), 5);
    assert_eq!((n, ct.len(), ct.index.len), (5, 0, 0));
    assert_eq!(ct.lookup(&key(1), 0), Lookup::Miss);
    assert_eq!(ct.counters().removed, 5);
    for i in 0..8 {
        ct.add(nat(i), 0, none).unwrap();
    }
    assert_eq!(ct.add(nat(9), 0, none), Err(InsertError::TableFull));
}

#[test]
fn timeouts_round_up_and_clamp() {
    assert_eq!(timeout_ticks(0), 0);
    assert_eq!(timeout_ticks(1), 1);
    assert_eq!(timeout_ticks(TICK), 1);
    assert_eq!(timeout_ticks(TICK + 1), 2);
    assert_eq!(timeout_ticks(u64::MAX), MAX_TIMEOUT_TICKS);
    const { assert!(MAX_TIMEOUT > 13 * 86_400 * S) };
    // Ages wrap modulo 2^32 ticks; earlier clocks are age 0.
    assert_eq!(age(5, u32::MAX - 1), 7);
    assert_eq!(age(3, 10), 0);
    // A connection whose timeout is longer than MAX_TIMEOUT still expires.
    let mut ct = Conntrack::new(&ConntrackConfig {
        timeouts: Timeouts {
            udp: u64::MAX,
            ..Timeouts::default()
        },
        ..config(2)
    });
    ct.add(with_state(dsr(1), ConnState::Udp), 0, none).unwrap();
    assert!(ct.get(&key(1), MAX_TIMEOUT).is_some());
    assert!(ct.get(&key(1), MAX_TIMEOUT + 2 * TICK).is_none());
}

#[test]
fn hash_is_seeded_and_depends_on_every_field() {
    let h = KeyHasher::from_seed(1);
    let base = key(7);
    let mut variants = [base; 6];
    variants[0].src[15] ^= 1;
    variants[1].dst[0] ^= 0x80;
    variants[2].src_port ^= 1;
    variants[3].dst_port ^= 0x8000;
    variants[4].proto = proto::UDP;
    variants[5] = base.reversed();
    for v in &variants {
        assert_ne!(h.hash(v), h.hash(&base), "{v}");
    }
    assert_eq!(h.hash(&base), KeyHasher::from_seed(1).hash(&base));
    assert_ne!(h.hash(&base), KeyHasher::from_seed(2).hash(&base));
    // Two random tables disagree (2^-64 chance of a false failure).
    assert_ne!(
        KeyHasher::random().hash(&base),
        KeyHasher::random().hash(&base)
    );

    // Sequential source ports spread evenly over home buckets.
    let mut buckets = [0u32; 64];
    for port in 0..64_000u32 {
        buckets[(h.tag(&key(port)) >> 26) as usize] += 1;
    }
    // 1000 expected per bucket; six sigma is about 190.
    for (i, &n) in buckets.iter().enumerate() {
        assert!((800..1200).contains(&n), "bucket {i}: {n}");
    }
}

/// The index on its own, with tags chosen to collide and to wrap around
/// the end of the table, against a model, checking after every step
/// that no key is lost to a deletion.
#[test]
fn index_backward_shift_against_model() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _round in 0..20 {
        let mut ix = Index::new(16);
        let mut model: HashMap<u32, u32> = HashMap::new(); // slot -> tag
        let mut next_slot = 0;
        for _ in 0..500 {
            let r = rng(&mut seed);
            if model.len() < ix.max_len() && !r.is_multiple_of(3) {
                // Homes 12..=15 (the last four buckets), three tags each.
                let tag = ((12 + (r >> 8) % 4) as u32) << 28 | (1 + (r >> 16) % 3) as u32;
                ix.insert(tag, next_slot);
                model.insert(next_slot, tag);
                next_slot += 1;
            } else if !model.is_empty() {
                let mut slots: Vec<_> = model.keys().copied().collect();
                slots.sort_unstable();
                let slot = slots[(r >> 8) as usize % slots.len()];
                let tag = model.remove(&slot).unwrap();
                assert!(ix.remove(tag, slot));
                assert!(!ix.remove(tag, slot));
                assert_eq!(ix.find(tag, |s| s == slot), None);
            }
            ix.check();
            assert_eq!(ix.len, model.len());
            for (&slot, &tag) in &model {
                assert_eq!(ix.find(tag, |s| s == slot), Some(slot));
            }
        }
    }
}

/// What the model expects for one key.
type Model = HashMap<FlowKey, (ConnId, Direction)>;

/// A table of `cap` flows for the model tests, its hash seeded with `seed`
/// and cut to the bits of `mask`.
fn model_table(cap: usize, seed: u64, mask: u64) -> Conntrack {
    let mut hasher = KeyHasher::from_seed(seed);
    hasher.mask = mask;
    Conntrack::with_hasher(&config(cap), hasher)
}

/// The client and reply keys of `n` connections.
fn universe(n: u32) -> Vec<FlowKey> {
    (0..n).flat_map(|n| [key(n), rkey(n)]).collect()
}

/// Take a connection's keys out of the model.
fn forget(model: &mut Model, c: &NewConn) {
    model.remove(&c.fwd);
    if let Some(k) = c.rev {
        model.remove(&k);
    }
}

/// A lookup of `k` answers what the model holds (nothing expires here).
fn lookup_as_model(ct: &mut Conntrack, model: &Model, k: &FlowKey, step: u32) {
    let got = match ct.lookup(k, 0) {
        Lookup::Hit(id, dir) => Some((id, dir)),
        Lookup::Miss => None,
        e => panic!("{e:?}"),
    };
    assert_eq!(got, model.get(k).copied(), "step {step}: {k}");
}

fn check_against_model(ct: &Conntrack, model: &Model, universe: &[FlowKey]) {
    ct.index.check();
    assert_eq!(ct.index.len, model.len());
    for k in universe {
        assert_eq!(ct.get(k, 0), model.get(k).copied(), "{k}");
    }
    // Every bucket points at a live connection whose key has its tag.
    for b in ct.index.buckets.iter().filter(|b| b.tag != 0) {
        let c = &ct.slab[(b.slot >> 1) as usize];
        assert!(c.is_live());
        assert_eq!(ct.hasher.tag(&c.keys[(b.slot & 1) as usize]), b.tag);
    }
}

/// Random inserts (NAT and DSR), removals and lookups in a small table,
/// with the real hash and with a hash cut to 3 bits (8 tags, 8 home
/// buckets: long wrapping clusters and tag collisions), compared with a
/// `HashMap` after every step.
#[test]
fn conntrack_against_model() {
    for mask in [u64::MAX, 0xe000_0000_0000_0000] {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let cap = 16;
        let mut ct = model_table(cap, 42, mask);
        let universe = universe(200);
        let mut model = Model::new();
        let mut live: Vec<(ConnId, NewConn)> = vec![];
        for step in 0..6000 {
            let r = rng(&mut seed);
            match r % 8 {
                0..=3 => {
                    let new = NewConn {
                        fwd: universe[(r >> 8) as usize % universe.len()],
                        rev: (r & 0x10 != 0).then(|| universe[(r >> 24) as usize % universe.len()]),
                        ..nat(step)
                    };
                    let clash = model.contains_key(&new.fwd)
                        || new
                            .rev
                            .is_some_and(|k| k == new.fwd || model.contains_key(&k));
                    let want = if clash {
                        Err(InsertError::Exists)
                    } else if live.len() == cap {
                        Err(InsertError::TableFull)
                    } else {
                        Ok(())
                    };
                    let got = ct.add(new, 0, none);
                    assert_eq!(got.map(|_| ()), want, "step {step}: {new:?}");
                    if let Ok(id) = got {
                        assert!(live.iter().all(|(l, _)| *l != id));
                        model.insert(new.fwd, (id, O));
                        if let Some(k) = new.rev {
                            model.insert(k, (id, R));
                        }
                        live.push((id, new));
                    }
                }
                4 | 5 if !live.is_empty() => {
                    let (id, new) = live.swap_remove((r >> 8) as usize % live.len());
                    let c = ct.remove(id);
                    assert_eq!((*c.fwd(), c.rev().copied()), (new.fwd, new.rev));
                    forget(&mut model, &new);
                }
                _ => {
                    let k = universe[(r >> 8) as usize % universe.len()];
                    lookup_as_model(&mut ct, &model, &k, step);
                }
            }
            assert_eq!(ct.len(), live.len());
            check_against_model(&ct, &model, &universe);
        }
        let c = ct.counters();
        assert!(
            c.inserted > 1000 && c.exists > 50 && c.table_full > 50,
            "{c:?}"
        );
    }
}

/// A million operations of full-NAT churn at the table's limit, with a
/// SNAT port pool released only through what the table reports: the
/// allocation never changes, no port leaks, and live flows stay findable.
#[test]
fn no_growth_and_no_leak_under_churn() {
    const PORTS: u32 = 1500;
    let max = 1000;
    let mut ct = Conntrack::new(&ConntrackConfig {
        max_flows: max,
        timeouts: Timeouts {
            udp: 50 * S,
            ..Timeouts::default()
        },
        new_flow_rate: None,
    });
    let shape = |ct: &Conntrack| {
        (
            ct.slab.as_ptr(),
            ct.slab.len(),
            ct.index.buckets.as_ptr(),
            ct.index.buckets.len(),
            ct.allocation_bytes(),
        )
    };
    let before = shape(&ct);
    let mut pool: Vec<u32> = (0..PORTS).collect();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    // Arrivals at 1.2 × max_flows per 50 s lifetime: the table runs full.
    let dt = 50 * S / (max as u64 * 6 / 5);
    let mut lookup_expired = 0u64;
    let mut live: HashMap<FlowKey, u32> = HashMap::new();
    for step in 0..1_000_000u64 {
        let now = step * dt;
        let r = rng(&mut seed);
        let client = key(r as u32 & 0xf_ffff);
        // A packet of a known flow (or not), either direction.
        let k = if r & 0x100_0000 != 0 {
            key((r >> 32) as u32 & 0xf_ffff)
        } else {
            rkey((r >> 32) as u32 % PORTS)
        };
        if let Lookup::Expired(c) = ct.lookup(&k, now) {
            pool.push(c.nat as u32);
            lookup_expired += 1;
        }
        // A new flow takes a SNAT port, returned on failure.
        if let Some(port) = pool.pop() {
            let new = NewConn {
                fwd: client,
                rev: Some(rkey(port)),
                state: ConnState::Udp,
                nat: u64::from(port),
                ..nat(step as u32)
            };
            match ct.add(new, now, |_, c: &Conn| pool.push(c.nat as u32)) {
                Ok(_) => {
                    live.insert(client, port);
                }
                Err(_) => pool.push(port),
            }
        }
        ct.expire(now, 4, |_, c: &Conn| pool.push(c.nat as u32));
        assert!(ct.len() <= max);
        assert_eq!(pool.len() + ct.len(), PORTS as usize, "step {step}");
        if step % 100_000 == 0 {
            ct.index.check();
            live.retain(|k, port| match ct.get(k, now) {
                Some((id, O)) => {
                    assert_eq!(ct.get(&rkey(*port), now), Some((id, R)));
                    true
                }
                other => {
                    assert_eq!(other, None);
                    false
                }
            });
        }
    }
    assert_eq!(shape(&ct), before);
    let c = *ct.counters();
    assert_eq!(c.inserted, c.expired + c.removed + ct.len() as u64, "{c:?}");
    assert!(c.inserted > 100_000, "{c:?}");
    assert!(c.table_full > 0, "the test must reach the limit: {c:?}");
    assert!(lookup_expired > 0 && c.exists > 0, "{c:?}");
}

/// Lookup timings, for the notes only:
/// `cargo test --release --lib l4::conntrack::tests::lookup_timing -- --ignored --nocapture`
#[test]
#[ignore = "timing, run by hand in release"]
fn lookup_timing() {
    use std::hint::black_box;
    use std::time::Instant;
    for n in [10_000u32, 1_000_000] {
        // Client i through SNAT port i: probe keys are computed, not read
        // from an array, so only the table's own memory is measured.
        let mut ct = table(n as usize);
        for i in 0..n {
            ct.add(nat(i), 0, none).unwrap();
        }
        let mut seed = 0x1234_5678_9abc_def1u64;
        let rounds = 4_000_000u32;
        let t = Instant::now();
        let mut hits = 0u32;
        for _ in 0..rounds {
            let r = rng(&mut seed);
            let i = (r as u32) % n;
            let k = if r & (1 << 40) == 0 { key(i) } else { rkey(i) };
            if let Lookup::Hit(..) = ct.lookup(black_box(&k), 1) {
                hits += 1;
            }
        }
        let hit_ns = t.elapsed().as_nanos() as f64 / f64::from(rounds);
        assert_eq!(hits, rounds);
        let t = Instant::now();
        for _ in 0..rounds {
            let r = rng(&mut seed);
            let k = key(r as u32).reversed();
            assert_eq!(ct.lookup(black_box(&k), 1), Lookup::Miss);
        }
        let miss_ns = t.elapsed().as_nanos() as f64 / f64::from(rounds);
        // Bursts of 32 hits, warmed first.
        let t = Instant::now();
        let mut burst = [key(0); 32];
        for _ in 0..rounds / 32 {
            for k in burst.iter_mut() {
                let r = rng(&mut seed);
                let i = (r as u32) % n;
                *k = if r & (1 << 40) == 0 { key(i) } else { rkey(i) };
            }
            ct.warm(black_box(&burst));
            for k in &burst {
                assert!(matches!(ct.lookup(black_box(k), 1), Lookup::Hit(..)));
            }
        }
        let warm_ns = t.elapsed().as_nanos() as f64 / f64::from(rounds / 32 * 32);
        println!("{n} flows: warmed burst hit {warm_ns:.1} ns");
        println!("{n} flows: hit {hit_ns:.1} ns, miss {miss_ns:.1} ns");
    }
}

/// Keys indexed plus keys held back by a batch: what the model holds.
fn check_batch_against_model(ct: &Conntrack, model: &Model, universe: &[FlowKey]) {
    ct.index.check();
    assert_eq!(ct.index.len + ct.pending.len, model.len());
    for k in universe {
        assert_eq!(ct.get(k, 0), model.get(k).copied(), "{k}");
    }
    for i in 0..ct.pending.len {
        let c = &ct.slab[ct.pending.ids[i] as usize];
        assert!(c.is_live() && c.has_rev());
        assert_eq!(ct.hasher.tag(&c.keys[1]), ct.pending.tags[i]);
    }
    for i in ct.pending.len..PENDING_MAX {
        assert_eq!(ct.pending.tags[i], 0, "unused entries hold no tag");
    }
}

/// Inside and outside batches, with reply keys unique as the SNAT port
/// allocator makes them: inserts, removals, lookups of both keys and the
/// expiry sweep answer exactly as the model (as without batches) at every
/// step, held keys included; ending a batch frees nothing.
#[test]
fn batches_answer_as_without_them() {
    for mask in [u64::MAX, 0xe000_0000_0000_0000] {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let cap = 48;
        let mut ct = model_table(cap, 7, mask);
        let universe = universe(300);
        let mut model = Model::new();
        let mut live: Vec<(ConnId, NewConn)> = vec![];
        let mut held_max = 0;
        for step in 0..20_000u32 {
            let r = rng(&mut seed);
            match r % 16 {
                0 => ct.begin_batch(),
                1 => ct.end_batch(0, none),
                2..=7 => {
                    let n = (r >> 8) as u32 % 300;
                    // DSR, or NAT with the client's own reply key (unique).
                    let new = if r & 0x10 != 0 { nat(n) } else { dsr(n) };
                    let want = if model.contains_key(&new.fwd) {
                        Err(InsertError::Exists)
                    } else if live.len() == cap {
                        Err(InsertError::TableFull)
                    } else {
                        Ok(())
                    };
                    let got = ct.add(new, 0, none);
                    assert_eq!(got.map(|_| ()), want, "step {step}: {new:?}");
                    if let Ok(id) = got {
                        model.insert(new.fwd, (id, O));
                        if let Some(k) = new.rev {
                            model.insert(k, (id, R));
                        }
                        live.push((id, new));
                    }
                }
                8..=10 if !live.is_empty() => {
                    let (id, new) = live.swap_remove((r >> 8) as usize % live.len());
                    let c = ct.remove(id);
                    assert_eq!((*c.fwd(), c.rev().copied()), (new.fwd, new.rev));
                    forget(&mut model, &new);
                }
                11 => {
                    // Everything is idle for an hour: the sweep frees what
                    // it reaches, held keys or not.
                    let mut freed = vec![];
                    ct.expire(3600 * S, 8, |id, c| freed.push((id, *c.fwd())));
                    for (id, fwd) in freed {
                        let i = live.iter().position(|(l, _)| *l == id).unwrap();
                        let (_, new) = live.swap_remove(i);
                        assert_eq!(new.fwd, fwd);
                        forget(&mut model, &new);
                    }
                }
                _ => {
                    let k = universe[(r >> 8) as usize % universe.len()];
                    lookup_as_model(&mut ct, &model, &k, step);
                }
            }
            held_max = held_max.max(ct.pending.len);
            assert_eq!(ct.len(), live.len());
            check_batch_against_model(&ct, &model, &universe);
        }
        ct.end_batch(0, none);
        assert_eq!(ct.pending.len, 0);
        check_against_model(&ct, &model, &universe);
        assert!(held_max >= 8, "batches held {held_max} keys at most");
    }
}

/// At a batch's end a held reply key that a live connection holds undoes
/// the new connection (reported, counted as refused); one that an expired
/// connection holds frees that one first.
#[test]
fn batch_end_settles_clashing_reply_keys() {
    let mut ct = table(16);
    let a = ct.add(nat(1), 0, none).unwrap();
    ct.begin_batch();
    let clash = NewConn {
        fwd: key(2),
        ..nat(1)
    };
    let b = ct.add(clash, 0, none).unwrap();
    assert_eq!(ct.pending.len, 1);
    assert_eq!(
        hit(ct.lookup(&rkey(1), 0)),
        (a, R),
        "the indexed holder first"
    );
    let mut undone = vec![];
    ct.end_batch(0, |id, c| undone.push((id, *c.fwd())));
    assert_eq!(undone, vec![(b, key(2))]);
    assert_eq!(ct.counters().exists, 1);
    assert!(matches!(ct.lookup(&key(2), 0), Lookup::Miss));
    assert_eq!(hit(ct.lookup(&rkey(1), 0)), (a, R));
    assert_eq!(ct.len(), 1);
    ct.index.check();

    // Two held keys alike: one is indexed, the other connection undone.
    ct.begin_batch();
    let (x, y) = (
        ct.add(
            NewConn {
                fwd: key(5),
                ..nat(9)
            },
            0,
            none,
        )
        .unwrap(),
        ct.add(
            NewConn {
                fwd: key(6),
                ..nat(9)
            },
            0,
            none,
        )
        .unwrap(),
    );
    let mut undone = vec![];
    ct.end_batch(0, |id, _| undone.push(id));
    assert_eq!(undone.len(), 1);
    let kept = if undone[0] == x { y } else { x };
    assert_eq!(hit(ct.lookup(&rkey(9), 0)), (kept, R));
    assert_eq!(ct.counters().exists, 2);
    assert_eq!(ct.len(), 2);
    ct.index.check();
    ct.remove(kept);

    // An expired holder (SynSent, 30 s) makes way at the batch's end.
    let now = 31 * S;
    ct.begin_batch();
    let c = ct.add(clash, now, none).unwrap();
    let mut freed = vec![];
    ct.end_batch(now, |id, c| freed.push((id, *c.fwd())));
    assert_eq!(freed, vec![(a, key(1))]);
    assert_eq!(hit(ct.lookup(&rkey(1), now)), (c, R));
    assert_eq!(hit(ct.lookup(&key(2), now)), (c, O));
    assert_eq!(ct.len(), 1);
    ct.index.check();
}

/// More new connections in a batch than it holds: the rest index their
/// reply keys at once; all are found before and after the batch's end;
/// removing a held one drops its key.
#[test]
fn batch_holds_at_most_pending_max_keys() {
    let n = PENDING_MAX as u32 + 8;
    let mut ct = table(64);
    ct.begin_batch();
    let ids: Vec<ConnId> = (0..n).map(|i| ct.add(nat(i), 0, none).unwrap()).collect();
    assert_eq!(ct.pending.len, PENDING_MAX);
    assert_eq!(ct.index.len, n as usize + 8);
    for (i, &id) in ids.iter().enumerate() {
        assert_eq!(hit(ct.lookup(&rkey(i as u32), 0)), (id, R));
    }
    let gone = ct.remove(ids[3]);
    assert_eq!(*gone.fwd(), key(3));
    assert_eq!(ct.pending.len, PENDING_MAX - 1);
    assert!(matches!(ct.lookup(&rkey(3), 0), Lookup::Miss));
    ct.end_batch(0, none);
    assert_eq!(ct.pending.len, 0);
    assert_eq!(ct.index.len, 2 * (n as usize - 1));
    for (i, &id) in ids.iter().enumerate().filter(|&(i, _)| i != 3) {
        assert_eq!(hit(ct.lookup(&rkey(i as u32), 0)), (id, R));
        assert_eq!(hit(ct.lookup(&key(i as u32), 0)), (id, O));
    }
    ct.index.check();
}
