#!/usr/bin/env python3
"""Writes the hand-made seed inputs of fuzz/seeds/TARGET/ (well-formed inputs each target's
parsers accept, so the fuzzer starts past the first checks). Run from fuzz/; the output is
committed, this script only says how it was made."""
import json, os, struct

def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b)//2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff

GW = bytes([0x02, 0x42, 10, 89, 0, 1])
EP = bytes([2, 0, 0, 0, 0, 0x0a])
SRC = bytes([10, 89, 0, 2]); DST = bytes([192, 0, 2, 1])

def ipv4(proto, payload, src=SRC, dst=DST, ttl=64):
    h = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(payload), 1, 0x4000, ttl, proto, 0, src, dst)
    h = h[:10] + struct.pack('!H', csum(h)) + h[12:]
    return h + payload

def l4sum(proto, seg, src=SRC, dst=DST):
    return csum(src + dst + struct.pack('!BBH', 0, proto, len(seg)) + seg)

def udp(payload, sport=40000, dport=53):
    u = struct.pack('!HHHH', sport, dport, 8 + len(payload), 0) + payload
    return u[:6] + struct.pack('!H', l4sum(17, u) or 0xffff) + u[8:]

def tcp(flags, payload=b'', seq=1000, ack=0, opts=b''):
    off = (20 + len(opts)) // 4
    t = struct.pack('!HHIIBBHHH', 40000, 80, seq, ack, off << 4, flags, 65535, 0, 0) + opts + payload
    return t[:16] + struct.pack('!H', l4sum(6, t)) + t[18:]

def icmp_echo(ident=7, seq=1, data=b'ping'):
    m = struct.pack('!BBHHH', 8, 0, 0, ident, seq) + data
    return m[:2] + struct.pack('!H', csum(m)) + m[4:]

def eth(dst, src, payload, ethertype=0x0800):
    return dst + src + struct.pack('!H', ethertype) + payload

def vnet(flags=0, gso_type=0, hdr_len=0, gso_size=0, csum_start=0, csum_offset=0):
    return struct.pack('<BBHHHH', flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)

def dns_q(name, qtype=1, ident=0x1234):
    q = struct.pack('!HHHHHH', ident, 0x0100, 1, 0, 0, 0)
    for label in name.split('.'):
        q += bytes([len(label)]) + label.encode()
    return q + b'\0' + struct.pack('!HH', qtype, 1)

def dns_answer(name, ident=0x1234):
    q = dns_q(name, ident=ident)
    a = bytearray(q)
    a[2:4] = struct.pack('!H', 0x8180); a[6:8] = struct.pack('!H', 1)
    return bytes(a) + struct.pack('!HHHIH4s', 0xc00c, 1, 1, 300, 4, bytes([192, 0, 2, 9]))

seeds = {}
syn = tcp(0x02, opts=bytes([2, 4, 5, 0xb4, 1, 3, 3, 7]))
big = tcp(0x18, bytes(range(256)) * 4, ack=5)
udp_pkt = ipv4(17, udp(b'hello', dport=9999))
seeds['frame_path'] = {
    'ipv4_tcp': bytes([0]) + vnet() + eth(GW, EP, ipv4(6, syn)),
    'secured_udp': bytes([2]) + vnet() + eth(b'\xff' * 6, EP, udp_pkt),
    'tso': bytes([1]) + vnet(1, 1, 54, 200, 34, 16) + eth(GW, EP, ipv4(6, big)),
    'arp': bytes([2]) + vnet() + eth(b'\xff' * 6, EP, struct.pack('!HHBBH6s4s6s4s', 1, 0x0800, 6, 4, 1, EP, SRC, b'\0' * 6, bytes([10, 89, 0, 1])), 0x0806),
}
seeds['gso_segment'] = {
    'tcp4': vnet(1, 1, 54, 200, 34, 16) + b'\0\0' + eth(GW, EP, ipv4(6, big)),
    'tcp4_limit': vnet(1, 1, 54, 1000, 34, 16) + struct.pack('!H', 300) + eth(GW, EP, ipv4(6, big)),
    'udp_l4': vnet(1, 5, 42, 100, 34, 6) + b'\0\0' + eth(GW, EP, ipv4(17, udp(bytes(500)))),
    'csum_only': vnet(1, 0, 0, 0, 34, 6) + b'\0\0' + eth(GW, EP, udp_pkt),
}
vx = bytes([0x08, 0, 0, 0, 0, 0, 42, 0])
seeds['vxlan_decap'] = {
    'tcp': vx + eth(EP, GW, ipv4(6, tcp(0x10, b'x' * 100, ack=1))),
    'udp': vx + eth(EP, GW, udp_pkt),
    'tagged': vx + EP + GW + b'\x81\x00\x00\x05\x08\x00' + udp_pkt,
}
seeds['gateway_ingest'] = {
    'udp': vnet() + eth(GW, EP, udp_pkt),
    'icmp_echo': vnet() + eth(GW, EP, ipv4(1, icmp_echo())),
    'tcp_syn': vnet() + eth(GW, EP, ipv4(6, syn)),
    'udp_partial': vnet(1, 0, 0, 0, 34, 6) + eth(GW, EP, udp_pkt),
    'udp_gso': vnet(1, 5, 42, 100, 34, 6) + eth(GW, EP, ipv4(17, udp(bytes(500)))),
    'mapped': vnet() + eth(GW, EP, ipv4(17, udp(b'x', dport=80), dst=bytes([10, 89, 0, 254]))),
}
seeds['wire_views'] = {
    'tcp_syn': b'\0' + eth(GW, EP, ipv4(6, syn)),
    'udp': b'\0' + eth(GW, EP, udp_pkt),
    'icmp_echo': b'\0' + eth(GW, EP, ipv4(1, icmp_echo())),
    'tagged_udp': b'\0' + EP + GW + b'\x81\x00\x00\x05\x08\x00' + udp_pkt,
    'gso_len0': b'\1' + eth(GW, EP, bytes([0x45, 0, 0, 0]) + ipv4(6, big)[4:]),
}
def op(kind, flags=0, a=0x8000, b=0x8000, c=0):
    return struct.pack('!BBHHH', kind, flags, a, b, c)
seeds['tcp_conn'] = {
    'handshake_data_fin': struct.pack('!IH', 5000, 1460) + op(0, 0x10, c=0) + op(0, 0x18, c=100) + op(3, 0, 300) + op(4) + op(0, 0x11, b=0x8000 + 300) + op(5, 0, 100) + op(3, 0x80, 0),
    'timers': struct.pack('!IH', 1, 0) + op(0, 0x10) + op(3, 0, 5000) + op(5, 0, 2000) * 10,
    'out_of_order': struct.pack('!IH', 77, 536) + op(0, 0x10) + op(0, 0x10, a=0x8000 + 200, c=100) + op(0, 0x10, c=200) + op(2, 0, 0) + op(0, 0x10, c=50) + op(2, 0, 4096) + op(4),
}
q = dns_q('web'); ext = dns_q('example.com', ident=0x4321)
seeds['dns_query'] = {
    'local_a': bytes([0]) + struct.pack('!H', len(q)) + q,
    'local_aaaa_tcp': bytes([2]) + struct.pack('!H', len(q)) + dns_q('web.lab', 28),
    'forwarded': bytes([0]) + struct.pack('!H', len(ext)) + ext + dns_answer('example.com', 0x4321),
    'internal': bytes([1]) + struct.pack('!H', len(ext)) + ext,
    'no_upstream': bytes([4]) + struct.pack('!H', len(ext)) + ext,
}
seeds['api_json'] = {
    'network': b'\x00' + json.dumps({"name": "lab2", "subnet": "10.2.0.0/24", "mtu": 1400, "internal": False}).encode(),
    'endpoint': b'\x01' + json.dumps({"name": "db", "netns": "/run/netns/x", "aliases": ["d"], "publish": ["8080:80"]}).encode(),
    'publish': b'\x02' + json.dumps({"publish": ["127.0.0.1:8080-8081:80-81/udp"]}).encode(),
    'fdb': b'\x03' + json.dumps({"mac": "02:00:00:00:00:01", "vtep": "192.0.2.7"}).encode(),
    'free_subnet': b'\x04' + json.dumps({"prefix_len": 24}).encode(),
}
seeds['docker_portspec'] = {
    'full': b'127.0.0.1:8080-8081:80-81/udp', 'v6': b'[::1]:53:53/udp', 'bare': b'80', 'host': b'8080:80',
}
state = {"schema": 1, "state": {"networks": {}}}
seeds['state_file'] = {'empty': json.dumps(state, indent=2).encode()}
seeds['cni_config'] = {
    'minimal': json.dumps({"cniVersion": "1.0.0", "name": "lab", "type": "netyard", "network": "lab"}).encode(),
    'full': json.dumps({"cniVersion": "0.4.0", "name": "lab", "type": "netyard", "network": "web",
        "subnet": "10.1.2.0/24", "gateway": "10.1.2.1", "mtu": 1400, "internal": False,
        "host_loopback": True, "port_security": False, "aging": 60, "kind": "veth",
        "capabilities": {"portMappings": True, "aliases": True},
        "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}], "aliases": {"lab": ["a"]}}}).encode(),
}
seeds['slirp4netns_api'] = {
    'add': json.dumps({"execute": "add_hostfwd", "arguments": {"proto": "udp", "host_addr": "127.0.0.1", "host_port": 5353, "guest_port": 53}}).encode(),
    'list': b'{"execute": "list_hostfwd"}',
    'remove': b'{"execute": "remove_hostfwd", "arguments": {"id": 1}}',
}
for target, files in seeds.items():
    d = os.path.join('seeds', target)
    os.makedirs(d, exist_ok=True)
    for name, data in files.items():
        open(os.path.join(d, name), 'wb').write(data)
print('\n'.join(sorted(seeds)))
