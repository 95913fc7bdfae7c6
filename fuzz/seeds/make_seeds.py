#!/usr/bin/env python3
"""Writes the hand-made seed inputs of every fuzz target into fuzz/corpus/<target>/ (run once;
the committed corpora are these plus what the fuzzer found, minimized with `cargo fuzz cmin`)."""
import json, os, struct, sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus")

def put(target, items):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    for i, b in enumerate(items):
        if isinstance(b, str):
            b = b.encode()
        with open(os.path.join(d, f"seed-{i:03}"), "wb") as f:
            f.write(b)

put("port_spec", ["80", "8080:80", "8080:80/udp", "127.0.0.1:8080:80", "[2001:db8::1]:8080:80/sctp",
    "8000-8010:80-90", "8000-8010:80", "0.0.0.0::80", "::80", "80/tcp", "443/udp", "1-65535:1-65535",
    "[::1]:53:53/udp", "192.0.2.10:8000-8001:80-81/tcp"])
put("route", ["10.0.0.0/8", "10.0.0.0/8,via=192.0.2.1", "10.0.0.0/8,via=192.0.2.1,metric=100",
    "2001:db8::/32,via=fe80::1", "0.0.0.0/0,metric=5", "192.0.2.0/24,metric=4294967295"])
put("mac", ["02:42:ac:11:00:02", "00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff", '"02:42:0a:00:00:01"', "AA:bb:CC:dd:EE:ff"])
put("names", ["db:10.0.0.5", "db=10.0.0.5", "v6:[2001:db8::1]", "v6:2001:db8::1", "gw:host-gateway",
    "web", "web:alias", "my-container_1.x:db"])
put("driver_opts", [b"\x00com.docker.network.bridge.name=br-web\ncom.docker.network.driver.mtu=1450\ncom.docker.network.bridge.enable_icc=false",
    b"\x00com.docker.network.bridge.host_binding_ipv4=192.0.2.10\ncom.docker.network.bridge.enable_ip_masquerade=true",
    b"\x01parent=eth0.50\nmacvlan_mode=private", b"\x01parent=eth0\nmacvlan_mode=passthru",
    b"\x02parent=eth0\nipvlan_mode=l3\nipvlan_flag=private", b"\x02ipvlan_mode=l3s\nipvlan_flag=vepa",
    b"\x01parent=a.4094", b"\x02parent=bond0.1"])
put("daemon_json", [json.dumps(x) for x in [
    {"bip": "192.168.1.5/24", "fixed-cidr": "192.168.1.0/25", "mtu": 1400, "icc": False, "ip-masq": True,
     "dns": ["192.0.2.53"], "default-gateway": "192.168.1.254"},
    {"ipv6": True, "fixed-cidr-v6": "2001:db8:1::/64", "default-gateway-v6": "2001:db8:1::ff"},
    {"default-address-pools": [{"base": "10.10.0.0/16", "size": 24}, {"base": "fd00::/48", "size": 64}]},
    {"bridge": "br0", "log-level": "debug", "storage-driver": "overlay2"}, {}]])

net = {"name": "web", "id": "ab" * 32, "driver": {"kind": "bridge", "bridge_name": "br-web", "masquerade": True, "icc": False},
       "subnets": [{"subnet": "10.88.0.0/24", "gateway": "10.88.0.1"}, {"subnet": "fd00:88::/64", "gateway": "fd00:88::1"}],
       "aux": {"router": "10.88.0.250"}, "ipv6": True, "internal": False, "mtu": 1500, "device": "br-web",
       "routes": [{"dst": "10.99.0.0/16", "via": "10.88.0.254", "metric": 10}], "no_default_route": False,
       "adopted": [["10.88.0.1", 24]], "dns_enabled": True, "dns_servers": ["192.0.2.53"]}
mv = {"name": "mv", "id": "cd" * 32, "driver": {"kind": "macvlan", "parent": "eth0.50", "mode": "private", "host_shim": "10.5.0.250"},
      "subnets": [{"subnet": "10.5.0.0/24", "gateway": "10.5.0.1", "ip_range": "10.5.0.128/25"}], "internal": False,
      "mtu": 1500, "device": None}
ep = {"network": "web", "container": "c0ffee", "ifname": "eth0", "mac": "02:42:0a:58:00:02",
      "ipv4": "10.88.0.2/24", "ipv6": "fd00:88::2/64", "gateway": "10.88.0.1", "gateway6": "fd00:88::1",
      "netns": "/run/netns/c1", "ports": [{"proto": "tcp", "host_ip": "0.0.0.0", "host_port": 8080, "container_port": 80}],
      "host_ifname": "veth1a2b3c", "gw_priority": 5, "seq": 1733400000000000000,
      "routes": [{"dst": "10.99.0.0/16", "via": "10.88.0.254"}], "aliases": ["db", "web"]}
sb = {"container": "c0ffee", "mode": {"kind": "own"}, "names": {"hostname": "web1", "domainname": "example.org",
      "dns": ["192.0.2.53"], "dns_search": ["example.org"], "dns_options": ["ndots:2"],
      "extra_hosts": [{"name": "db", "addr": {"ip": "10.0.0.5"}}, {"name": "gw", "addr": "host-gateway"}],
      "links": [{"container": "db", "alias": "database"}]},
      "exposed": [{"proto": "tcp", "port": 80}], "files_dir": "/run/c0ffee/etc"}
pool = {"subnets": [{"subnet": "10.88.0.0/24", "gateway": "10.88.0.1", "ip_range": "10.88.0.0/25",
        "aux": {"r": "10.88.0.250"}, "allocations": {"10.88.0.2": "c0ffee"}, "last": "10.88.0.2"},
        {"subnet": "fd00:88::/64", "gateway": "fd00:88::1"}]}
put("state_record", [b"\x00" + json.dumps(net).encode(), b"\x00" + json.dumps(mv).encode(),
    b"\x01" + json.dumps(ep).encode(), b"\x02" + json.dumps(sb).encode(), b"\x02" + json.dumps({**sb, "mode": {"kind": "container", "of": "other"}}).encode(), b"\x03" + json.dumps(pool).encode(),
    b"\x04" + b"10.88.0.2,fd00:88::2", b"\x05" + b"0.0.0.0,web,c0ffee", b"\x05" + b"::,web,c0ffee,x"])

put("resolv_conf", ["nameserver 192.0.2.53\nnameserver 2001:db8::53\nsearch example.org corp\noptions ndots:2 timeout:1\n",
    "# comment\ndomain example.org\nnameserver 127.0.0.53 ; local\nnameserver fe80::1%eth0\n", "options edns0 trust-ad\n", ""])

# DNS: real queries in wire format.
def name(n):
    out = b""
    for l in n.rstrip(".").split("."):
        if l:
            out += bytes([len(l)]) + l.encode()
    return out + b"\0"
def query(qid, qname, qtype, qclass=1, rd=True, edns=None, opcode=0, qd=None):
    flags = (opcode << 11) | (0x0100 if rd else 0)
    body = name(qname) + struct.pack(">HH", qtype, qclass)
    ar = b""
    if edns:
        ar = b"\0" + struct.pack(">HHIH", 41, edns, 0, 0)
    return struct.pack(">HHHHHH", qid, flags, 1 if qd is None else qd, 0, 0, 1 if edns else 0) + body + ar
A, AAAA, PTR, ANY, MX, TXT = 1, 28, 12, 255, 15, 16
qs = [query(0x1234, "a", A), query(0x2345, "b.net1.", AAAA), query(7, "DB", ANY), query(8, "web", A, edns=4096),
      query(9, "2.0.1.10.in-addr.arpa", PTR), query(10, "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.d.f.ip6.arpa", PTR),
      query(11, "example.org", A), query(12, "example.org", MX, edns=1232), query(13, "a", A, qclass=3),
      query(14, "a", A, opcode=2), query(15, "a", TXT, qd=2), b"\x12\x34"]
items = []
for i, q in enumerate(qs):
    items.append(bytes([i % 4]) + q)
resp = bytearray(query(11, "example.org", A)); resp[2] |= 0x80
items.append(b"\x00" + query(11, "example.org", A) + b"\xff\x00\xff" + bytes(resp))
stream = b"".join(struct.pack(">H", len(q)) + q for q in qs[:4])
items.append(b"\x80" + stream)
items.append(b"\x82" + struct.pack(">H", len(qs[6])) + qs[6] + b"\x00")
put("dns_message", items)

# netlink: nlmsghdr (len, type, flags, seq, pid) + nfgenmsg + attributes, as the kernel sends.
def nla(t, v):
    l = 4 + len(v)
    return struct.pack("=HH", l, t) + v + b"\0" * ((4 - l % 4) % 4)
def nlmsg(ty, payload, flags=2):
    return struct.pack("=IHHII", 16 + len(payload), ty, flags, 1, 0) + payload
NFNL_SUBSYS_NFTABLES = 10
def nft(msg, attrs, family=1):
    return nlmsg((NFNL_SUBSYS_NFTABLES << 8) | msg, struct.pack("=BBH", family, 0, 0) + b"".join(attrs))
done = nlmsg(3, struct.pack("=i", 0))
err = lambda code: nlmsg(2, struct.pack("=i", code) + struct.pack("=IHHII", 20, 0, 0, 1, 0))
s = lambda x: x.encode() + b"\0"
NEWCHAIN, NEWRULE, NEWSET, NEWSETELEM = 3, 6, 9, 12
chain = lambda n: nft(NEWCHAIN, [nla(1, s("berth")), nla(3, s(n)), nla(2, struct.pack(">Q", 1)), nla(7, s("filter"))])
rule = lambda c: nft(NEWRULE, [nla(1, s("berth")), nla(2, s(c)), nla(3, struct.pack(">Q", 5)),
                               nla(4 | 0x8000, nla(1 | 0x8000, nla(1, s("immediate")) + nla(2 | 0x8000, nla(1, struct.pack(">I", 0)))))])
sset = lambda n: nft(NEWSET, [nla(1, s("berth")), nla(2, s(n)), nla(3, struct.pack(">I", 0x8 | 0x1)),
                              nla(4, struct.pack(">I", 13)), nla(5, struct.pack(">I", 2)), nla(6, struct.pack(">I", 0xffffff00)), nla(7, struct.pack(">I", 4)), nla(10, struct.pack(">I", 1))])
def elems(keys):
    el = b"".join(nla(1 | 0x8000, nla(1 | 0x8000, nla(1, k)) + nla(2 | 0x8000, nla(1, struct.pack(">I", 1)))) for k in keys)
    return nft(NEWSETELEM, [nla(1, s("berth")), nla(2, s("map")), nla(3 | 0x8000, el)])
put("nft_dump", [b"\x00" + chain("forward") + chain("user-forward") + done,
    b"\x01" + rule("forward") + rule("forward") + rule("postrouting") + done,
    b"\x02" + sset("ports") + sset("nets") + done,
    b"\x03" + elems([b"\x06\0\0\0\x1f\x90", b"\x11\0\0\0\0\x35"]) + done,
    b"\x00" + err(-2), b"\x01" + err(0), b"\x02" + err(-1), b"\x03" + chain("x")])

# ctnetlink: IPCTNL_MSG_CT_NEW messages of a dump.
def tuple_ip(src, dst, v6=False):
    t = (3, 4) if v6 else (1, 2)
    return nla(1 | 0x8000, nla(t[0], src) + nla(t[1], dst))
def ct(family, src, dst, v6=False):
    orig = nla(1 | 0x8000, tuple_ip(src, dst, v6) + nla(2 | 0x8000, nla(1, b"\x06") + nla(2, b"\x1f\x90") + nla(3, b"\x00\x50")))
    reply = nla(2 | 0x8000, tuple_ip(dst, src, v6))
    return nlmsg((1 << 8) | 0, struct.pack("=BBH", family, 0, 0) + orig + reply + nla(3, struct.pack(">I", 0x188)))
put("conntrack", [ct(2, bytes([10, 88, 0, 2]), bytes([198, 18, 0, 1])) + ct(2, bytes([192, 0, 2, 1]), bytes([10, 88, 0, 3])) + done,
    ct(10, bytes(15) + b"\x02", bytes(15) + b"\x01", True) + err(0), err(-22), done, err(-2)])
