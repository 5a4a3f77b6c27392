#!/usr/bin/env python3
"""Build the pcap replay fixtures: for each case an input pcap, the output
Sluice must produce (built here independently with scapy, not recorded from
Sluice) and the counters it must report.

    pip install scapy && python3 pcap-tests/gen.py

The generated files are committed; CI does not need scapy.
"""
import json
import os

from scapy.all import (ARP, ICMP, IP, TCP, UDP, Dot1Q, Ether, ICMPv6DestUnreach, ICMPv6EchoReply, ICMPv6PacketTooBig,
                       ICMPv6EchoRequest, ICMPv6ND_NA, ICMPv6ND_NS,
                       ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr,
                       IPv6, IPv6ExtHdrFragment, IPOption_RR, Raw, wrpcap)

HERE = os.path.dirname(os.path.abspath(__file__))
US = "02:00:00:00:00:01"
A = "02:00:00:00:00:02"
C = "02:00:00:00:00:03"
GW = "02:00:00:00:00:fe"
US4, A4, C4, GW4 = "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.254"
US6, A6, GW6 = "fd00::1", "fd00::2", "fd00::fe"
BCAST = "ff:ff:ff:ff:ff:ff"
PAYLOAD = bytes(range(32))


def sn_mcast(addr):
    """Solicited-node multicast address and its MAC (RFC 4291 §2.7.1)."""
    import ipaddress
    low = int(ipaddress.IPv6Address(addr)) & 0xFFFFFF
    ip = str(ipaddress.IPv6Address(int(ipaddress.IPv6Address("ff02::1:ff00:0")) | low))
    mac = "33:33:ff:%02x:%02x:%02x" % (low >> 16, (low >> 8) & 0xFF, low & 0xFF)
    return ip, mac


def echo_req(src_mac, src, dst=US4, ident=0x1234, seq=1, l2=None, dst_mac=US, **ip):
    e = Ether(src=src_mac, dst=dst_mac)
    if l2 is not None:
        e = e / l2
    return e / IP(src=src, dst=dst, id=0x4242, flags="DF", ttl=61, **ip) / ICMP(type=8, id=ident, seq=seq) / PAYLOAD


def echo_rep(dst_mac, dst, src=US4, ident=0x1234, seq=1, l2=None):
    e = Ether(src=US, dst=dst_mac)
    if l2 is not None:
        e = e / l2
    return e / IP(src=src, dst=dst, id=0x4242, flags="DF", ttl=64) / ICMP(type=0, id=ident, seq=seq) / PAYLOAD


def arp_req(src_mac, psrc, pdst, l2=None):
    e = Ether(src=src_mac, dst=BCAST)
    if l2 is not None:
        e = e / l2
    return e / ARP(op=1, hwsrc=src_mac, psrc=psrc, hwdst="00:00:00:00:00:00", pdst=pdst)


def arp_rep(dst_mac, pdst, psrc=US4, l2=None):
    e = Ether(src=US, dst=dst_mac)
    if l2 is not None:
        e = e / l2
    return e / ARP(op=2, hwsrc=US, psrc=psrc, hwdst=dst_mac, pdst=pdst)


def ns(src_mac, src, target, dst=None, dst_mac=None, sll=True, hlim=255, opt=None):
    sn, snmac = sn_mcast(target)
    p = Ether(src=src_mac, dst=dst_mac or snmac) / IPv6(src=src, dst=dst or sn, hlim=hlim) / ICMPv6ND_NS(tgt=target)
    if opt is not None:
        p = p / opt
    elif sll:
        p = p / ICMPv6NDOptSrcLLAddr(lladdr=src_mac)
    return p


def na(dst_mac, dst, target=US6, solicited=True):
    return (Ether(src=US, dst=dst_mac) / IPv6(src=target, dst=dst, hlim=255)
            / ICMPv6ND_NA(tgt=target, R=0, S=1 if solicited else 0, O=1) / ICMPv6NDOptDstLLAddr(lladdr=US))


def echo6_req(src_mac, src, dst=US6, dst_mac=US):
    return Ether(src=src_mac, dst=dst_mac) / IPv6(src=src, dst=dst, hlim=60) / ICMPv6EchoRequest(id=0x77, seq=3, data=PAYLOAD)


def echo6_rep(dst_mac, dst, src=US6):
    return Ether(src=US, dst=dst_mac) / IPv6(src=src, dst=dst, hlim=64) / ICMPv6EchoReply(id=0x77, seq=3, data=PAYLOAD)


def corrupt(pkt, offset, value):
    b = bytearray(bytes(pkt))
    b[offset] = value
    return Ether(bytes(b))


def case(name, config, steps, counters):
    """steps: list of (input packet, [expected output packets])."""
    d = os.path.join(HERE, name)
    os.makedirs(d, exist_ok=True)
    ins = [s[0] for s in steps]
    outs = [o for s in steps for o in s[1]]
    wrpcap(os.path.join(d, "in.pcap"), ins)
    wrpcap(os.path.join(d, "expected.pcap"), outs)
    counters = dict(counters)
    counters["rx_packets"] = len(ins)
    counters["tx_packets"] = len(outs)
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump(counters, f, indent=2, sort_keys=True)
        f.write("\n")
    with open(os.path.join(d, "sluice.toml"), "w") as f:
        f.write(config)
    print(f"{name}: {len(ins)} in, {len(outs)} out")


CONFIG = """# pcap replay case: the test replaces the port's device with
# net_pcap0,rx_pcap=in.pcap,tx_pcap=<tmp>/out.pcap
[eal]
args = ["--no-huge", "-m", "256", "--no-pci", "--no-shconf", "--log-level=lib.eal:warning"]

[dataplane]
workers = [1]
mbufs = 2048
mbuf_cache = 64
rx_desc = 256
tx_desc = 256

[admin]
enabled = false

[[port]]
name = "p0"
vdev = "net_pcap0,rx_pcap=/dev/null"
mac = "02:00:00:00:00:01"
{vlan}addresses = ["10.0.0.1/24", "fd00::1/64"]
gateway = "10.0.0.254"
gateway6 = "fd00::fe"

[[neighbor]]
ip = "10.0.0.254"
mac = "02:00:00:00:00:fe"
port = "p0"

[[neighbor]]
ip = "fd00::fe"
mac = "02:00:00:00:00:fe"
port = "p0"
"""


def basic():
    dad_src = "::"
    all_nodes = "ff02::1"
    steps = [
        # ARP for us: answered, and the asker is learned (RFC 826 merge).
        (arp_req(A, A4, US4), [arp_rep(A, A4)]),
        # Echo from the learned neighbor.
        (echo_req(A, A4), [echo_rep(A, A4)]),
        # Echo from off-link, through the gateway (static neighbor).
        (echo_req(GW, "198.51.100.7"), [echo_rep(GW, "198.51.100.7")]),
        # Echo from an unknown on-link host: the reply cannot go out; Sluice
        # asks for the host's MAC instead, once per retry interval.
        (echo_req(C, C4), [Ether(src=US, dst=BCAST) / ARP(op=1, hwsrc=US, psrc=US4, hwdst="00:00:00:00:00:00", pdst=C4)]),
        (echo_req(C, C4, seq=2), []),
        # The host answers; the next echo is replied to.
        (Ether(src=C, dst=US) / ARP(op=2, hwsrc=C, psrc=C4, hwdst=US, pdst=US4), []),
        (echo_req(C, C4, seq=3), [echo_rep(C, C4, seq=3)]),
        # ARP for someone else.
        (arp_req(A, A4, "10.0.0.9"), []),
        # IPv6 neighbor solicitation for us, with source link-layer option.
        (ns(A, A6, US6), [na(A, A6)]),
        (echo6_req(A, A6), [echo6_rep(A, A6)]),
        # Duplicate address detection probe for our address: defend it
        # (RFC 4862 §5.4.3) with an advertisement to all nodes.
        (ns(A, dad_src, US6, sll=False), [na("33:33:00:00:00:01", all_nodes, solicited=False)]),
        # Off-link IPv6 echo via the static gateway neighbor.
        (echo6_req(GW, "2001:db8::5"), [echo6_rep(GW, "2001:db8::5")]),
        # Nothing listens on TCP/UDP yet.
        (Ether(src=A, dst=US) / IP(src=A4, dst=US4) / TCP(sport=40000, dport=80, flags="S"), []),
        (Ether(src=A, dst=US) / IP(src=A4, dst=US4) / UDP(sport=40000, dport=53) / b"q", []),
        # Not our IP, not our MAC.
        (echo_req(A, A4, dst="10.0.0.77"), []),
        (echo_req(A, A4, dst_mac="02:00:00:00:00:99"), []),
    ]
    counters = {
        "arp_replies": 1, "echo_replies": 5, "ndp_adverts": 2, "neighbor_solicits": 1,
        "neighbor_replies": 1, "drop_neighbor_miss": 2, "drop_arp_not_ours": 1,
        "drop_no_service": 2, "drop_ip_not_ours": 1, "drop_l2_not_ours": 1,
    }
    case("basic", CONFIG.format(vlan=""), steps, counters)


def malformed():
    good = echo_req(A, A4)
    gb = bytes(good)
    ip_off = 14
    steps = []
    counters = {}

    def drop(pkt, counter):
        steps.append((pkt, []))
        counters[counter] = counters.get(counter, 0) + 1

    drop(Raw(gb[:10]), "drop_truncated")                       # shorter than Ethernet
    drop(Ether(src=A, dst=US, type=0x1234) / Raw(b"x" * 46), "drop_ethertype")
    drop(Ether(gb[:ip_off + 10]), "drop_ipv4_malformed")       # IPv4 header cut
    drop(corrupt(good, ip_off, 0x65), "drop_ipv4_malformed")   # version 6 in IPv4
    drop(corrupt(good, ip_off, 0x44), "drop_ipv4_malformed")   # IHL 4
    b = bytearray(gb); b[ip_off + 2:ip_off + 4] = (200).to_bytes(2, "big")
    drop(Ether(bytes(b)), "drop_ipv4_malformed")               # total length beyond frame
    b = bytearray(gb); b[ip_off + 2:ip_off + 4] = (12).to_bytes(2, "big")
    drop(Ether(bytes(b)), "drop_ipv4_malformed")               # total length below header
    b = bytearray(gb); b[ip_off + 10] ^= 0xFF
    drop(Ether(bytes(b)), "drop_ipv4_checksum")
    drop(echo_req(A, A4, options=[IPOption_RR(routers=["1.2.3.4"])]), "drop_ipv4_options")
    p = Ether(src=A, dst=US) / IP(src=A4, dst=US4, flags="MF", id=7) / ICMP(type=8) / PAYLOAD
    drop(p, "drop_ipv4_fragment")
    p = Ether(src=A, dst=US) / IP(src=A4, dst=US4, frag=4, id=7) / Raw(PAYLOAD)
    drop(p, "drop_ipv4_fragment")
    b = bytearray(gb); b[ip_off + 20 + 2] ^= 0x55
    drop(Ether(bytes(b)), "drop_icmp_malformed")               # ICMP checksum
    drop(Ether(src=A, dst=US) / IP(src=A4, dst=US4, proto=1) / Raw(b"\x08\x00\x00"), "drop_icmp_malformed")
    drop(Ether(src=A, dst=US) / IP(src=A4, dst=US4) / ICMP(type=13), "drop_icmp_unhandled")
    drop(echo_req(A, "255.255.255.255"), "drop_bad_source")
    drop(echo_req(A, "224.0.0.5"), "drop_bad_source")
    drop(echo_req(A, "127.0.0.1"), "drop_bad_source")
    arp = bytes(arp_req(A, A4, US4))
    drop(Ether(arp[:14 + 20]), "drop_arp_malformed")            # ARP cut
    b = bytearray(arp); b[14 + 4] = 8                          # hlen 8
    drop(Ether(bytes(b)), "drop_arp_malformed")
    e6 = bytes(echo6_req(A, A6))
    drop(Ether(e6[:14 + 30]), "drop_ipv6_malformed")
    b = bytearray(e6); b[14 + 4:14 + 6] = (1000).to_bytes(2, "big")
    drop(Ether(bytes(b)), "drop_ipv6_malformed")               # payload length beyond frame
    p = Ether(src=A, dst=US) / IPv6(src=A6, dst=US6) / IPv6ExtHdrFragment(m=1) / ICMPv6EchoRequest()
    drop(p, "drop_ipv6_ext_header")
    b = bytearray(e6); b[14 + 40 + 2] ^= 0x55
    drop(Ether(bytes(b)), "drop_icmp_malformed")               # ICMPv6 checksum
    drop(ns(A, A6, US6, hlim=64), "drop_ndp_malformed")        # hop limit must be 255
    zero_len_opt = Raw(b"\x01\x00" + b"\x00" * 6)
    drop(ns(A, A6, US6, opt=zero_len_opt), "drop_ndp_malformed")
    drop(ns(A, A6, "ff02::1", dst="ff02::1:ff00:1", dst_mac="33:33:ff:00:00:01"), "drop_ndp_malformed")
    drop(echo_req(A, A4, l2=Dot1Q(vlan=5)), "drop_vlan_mismatch")
    drop(Ether(src=A, dst=US) / Dot1Q(vlan=5) / Dot1Q(vlan=6) / IP(src=A4, dst=US4) / ICMP(), "drop_vlan_mismatch")
    drop(Ether(dst=US, src=A, type=0x0800) / Raw(bytes((i * 37 + 11) & 0xFF for i in range(46))), "drop_ipv4_malformed")
    drop(Ether(dst="01:80:c2:00:00:0e", src=A, type=0x88cc) / Raw(b"\x00" * 46), "drop_l2_not_ours")
    # Martian and spoofed sources, and port 0, to the VIPs of the l4 case's
    # services and to our own address (NAT return traffic): dropped before
    # a connection is made or a backend chosen.
    for src in ("0.0.0.0", "0.1.2.3", "10.0.0.255", "240.0.0.1", "127.0.0.2"):
        drop(tcp4(src, "10.0.0.100", 40000, 80, "S"), "drop_bad_source")
    drop(Ether(src=GW, dst=US) / IP(src="224.0.0.1", dst="10.0.0.100") / UDP(sport=5353, dport=53), "drop_bad_source")
    for src, dst in ((US4, "10.0.0.100"), ("10.0.0.100", "10.0.0.100"), ("10.0.0.101", "10.0.0.100"),
                     ("10.0.0.102", US4)):
        drop(tcp4(src, dst, 40000, 80, "S"), "drop_spoofed_source")
    drop(echo_req(GW, "10.0.0.103"), "drop_spoofed_source")
    drop(tcp4(CL4, "10.0.0.100", 0, 80, "S"), "drop_bad_port")
    drop(tcp4(CL4, "10.0.0.101", 40000, 0, "S"), "drop_bad_port")
    drop(Ether(src=GW, dst=US) / IP(src=CL4, dst="10.0.0.100") / UDP(sport=0, dport=53), "drop_bad_port")
    drop(tcp4("10.0.0.11", US4, 0, 1024, "SA"), "drop_bad_port")
    tcp6 = lambda src, dst, sport=40000, dport=80: Ether(src=GW, dst=US) / IPv6(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="S")
    for src in ("::", "::1", "ff02::1", "::ffff:10.0.0.3", "fe80::7"):
        drop(tcp6(src, "fd00::100"), "drop_bad_source")
    drop(Ether(src=GW, dst=US) / IPv6(src="::", dst="fd00::100") / UDP(sport=5353, dport=53), "drop_bad_source")
    for src in (US6, "fd00::101"):
        drop(tcp6(src, "fd00::100"), "drop_spoofed_source")
    drop(tcp6(CL6, "fd00::100", sport=0), "drop_bad_port")
    drop(tcp6("fd00::11", US6, sport=80, dport=0), "drop_bad_port")
    # A good packet at the end proves Sluice is still answering.
    steps.append((arp_req(A, A4, US4), [arp_rep(A, A4)]))
    counters["arp_replies"] = 1
    # The l4 case's services, so that VIPs exist to be spoofed.
    case("malformed", L4_CONFIG.format(vlan="", max_flows=4096), steps, counters)


def vlan():
    tag = lambda v: Dot1Q(vlan=v)
    steps = [
        (arp_req(A, A4, US4, l2=tag(100)), [arp_rep(A, A4, l2=tag(100))]),
        (echo_req(A, A4, l2=tag(100)), [echo_rep(A, A4, l2=tag(100))]),
        (echo_req(A, A4, l2=tag(200)), []),
        (echo_req(A, A4), []),
        (arp_req(A, A4, US4), []),
    ]
    counters = {"arp_replies": 1, "echo_replies": 1, "drop_vlan_mismatch": 3}
    case("vlan", CONFIG.format(vlan="vlan = 100\n"), steps, counters)


L4_CONFIG = CONFIG.replace('[admin]', '''[conntrack]
max_flows = {max_flows}

[admin]''') + '''
[[neighbor]]
ip = "10.0.0.11"
mac = "02:00:00:00:00:11"
port = "p0"

[[neighbor]]
ip = "10.0.0.12"
mac = "02:00:00:00:00:12"
port = "p0"

[[neighbor]]
ip = "10.0.0.13"
mac = "02:00:00:00:00:13"
port = "p0"

[[neighbor]]
ip = "fd00::11"
mac = "02:00:00:00:00:11"
port = "p0"

[[cluster]]
name = "one"
[[cluster.backend]]
address = "10.0.0.11"

[[cluster]]
name = "two"
[[cluster.backend]]
address = "10.0.0.12"

[[cluster]]
name = "three"
[[cluster.backend]]
address = "10.0.0.13"

[[cluster]]
name = "six"
[[cluster.backend]]
address = "fd00::11"

[[service]]
name = "web-nat"
vip = "10.0.0.100"
port = 80
mode = "nat"
cluster = "one"
ingress = "p0"

[[service]]
name = "dns-nat"
vip = "10.0.0.100"
port = 53
protocol = "udp"
mode = "nat"
cluster = "two"
ingress = "p0"

[[service]]
name = "web-ipip"
vip = "10.0.0.101"
port = 80
mode = "ipip"
cluster = "three"
ingress = "p0"

[[service]]
name = "web-gre"
vip = "10.0.0.102"
port = 80
mode = "gre"
cluster = "three"
ingress = "p0"

[[service]]
name = "web-l2"
vip = "10.0.0.103"
port = 80
mode = "l2dsr"
cluster = "two"
ingress = "p0"

[[service]]
name = "web6-nat"
vip = "fd00::100"
port = 80
mode = "nat"
cluster = "six"
ingress = "p0"

[[service]]
name = "web6-ipip"
vip = "fd00::101"
port = 80
mode = "ipip"
cluster = "six"
ingress = "p0"
'''

B1, B2, B3 = "02:00:00:00:00:11", "02:00:00:00:00:12", "02:00:00:00:00:13"
CL4 = "198.51.100.7"
CL6 = "2001:db8::7"


def tcp4(src, dst, sport, dport, flags, ttl=60, payload=b"", src_mac=GW, dst_mac=US, seq=1000, ack=0):
    return (Ether(src=src_mac, dst=dst_mac) / IP(src=src, dst=dst, ttl=ttl, id=77, flags="DF")
            / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, window=8192) / payload)


def embedded(src, dst, sport, dport, ttl):
    """The datagram an ICMP error carries (RFC 792): the failed packet's IP
    header (its original total length) and the first 8 bytes of TCP."""
    import struct
    return bytes(IP(src=src, dst=dst, proto=6, ttl=ttl, id=77, flags="DF", len=1500)
                 / Raw(struct.pack("!HHI", sport, dport, 1000)))


def embedded6(src, dst, sport, dport):
    import struct
    return bytes(IPv6(src=src, dst=dst, nh=6, plen=1400, hlim=64) / Raw(struct.pack("!HHI", sport, dport, 1000)))


def l4():
    from scapy.all import GRE
    syn = tcp4(CL4, "10.0.0.100", 40000, 80, "S")
    steps = [
        # NAT: the SYN opens a connection; SNAT to 10.0.0.1, first port of
        # worker 0's slice (1024); TTL decremented.
        (syn, [tcp4("10.0.0.1", "10.0.0.11", 1024, 80, "S", ttl=59, src_mac=US, dst_mac=B1)]),
        # The backend's SYN-ACK comes back to the SNAT address/port and is
        # translated back to the client, via the gateway.
        (tcp4("10.0.0.11", "10.0.0.1", 80, 1024, "SA", ttl=64, src_mac=B1, seq=5000, ack=1001),
         [tcp4("10.0.0.100", CL4, 80, 40000, "SA", ttl=63, src_mac=US, dst_mac=GW, seq=5000, ack=1001)]),
        (tcp4(CL4, "10.0.0.100", 40000, 80, "A", seq=1001, ack=5001),
         [tcp4("10.0.0.1", "10.0.0.11", 1024, 80, "A", ttl=59, src_mac=US, dst_mac=B1, seq=1001, ack=5001)]),
        (tcp4(CL4, "10.0.0.100", 40000, 80, "PA", payload=b"GET / HTTP/1.0\r\n\r\n", seq=1001, ack=5001),
         [tcp4("10.0.0.1", "10.0.0.11", 1024, 80, "PA", ttl=59, payload=b"GET / HTTP/1.0\r\n\r\n",
               src_mac=US, dst_mac=B1, seq=1001, ack=5001)]),
        # NAT never creates state from anything but a SYN: RST and ACK of
        # unknown flows are dropped, as are replies to unknown SNAT ports.
        (tcp4(CL4, "10.0.0.100", 40001, 80, "R"), []),
        (tcp4(CL4, "10.0.0.100", 40002, 80, "A"), []),
        (tcp4("10.0.0.11", "10.0.0.1", 80, 5555, "SA", src_mac=B1), []),
        # UDP NAT: next SNAT port (1025); the reply goes back.
        (Ether(src=GW, dst=US) / IP(src=CL4, dst="10.0.0.100", ttl=60, id=9) / UDP(sport=5353, dport=53) / b"query",
         [Ether(src=US, dst=B2) / IP(src="10.0.0.1", dst="10.0.0.12", ttl=59, id=9) / UDP(sport=1025, dport=53) / b"query"]),
        (Ether(src=B2, dst=US) / IP(src="10.0.0.12", dst="10.0.0.1", ttl=64, id=10) / UDP(sport=53, dport=1025) / b"answer",
         [Ether(src=US, dst=GW) / IP(src="10.0.0.100", dst=CL4, ttl=63, id=10) / UDP(sport=53, dport=5353) / b"answer"]),
        # IP-in-IP DSR: outer header from our address to the backend; the
        # client's packet inside unchanged.
        (tcp4(CL4, "10.0.0.101", 40010, 80, "S"),
         [Ether(src=US, dst=B3) / IP(src="10.0.0.1", dst="10.0.0.13", ttl=64, id=0, flags="DF", proto=4)
          / tcp4(CL4, "10.0.0.101", 40010, 80, "S")[IP]]),
        # A mid-flow segment of a flow this Sluice never saw (e.g. after a
        # restart): forwarded without state to the backend Maglev picks.
        (tcp4(CL4, "10.0.0.101", 40011, 80, "A"),
         [Ether(src=US, dst=B3) / IP(src="10.0.0.1", dst="10.0.0.13", ttl=64, id=0, flags="DF", proto=4)
          / tcp4(CL4, "10.0.0.101", 40011, 80, "A")[IP]]),
        # GRE DSR.
        (tcp4(CL4, "10.0.0.102", 40020, 80, "S"),
         [Ether(src=US, dst=B3) / IP(src="10.0.0.1", dst="10.0.0.13", ttl=64, id=0, flags="DF", proto=47)
          / GRE(proto=0x0800) / tcp4(CL4, "10.0.0.102", 40020, 80, "S")[IP]]),
        # L2 DSR: only the MACs change.
        (tcp4(CL4, "10.0.0.103", 40030, 80, "S"),
         [tcp4(CL4, "10.0.0.103", 40030, 80, "S", src_mac=US, dst_mac=B2)]),
        # IPv6 NAT.
        (Ether(src=GW, dst=US) / IPv6(src=CL6, dst="fd00::100", hlim=60) / TCP(sport=40040, dport=80, flags="S", seq=7),
         [Ether(src=US, dst=B1) / IPv6(src="fd00::1", dst="fd00::11", hlim=59) / TCP(sport=1024, dport=80, flags="S", seq=7)]),
        (Ether(src=B1, dst=US) / IPv6(src="fd00::11", dst="fd00::1", hlim=64) / TCP(sport=80, dport=1024, flags="SA", seq=9, ack=8),
         [Ether(src=US, dst=GW) / IPv6(src="fd00::100", dst=CL6, hlim=63) / TCP(sport=80, dport=40040, flags="SA", seq=9, ack=8)]),
        # A port with no service on the VIP.
        (tcp4(CL4, "10.0.0.100", 40050, 8080, "S"), []),
        # ARP for a VIP is answered.
        (arp_req(GW, GW4, "10.0.0.100"), [arp_rep(GW, GW4, psrc="10.0.0.100")]),
        # TCP header cut short.
        (Ether(src=GW, dst=US) / IP(src=CL4, dst="10.0.0.100", proto=6) / Raw(b"\x00" * 10), []),
        # ICMP fragmentation-needed from the backend's side about a NATed
        # packet: translated back to the client (outer and embedded headers).
        (Ether(src=B1, dst=US) / IP(src="10.0.0.11", dst="10.0.0.1", ttl=64, id=3) / ICMP(type=3, code=4, nexthopmtu=1400)
         / Raw(embedded("10.0.0.1", "10.0.0.11", 1024, 80, ttl=59)),
         [Ether(src=US, dst=GW) / IP(src="10.0.0.100", dst=CL4, ttl=63, id=3) / ICMP(type=3, code=4, nexthopmtu=1400)
          / Raw(embedded(CL4, "10.0.0.100", 40000, 80, ttl=59))]),
        # ICMP fragmentation-needed from the client's side to a DSR VIP about
        # the backend's reply: encapsulated to the backend that owns the flow.
        (icmp_to_dsr := Ether(src=GW, dst=US) / IP(src="203.0.113.1", dst="10.0.0.101", ttl=60, id=4)
         / ICMP(type=3, code=4, nexthopmtu=1400) / Raw(embedded("10.0.0.101", CL4, 80, 40010, ttl=64)),
         [Ether(src=US, dst=B3) / IP(src="10.0.0.1", dst="10.0.0.13", ttl=64, id=0, proto=4) / icmp_to_dsr[IP]]),
        # An ICMP error too short to carry a datagram: dropped, not a crash.
        (Ether(src=GW, dst=US) / IP(src=CL4, dst="10.0.0.1") / ICMP(type=3, code=4), []),
        (Ether(src=GW, dst=US) / IP(src=CL4, dst="10.0.0.100") / ICMP(type=11, code=0) / Raw(b"\x45" + bytes(10)), []),
        # Neighbor solicitation for an IPv6 VIP is answered, from the VIP.
        (ns(GW, GW6, "fd00::100"), [na(GW, GW6, target="fd00::100")]),
        # IPv6-in-IPv6 DSR (RFC 2473, next header 41).
        (syn6 := Ether(src=GW, dst=US) / IPv6(src=CL6, dst="fd00::101", hlim=60) / TCP(sport=40060, dport=80, flags="S", seq=5),
         [Ether(src=US, dst=B1) / IPv6(src="fd00::1", dst="fd00::11", nh=41, hlim=64) / syn6[IPv6]]),
        # ICMPv6 packet-too-big to the DSR VIP about the backend's reply:
        # encapsulated to the flow's backend (path MTU discovery).
        (ptb := Ether(src=GW, dst=US) / IPv6(src="2001:db8::1", dst="fd00::101", hlim=60)
         / ICMPv6PacketTooBig(mtu=1280) / Raw(embedded6("fd00::101", CL6, 80, 40060)),
         [Ether(src=US, dst=B1) / IPv6(src="fd00::1", dst="fd00::11", nh=41, hlim=64) / ptb[IPv6]]),
        # ICMPv6 packet-too-big from the client's side to the NAT VIP about
        # our SYN-ACK: translated to the backend (outer and embedded
        # headers, ICMPv6 checksum over the new pseudo-header).
        (Ether(src=GW, dst=US) / IPv6(src="2001:db8::1", dst="fd00::100", hlim=60)
         / ICMPv6PacketTooBig(mtu=1280) / Raw(embedded6("fd00::100", CL6, 80, 40040)),
         [Ether(src=US, dst=B1) / IPv6(src="fd00::1", dst="fd00::11", hlim=59)
          / ICMPv6PacketTooBig(mtu=1280) / Raw(embedded6("fd00::11", "fd00::1", 80, 1024))]),
        # ICMPv6 destination-unreachable from the backend about our SNATed
        # SYN, quoted whole: translated back to the client, the embedded TCP
        # checksum updated for the new addresses and ports.
        (Ether(src=B1, dst=US) / IPv6(src="fd00::11", dst="fd00::1", hlim=64) / ICMPv6DestUnreach(code=1)
         / Raw(bytes(IPv6(src="fd00::1", dst="fd00::11", hlim=59) / TCP(sport=1024, dport=80, flags="S", seq=7))),
         [Ether(src=US, dst=GW) / IPv6(src="fd00::100", dst=CL6, hlim=63) / ICMPv6DestUnreach(code=1)
          / Raw(bytes(IPv6(src=CL6, dst="fd00::100", hlim=59) / TCP(sport=40040, dport=80, flags="S", seq=7)))]),
    ]
    counters = {
        "l4_forwarded": 9, "l4_returned": 3, "l4_stateless": 1, "arp_replies": 1,
        "drop_no_conn": 3, "drop_no_service": 1, "drop_l4_malformed": 1, "icmp_errors_forwarded": 5,
        "drop_icmp_unhandled": 2, "ndp_adverts": 1,
    }
    case("l4", L4_CONFIG.format(vlan="", max_flows=4096), steps, counters)


def table_full():
    # 1024 is the smallest table; flows beyond it are still forwarded in
    # DSR mode, by the consistent hash, without state.
    n = 1030
    steps = []
    for i in range(n):
        p = tcp4(CL4, "10.0.0.101", 20000 + i, 80, "S")
        steps.append((p, [Ether(src=US, dst=B3) / IP(src="10.0.0.1", dst="10.0.0.13", ttl=64, id=0, flags="DF", proto=4) / p[IP]]))
    counters = {"l4_forwarded": 1024, "l4_table_full": n - 1024}
    case("table_full", L4_CONFIG.format(vlan="", max_flows=1024), steps, counters)


def l4_vlan():
    # A port with a VLAN: tagged client packets are balanced and the
    # forwarded packets carry the port's tag.
    tag = lambda: Dot1Q(vlan=100)
    syn = Ether(src=GW, dst=US) / tag() / IP(src=CL4, dst="10.0.0.100", ttl=60, id=77, flags="DF") / TCP(sport=40000, dport=80, flags="S", seq=1000, window=8192)
    out = Ether(src=US, dst=B1) / tag() / IP(src="10.0.0.1", dst="10.0.0.11", ttl=59, id=77, flags="DF") / TCP(sport=1024, dport=80, flags="S", seq=1000, window=8192)
    dsr = Ether(src=GW, dst=US) / tag() / IP(src=CL4, dst="10.0.0.101", ttl=60, id=78, flags="DF") / TCP(sport=40001, dport=80, flags="S", seq=1000, window=8192)
    dsr_out = Ether(src=US, dst=B3) / tag() / IP(src="10.0.0.1", dst="10.0.0.13", ttl=64, id=0, flags="DF", proto=4) / dsr[IP]
    untagged = tcp4(CL4, "10.0.0.100", 40002, 80, "S")
    steps = [(syn, [out]), (dsr, [dsr_out]), (untagged, [])]
    counters = {"l4_forwarded": 2, "drop_vlan_mismatch": 1}
    case("l4_vlan", L4_CONFIG.format(vlan="vlan = 100\n", max_flows=4096), steps, counters)


if __name__ == "__main__":
    basic()
    malformed()
    vlan()
    l4()
    l4_vlan()
    table_full()
