/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Link protocol v1: every message that crosses a client <-> relayd link.
 *
 * Control link: length-prefixed JSON (see msg.h), one object per message with
 * a "type" member naming one of LINK_MSG_* below. Unknown types are ignored;
 * a malformed message closes the link.
 *
 * Data link: a fixed binary DATA_HELLO from the client, then frames. A frame
 * starts with a big-endian u32 word: 1..LINK_CHUNK_MAX is a data chunk of that
 * many bytes, 0 ends the sender's direction of the current stream (half-close),
 * LINK_FRAME_RESET aborts the stream, LINK_FRAME_BIND (relayd -> client only)
 * is followed by a struct link_bind and starts a stream. On a link the client
 * opened with LINK_HELLO_OUTBOUND, LINK_FRAME_OPEN (client -> relayd) and
 * LINK_FRAME_OPENED (relayd -> client) start a stream the client asked for
 * instead (see "Mesh streams" below). Any other value is malformed and closes
 * the link.
 */
#ifndef NAVE_LINK_PROTO_H
#define NAVE_LINK_PROTO_H

#include <stdint.h>

#define LINK_ALPN    "nave/1"
#define LINK_VERSION 1

/* Control link message types (JSON "type"). */
#define LINK_MSG_HELLO                                                                             \
	"hello" /* c->r {version, mode, token|registration, id, hostname, os, arch,                \
		   client_version, max_links?, auth?} (max_links: the client's own limit; the      \
		   tunnel's is the lower of it and the server's. Without a token or                \
		   registration, the login is the certificate the control link's TLS               \
		   handshake presented ([tls] client_ca): the tunnel id is its name, and id,       \
		   when given, must be that name; auth "certificate" (the only value) says the     \
		   client means to, for the refusal's reason when the server asked for none) */
#define LINK_MSG_WELCOME                                                                           \
	"welcome" /* r->c {tunnel_id, link_secret, token?, limits{max_pool_size, max_links,        \
		     heartbeat, max_ports}, features?} (features: what relayd understands          \
		     beyond version 1, see LINK_FEATURE_*; absent from older relayd) */
#define LINK_MSG_ERROR	       "error"	       /* r->c {reason}; the link closes after it */
#define LINK_MSG_HEARTBEAT     "heartbeat"     /* c->r {} */
#define LINK_MSG_HEARTBEAT_ACK "heartbeat_ack" /* r->c {} */
#define LINK_MSG_TCP_ADD       "tcp_add"       /* c->r {req, name, port (0 = any)} */
#define LINK_MSG_TCP_GRANT     "tcp_grant"     /* r->c {req, name, port} */
#define LINK_MSG_TCP_RM	       "tcp_rm"	       /* c->r {req, name, port} */
#define LINK_MSG_TCP_REMOVED   "tcp_removed"   /* r->c {req, name, port} */
#define LINK_MSG_REQ_ERROR     "req_error" /* r->c {req, reason}: a request refused, link stays */
#define LINK_MSG_SHUTDOWN      "shutdown" /* r->c {reason}: the tunnel is shut down; client exits */
/*
 * c->r {req, names:[rule names]}: the client's whole list of rules (TCP and
 * HTTP, see below), sent right after WELCOME and before its tcp_add and
 * http_add requests. The server releases
 * the ports it holds for this tunnel under a rule name that is not in the
 * list (ports reserved by an administrator, with no rule name, stay).
 */
#define LINK_MSG_TCP_SYNC   "tcp_sync"
#define LINK_MSG_TCP_SYNCED "tcp_synced" /* r->c {req, released:[ports]} */
/*
 * HTTP rules (a domain routed to this tunnel by the edge's HTTP/HTTPS listeners):
 * c->r http_add {req, name, domain, tls_passthrough?, redirect_https?, host_header?,
 *                basic_auth?}
 *   domain: a name or a wildcard "*.NAME" (domain.h); host_header: a Host value
 *   (1-255 of [A-Za-z0-9.:_-]); basic_auth: "USER:HASH", USER 1-64 of
 *   [A-Za-z0-9._-], HASH as `nave` stores it (see the client's README), at most
 *   LINK_AUTH_MAX. Where the client sends the bytes (to or webroot) stays with the
 *   client.
 *   basic_auth's HASH is "$scrypt$ln=L,r=R,p=P$SALT$HASH" (common/passwd.h: base64
 *   without padding, ln 10-20, r 1-16, p 1-4, at most 64 MiB); passwd_verify checks a
 *   password against it. Booleans are sent only when true, strings only when set.
 * r->c http_grant {req, name, domain, route}: the domain routes to this tunnel;
 *   streams of this rule arrive with a BIND whose flags have LINK_BIND_HTTP and whose
 *   port is route (1..65535), for as long as the control link stays up: the client
 *   forgets every route when the link closes and asks again (http_add) on the next.
 *   A refused http_add gets req_error {req, reason} (the client shows the reason).
 * c->r http_rm {req, name, domain} (sent for a granted rule only);
 *   r->c http_removed {req, name, domain}.
 * A domain is held by one tunnel at a time; a claim of a held one gets req_error
 * naming the holder's id. tcp_sync's names list every rule the client has, TCP and
 * HTTP: the server releases ports and domains held under any other name.
 */
/*
 * UDP rules (sent only to a relayd whose WELCOME named the feature "udp"):
 * c->r udp_add {req, name, port (0 = any)} -> r->c udp_grant {req, name, port}, or
 *   req_error {req, reason}; a UDP port is a port of the same reserved range as a TCP
 *   one, held by one tunnel for one transport.
 * c->r udp_rm {req, name, port} -> r->c udp_removed {req, name, port}.
 * Rule names are unique across TCP, HTTP and UDP rules; tcp_sync lists UDP rules too.
 * Each flow (one source address and port on one public UDP port) is one stream: a BIND
 * with LINK_BIND_UDP (origin: the flow's source, port: the public port); each data
 * chunk on it is exactly one datagram of 1..LINK_UDP_MAX bytes (a longer one is dropped
 * and counted by the receiver), EOF from either side ends the flow (the other side
 * answers EOF), RESET aborts it. relayd ends a flow idle for [udp] idle_timeout with EOF.
 */
#define LINK_MSG_UDP_ADD      "udp_add"
#define LINK_MSG_UDP_GRANT    "udp_grant"
#define LINK_MSG_UDP_RM	      "udp_rm"
#define LINK_MSG_UDP_REMOVED  "udp_removed"
#define LINK_UDP_MAX	      65507 /* the largest IPv4 UDP payload */
#define LINK_MSG_HTTP_ADD     "http_add"
#define LINK_MSG_HTTP_GRANT   "http_grant"
#define LINK_MSG_HTTP_RM      "http_rm"
#define LINK_MSG_HTTP_REMOVED "http_removed"
#define LINK_HOST_HEADER_MAX  255
#define LINK_AUTH_USER_MAX    64
#define LINK_AUTH_MAX	      255
/* c->r {req}: revoke this tunnel's own auth token; r->c deauthed, then the link closes. */
#define LINK_MSG_DEAUTH	  "deauth"
#define LINK_MSG_DEAUTHED "deauthed" /* r->c {req, released:[ports]} */

/*
 * HELLO "features": what a client understands beyond version 1, an array of at most
 * LINK_FEATURES_MAX names (1..LINK_FEATURE_MAX of [A-Za-z0-9_-]); names relayd does not
 * know are ignored, a client that sends none has none (an older client keeps working).
 *   "rule_push"  the client takes rule_push (below).
 *   "mesh"       the client may open streams (LINK_HELLO_OUTBOUND links, OPEN).
 *   "udp"        the client serves LINK_BIND_UDP streams (UDP rules, udp_add).
 *   "support"    the client asks for support sessions (support_*, below) and takes
 *                support_closed.
 * WELCOME "features" is relayd's list, the same shape: "udp" when relayd takes udp_add,
 * "support" when it takes support_*, and "mesh" when relayd takes
 * LINK_HELLO_OUTBOUND data links and OPEN frames. A client opens streams only when
 * the WELCOME named "mesh" (an older relayd refuses DATA_HELLO flags other than 0).
 *
 * Remote rules (navectl tunnels rules add|rm, ctl/API.md): an operator's rule change
 * for this client, one at a time per tunnel (the next after this one's result):
 * r->c rule_push {op, action: "add"|"rm", name, kind?, and the members of the client's
 *   rule sections: to, port, proxy_protocol ("v1"|"v2"), domain, webroot,
 *   tls_passthrough, redirect_https, host_header, basic_auth} (common/rulemsg.h checks
 *   it at controld, at relayd and at the client). Sent only to a client whose HELLO
 *   named "rule_push"; for any other the op fails with "client too old". The client
 *   applies it exactly as `nave tunnel tcp|http add` / `nave tunnel rm` (its local
 *   socket's path: saved in its config, asked of the server with tcp_add/http_add,
 *   tcp_rm/http_rm), within its [client] remote_rules policy, and logs it.
 * c->r rule_result {op, ok, port?, route?, reason?}: applied (ok true; port: the public
 *   port of a TCP rule; route: an HTTP rule's) or refused (ok false, reason: one line,
 *   1..RULEMSG_REASON_MAX bytes). An op pushed again (its answer lost) gets the answer
 *   the client gave it (the client keeps its last 16), and an add of a rule the client
 *   holds already, the same, is applied again.
 */
#define LINK_MSG_RULE_PUSH   "rule_push"
#define LINK_MSG_RULE_RESULT "rule_result"
#define LINK_FEATURE_RULES   "rule_push"
#define LINK_FEATURE_MESH    "mesh"
#define LINK_FEATURE_UDP     "udp"
#define LINK_FEATURE_SUPPORT "support"
#define LINK_FEATURES_MAX    8
#define LINK_FEATURE_MAX     32

/*
 * Support sessions (README "Support sessions"): the device asks the edge for a session a
 * support person may connect to once an operator approved it. Sent only to a relayd whose
 * WELCOME named "support"; relayd takes them only from a client whose HELLO named it (from
 * any other it answers req_error "support sessions need a client that names the \"support\"
 * feature in its HELLO"), checks every member here (the same limits as the client's command
 * line) and asks nave-controld (ctl_proto.h) with the session's tunnel id, never the client's
 * word, and the control link's source address.
 * c->r support_request {req, expires, reason?, services:[names], auth_hash}
 *   expires: seconds, LINK_SUPPORT_EXPIRES_MIN..MAX; reason: 0..LINK_SUPPORT_REASON_MAX
 *   characters of printable UTF-8 (absent: ""); services: 1..LINK_SUPPORT_SERVICES
 *   distinct names, 1..LINK_SUPPORT_NAME_MAX of [A-Za-z0-9_-] (only the names: where each
 *   one leads stays on the device); auth_hash: SHA-256 of the session's auth key
 *   (common/support.h: derived from the PSK alone), 64 lower-case hex digits (the PSK
 *   never leaves the device).
 *   r->c support_granted {req, id, expires_at (Unix s)}: a pending session, its id
 *   (^sup-[a-z0-9]{10}$) made by the edge; or req_error {req, reason} (at most 4 sessions
 *   pending or approved per tunnel).
 * c->r support_end {req, id}: the owner ends one of its sessions (every connection of it
 *   closes) -> r->c support_ended {req, id}, or req_error.
 * c->r support_ls {req} -> r->c support_list {req, sessions:[{id, state ("pending" |
 *   "approved" | "ended" | "expired"), reason, services, created_at, expires_at,
 *   approved_by (null: not approved), connections}]}: the tunnel's newest 16, newest first.
 * r->c support_closed {id, why}: unsolicited: a session of this tunnel left the pending or
 *   approved state (the operator ended or denied it, it expired, its owner ended it); the
 *   client forgets its key. relayd knows a session's tunnel from the answers it passed on
 *   (support_granted, support_list): a client that holds sessions sends support_ls after
 *   each WELCOME, so a restarted relayd learns them again.
 */
#define LINK_MSG_SUPPORT_REQUEST "support_request"
#define LINK_MSG_SUPPORT_GRANTED "support_granted"
#define LINK_MSG_SUPPORT_END	 "support_end"
#define LINK_MSG_SUPPORT_ENDED	 "support_ended"
#define LINK_MSG_SUPPORT_LS	 "support_ls"
#define LINK_MSG_SUPPORT_LIST	 "support_list"
#define LINK_MSG_SUPPORT_CLOSED	 "support_closed"
#define LINK_SUPPORT_EXPIRES_MIN 60	/* 1 minute */
#define LINK_SUPPORT_EXPIRES_MAX 604800 /* 7 days */
#define LINK_SUPPORT_REASON_MAX	 200	/* characters */
#define LINK_SUPPORT_SERVICES	 8
#define LINK_SUPPORT_NAME_MAX	 31
#define LINK_SUPPORT_WHY_MAX	 160 /* support_closed's why, bytes */

/*
 * HELLO "mode": "run" for nave start, "configure" to validate/mint a token
 * only, "deauth" to revoke the token (WELCOME {tunnel_id, revoked: true},
 * then the link closes; an online session of the tunnel is shut down).
 */

/*
 * Strings a client sends, checked by relayd where they enter (and again by
 * controld); anything else is refused with a reason naming the field:
 *   hostname        1..64 of [A-Za-z0-9._-]
 *   os, arch        1..32 of [A-Za-z0-9._-]
 *   client_version  1..32 of [A-Za-z0-9._+-]
 *   id              1..63 of [A-Za-z0-9._-] (the tunnel group name)
 *   token, registration  1..64 of [A-Za-z0-9_]
 *   rule names      1..63 of [A-Za-z0-9_-], unique across TCP, HTTP and UDP rules (case
 *                   does not tell two apart); at most LINK_RULES_MAX in tcp_sync
 */
#define LINK_HOSTNAME_MAX 64
#define LINK_OS_MAX	  32
#define LINK_VERSION_MAX  32
#define LINK_GROUP_MAX	  63
#define LINK_TOKEN_MAX	  64
#define LINK_RULE_MAX	  63
#define LINK_RULES_MAX	  64

#define LINK_MAGIC	0x4e56444cu /* "NVDL": never a valid control-message length */
#define LINK_ID_MAX	32	    /* ids: printable ASCII 0x21-0x7e, at most 31 bytes */
#define LINK_SECRET_LEN 32

struct link_data_hello {
	uint32_t magic;		     /* LINK_MAGIC, big-endian */
	uint16_t version;	     /* LINK_VERSION, big-endian */
	uint16_t flags;		     /* LINK_HELLO_*, big-endian; others must be 0 */
	char tunnel_id[LINK_ID_MAX]; /* NUL-padded */
	uint8_t secret[LINK_SECRET_LEN];
} __attribute__((packed));

/*
 * DATA_HELLO flags. LINK_HELLO_OUTBOUND: this data link carries streams the
 * CLIENT opens (OPEN frames). relayd never BINDs on it and never puts it on the
 * tunnel's idle list; it counts in the tunnel's max_links like any other link.
 * Sent only to a relayd whose WELCOME named "mesh".
 */
#define LINK_HELLO_OUTBOUND 0x1
#define LINK_HELLO_FLAGS    LINK_HELLO_OUTBOUND /* every flag this version knows */

#define LINK_CHUNK_MAX	 (1u << 20)
#define LINK_FRAME_EOF	 0u
#define LINK_FRAME_RESET 0xffffffffu
#define LINK_FRAME_BIND	 0xfffffffeu

#define LINK_BIND_PROXY_V1 0x1
#define LINK_BIND_PROXY_V2 0x2
/*
 * An HTTP stream: port is the route of an http_grant, not a public port. The
 * stream carries HTTP/1.1 requests whose heads the edge has already checked
 * and rewritten (X-Forwarded-*, Host), or raw TLS bytes for a passthrough rule.
 */
#define LINK_BIND_HTTP 0x4
/*
 * More public connections of the tunnel wait for a data link behind this one:
 * the client opens links faster than one per BIND (a burst ramps up instead of
 * waiting behind a few handshakes at a time). A hint; older clients ignore it.
 */
#define LINK_BIND_WAITING 0x8
/*
 * A UDP flow (udp_grant): port is a public UDP port, origin the flow's source; every
 * chunk is one datagram (see "UDP rules" above).
 */
#define LINK_BIND_UDP 0x10
/*
 * A support stream (see "Support streams" below): port is the index of the service in
 * the session's request (0..LINK_SUPPORT_SERVICES-1), origin the supporter's address,
 * dst_addr the session id (14 ASCII bytes, NUL-padded), dst_port 0. The device's client
 * hands the stream to its support gateway, never to a rule; a client that does not know
 * the flag resets the stream.
 */
#define LINK_BIND_SUPPORT 0x20

/*
 * Support streams (issue 13; common/support.h). A support person's `nave support
 * connect` opens, per local connection, a TLS link to the tunnel port (ALPN nave/1, the
 * server checked as a client checks it) whose first control message is
 *   c->r hello {version, mode "support", session (sup-...), service (a name of the
 *        session's request), auth (the auth key, 64 lower-case hex digits),
 *        client_version}
 * relayd asks controld (support_connect) and answers
 *   r->c welcome {session, service, service_index, expires_at (Unix s)}   or   error {reason}
 *        (service_index: the service's place in the session's request, 0..7, as controld
 *        answered support_connect: the index the supporter's SUP1 carries and the BIND's
 *        port; the supporter knows only the name)
 * then joins the link to a stream to the session's device (BIND with
 * LINK_BIND_SUPPORT) and sends a LINK_FRAME_OPENED frame (struct link_opened; status
 * LINK_OPEN_OK, or LINK_OPEN_OFFLINE / LINK_OPEN_BUSY and the link closes). From then on
 * the link carries that one stream's frames both ways, as a data link does (chunks, EOF,
 * reset), and closes when it ends: it is never a tunnel's link. relayd ends every such
 * link of a session at once when the session ends (its owner, the operator, expiry).
 * Inside the stream the two ends run support.h's handshake and records: the edge relays
 * bytes it cannot read.
 */

struct link_bind {
	uint32_t stream_id;	 /* big-endian; for logs */
	uint16_t port;		 /* public port the connection arrived on (LINK_BIND_HTTP: the
				    route), big-endian */
	uint16_t origin_port;	 /* big-endian */
	uint8_t origin_addr[16]; /* IPv6 or IPv4-mapped */
	uint16_t flags;		 /* LINK_BIND_*, big-endian */
	uint16_t dst_port;	 /* local port of the public listener, big-endian */
	uint8_t dst_addr[16];	 /* local address of the public connection (IPv6 or v4-mapped) */
} __attribute__((packed));

/*
 * Mesh streams (client-opened). On an idle LINK_HELLO_OUTBOUND link the client
 * sends LINK_FRAME_OPEN and a struct link_open naming a destination; relayd
 * answers LINK_FRAME_OPENED and a struct link_opened. status LINK_OPEN_OK: the
 * stream is up and frames flow as after a BIND (chunks, EOF, RESET); the link is
 * idle again (the next OPEN may follow) once the stream ended both ways or was
 * reset. Any other status: no stream, the link stays idle. relayd answers every
 * OPEN within 10 s (else LINK_OPEN_UNREACHABLE) and closes an outbound link that
 * carried no OPEN for 5 minutes.
 *
 * The name is, in relayd's order: an external destination inside the server's
 * [socks] allow list (an IPv4 or IPv6 literal without brackets, or a DNS name,
 * resolved at the edge), a tunnel id or group id (1..LINK_GROUP_MAX of
 * [A-Za-z0-9._-], case-insensitive; port: one of that tunnel's TCP ports), or a
 * domain of an HTTP rule (the stream reaches that rule raw, whatever the port).
 * A name outside those alphabets: OPENED LINK_OPEN_BAD.
 *
 * Transport LINK_OPEN_UDP opens a UDP flow instead: every data chunk on the
 * stream is exactly one datagram of 1..LINK_UDP_MAX bytes both ways, and EOF
 * from either side ends the flow (the other side answers EOF), as on a
 * LINK_BIND_UDP stream ("UDP rules" above). The name is looked up as for TCP,
 * except that a tunnel's port must be one of its UDP ports (udp_grant) and a
 * domain of an HTTP rule is NOT_FOUND. For a tunnel the edge binds a stream on
 * the destination's data link with LINK_BIND_UDP (port: the UDP port, origin:
 * A's link's source), exactly as for a public datagram, so the destination's
 * client serves it as any flow of that port; for an external destination the
 * edge sends from a UDP socket of its own, connected to it. The mesh policy
 * judges a UDP OPEN as a TCP one (same kinds, same ports). relayd ends the flow
 * idle for [udp] idle_timeout with EOF; a flow into a tunnel counts in its
 * [udp] max_flows (past it: BUSY).
 * A malformed header (unknown transport or flags, reserved or padding not 0,
 * name_len or port 0) closes the link.
 */
#define LINK_FRAME_OPEN	   0xfffffffdu /* client -> relayd, a struct link_open follows */
#define LINK_FRAME_OPENED  0xfffffffcu /* relayd -> client, a struct link_opened follows */
#define LINK_OPEN_NAME_MAX 255
#define LINK_OPEN_TCP	   0
#define LINK_OPEN_UDP	   1   /* a UDP flow: one datagram per chunk */
#define LINK_OPEN_SOCKS	   0x1 /* opened for a SOCKS CONNECT (logs and records) */
#define LINK_OPEN_FLAGS	   LINK_OPEN_SOCKS

struct link_open {
	uint32_t stream_id;	       /* the client's, big-endian; echoed in OPENED */
	uint8_t transport;	       /* LINK_OPEN_TCP or LINK_OPEN_UDP */
	uint8_t name_len;	       /* 1..LINK_OPEN_NAME_MAX bytes of name are meaningful */
	uint16_t port;		       /* 1..65535, big-endian */
	uint16_t flags;		       /* LINK_OPEN_*, big-endian; others must be 0 */
	uint16_t reserved;	       /* 0 */
	char name[LINK_OPEN_NAME_MAX]; /* zero padded after name_len */
} __attribute__((packed));

struct link_opened {
	uint32_t stream_id; /* the OPEN's, big-endian */
	uint8_t status;	    /* LINK_OPEN_OK or a refusal below */
	uint8_t reserved;   /* 0; receivers ignore it */
	uint16_t rule;	    /* big-endian: the mesh rule that decided, 0 = the default / none */
} __attribute__((packed));

/*
 * OPENED status (link_open_status_name in frame.h gives one-line texts):
 *   DENIED       refused by the mesh policy (rule says which; 0: default deny)
 *   NOT_FOUND    no tunnel, port or domain by that name, not an allowed external
 *   OFFLINE      the destination tunnel is offline
 *   NOT_ALLOWED  an external destination outside [socks] allow
 *   DNS          the name did not resolve
 *   REFUSED      the destination refused the connection
 *   UNREACHABLE  unreachable, or the connect timed out
 *   BUSY         a limit: the destination's max_links, descriptors, the resolver's queue
 *   BAD          a name or transport the edge does not take
 * Higher values (a newer relayd's refusals) are refusals too.
 */
#define LINK_OPEN_OK	      0
#define LINK_OPEN_DENIED      1
#define LINK_OPEN_NOT_FOUND   2
#define LINK_OPEN_OFFLINE     3
#define LINK_OPEN_NOT_ALLOWED 4
#define LINK_OPEN_DNS	      5
#define LINK_OPEN_REFUSED     6
#define LINK_OPEN_UNREACHABLE 7
#define LINK_OPEN_BUSY	      8
#define LINK_OPEN_BAD	      9
#define LINK_OPEN_STATUS_MAX  9

_Static_assert(sizeof(struct link_data_hello) == 72, "DATA_HELLO size");
_Static_assert(sizeof(struct link_bind) == 44, "BIND size");
_Static_assert(sizeof(struct link_open) == 267, "OPEN size");
_Static_assert(sizeof(struct link_opened) == 8, "OPENED size");

#endif
