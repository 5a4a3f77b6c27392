#!/usr/bin/env python3
"""Write a benchmark traffic pcap with the standard library only.

    python3 benches/gen_pcap.py icmp OUT.pcap [FLOWS]
    python3 benches/gen_pcap.py syn OUT.pcap [FLOWS [PASSES]]

`syn`: 60-byte TCP SYNs to 10.0.0.100:80 from FLOWS distinct (source
address, source port) pairs in 198.18.0.0/15, as sent by the router;
PASSES times over (default once).

`syn-split`: the same SYNs written to OUT.0.pcap .. OUT.<QUEUES-1>.pcap, each
flow to the file of its queue by a hash of its tuple, as a NIC's RSS would
spread them over its queues (`python3 benches/gen_pcap.py syn-split OUT
FLOWS QUEUES`).

`nat-return`: the redirect ring's cost (benches/workers.sh). Two workers,
two ports, each with one rx pcap per queue: OUT.c0/.c1 (client side) and
OUT.b0/.b1 (backend side). Client queue 0 holds FLOWS SYNs to the VIP, so
worker 0 opens every connection and gives flow i the SNAT port 1024 + i
(one SNAT address, 10.1.0.1, one backend, 10.1.0.101). Each backend queue
starts with LEAD frames for another MAC (dropped at once, `drop_l2_not_ours`)
so that the SYNs are in before any reply; then the backend's SYN-ACK of
every flow to 10.1.0.1:(1024 + i) follows on backend queue 0 (`owner`:
the owner's queue), on backend queue 1 (`foreign`: each crosses the
redirect ring), or nowhere (`none`: the baseline)
(`python3 benches/gen_pcap.py nat-return OUT FLOWS LEAD owner|foreign|none`).

`icmp`: 60-byte frames (64 on the wire with FCS) carrying ICMP echo requests
to 10.0.0.1 from FLOWS distinct sources in 198.18.0.0/15, as sent by the
router 02:00:00:00:00:fe; Sluice answers each one, routing the reply out of
its second port (see benches/pps.toml).
"""
import struct
import sys


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def ipv4(src, dst, proto, payload, ident):
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0x4000, 64, proto, 0, src, dst)
    return hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:] + payload


def icmp_frames(flows):
    us_mac = bytes.fromhex("020000000001")
    gw_mac = bytes.fromhex("0200000000fe")
    dst = bytes([10, 0, 0, 1])
    for i in range(flows):
        src = bytes([198, 18 + ((i >> 16) & 1), (i >> 8) & 0xFF, i & 0xFF])
        body = struct.pack("!BBHHH", 8, 0, 0, 0x5151, i & 0xFFFF) + bytes(18)
        body = body[:2] + struct.pack("!H", csum(body)) + body[4:]
        yield us_mac + gw_mac + b"\x08\x00" + ipv4(src, dst, 1, body, i & 0xFFFF)


def tcp(src, dst, sport, dport, flags, seq):
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 65535, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(hdr))
    c = csum(pseudo + hdr)
    return hdr[:16] + struct.pack("!H", c) + hdr[18:]


def syn_frames(flows):
    us_mac = bytes.fromhex("020000000001")
    gw_mac = bytes.fromhex("0200000000fe")
    dst = bytes([10, 0, 0, 100])
    for i in range(flows):
        a = i % 131072
        src = bytes([198, 18 + (a >> 16), (a >> 8) & 0xFF, a & 0xFF])
        sport = 1024 + i // 131072
        seg = tcp(src, dst, sport, 80, 0x02, i)
        ip = ipv4(src, dst, 6, seg, i & 0xFFFF)
        yield us_mac + gw_mac + b"\x08\x00" + ip + bytes(60 - 14 - len(ip))


def syn_split(out, flows, queues):
    import zlib
    files = [open(f"{out}.{q}.pcap", "wb") for q in range(queues)]
    for f in files:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    counts = [0] * queues
    for fr in syn_frames(flows):
        # source address, destination address, ports: the RSS tuple
        q = zlib.crc32(fr[26:38]) % queues
        files[q].write(struct.pack("<IIII", 0, 0, len(fr), len(fr)))
        files[q].write(fr)
        counts[q] += 1
    for f in files:
        f.close()
    return counts


def nat_return(out, flows, lead, where):
    lb_p1 = bytes.fromhex("020000000101")
    be_mac = bytes.fromhex("020000000165")
    other = bytes.fromhex("020000009999")
    be, snat = bytes([10, 1, 0, 101]), bytes([10, 1, 0, 1])

    def replies():
        for i in range(flows):
            seg = tcp(be, snat, 80, 1024 + i, 0x12, 7 * i)
            ip = ipv4(be, snat, 6, seg, i & 0xFFFF)
            yield lb_p1 + be_mac + b"\x08\x00" + ip + bytes(60 - 14 - len(ip))

    def leading():
        fr = next(replies())
        for _ in range(lead):
            yield other + fr[6:]

    write(f"{out}.c0.pcap", syn_frames(flows))
    write(f"{out}.c1.pcap", [])
    for q in (0, 1):
        mine = (where == "owner" and q == 0) or (where == "foreign" and q == 1)
        gens = [leading()] + ([replies()] if mine else [])
        write(f"{out}.b{q}.pcap", (fr for g in gens for fr in g))


def write(path, frames):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        n = 0
        for fr in frames:
            f.write(struct.pack("<IIII", 0, 0, len(fr), len(fr)))
            f.write(fr)
            n += 1
    return n


if __name__ == "__main__":
    kind, out = sys.argv[1], sys.argv[2]
    if kind == "syn-split":
        counts = syn_split(out, int(sys.argv[3]), int(sys.argv[4]))
        print(f"{out}.*.pcap: {counts} frames per queue (syn)")
        sys.exit(0)
    if kind == "nat-return":
        nat_return(out, int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
        sys.exit(0)
    flows = int(sys.argv[3]) if len(sys.argv) > 3 else 1024
    passes = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    gens = {"icmp": icmp_frames, "syn": syn_frames}
    n = write(out, (f for _ in range(passes) for f in gens[kind](flows)))
    print(f"{out}: {n} frames ({kind})")
