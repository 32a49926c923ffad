/* SPDX-License-Identifier: Apache-2.0 */
/*
 * relayd <-> controld internal protocol on runtime_dir/relay.sock.
 *
 * Length-prefixed JSON messages (msg.h). controld listens, relayd connects and
 * is authenticated by SO_PEERCRED (same uid as controld, or root). Requests
 * carry a numeric "req" echoed in the reply. controld may push unsolicited
 * messages (CTL_PORT_ADD, CTL_PORT_DEL, CTL_DOMAIN_DEL, CTL_KICK) at any time
 * after SYNC; every port and domain a request releases (port_sync, deauth,
 * auth in mode deauth) is also pushed as CTL_PORT_DEL / CTL_DOMAIN_DEL before
 * the reply.
 * Unknown types are ignored; malformed messages close the connection.
 */
#ifndef NAVE_CTL_PROTO_H
#define NAVE_CTL_PROTO_H

#define CTL_PROTO_VERSION 1

/* relayd -> controld */
#define CTL_RELAY_HELLO                                                                            \
	"relay_hello" /* {version, pid, workers, ktls, steering, tls_fingerprint,                  \
			 online:[{tunnel_id, hostname, os, arch, client_version}]} */
/*
 * {req, token | registration | certificate, id, hostname, os, arch, client_version, mode,
 * source}. certificate {name, serial, not_after}: a login with a client certificate relayd
 * checked against [tls] client_ca and its CRL; the tunnel is the one named like the
 * certificate (made when new, its group id the same name; no mesh role), and its
 * "identity" becomes "certificate NAME serial HEX" (a token login's "token ID"); refused
 * for mode deauth and check. mode
 * "deauth" revokes the token (auth_ok then carries revoked: true; the tunnel's ports and
 * domains are released and pushed as port_del and domain_del, and an online session of the
 * tunnel is kicked). mode "check": a login on relayd's SOCKS server ([socks] listen): the
 * token (never a registration) is checked with its restrictions against source and nothing
 * is updated; auth_ok says its tunnel_id, group and mesh as for a session.
 * source: the address the client's control link comes from as relayd saw it ("127.0.0.1",
 * "2001:db8::1"; absent when relayd could not tell). controld reads it with cidr_parse and
 * takes only a single address (a /32 or /128): anything else refuses the auth (error
 * "auth: \"source\" \"X\" is not an address"). A token (or registration) with allow_from
 * is refused when source is absent or outside its blocks; with allow_ids when the client's
 * id (else its hostname) matches none of its patterns (ctl/restrict.h). The refusal is an
 * error whose one-line reason names the restriction ("source address 127.0.0.1 is not
 * allowed by this token (allow_from 10.9.9.0/24)", "tunnel id \"x\" is not allowed by this
 * token (allow_ids office-*)"); relayd passes it to the client as the HELLO's error. A
 * deauth is not checked against them.
 */
#define CTL_AUTH	   "auth"
#define CTL_TUNNEL_ONLINE  "tunnel_online"  /* {tunnel_id, hostname, os, arch, client_version} */
#define CTL_TUNNEL_OFFLINE "tunnel_offline" /* {tunnel_id, reason} */
/*
 * {req, tunnel_id, port (0 = any), rule, transport?}. transport "tcp" or "udp", absent =
 * tcp, anything else is refused ("bad transport"). One port namespace: a number held by
 * the same tunnel under the other transport is refused ("port P is a tcp port of this
 * tunnel"). When the tunnel's token has a role (kinds, ports: ctl/restrict.h), a token
 * without "tcp" in kinds is refused ("this token does not allow tcp rules (kinds http)"),
 * one without "udp" a udp request ("this token does not allow udp rules (kinds tcp)"), a
 * port outside its range too ("port P is outside this token's port range A-B"), and port 0
 * takes the lowest free port inside that range.
 */
#define CTL_PORT_REQUEST "port_request"
#define CTL_PORT_RELEASE "port_release" /* {req, tunnel_id, port} */
/*
 * {req, tunnel_id, domain, rule}: claim a domain (a name or "*.NAME", domain.h) for an HTTP
 * rule. Refused (error) when another tunnel holds it ("domain D is held by tunnel ID"),
 * when [http] allowed_domains is set and no pattern of it covers the domain (a wildcard
 * claim "*.S" is covered by a pattern that matches every name under S), or when the tunnel
 * already holds LINK_RULES_MAX domains. A claim by the tunnel that holds the domain already
 * succeeds (a reconnect), and takes the new rule name. rule is required (1..LINK_RULE_MAX of
 * [A-Za-z0-9_-]); a domain that is not one (domain_norm with wildcards) is refused with a
 * reason naming what is wrong. The grant carries the domain normalised (lowercase), which
 * is the key relayd routes, releases and is sent domain_del by.
 * The tunnel's token's role is checked first: without "http" in its kinds the claim is
 * refused ("this token does not allow http rules (kinds tcp)"), and a domain its domains
 * patterns do not cover (as allowed_domains covers one) too ("domain D is not allowed by
 * this token (domains *.example.com)").
 */
#define CTL_DOMAIN_REQUEST "domain_request"
/* {req, tunnel_id, domain}: error when the tunnel does not hold it */
#define CTL_DOMAIN_RELEASE "domain_release"
/* {req, tunnel_id, rules:[names]}: release the tunnel's ports and domains under other rule
 * names */
#define CTL_PORT_SYNC "port_sync"
/* {req, tunnel_id}: revoke the tunnel's token, release its ports and domains */
#define CTL_DEAUTH "deauth"
/*
 * {op, tunnel_id, ok, retry?, port?, route?, reason?}: the answer to a rule_push (below):
 * the client's rule_result passed on (tunnel_id: the session's, never the client's word;
 * only the answer to the op relayd pushed to that tunnel, once: relayd drops the rest),
 * or relayd's own: retry true when the tunnel is not online here (the op stays pending
 * and is pushed again when the tunnel comes online), ok false with reason "client too
 * old" when the client's HELLO did not name the "rule_push" feature.
 */
#define CTL_RULE_RESULT "rule_result"
/*
 * {workers, ktls, steering, conns, conns_total, bytes_in, bytes_out, links, links_ktls,
 * links_tls, ktls_fallbacks, refused_per_source, idle_timeouts, pending_timeouts,
 * refused_max_links, refused_fd_limit, records_sent, records_dropped, uptime, started,
 * worker_stats}
 * every few seconds; also lists online tunnel ids as "online":[..] for last_seen. ktls is
 * the mode string ("kernel", "userspace (no TLS ULP in the kernel)", "userspace (ktls = off)");
 * links_ktls + links_tls = links (data links whose TLS records the kernel / userspace
 * handles); ktls_fallbacks counts links whose kTLS install failed. started: relayd's start,
 * Unix seconds. worker_stats: one object per worker, in worker order (the index is the
 * worker's number), every member a non-negative integer:
 *   {sqes (submission queue entries the kernel took), cqes (completions reaped), waits
 *    (io_uring_submit_and_wait calls, i.e. completion batches), sq_full (submits forced by a
 *    full submission queue), nobufs (receives that found the provided-buffer ring empty,
 *    -ENOBUFS), cq_overflow (the kernel's count of completions dropped for a full CQ), conns
 *    (open connections on the worker, a gauge), conns_total (accepted on it), links (data
 *    links open on it, a gauge)};
 * left out when the message would not fit MSG_MAX with it. controld checks each member
 * (a malformed one is null) and keeps at most 256 workers (ctl/metrics.c serves them).
 */
#define CTL_STATS "stats"
/*
 * The kernel assists, in every stats message:
 *   steering: "bpf" | "listeners"; listeners: listening sockets relayd holds for the range;
 *   maps: {ports, deny, allow} entries in the kernel maps (null when no BPF is loaded);
 *   xdp: null, or {interface, mode ("native" | "generic" | "detached"), syn_rate,
 *         pass, deny, not_allowed, unallocated, syn_rate_drops, malformed};
 *   firewall_refused: connections relayd refused at accept for the firewall lists;
 *   port_counters: {"PORT": [packets, bytes]} for allocated ports XDP counted (absent without XDP).
 * The HTTP edge, in every stats message:
 *   http: {requests (heads forwarded), and what the edge answered itself: bad_request (400,
 *         405, a bad TLS hello), no_host (400), unknown_host (404, unrecognized_name),
 *         offline (502), too_large (431), timeout (408, no hello in time), busy (503),
 *         unauthorized (401)}, and tls_kernel: connections whose TLS the edge terminates
 *         that went into the kernel (kTLS).
 * UDP port tunnels (datapath/udp.c), in every stats message:
 *   udp: {flows (open, a gauge), flows_expired (ended by [udp] idle_timeout), datagrams_in
 *        (public -> tunnel), datagrams_out (tunnel -> public), dropped: {queue (a flow's
 *        queue or its data link full), flows (a new flow past the tunnel's max_flows),
 *        oversize (empty, or longer than LINK_UDP_MAX), offline (the port's tunnel
 *        offline, a descriptor or slot short), socks (at relayd's SOCKS UDP ASSOCIATE
 *        relay: another source, malformed, a fragment, a refused destination, a limit)}}.
 *   Its port_request carries "transport": "udp" for a UDP rule (udp_add); port_grant,
 *   sync's ports and port_add carry "transport" back (absent: tcp); its records kind "udp".
 * relayd's SOCKS5 server ([socks] listen, tls_listen; datapath/socksd.c), in every stats
 * message: socks: {conns (accepted), refused: {auth, locked, limit, method, handshake}
 *   (refused before a CONNECT)}; its CONNECTs are counted in mesh as OPENs are.
 * Mesh streams (OPEN, link_proto.h), in every stats message:
 *   mesh: {opened (OPENs answered OK), refused: {denied, not_found, offline, not_allowed,
 *         dns, refused, unreachable, busy, bad} (OPENs answered with that status),
 *         denied_default (of the denied: no mesh rule decided), dns: {lookups (getaddrinfo
 *         calls), cache_hits, queue_full (names refused BUSY: 256 waited already)}}.
 */

/*
 * {records:[{tunnel_id, kind ("tcp" | "http" | "https" | "mesh"), port, domain?, src, src_port,
 * start_ms, duration_ms, bytes_in, bytes_out, reason}]}: relayed public connections that
 * closed, in batches (at most 96 records a message, and fewer when long hosts would take
 * it near MSG_MAX), sent when a batch
 * is full or about once a second, never one message per connection. port is the public
 * port the connection reached (for HTTP(S) the edge's listener port), domain (HTTP(S)
 * and mesh only) the request's host or the SNI (mesh, a stream a client opened: "from:ID"
 * on the destination tunnel's record, ID the opener; the name asked for on an external
 * destination's, whose tunnel_id is the opener and port the destination's), src the source address
 * as text (an IPv4 source in dotted form), start_ms the accept in Unix milliseconds, bytes_in
 * public -> tunnel, bytes_out tunnel -> public. reason is one of "done" (both ends finished),
 * "reset" (an end reset it, or its data link went away), "idle_timeout", "pending_timeout",
 * "refused" (reset at once: max_conns_per_source, max_links, descriptors, the firewall), "error"
 * (relayd's own failure), "shutdown" (relayd stopping, the tunnel offline, its port
 * released). Each worker queues its records in a fixed ring of its own; a full ring, a
 * controld away or one not reading (over 1 MiB queued) drops records, counted in
 * stats' records_dropped (records_sent: written to controld since start; a batch queued
 * and lost with the connection counts as dropped). controld checks every member
 * and drops a malformed record (counted); a message whose records is not an array is
 * malformed. The rule is resolved by controld (the tunnel's port, or the domain claim
 * covering the host).
 * kind "udp": a UDP flow (port the public UDP port, src/src_port the flow's source), resolved
 * like tcp by its port; reason "idle" (udp records only) when it expired.
 */
#define CTL_CONN_RECORDS "conn_records"

/*
 * Support sessions (ctl/support.h; the design: a device asks for a support tunnel, the
 * operator approves it, a supporter connects with a key only the device gave out). relayd
 * sends these only for clients that named the "support" feature; controld checks every
 * member again (ids ^sup-[a-z0-9]{10}$, service names 1-31 of [A-Za-z0-9_-], hex) and
 * answers a bad value with error {req, reason} (one line); a member of the wrong type is a
 * malformed message.
 *
 * {req, tunnel_id, expires (seconds, 1..604800: the client's CLI keeps 1 min as its least),
 * reason (0-200 characters of printable UTF-8; absent = ""), services: [1..8 distinct
 * names], auth_hash (SHA-256 of the auth key, 64 hex digits), source (the client's address
 * as relayd saw it; absent when unknown)} -> support_granted {req, id, expires_at (Unix s)}
 * or error ("this tunnel has 4 support sessions pending or approved already (at most 4)").
 * Audit: requested.
 */
#define CTL_SUPPORT_REQUEST "support_request"
/*
 * {req, session, service, auth (the auth key, 64 hex digits), source (the supporter's
 * address), source_port?}: may a supporter connect? -> support_allowed {req, session,
 * tunnel_id, service_index (the service's place in the request's list, from 0),
 * expires_at (Unix s: relayd ends the session's links then, even without controld)} or
 * error {req, reason}: "no support session ID", "support session ID is not approved yet",
 * "... has expired", "... was ended", "wrong key for support session ID", "service \"x\" is
 * not offered by support session ID", "too many attempts" (more than 10 a minute from the
 * source address, or 30 a minute for the session), "support session ID has 8 connections
 * already". Refusals are audited (refused, at most one record a second per session).
 */
#define CTL_SUPPORT_CONNECT "support_connect"
/* {req, tunnel_id, id}: the owner (the tunnel the session belongs to) ends it ->
 * support_kill {id, why: "ended by its device"} first, then support_ended {req, id}; or
 * error ("no support session ID": another tunnel's is unknown too, "... was ended",
 * "... has expired"). Audit: ended (actor tunnel:T). */
#define CTL_SUPPORT_END "support_end"
/* {req, tunnel_id} -> support_list {req, sessions: [{id, state (pending | approved | ended |
 * expired), reason, services, created_at, expires_at, approved_by (null: none),
 * connections}]}: the tunnel's newest 16, newest first. */
#define CTL_SUPPORT_LS "support_ls"
/*
 * {session, event, detail} (no reply): event "connected", detail {conn (relayd's id of the
 * link, an integer), source, source_port?, service}; event "disconnected", detail {conn,
 * bytes_up (supporter -> device), bytes_down, duration_ms, why}. Each is an audit record
 * (actor "supporter"); controld counts the live connections of a session from them (at
 * most 8: support_connect refuses the 9th) and forgets them when relayd goes away. A
 * malformed detail or an unknown session is logged and dropped.
 */
#define CTL_SUPPORT_EVENT "support_event"

/* controld -> relayd */
/*
 * {ports:[{port, tunnel_id, transport?}], domains:[{domain, tunnel_id}]} reply to
 * relay_hello (transport: "udp" for a UDP port, absent = tcp). Lists
 * that do not fit one message (MSG_MAX) come in pieces as the firewall's do: every piece
 * but the last carries "more": true; relayd appends the pieces' ports and domains and
 * applies them when the last one (no "more") arrives.
 */
#define CTL_SYNC "sync"
/*
 * {req, tunnel_id, token?, revoked?, group?, mesh?} token only when minted from a
 * registration; group: the tunnel's group id (mesh policy "group:" patterns); mesh: true
 * when the token's kinds (or its registration's) include "mesh" (restrict.h): such a
 * tunnel may reach other tunnels when no mesh rule decides.
 */
#define CTL_AUTH_OK	    "auth_ok"
#define CTL_PORT_GRANT	    "port_grant"      /* {req, tunnel_id, port, transport?} "udp" only */
#define CTL_RELEASED	    "released"	      /* {req, port} */
#define CTL_PORT_SYNCED	    "port_synced"     /* {req, released:[ports], released_domains:[..]} */
#define CTL_DEAUTHED	    "deauthed"	      /* {req, released:[ports], released_domains:[..]} */
#define CTL_DOMAIN_GRANT    "domain_grant"    /* {req, tunnel_id, domain} */
#define CTL_DOMAIN_RELEASED "domain_released" /* {req, domain} */
/* {domain}: pushed when a domain stops routing to its tunnel (navectl domains release, a
 * rule sync, deauth), before the reply of the request that released it */
#define CTL_DOMAIN_DEL "domain_del"
#define CTL_ERROR      "error"	  /* {req, reason} a refused request */
#define CTL_PORT_ADD   "port_add" /* {port, tunnel_id, transport?} on navectl ports allocate */
#define CTL_PORT_DEL   "port_del" /* {port} pushed on navectl ports release */
#define CTL_KICK       "kick"	  /* {tunnel_id, reason} token revoked or tunnel shut down */
/* {}: navectl reload: relayd reloads as on SIGHUP (its log says what applied) */
#define CTL_RELOAD "reload"
/*
 * {domain, token, key_authorization}: answer the ACME HTTP-01 validation of token for domain
 * on the HTTP listener (datapath/acme_chal.h, which checks every string); pushed by
 * controld's ACME client before it asks the CA to validate, again after every sync while it
 * is pending, and withdrawn by acme_challenge_del {token} once the CA decided.
 */
#define CTL_ACME_CHALLENGE     "acme_challenge"
#define CTL_ACME_CHALLENGE_DEL "acme_challenge_del"
/* {}: certificates changed (an ACME issue, renewal or revocation): read them now */
#define CTL_CERTS "certs"
/*
 * {deny:["CIDR"], allow:["CIDR"]}: the whole firewall, pushed after sync and on every
 * change (navectl firewall); relayd replaces its lists (and the XDP tries) with these.
 * Blocks are canonical (cidr_format), at most CIDR_LIST_MAX per list. Lists that do not
 * fit one message (MSG_MAX) come in pieces: every piece but the last carries
 * "more": true, and relayd appends the pieces' blocks, in order, and replaces its lists
 * when the last one (no "more") arrives; pieces held when the connection drops are
 * dropped with it.
 */
#define CTL_FIREWALL "firewall"
/*
 * {seq, first?, last?, rules:[{id, action ("allow" | "deny"), from, to, port_lo,
 * port_hi}]}: the whole mesh access policy (common/mesh.h: the texts, the order that
 * decides), pushed right behind sync (before controld answers any auth: relayd has a
 * policy before it admits a tunnel) and on every change (navectl mesh); at most
 * MESH_RULES_MAX rules. In pieces of at most MSG_MAX: seq 0, 1, ... in order, "first":
 * true on seq 0 (and only there), "last": true on the last (one piece: both). relayd
 * installs a push only when its last piece is in and every seq came in order; a piece
 * out of order or without its first, a new first before the last, a lost controld or a
 * malformed piece discards the push under way (logged), and the policy in force stays.
 * relayd builds one table from the rules and its [socks] allow list and hands it to
 * every worker.
 * The table counts its decisions: every stats message carries mesh_rules: [{rule, allowed,
 * denied}], per rule id since relayd started (0: the default; only rules that decided
 * something; left out when the message would not fit MSG_MAX with it), which controld
 * serves as nave_mesh_rule_decisions_total{rule, verdict}.
 */
#define CTL_MESH_POLICY "mesh_policy"
/*
 * {op, tunnel_id, action, name, kind?, to?, port?, ...}: a queued remote rule operation
 * (ctl/ruleops.c, the store's rule_ops) for an online tunnel, at most one per tunnel in
 * flight; relayd checks it (common/rulemsg.h) and sends it to the client as the link's
 * rule_push (link_proto.h), then passes the client's rule_result back as rule_result.
 */
#define CTL_RULE_PUSH "rule_push"

/* Support sessions: the answers to support_request, support_connect, support_end, support_ls */
#define CTL_SUPPORT_GRANTED "support_granted"
#define CTL_SUPPORT_ALLOWED "support_allowed"
#define CTL_SUPPORT_ENDED   "support_ended"
#define CTL_SUPPORT_LIST    "support_list"
/*
 * {id, why}: a support session left the approved (or pending) state: the operator ended
 * it ("ended by the operator") or denied it ("denied by the operator"), its owner ended
 * it ("ended by its device"), or it expired ("expired": controld checks once a second).
 * relayd closes every link of the session at once and tells the owner's client
 * support_closed {id, why}. Pushed again, for every session over in the last 7 days, to
 * a relayd that says hello (an unknown id is nothing to relayd).
 */
#define CTL_SUPPORT_KILL "support_kill"

#endif
