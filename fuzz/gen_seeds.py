#!/usr/bin/env python3
"""Builds the packets behind the wire tests and the fuzz seed corpus.

Writes fuzz/seeds/parse/<name>.bin (one raw Ethernet frame each) and
src/wire/testdata.rs (the same frames as Rust byte arrays, one line per
header). Run from the repository root after `pip install scapy`:

    python3 fuzz/gen_seeds.py

Addresses are from the documentation ranges (RFC 5737, RFC 3849); MACs are
locally administered. Every field scapy would otherwise pick (IDs, sequence
numbers) is fixed, so the output is the same on every run.
"""
import os
import textwrap
import sys

from scapy.all import (ARP, DNS, DNSQR, ICMP, IP, TCP, UDP, Dot1AD, Dot1Q,
                       Ether, ICMPv6DestUnreach, ICMPv6EchoReply,
                       ICMPv6EchoRequest, ICMPv6ND_NA, ICMPv6ND_NS,
                       ICMPv6ND_RA, ICMPv6ND_RS, ICMPv6NDOptDstLLAddr,
                       ICMPv6NDOptMTU, ICMPv6NDOptPrefixInfo,
                       ICMPv6NDOptSrcLLAddr, ICMPv6PacketTooBig, IPOption_RR,
                       IPOption_Router_Alert, IPv6, IPv6ExtHdrFragment,
                       IPv6ExtHdrHopByHop, Raw, RouterAlert, fragment)

CLIENT_MAC = "02:00:00:00:00:01"
LB_MAC = "02:00:00:00:00:02"
ROUTER_MAC = "02:00:00:00:00:fe"
CLIENT4 = "192.0.2.1"
LB4 = "192.0.2.2"
VIP4 = "198.51.100.10"
CLIENT6 = "2001:db8::1"
VIP6 = "2001:db8::10"
CLIENT_LL = "fe80::1"
ROUTER_LL = "fe80::fe"

TCP_OPTS = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1000, 0)),
            ("NOP", None), ("WScale", 7)]


def eth(src=CLIENT_MAC, dst=LB_MAC):
    return Ether(src=src, dst=dst)


def frames():
    out = []

    def add(name, doc, pkt):
        out.append((name, doc, bytes(pkt)))

    add("ARP_REQUEST", "ARP who-has 192.0.2.2 tell 192.0.2.1.",
        Ether(src=CLIENT_MAC, dst="ff:ff:ff:ff:ff:ff") /
        ARP(op=1, hwsrc=CLIENT_MAC, psrc=CLIENT4, hwdst="00:00:00:00:00:00", pdst=LB4))
    add("ARP_REPLY", "ARP 192.0.2.2 is-at 02:00:00:00:00:02.",
        eth(LB_MAC, CLIENT_MAC) /
        ARP(op=2, hwsrc=LB_MAC, psrc=LB4, hwdst=CLIENT_MAC, pdst=CLIENT4))
    add("VLAN_ARP_REQUEST", "ARP request on VLAN 100.",
        Ether(src=CLIENT_MAC, dst="ff:ff:ff:ff:ff:ff") / Dot1Q(vlan=100) /
        ARP(op=1, hwsrc=CLIENT_MAC, psrc=CLIENT4, hwdst="00:00:00:00:00:00", pdst=VIP4))
    add("ICMP_ECHO_REQUEST", "ICMP echo request to the VIP.",
        eth() / IP(src=CLIENT4, dst=VIP4, id=0x1234, flags="DF", ttl=64) /
        ICMP(type=8, id=0x1c46, seq=1) / Raw(b"sluice-ping!"))
    add("ICMP_ECHO_REPLY", "ICMP echo reply from the VIP.",
        eth(LB_MAC, CLIENT_MAC) / IP(src=VIP4, dst=CLIENT4, id=0x4321, flags="DF", ttl=64) /
        ICMP(type=0, id=0x1c46, seq=1) / Raw(b"sluice-ping!"))
    add("ICMP_FRAG_NEEDED", "ICMP destination unreachable, fragmentation needed "
        "(MTU 1400), quoting the IPv4 header and 8 bytes of TCP.",
        eth(ROUTER_MAC, LB_MAC) / IP(src="203.0.113.1", dst=VIP4, id=7, ttl=250) /
        ICMP(type=3, code=4, nexthopmtu=1400) /
        bytes(IP(src=VIP4, dst=CLIENT4, id=0x4d2, flags="DF", ttl=63) /
              TCP(sport=80, dport=49152, seq=0x0a0b0c0d, ack=0x01020305, flags="A"))[:28])
    add("VLAN_TCP_SYN", "TCP SYN to VIP:80 on VLAN 100, priority 5, with MSS, "
        "SACK-permitted, timestamps and window scale.",
        eth() / Dot1Q(vlan=100, prio=5) / IP(src=CLIENT4, dst=VIP4, id=0x4d2, flags="DF", ttl=64) /
        TCP(sport=49152, dport=80, seq=0x01020304, flags="S", window=64240, options=TCP_OPTS))
    add("TCP_SYN_ACK", "TCP SYN-ACK from VIP:80.",
        eth(LB_MAC, CLIENT_MAC) / IP(src=VIP4, dst=CLIENT4, id=0, flags="DF", ttl=64) /
        TCP(sport=80, dport=49152, seq=0x0a0b0c0c, ack=0x01020305, flags="SA", window=65160,
            options=[("MSS", 1460), ("SAckOK", b""), ("Timestamp", (2000, 1000)), ("NOP", None),
                     ("WScale", 7)]))
    add("TCP_HTTP_GET", "TCP PSH|ACK carrying an HTTP request.",
        eth() / IP(src=CLIENT4, dst=VIP4, id=0x4d3, flags="DF", ttl=64) /
        TCP(sport=49152, dport=80, seq=0x01020305, ack=0x0a0b0c0d, flags="PA", window=502) /
        Raw(b"GET / HTTP/1.1\r\nHost: vip.example\r\n\r\n"))
    add("UDP_DNS_QUERY", "UDP DNS query for example.com A.",
        eth() / IP(src=CLIENT4, dst=VIP4, id=0x2222, ttl=64) /
        UDP(sport=53000, dport=53) / DNS(id=0xbeef, rd=1, qd=DNSQR(qname="example.com")))
    add("UDP_NO_CHECKSUM", "UDP over IPv4 with checksum 0 (none, RFC 768).",
        eth() / IP(src=CLIENT4, dst=VIP4, id=0x3333, ttl=64) /
        UDP(sport=40000, dport=9999, chksum=0) / Raw(b"\x08\x00\x00\x00\x00\x00\x64\x00"))
    big = (eth() / IP(src=CLIENT4, dst=VIP4, id=0xf00d, ttl=64) /
           UDP(sport=5000, dport=5001) / Raw(bytes(range(64))))
    frags = fragment(big[IP], fragsize=40)
    add("IPV4_FRAG_FIRST", "First fragment of a 72-byte UDP datagram (MF, offset 0).",
        eth() / frags[0])
    add("IPV4_FRAG_LAST", "Last fragment of the same datagram (offset 40).",
        eth() / frags[-1])
    add("IPV4_OPTIONS", "IPv4 with Router Alert and Record Route options (IHL 9), "
        "carrying UDP.",
        eth() / IP(src=CLIENT4, dst=VIP4, id=0x5555, ttl=1,
                   options=[IPOption_Router_Alert(), IPOption_RR(routers=["192.0.2.254"] * 2)]) /
        UDP(sport=1000, dport=2000) / Raw(b"opts"))
    add("QINQ_ICMP_ECHO", "ICMP echo in an 802.1ad S-tag (10) and a C-tag (100): "
        "Sluice refuses QinQ.",
        Ether(src=CLIENT_MAC, dst=LB_MAC, type=0x88a8) / Dot1AD(vlan=10) / Dot1Q(vlan=100) /
        IP(src=CLIENT4, dst=VIP4, id=1, ttl=64) / ICMP(type=8, id=1, seq=1))

    add("ICMPV6_ECHO_REQUEST", "ICMPv6 echo request to the VIP.",
        eth() / IPv6(src=CLIENT6, dst=VIP6, hlim=64) /
        ICMPv6EchoRequest(id=0x1c46, seq=1, data=b"sluice-ping6!"))
    add("ICMPV6_ECHO_REPLY", "ICMPv6 echo reply from the VIP.",
        eth(LB_MAC, CLIENT_MAC) / IPv6(src=VIP6, dst=CLIENT6, hlim=64) /
        ICMPv6EchoReply(id=0x1c46, seq=1, data=b"sluice-ping6!"))
    add("NDP_NS", "Neighbor Solicitation for the VIP to its solicited-node "
        "group, with a source link-layer address option.",
        eth(CLIENT_MAC, "33:33:ff:00:00:10") /
        IPv6(src=CLIENT6, dst="ff02::1:ff00:10", hlim=255) /
        ICMPv6ND_NS(tgt=VIP6) / ICMPv6NDOptSrcLLAddr(lladdr=CLIENT_MAC))
    add("NDP_NA", "Solicited Neighbor Advertisement (S|O) for the VIP with a "
        "target link-layer address option.",
        eth(LB_MAC, CLIENT_MAC) / IPv6(src=VIP6, dst=CLIENT6, hlim=255) /
        ICMPv6ND_NA(tgt=VIP6, R=0, S=1, O=1) / ICMPv6NDOptDstLLAddr(lladdr=LB_MAC))
    add("NDP_NS_DAD", "Duplicate Address Detection probe: NS from :: with no option.",
        eth(CLIENT_MAC, "33:33:ff:00:00:01") /
        IPv6(src="::", dst="ff02::1:ff00:1", hlim=255) / ICMPv6ND_NS(tgt=CLIENT6))
    add("NDP_RS", "Router Solicitation with a source link-layer address option.",
        eth(CLIENT_MAC, "33:33:00:00:00:02") / IPv6(src=CLIENT_LL, dst="ff02::2", hlim=255) /
        ICMPv6ND_RS() / ICMPv6NDOptSrcLLAddr(lladdr=CLIENT_MAC))
    add("NDP_RA", "Router Advertisement with source link-layer address, MTU and "
        "prefix information options.",
        eth(ROUTER_MAC, "33:33:00:00:00:01") / IPv6(src=ROUTER_LL, dst="ff02::1", hlim=255) /
        ICMPv6ND_RA(chlim=64, routerlifetime=1800) / ICMPv6NDOptSrcLLAddr(lladdr=ROUTER_MAC) /
        ICMPv6NDOptMTU(mtu=1500) /
        ICMPv6NDOptPrefixInfo(prefix="2001:db8::", prefixlen=64, validlifetime=86400,
                              preferredlifetime=14400))
    add("ICMPV6_PACKET_TOO_BIG", "ICMPv6 Packet Too Big (MTU 1280) quoting the "
        "start of a TCP segment.",
        eth(ROUTER_MAC, LB_MAC) / IPv6(src="2001:db8:ffff::1", dst=VIP6, hlim=62) /
        ICMPv6PacketTooBig(mtu=1280) /
        bytes(IPv6(src=VIP6, dst=CLIENT6, hlim=63) /
              TCP(sport=80, dport=49152, seq=0x0a0b0c0d, ack=0x01020305, flags="A"))[:48])
    add("ICMPV6_DST_UNREACH", "ICMPv6 destination unreachable (port) quoting a UDP datagram.",
        eth(LB_MAC, CLIENT_MAC) / IPv6(src=VIP6, dst=CLIENT6, hlim=64) /
        ICMPv6DestUnreach(code=4) /
        bytes(IPv6(src=CLIENT6, dst=VIP6, hlim=64) / UDP(sport=53000, dport=9) / Raw(b"x")))
    add("IPV6_TCP_SYN", "TCP SYN to [VIP]:443 over IPv6.",
        eth() / IPv6(src=CLIENT6, dst=VIP6, hlim=64, fl=0x12345, tc=0x28) /
        TCP(sport=49153, dport=443, seq=0x11223344, flags="S", window=64800, options=TCP_OPTS))
    add("IPV6_UDP_DNS_QUERY", "UDP DNS query over IPv6, on VLAN 200.",
        eth() / Dot1Q(vlan=200) / IPv6(src=CLIENT6, dst=VIP6, hlim=64) /
        UDP(sport=53001, dport=53) / DNS(id=0xcafe, rd=1, qd=DNSQR(qname="example.com", qtype="AAAA")))
    add("IPV6_FRAGMENT", "IPv6 first fragment (fragment header, M=1) of a UDP datagram.",
        eth() / IPv6(src=CLIENT6, dst=VIP6, hlim=64) /
        IPv6ExtHdrFragment(id=0xabcd, m=1, offset=0, nh=17) /
        bytes(UDP(sport=5000, dport=5001, len=100, chksum=0x1234) / Raw(bytes(range(24)))))
    add("IPV6_HOP_BY_HOP", "IPv6 with a hop-by-hop header (router alert) before ICMPv6 echo.",
        eth() / IPv6(src=CLIENT6, dst=VIP6, hlim=1) / IPv6ExtHdrHopByHop(options=[RouterAlert()]) /
        ICMPv6EchoRequest(id=7, seq=7))
    return out


LAYER_NAMES = {
    "Ethernet": "Ethernet", "802.1Q": "802.1Q tag", "802_1AD": "802.1ad tag",
    "ARP": "ARP", "IP": "IPv4", "IPv6": "IPv6", "TCP": "TCP", "UDP": "UDP",
    "ICMP": "ICMP", "Raw": "payload", "Padding": "padding", "DNS": "DNS",
    "ICMPv6 Echo Request": "ICMPv6 echo request",
    "ICMPv6 Echo Reply": "ICMPv6 echo reply",
    "ICMPv6 Neighbor Discovery - Neighbor Solicitation": "ICMPv6 NS",
    "ICMPv6 Neighbor Discovery - Neighbor Advertisement": "ICMPv6 NA",
    "ICMPv6 Neighbor Discovery - Router Solicitation": "ICMPv6 RS",
    "ICMPv6 Neighbor Discovery - Router Advertisement": "ICMPv6 RA",
    "ICMPv6 Neighbor Discovery Option - Source Link-Layer Address":
        "NDP option: source link-layer address",
    # RFC 4861 §4.6.1 calls type 2 the *target* link-layer address.
    "ICMPv6 Neighbor Discovery Option - Destination Link-Layer Address":
        "NDP option: target link-layer address",
    "ICMPv6 Neighbor Discovery Option - MTU": "NDP option: MTU",
    "ICMPv6 Neighbor Discovery Option - Prefix Information": "NDP option: prefix information",
    "ICMPv6 Packet Too Big": "ICMPv6 packet too big",
    "ICMPv6 Destination Unreachable": "ICMPv6 destination unreachable",
    "IPv6 Extension Header - Fragmentation header": "IPv6 fragment header",
    "IPv6 Extension Header - Hop-by-Hop Options Header": "IPv6 hop-by-hop options",
}


def layers(frame):
    """(label, start, end) for each header scapy finds in `frame`."""
    pkt = Ether(frame)
    spans = []
    layer, start = pkt, 0
    while layer is not None and layer.name != "NoPayload":
        name = layer.name
        if name in ("IP in ICMP", "TCP in ICMP", "UDP in ICMP", "IPv6 in ICMPv6",
                    "TCP in ICMP", "UDP in ICMP"):
            spans.append(("quoted datagram", start, len(frame)))
            break
        hdr = len(layer) - len(layer.payload) if layer.payload.name != "NoPayload" else len(layer)
        if name == "DNS":
            hdr = len(frame) - start
        spans.append((LAYER_NAMES.get(name, name), start, start + hdr))
        start += hdr
        if name == "DNS":
            break
        layer = layer.payload
    if start < len(frame) and spans[-1][2] < len(frame):
        spans.append(("rest", start, len(frame)))
    return spans


def rust_array(name, doc, frame):
    lines = ["/// " + l for l in textwrap.wrap(doc, 92)]
    # One header per line; rustfmt would join each layer comment to the
    # line above it.
    lines += ["#[rustfmt::skip]", f"pub const {name}: [u8; {len(frame)}] = ["]
    for label, start, end in layers(frame):
        lines.append(f"    // {label} ({start}..{end})")
        chunk = frame[start:end]
        for i in range(0, len(chunk), 16):
            lines.append("    " + ", ".join(f"0x{b:02x}" for b in chunk[i:i + 16]) + ",")
    lines.append("];")
    return "\n".join(lines)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    seeds = os.path.join(root, "fuzz", "seeds", "parse")
    os.makedirs(seeds, exist_ok=True)
    all_frames = frames()
    for name, _, frame in all_frames:
        with open(os.path.join(seeds, name.lower() + ".bin"), "wb") as f:
            f.write(frame)

    parts = [
        "//! Captured frames for the wire tests. Generated by `fuzz/gen_seeds.py`",
        "//! (scapy); the same bytes are the fuzz seeds in `fuzz/seeds/parse/`.",
        "//! Do not edit by hand: change the script and run it again.",
        "",
        "use std::net::{Ipv4Addr, Ipv6Addr};",
        "",
        "use super::ethernet::EthernetAddress;",
        "",
        "pub const CLIENT_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);",
        "pub const LB_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x02]);",
        "pub const CLIENT4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);",
        "pub const LB4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);",
        "pub const VIP4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);",
        "pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);",
        "pub const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);",
        "",
    ]
    for name, doc, frame in all_frames:
        parts.append(rust_array(name, doc, frame))
        parts.append("")
    parts.append("/// Every frame above, by name.")
    parts.append("pub const ALL: &[(&str, &[u8])] = &[")
    for name, _, _ in all_frames:
        parts.append(f'    ("{name}", &{name}),')
    parts.append("];")
    with open(os.path.join(root, "src", "wire", "testdata.rs"), "w") as f:
        f.write("\n".join(parts) + "\n")
    print(f"{len(all_frames)} frames", file=sys.stderr)


if __name__ == "__main__":
    main()
