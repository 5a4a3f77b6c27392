#!/usr/bin/env python3
"""Userspace DSR decapsulation for a backend whose kernel has no tunnel devices.

Sluice's `ipip` and `gre` service modes send each client packet to the
backend inside an outer IPv4 header (outer source: Sluice's port address,
outer destination: the backend). A real backend decapsulates in the kernel
with an `ipip` or `gre` device (see scripts/backend-setup.sh and docs/DSR.md).
Where the kernel has no such devices (the namespace tests' kernel), this
program does the same in userspace:

  raw IPv4 socket for protocol 4 (IPIP, RFC 2003), 47 (GRE, RFC 2784)
  and/or 41 (IPv6 in IPv4, RFC 4213)
      -> strip the outer IPv4 header (and the GRE header)
      -> write the inner IP packet into a TUN device (IFF_TUN | IFF_NO_PI)
  the kernel then receives the inner packet on the TUN device as if it had
  arrived there: the VIP is an address of the TUN device (or of `lo`), the
  backend's socket answers from the VIP, and the reply goes straight to the
  client through the ordinary uplink. Nothing is sent back through here.

Only base GRE headers are accepted (RFC 2784 section 2: no checksum, key or
sequence number, version 0), carrying IPv4 (0x0800) or IPv6 (0x86DD); any
other GRE packet is counted and dropped. With --from, packets whose outer
source is not one of the given load-balancer addresses are dropped too:
without it, anyone who can reach the backend can inject packets with any
inner source address.

The kernel hands a raw socket every packet of its protocol that is
delivered locally, after reassembly, outer header included; a protocol with
no kernel handler draws no ICMP "protocol unreachable" once a raw socket has
taken the packet.

Standard library only; run as root (raw sockets, /dev/net/tun). Runs until
SIGTERM/SIGINT, then prints its counters on stderr and exits 0. The TUN
device disappears with the process.

Example (what scripts/backend-setup.sh runs for `userspace-ipip`):

  dsr-decap.py --proto ipip --tun dsr0 --address 10.30.0.100/32 --from 10.30.0.1
"""

import argparse
import fcntl
import ipaddress
import os
import select
import signal
import socket
import struct
import subprocess
import sys

# <linux/if_tun.h>
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFNAMSIZ = 16

PROTOCOLS = {"ipip": 4, "gre": 47, "sit": 41}

# RFC 2784 base header: C bit, reserved0 (where RFC 2890 puts K and S), version.
GRE_FLAGS_AND_VERSION_BASE = 0x0000
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD


class Counters:
    NAMES = (
        "decapsulated",
        "bytes",
        "drop_outer_malformed",
        "drop_source",
        "drop_gre_flags",
        "drop_gre_protocol",
        "drop_inner_malformed",
        "drop_tun_write",
    )

    def __init__(self):
        for n in self.NAMES:
            setattr(self, n, 0)

    def line(self):
        return " ".join(f"{n}={getattr(self, n)}" for n in self.NAMES)


def inner_packet(outer, proto, counters):
    """The inner IP packet of one outer IPv4 packet as a raw socket returns
    it, or None (counted) if it is not one this backend should accept."""
    if len(outer) < 20 or outer[0] >> 4 != 4:
        counters.drop_outer_malformed += 1
        return None
    ihl = (outer[0] & 0x0F) * 4
    total = struct.unpack_from("!H", outer, 2)[0]
    # The kernel has checked the outer header and reassembled fragments;
    # trust but do not overrun.
    if ihl < 20 or total < ihl or total > len(outer):
        counters.drop_outer_malformed += 1
        return None
    payload = outer[ihl:total]

    if proto == PROTOCOLS["gre"]:
        if len(payload) < 4:
            counters.drop_outer_malformed += 1
            return None
        flags_version, ethertype = struct.unpack_from("!HH", payload, 0)
        if flags_version != GRE_FLAGS_AND_VERSION_BASE:
            counters.drop_gre_flags += 1
            return None
        payload = payload[4:]
        want_version = {ETHERTYPE_IPV4: 4, ETHERTYPE_IPV6: 6}.get(ethertype)
        if want_version is None:
            counters.drop_gre_protocol += 1
            return None
    elif proto == PROTOCOLS["sit"]:
        want_version = 6
    else:
        want_version = 4

    # The inner header must be what the outer one announced, and whole.
    if want_version == 4:
        if len(payload) < 20 or payload[0] >> 4 != 4:
            counters.drop_inner_malformed += 1
            return None
        inner_len = struct.unpack_from("!H", payload, 2)[0]
        if inner_len < (payload[0] & 0x0F) * 4 or inner_len > len(payload):
            counters.drop_inner_malformed += 1
            return None
    else:
        if len(payload) < 40 or payload[0] >> 4 != 6:
            counters.drop_inner_malformed += 1
            return None
        inner_len = 40 + struct.unpack_from("!H", payload, 4)[0]
        if inner_len > len(payload):
            counters.drop_inner_malformed += 1
            return None
    return payload[:inner_len]


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    ifr = struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI)
    try:
        res = fcntl.ioctl(fd, TUNSETIFF, ifr)
    except OSError:
        os.close(fd)
        raise
    return fd, res[:IFNAMSIZ].rstrip(b"\0").decode()


def ip(*args):
    subprocess.run(["ip", *args], check=True)


def configure_tun(name, addresses, mtu):
    """Addresses, MTU, link up, and no reverse-path filter: inner packets
    arrive on the TUN device from client addresses that the routing table
    reaches through the uplink, which a strict rp_filter would drop."""
    try:
        with open(f"/proc/sys/net/ipv4/conf/{name}/rp_filter", "w") as f:
            f.write("0\n")
    except OSError as e:
        print(f"dsr-decap: warning: rp_filter on {name}: {e}", file=sys.stderr)
    if not any(":" in a for a in addresses):
        # Nothing reads the device: keep IPv6 autoconfiguration from queueing
        # router solicitations on it.
        try:
            with open(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "w") as f:
                f.write("1\n")
        except OSError:
            pass
    if mtu:
        ip("link", "set", "dev", name, "mtu", str(mtu))
    for a in addresses:
        ip("addr", "add", a, "dev", name)
    ip("link", "set", "dev", name, "up")


def main():
    ap = argparse.ArgumentParser(
        description="Decapsulate IPIP/GRE DSR traffic into a TUN device."
    )
    ap.add_argument(
        "--proto",
        action="append",
        choices=sorted(PROTOCOLS),
        help="tunnel protocol to accept; repeat for several (default: ipip)",
    )
    ap.add_argument("--tun", default="dsr0", help="TUN device name (default dsr0)")
    ap.add_argument(
        "--address",
        action="append",
        default=[],
        metavar="PREFIX",
        help="address to put on the TUN device, e.g. the VIP as 10.30.0.100/32; "
        "repeatable. Without any, configure the device yourself.",
    )
    ap.add_argument(
        "--from",
        dest="sources",
        action="append",
        default=[],
        metavar="ADDR",
        help="accept only outer sources among these load-balancer addresses; "
        "repeatable (default: accept any source)",
    )
    ap.add_argument("--mtu", type=int, help="MTU of the TUN device (default: the kernel's, 1500)")
    args = ap.parse_args()
    protos = sorted({PROTOCOLS[p] for p in (args.proto or ["ipip"])})
    sources = {ipaddress.IPv4Address(s).packed for s in args.sources}
    if len(args.tun.encode()) >= IFNAMSIZ:
        ap.error(f"--tun: interface names have at most {IFNAMSIZ - 1} bytes")

    # Sockets first: once the VIP is up, nothing may be missed.
    socks = {}
    for p in protos:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, p)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        socks[s.fileno()] = (s, p)
    tun, tun_name = open_tun(args.tun)
    configure_tun(tun_name, args.address, args.mtu)

    counters = Counters()

    def stop(signum, _frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    names = ",".join(k for k, v in sorted(PROTOCOLS.items()) if v in protos)
    print(
        f"dsr-decap: ready tun={tun_name} proto={names} "
        f"from={','.join(args.sources) or 'any'}",
        file=sys.stderr,
        flush=True,
    )
    poller = select.epoll()
    for fd in socks:
        poller.register(fd, select.EPOLLIN)
    try:
        while True:
            for fd, _ in poller.poll():
                s, proto = socks[fd]
                # Drain what is queued before polling again.
                while True:
                    try:
                        outer, (src, _) = s.recvfrom(65535, socket.MSG_DONTWAIT)
                    except BlockingIOError:
                        break
                    if sources and socket.inet_aton(src) not in sources:
                        counters.drop_source += 1
                        continue
                    inner = inner_packet(outer, proto, counters)
                    if inner is None:
                        continue
                    try:
                        os.write(tun, inner)
                    except OSError:
                        counters.drop_tun_write += 1
                        continue
                    counters.decapsulated += 1
                    counters.bytes += len(inner)
    finally:
        print(f"dsr-decap: {counters.line()}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
