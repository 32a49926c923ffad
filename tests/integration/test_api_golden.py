# SPDX-License-Identifier: Apache-2.0
"""Every GET list and show answer of the admin API, to the byte.

A real nave-controld gets a populated store: registrations, tokens and their
tunnels (more than a page of each), ports with and without a rule name,
firewall blocks in both lists made through navectl and the API, and what only
a connected client makes (online tunnels with client info, domain claims)
written into its SQLite database. The timestamps are then set to known values
in the database, so that each answer can be compared as raw bytes with the
JSON this file builds: the member names and their order, the types, null for
an unset time, jansson's escaping (\\uXXXX in capitals for control
characters, UTF-8 as is, '/' unescaped), text cut at a UTF-8 character
boundary, text that is not UTF-8 read as "", pagination (page, per_page,
total), the filters (tunnel, online, search with LIKE's wildcards taken
literally) and the refusals with their status and text.
"""
import http.client
import json
import socket
import sqlite3
import time

# ctl: a running nave-controld of its own, as in test_navectl.py
from test_navectl import ctl, run  # noqa: F401

PER_PAGE = 50
T0 = 1700000000  # the created_at of rowid N is T0 + N in every table


def jstring(s):
    """A JSON string as jansson's json_dumps writes it (flags: JSON_COMPACT)."""
    out = ['"']
    for ch in s:
        c = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch in "\b\f\n\r\t":
            out.append({"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
        elif c < 0x20:
            out.append("\\u%04X" % c)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def jdump(v):
    """json_dumps(v, JSON_COMPACT) of a value built here (dicts keep their order)."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return jstring(v)
    if isinstance(v, list):
        return "[" + ",".join(jdump(x) for x in v) + "]"
    assert isinstance(v, dict)
    return "{" + ",".join(jstring(k) + ":" + jdump(x) for k, x in v.items()) + "}"


def request(ctl, method, path, body=None):
    conn = http.client.HTTPConnection("nave", timeout=30)
    conn.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.sock.settimeout(30)
    conn.sock.connect(str(ctl.sock))
    try:
        data = json.dumps(body).encode() if body is not None else None
        hdrs = {"Content-Type": "application/json"} if data else {}
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type"), resp.read()
    finally:
        conn.close()


def post(ctl, path, body=None):
    status, _, raw = request(ctl, "POST", path, body)
    assert status == 201, (path, status, raw)
    return json.loads(raw)


def navectl_js(ctl, *args):
    p = run("--json", *args, sock=ctl.sock)
    assert p.returncode == 0 and p.stderr == "", (args, p.returncode, p.stderr)
    return json.loads(p.stdout)


def expect(ctl, path, status, value):
    """GET path answers status with exactly jdump(value) and a newline."""
    got_status, ctype, raw = request(ctl, "GET", path)
    want = (jdump(value) + "\n").encode()
    assert (got_status, ctype) == (status, "application/json"), (path, got_status, raw)
    assert raw == want, f"GET {path}\n got: {raw!r}\nwant: {want!r}"
    # and it is JSON that says the same
    assert json.loads(raw) == json.loads(want)


def page(items, n, total):
    return {"items": items, "page": n, "per_page": PER_PAGE, "total": total}


def error(text):
    return {"error": text}


# Text that the API takes (printable UTF-8) and jansson escapes or writes as is.
ODD = 'quote " back \\ slash / <b>&amp; é 中文 😀'
# A token or registration without restrictions (issue 11: null when unset).
NO_RESTRICT = {"allow_from": None, "allow_ids": None, "kinds": None, "domains": None,
               "ports": None}
# What only the database can hold: control characters, DEL, U+2028.
RAW = 'tab\there\x01\x1f\x7f\u2028"q"\n'


def test_api_answers_to_the_byte(ctl):
    lo = ctl.port_min
    # --- through the API and navectl, as an operator would ---
    regs = [navectl_js(ctl, "registration", "create", "--description", ODD, "--max-uses", "3",
                       "--expires", "1h", "--allow-id", "kiosk-*", "--ports", str(lo + 5))]
    regs.append(post(ctl, "/api/v1/registrations", {}))
    regs.append(post(ctl, "/api/v1/registrations", {"description": "off", "max_uses": 1}))
    for i in range(PER_PAGE):
        regs.append(post(ctl, "/api/v1/registrations", {"description": f"r{i}"}))
    navectl_js(ctl, "registration", "disable", regs[2]["id"])

    toks = [navectl_js(ctl, "tokens", "create", "--id", "box-1", "--description", ODD)]
    toks.append(navectl_js(ctl, "tokens", "create", "--id", "cam_2"))
    toks.append(navectl_js(ctl, "tokens", "create", "--description", "no group",
                           "--allow-from", "10.9.9.0/24,2001:DB8::/32,10.9.9.0/24",
                           "--allow-id", "office-*,lab", "--kinds", "http,tcp",
                           "--domains", "*.Example.com", "--ports", f"{lo + 6}-{lo + 8}"))
    toks.append(navectl_js(ctl, "tokens", "create", "--id", "xray"))
    for i in range(PER_PAGE - 2):
        toks.append(post(ctl, "/api/v1/tokens", {"id": f"bulk-{i}"}))
    for t in toks:
        assert "last_used" not in t and t["token"].startswith("nvt_")
    navectl_js(ctl, "tokens", "revoke", toks[3]["id"])
    box, cam, nogroup = (t["tunnel_id"] for t in toks[:3])

    ports = [
        post(ctl, "/api/v1/ports", {"tunnel": box, "port": lo + 3, "rule": "ssh"}),
        post(ctl, "/api/v1/ports", {"tunnel": box, "port": lo + 1}),
        post(ctl, "/api/v1/ports", {"tunnel": cam, "rule": "rtsp"}),
    ]
    assert ports[2]["port"] == lo
    fw = [("deny", "192.0.2.0/24"), ("deny", "2001:db8::/32"), ("allow", "10.0.0.0/8"),
          ("deny", "198.51.100.7")]
    # stored and listed in their canonical text
    fw = [(kind, navectl_js(ctl, "firewall", kind, "add", cidr)["cidr"]) for kind, cidr in fw]

    # --- what a connected client leaves, and known times ---
    long_text = "é" * 200  # 400 bytes: read back cut to 127 characters (254 bytes)
    db = sqlite3.connect(ctl.tmp / "var" / "nave.db", timeout=10, isolation_level=None)
    for table in ("registrations", "tokens", "tunnels", "ports", "domains", "firewall"):
        db.execute(f"UPDATE {table} SET created_at = {T0} + rowid")
    db.execute("UPDATE registrations SET expires_at = ? WHERE id = ?", (T0 + 3600, regs[0]["id"]))
    db.execute("UPDATE registrations SET description = ?, uses = 2 WHERE id = ?",
               (long_text, regs[1]["id"]))
    db.execute("UPDATE tokens SET last_used = ? WHERE id = ?", (T0 + 999, toks[1]["id"]))
    db.execute(
        "UPDATE tunnels SET state = 'online', last_seen = ?, hostname = ?, os = 'linux',"
        " arch = 'x86_64', client_version = '0.9.1' WHERE id = ?",
        (T0 + 500, RAW, box),
    )
    db.execute(
        "UPDATE tunnels SET state = 'online', last_seen = ?, hostname = CAST(x'ff41' AS TEXT),"
        " os = ? WHERE id = ?",
        (T0 + 501, long_text, cam),
    )
    db.execute("UPDATE tunnels SET token_id = NULL WHERE id = ?", (nogroup,))
    doms = [("www.example.com", box, "web"), ("*.example.org", box, ""),
            ("api.example.net", cam, "api")]
    for d, tid, rule in doms:
        db.execute("INSERT INTO domains (domain, tunnel_id, rule, created_at) VALUES (?, ?, ?, 0)",
                   (d, tid, rule))
    db.execute(f"UPDATE domains SET created_at = {T0} + rowid")
    # connection records as relayd's conn_records leave them, and the rule totals
    recs = [  # tunnel, rule, kind, port, domain, src, src_port, start_ms, ms, in, out, reason
        (box, "ssh", "tcp", lo + 3, "", "192.0.2.9", 40001, (T0 + 100) * 1000 + 250, 1500, 10, 20,
         "done"),
        (box, "web", "https", 8443, "www.example.com", "2001:db8::7", 40002,
         (T0 + 200) * 1000, 61000, 300, 4000, "reset"),
        (cam, "rtsp", "tcp", lo, "", "198.51.100.1", 40003, (T0 + 150) * 1000, 0, 0, 0,
         "refused"),
        (box, "", "tcp", lo + 9, "", "192.0.2.10", 40004, (T0 + 300) * 1000 + 999, 1, 5, 6,
         "shutdown"),
    ]
    for r in recs:
        db.execute("INSERT INTO conn_records (tunnel_id, rule, kind, port, domain, src, src_port,"
                   " start_ms, duration_ms, ended, bytes_in, bytes_out, reason)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   r[:9] + ((r[7] + r[8]) // 1000,) + r[9:])
        db.execute("INSERT INTO rule_traffic (tunnel_id, rule, bytes_in, bytes_out, conns)"
                   " VALUES (?, ?, ?, ?, 1) ON CONFLICT (tunnel_id, rule) DO UPDATE SET"
                   " bytes_in = bytes_in + excluded.bytes_in,"
                   " bytes_out = bytes_out + excluded.bytes_out, conns = conns + 1",
                   (r[0], r[1], r[9], r[10]))
        # the rule's and the tunnel's ("*") minute and hour, as the store sums them
        ended = (r[7] + r[8]) // 1000
        for table, n in (("conn_minutes", 60), ("conn_hours", 3600)):
            for rule in (r[1], "*"):
                db.execute(f"INSERT INTO {table} (tunnel_id, rule, at, bytes_in, bytes_out,"
                           " conns) VALUES (?, ?, ?, ?, ?, 1) ON CONFLICT (tunnel_id, rule, at)"
                           " DO UPDATE SET bytes_in = bytes_in + excluded.bytes_in,"
                           " bytes_out = bytes_out + excluded.bytes_out, conns = conns + 1",
                           (r[0], rule, ended - ended % n, r[9], r[10]))
    rowid = {}
    for table, key in (("registrations", "id"), ("tokens", "id"), ("tunnels", "id"),
                       ("ports", "port"), ("domains", "domain"), ("firewall", "cidr")):
        rowid[table] = dict(db.execute(f"SELECT {key}, rowid FROM {table}").fetchall())
    db.close()

    def at(table, key):
        return T0 + rowid[table][key]

    # --- registrations ---
    def reg(r, i):
        desc = {0: ODD, 1: long_text[:127], 2: "off"}.get(i, r["description"])
        return {"id": r["id"], "description": desc,
                "max_uses": {0: 3, 2: 1}.get(i, 0), "uses": 2 if i == 1 else 0,
                "expires_at": T0 + 3600 if i == 0 else None, "enabled": i != 2,
                "created_at": at("registrations", r["id"]),
                "allow_from": None, "allow_ids": ["kiosk-*"] if i == 0 else None,
                "kinds": None, "domains": None, "ports": f"{lo + 5}-{lo + 5}" if i == 0 else None}

    all_regs = [reg(r, i) for i, r in enumerate(regs)]
    assert len(all_regs) == PER_PAGE + 3
    expect(ctl, "/api/v1/registrations", 200, page(all_regs[:PER_PAGE], 1, len(all_regs)))
    expect(ctl, "/api/v1/registrations?page=1", 200, page(all_regs[:PER_PAGE], 1, len(all_regs)))
    expect(ctl, "/api/v1/registrations?page=2", 200, page(all_regs[PER_PAGE:], 2, len(all_regs)))
    expect(ctl, "/api/v1/registrations?page=3", 200, page([], 3, len(all_regs)))
    for bad in ("0", "-1", "x", "1000000001", "1.5"):
        expect(ctl, f"/api/v1/registrations?page={bad}", 400, error(f'invalid page "{bad}"'))

    # --- tokens ---
    def tok(t, i):
        return {"id": t["id"], "tunnel_id": t["tunnel_id"],
                "description": ODD if i == 0 else t["description"],
                "created_at": at("tokens", t["id"]), "revoked": i == 3,
                "last_used": T0 + 999 if i == 1 else None, **NO_RESTRICT}

    restricted = {"allow_from": ["10.9.9.0/24", "2001:db8::/32"],
                  "allow_ids": ["office-*", "lab"], "kinds": ["tcp", "http"],
                  "domains": ["*.example.com"], "ports": f"{lo + 6}-{lo + 8}"}

    all_toks = [tok(t, i) for i, t in enumerate(toks)]
    all_toks[2].update(restricted)
    assert len(all_toks) == PER_PAGE + 2
    expect(ctl, "/api/v1/tokens", 200, page(all_toks[:PER_PAGE], 1, len(all_toks)))
    expect(ctl, "/api/v1/tokens?page=2", 200, page(all_toks[PER_PAGE:], 2, len(all_toks)))
    expect(ctl, "/api/v1/tokens?page=0", 400, error('invalid page "0"'))
    expect(ctl, f"/api/v1/tokens/{toks[2]['id']}", 200, all_toks[2])
    expect(ctl, f"/api/v1/tokens/{toks[0]['id']}", 200, all_toks[0])
    expect(ctl, "/api/v1/tokens/00000000", 404, error("unknown token 00000000"))

    # --- tunnels: every tunnel with its rules ---
    def port_brief(tid):
        return [{"port": p["port"], "rule": p["rule"], "transport": "tcp"}
                for p in sorted(ports, key=lambda p: p["port"]) if p["tunnel_id"] == tid]

    def dom_brief(tid):
        return [{"domain": d, "rule": r} for d, t, r in sorted(doms) if t == tid]

    def traffic(tid):
        return [{"rule": r[1], "bytes_in": r[9], "bytes_out": r[10], "conns": 1}
                for r in sorted(recs, key=lambda r: r[1]) if r[0] == tid]

    def tun(t, i):
        tid = t["tunnel_id"]
        group = {0: "box-1", 1: "cam_2", 2: tid, 3: "xray"}.get(i, f"bulk-{i - 4}")
        o = {"id": tid, "group_id": group, "hostname": "", "os": "", "arch": "",
             "client_version": "", "state": "offline", "last_seen": None,
             "created_at": at("tunnels", tid), "token_id": None if i == 2 else t["id"],
             "identity": "",
             "traffic": traffic(tid), "ports": port_brief(tid), "domains": dom_brief(tid)}
        if i == 0:
            o.update(hostname=RAW, os="linux", arch="x86_64",
                     client_version="0.9.1", state="online", last_seen=T0 + 500)
        if i == 1:
            o.update(os=long_text[:127], state="online", last_seen=T0 + 501)
        return o

    all_tuns = [tun(t, i) for i, t in enumerate(toks)]
    n = len(all_tuns)
    expect(ctl, "/api/v1/tunnels", 200, page(all_tuns[:PER_PAGE], 1, n))
    expect(ctl, "/api/v1/tunnels?page=2", 200, page(all_tuns[PER_PAGE:], 2, n))
    expect(ctl, "/api/v1/tunnels?page=9", 200, page([], 9, n))
    for on in ("1", "true"):
        expect(ctl, f"/api/v1/tunnels?online={on}", 200, page(all_tuns[:2], 1, 2))
    for off in ("0", "false", ""):
        expect(ctl, f"/api/v1/tunnels?online={off}", 200, page(all_tuns[:PER_PAGE], 1, n))
    expect(ctl, "/api/v1/tunnels?online=yes", 400, error("invalid online (1 or 0)"))
    expect(ctl, "/api/v1/tunnels?search=box", 200, page(all_tuns[:1], 1, 1))
    expect(ctl, "/api/v1/tunnels?search=bulk-4&online=0", 200,
           page([all_tuns[8]] + all_tuns[4 + 40:4 + 48], 1, 9))
    expect(ctl, "/api/v1/tunnels?search=bulk&online=1", 200, page([], 1, 0))
    # '_' and '%' are literal, not LIKE's wildcards; the search looks at id, group and hostname
    expect(ctl, "/api/v1/tunnels?search=cam_", 200, page(all_tuns[1:2], 1, 1))
    expect(ctl, "/api/v1/tunnels?search=c_m", 200, page([], 1, 0))
    expect(ctl, "/api/v1/tunnels?search=%25", 200, page([], 1, 0))
    expect(ctl, "/api/v1/tunnels?search=" + cam[2:], 200, page(all_tuns[1:2], 1, 1))
    expect(ctl, "/api/v1/tunnels?search=here", 200, page(all_tuns[:1], 1, 1))
    expect(ctl, "/api/v1/tunnels?search=a%01b", 400,
           error("invalid search: 1-200 characters: UTF-8 text without control characters"))
    for i in (0, 1, 2, 3, PER_PAGE + 1):
        expect(ctl, f"/api/v1/tunnels/{all_tuns[i]['id']}", 200, all_tuns[i])
    expect(ctl, "/api/v1/tunnels/t-000000000000", 404, error("unknown tunnel t-000000000000"))
    expect(ctl, "/api/v1/tunnels/a%20b", 400,
           error("invalid id: 1-64 characters: letters, digits, '.', '_' and '-'"))

    # --- ports ---
    def port(p):
        return {"port": p["port"], "tunnel_id": p["tunnel_id"], "rule": p["rule"],
                "transport": "tcp", "created_at": at("ports", p["port"])}

    all_ports = [port(p) for p in sorted(ports, key=lambda p: p["port"])]
    expect(ctl, "/api/v1/ports", 200, page(all_ports, 1, 3))
    expect(ctl, f"/api/v1/ports?tunnel={box}", 200,
           page([p for p in all_ports if p["tunnel_id"] == box], 1, 2))
    expect(ctl, f"/api/v1/ports?tunnel={nogroup}", 200, page([], 1, 0))
    expect(ctl, "/api/v1/ports?tunnel=", 200, page(all_ports, 1, 3))
    expect(ctl, "/api/v1/ports?page=2", 200, page([], 2, 3))
    expect(ctl, "/api/v1/ports?tunnel=a*b", 400,
           error("invalid tunnel: 1-64 characters: letters, digits, '.', '_' and '-'"))
    expect(ctl, f"/api/v1/ports?tunnel={box}&page=x", 400, error('invalid page "x"'))

    # --- domains ---
    def dom(d, tid, rule):
        return {"domain": d, "tunnel_id": tid, "rule": rule, "created_at": at("domains", d)}

    all_doms = [dom(*x) for x in sorted(doms)]
    expect(ctl, "/api/v1/domains", 200, page(all_doms, 1, 3))
    expect(ctl, f"/api/v1/domains?tunnel={cam}", 200,
           page([d for d in all_doms if d["tunnel_id"] == cam], 1, 1))
    expect(ctl, "/api/v1/domains?page=2", 200, page([], 2, 3))
    expect(ctl, "/api/v1/domains?tunnel=%2F", 400,
           error("invalid tunnel: 1-64 characters: letters, digits, '.', '_' and '-'"))

    # --- connection records: newest first (by end, then id), the filters, the refusals ---
    def conn(i):
        r = recs[i]
        return {"id": i + 1, "tunnel_id": r[0], "rule": r[1], "kind": r[2], "port": r[3],
                "domain": r[4] or None, "src": r[5], "src_port": r[6], "start": r[7] // 1000,
                "start_ms": r[7], "duration_ms": r[8], "end": (r[7] + r[8]) // 1000,
                "bytes_in": r[9], "bytes_out": r[10], "reason": r[11]}

    newest = [conn(i) for i in (3, 1, 2, 0)]  # ends T0+300, T0+261, T0+150, T0+101
    expect(ctl, "/api/v1/connections", 200, {"items": newest, "limit": 50})
    expect(ctl, "/api/v1/connections?limit=2", 200, {"items": newest[:2], "limit": 2})
    expect(ctl, f"/api/v1/connections?tunnel={box}", 200,
           {"items": [conn(3), conn(1), conn(0)], "limit": 50})
    expect(ctl, f"/api/v1/connections?tunnel={box}&rule=web", 200,
           {"items": [conn(1)], "limit": 50})
    expect(ctl, f"/api/v1/connections?since={T0 + 150}", 200,
           {"items": newest[:3], "limit": 50})
    expect(ctl, f"/api/v1/connections?tunnel={nogroup}", 200, {"items": [], "limit": 50})
    expect(ctl, "/api/v1/connections?limit=1001", 400, error('invalid limit "1001": 1-1000'))
    expect(ctl, "/api/v1/connections?rule=a.b", 400,
           error("invalid rule: 1-63 characters: letters, digits, '_' and '-'"))
    expect(ctl, "/api/v1/connections?since=1y", 400,
           error('invalid since "1y": Unix seconds, or a duration back from now '
                 '(90s, 15m, 1h, 7d, 2w)'))
    expect(ctl, "/api/v1/connections/bandwidth", 400, error("tunnel is required"))
    # since T0 in 30-day steps: every bucket from the one holding T0 to now
    step = 2592000
    start = T0 - T0 % step
    for _ in range(2):  # a bucket boundary passing meanwhile: once more
        n = (int(time.time()) - start) // step + 1
        buckets = [{"t": start + k * step, "bytes_in": 0, "bytes_out": 0, "conns": 0}
                   for k in range(n)]
        buckets[0] = {"t": start, "bytes_in": 315, "bytes_out": 4026, "conns": 3}
        want = {"since": start, "step": step, "buckets": buckets}
        status, _, raw = request(ctl, "GET",
                                 f"/api/v1/connections/bandwidth?tunnel={box}&since={T0}"
                                 f"&step={step}")
        if raw == (jdump(want) + "\n").encode() or n == (int(time.time()) - start) // step + 1:
            break
    assert status == 200 and raw == (jdump(want) + "\n").encode(), raw

    # --- firewall: both lists in the order the blocks were added ---
    def blocks(kind):
        return [{"cidr": c, "created": at("firewall", c)} for k, c in fw if k == kind]

    expect(ctl, "/api/v1/firewall", 200, {"deny": blocks("deny"), "allow": blocks("allow")})

    # --- the create and change answers that share the list's writer ---
    status, _, raw = request(ctl, "POST", f"/api/v1/registrations/{regs[2]['id']}/enable")
    assert status == 200 and raw == (jdump(dict(all_regs[2], enabled=True)) + "\n").encode()
    # a port asked for again under its rule name: the stored row
    status, _, raw = request(ctl, "POST", "/api/v1/ports", {"tunnel": cam, "rule": "rtsp"})
    assert status == 201 and raw == (jdump(all_ports[0]) + "\n").encode(), raw
    status, _, raw = request(ctl, "POST", f"/api/v1/tokens/{toks[1]['id']}/revoke")
    want = dict(all_toks[1], revoked=True)
    assert status == 200 and raw == (jdump(want) + "\n").encode(), raw
    status, _, raw = request(ctl, "POST", "/api/v1/tokens", {"id": "new", "description": ODD})
    t = json.loads(raw)
    assert status == 201 and list(t) == ["id", "tunnel_id", "description", "created_at",
                                         "revoked", *NO_RESTRICT, "token"]
    assert raw == (jdump(dict(t, description=ODD)) + "\n").encode()
    status, _, raw = request(ctl, "POST", "/api/v1/registrations", {"description": ODD})
    r = json.loads(raw)
    assert status == 201 and list(r) == ["id", "description", "max_uses", "uses", "expires_at",
                                         "enabled", "created_at", *NO_RESTRICT, "token"]
    assert r["description"] == ODD and raw == (jdump(r) + "\n").encode()


def test_tunnel_search_of_escaped_wildcards(ctl):
    """A search at the limit made of LIKE's wildcards (200 '%': a pattern of 402
    bytes once escaped) is matched whole, as the substring it is: never the
    tunnels a pattern cut short (no closing '%', or a lone escape) would match."""
    a, b, c = (post(ctl, "/api/v1/tokens", {"id": g})["tunnel_id"]
               for g in ("pct-a", "pct-b", "pct-c"))
    db = sqlite3.connect(ctl.tmp / "var" / "nave.db", timeout=10, isolation_level=None)
    for tid, host in ((a, "%" * 150), (b, "%" * 200 + "z"), (c, "a" + "%" * 130)):
        db.execute("UPDATE tunnels SET hostname = ? WHERE id = ?", (host, tid))
    db.close()
    show = {}
    for tid in (a, b, c):
        status, _, raw = request(ctl, "GET", f"/api/v1/tunnels/{tid}")
        assert status == 200, raw
        show[tid] = json.loads(raw)
    pct = "%25"
    expect(ctl, "/api/v1/tunnels?search=" + pct * 200, 200, page([show[b]], 1, 1))
    expect(ctl, "/api/v1/tunnels?search=" + pct * 150, 200, page([show[a], show[b]], 1, 2))
    expect(ctl, "/api/v1/tunnels?search=a" + pct * 199, 200, page([], 1, 0))
    expect(ctl, "/api/v1/tunnels?search=a" + pct * 130, 200, page([show[c]], 1, 1))
    expect(ctl, "/api/v1/tunnels?search=" + "%5C" * 200, 200, page([], 1, 0))
    expect(ctl, "/api/v1/tunnels?search=" + pct * 201, 400,
           error("invalid search: 1-200 characters: UTF-8 text without control characters"))


def test_support_answers_to_the_byte(ctl):
    """Support sessions (as relayd's support_request and the operator leave them, with known
    times) in GET /api/v1/support and /support/ID: each state, who approved and ended,
    the reason escaped by jansson (or "" when the database holds no UTF-8), the audit
    trail's details as objects (a detail that is no JSON object as its text), filters,
    pages and refusals."""
    box, cam = (post(ctl, "/api/v1/tokens", {"id": g})["tunnel_id"] for g in ("sbox", "scam"))
    future = 4000000000
    rows = [  # id, tunnel, reason, services, created, expires, state, approved_*, ended_*
        ("sup-aaaaaaaaa1", box, ODD, '["ssh","web"]', T0 + 1, future, "pending", None, None,
         None, None),
        ("sup-aaaaaaaaa2", box, RAW, '["web"]', T0 + 2, future, "approved", "user:alice",
         T0 + 10, None, None),
        ("sup-aaaaaaaaa3", cam, "", '["a_b-1"]', T0 + 3, future, "ended", None, None,
         f"tunnel:{cam}", T0 + 20),
        ("sup-aaaaaaaaa4", box, "x", '["ssh"]', T0 + 4, T0 + 100, "approved", "apikey:0a1b2c3d",
         T0 + 50, "expiry", T0 + 100),
        ("sup-aaaaaaaaa5", cam, None, '["ssh"]', T0 + 5, future, "ended", None, None,
         "cert:ops", T0 + 30),
    ]
    db = sqlite3.connect(ctl.tmp / "var" / "nave.db", timeout=10, isolation_level=None)
    for r in rows:
        db.execute("INSERT INTO support_sessions (id, tunnel_id, reason, services, auth_hash,"
                   " created_at, expires_at, state, approved_by, approved_at, ended_by, ended_at)"
                   " VALUES (?, ?, COALESCE(?, CAST(x'ff41' AS TEXT)), ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (r[0], r[1], r[2], r[3], "ab" * 32) + r[4:])
    audit = [("sup-aaaaaaaaa2", (T0 + 2) * 1000 + 5, "requested", f"tunnel:{box}",
              '{"reason":"r","services":["web"],"expires":7200,"source":"192.0.2.7"}'),
             ("sup-aaaaaaaaa2", (T0 + 10) * 1000, "approved", "user:alice", ""),
             ("sup-aaaaaaaaa2", (T0 + 11) * 1000, "connected", "supporter",
              '{"source":"[2001:db8::1]:40000","service":"web","conn":3}'),
             ("sup-aaaaaaaaa2", (T0 + 11) * 1000, "refused", "supporter", "not json")]
    for a in audit:
        db.execute("INSERT INTO support_audit (session, at, event, actor, detail)"
                   " VALUES (?, ?, ?, ?, ?)", a)
    db.close()

    def sess(r):
        return {"id": r[0], "tunnel_id": r[1], "state": "expired" if r[5] == T0 + 100 else r[6],
                "reason": "" if r[2] is None else r[2], "services": json.loads(r[3]),
                "created_at": r[4], "expires_at": r[5], "approved_by": r[7],
                "approved_at": r[8], "ended_by": r[9], "ended_at": r[10], "connections": 0}

    want = [sess(r) for r in reversed(rows)]  # newest first
    expect(ctl, "/api/v1/support", 200, page(want, 1, 5))
    expect(ctl, "/api/v1/support?page=2", 200, page([], 2, 5))
    expect(ctl, f"/api/v1/support?tunnel={cam}", 200, page([want[0], want[2]], 1, 2))
    expect(ctl, "/api/v1/support?state=expired", 200, page([want[1]], 1, 1))
    expect(ctl, "/api/v1/support?state=approved", 200, page([want[3]], 1, 1))
    expect(ctl, f"/api/v1/support?state=ended&tunnel={box}", 200, page([], 1, 0))
    expect(ctl, "/api/v1/support?state=Pending", 400,
           error("invalid state (pending, approved, ended or expired)"))
    trail = [{"at": a[1], "event": a[2], "actor": a[3],
              "detail": json.loads(a[4]) if a[4].startswith("{") else (a[4] or None)}
             for a in audit]
    expect(ctl, "/api/v1/support/sup-aaaaaaaaa2", 200, dict(want[3], audit=trail))
    expect(ctl, "/api/v1/support/sup-aaaaaaaaa1", 200, dict(want[4], audit=[]))
    expect(ctl, "/api/v1/support/sup-zzzzzzzzzz", 404,
           error("no support session sup-zzzzzzzzzz"))
    # the changes answer with the session as listed
    status, _, raw = request(ctl, "POST", "/api/v1/support/sup-aaaaaaaaa1/approve")
    got = json.loads(raw)
    assert status == 200 and list(got) == list(want[4]) and got["approved_by"] == "local", raw
    assert raw == (jdump(dict(want[4], state="approved", approved_by="local",
                              approved_at=got["approved_at"])) + "\n").encode(), raw
    status, _, raw = request(ctl, "POST", "/api/v1/support/sup-aaaaaaaaa4/end")
    assert (status, json.loads(raw)) == (
        409, {"error": "support session sup-aaaaaaaaa4 has expired"}), raw
