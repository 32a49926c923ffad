/* SPDX-License-Identifier: Apache-2.0 */
/*
 * relayd <-> controld internal protocol on runtime_dir/relay.sock.
 *
 * Length-prefixed JSON messages (msg.h). controld listens, relayd connects and
 * is authenticated by SO_PEERCRED (same uid as controld, or root). Requests
 * carry a numeric "req" echoed in the reply. controld may push unsolicited
 * messages (CTL_PORT_ADD, CTL_PORT_DEL, CTL_KICK) at any time after SYNC;
 * every port a request releases (port_sync, deauth, auth in mode deauth)
 * is also pushed as CTL_PORT_DEL before the reply.
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
 * {req, token | registration, id, hostname, os, arch, client_version, mode}; mode "deauth"
 * revokes the token (auth_ok then carries revoked: true; the tunnel's ports are released
 * and pushed as port_del, and an online session of the tunnel is kicked).
 */
#define CTL_AUTH	   "auth"
#define CTL_TUNNEL_ONLINE  "tunnel_online"  /* {tunnel_id, hostname, os, arch, client_version} */
#define CTL_TUNNEL_OFFLINE "tunnel_offline" /* {tunnel_id, reason} */
#define CTL_PORT_REQUEST   "port_request"   /* {req, tunnel_id, port (0 = any), rule} */
#define CTL_PORT_RELEASE   "port_release"   /* {req, tunnel_id, port} */
/* {req, tunnel_id, rules:[names]}: release the tunnel's ports under other rule names */
#define CTL_PORT_SYNC "port_sync"
#define CTL_DEAUTH    "deauth" /* {req, tunnel_id}: revoke the tunnel's token, release its ports */
/*
 * {workers, ktls, steering, conns, conns_total, bytes_in, bytes_out, links, links_ktls,
 * links_tls, ktls_fallbacks, refused_per_source, idle_timeouts, pending_timeouts, uptime}
 * every few seconds; also lists online tunnel ids as "online":[..] for last_seen. ktls is
 * the mode string ("kernel", "userspace (no TLS ULP in the kernel)", "userspace (ktls = off)");
 * links_ktls + links_tls = links (data links whose TLS records the kernel / userspace
 * handles); ktls_fallbacks counts links whose kTLS install failed.
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
 */

/* controld -> relayd */
#define CTL_SYNC "sync" /* {ports:[{port, tunnel_id}]} reply to relay_hello */
/* {req, tunnel_id, token?, revoked?} token only when minted from a registration */
#define CTL_AUTH_OK	"auth_ok"
#define CTL_PORT_GRANT	"port_grant"  /* {req, tunnel_id, port} */
#define CTL_RELEASED	"released"    /* {req, port} */
#define CTL_PORT_SYNCED "port_synced" /* {req, released:[ports]} */
#define CTL_DEAUTHED	"deauthed"    /* {req, released:[ports]} */
#define CTL_ERROR	"error"	      /* {req, reason} a refused request */
#define CTL_PORT_ADD	"port_add"    /* {port, tunnel_id} pushed on navectl ports allocate */
#define CTL_PORT_DEL	"port_del"    /* {port} pushed on navectl ports release */
#define CTL_KICK	"kick"	      /* {tunnel_id, reason} token revoked or tunnel shut down */
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

#endif
