/* SPDX-License-Identifier: Apache-2.0 */
/*
 * controld's end of the internal relayd socket (runtime_dir/relay.sock,
 * protocol in common/ctl_proto.h). One relayd connection at a time, checked
 * with SO_PEERCRED; requests are answered from the store; admin actions are
 * pushed (port_add, port_del, domain_del, kick, firewall). Driven by controld's poll loop: nothing
 * here blocks, and a malformed message closes the peer with a logged reason.
 */
#ifndef NAVE_RELAYLINK_H
#define NAVE_RELAYLINK_H

#include <jansson.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct relaylink;
struct store;
struct cfg_server;

/*
 * Serves relayd on lfd, a listening non-blocking AF_UNIX socket (relay.sock,
 * mode 0600), whose ownership passes to the link. st and cfg must outlive
 * it. 0 or -ENOMEM (lfd is then closed).
 */
int relaylink_open(struct relaylink **out, int lfd, struct store *st, const struct cfg_server *cfg);
/* Closes the connection and the listener (the caller removes the file); NULL is fine. */
void relaylink_close(struct relaylink *rl);

#define RELAYLINK_POLLFDS 2
/*
 * Fills at most RELAYLINK_POLLFDS entries of pfd; returns how many. Sends a
 * firewall push that is due first (once the output queue is empty).
 */
int relaylink_pollfds(struct relaylink *rl, struct pollfd *pfd);
/* Handles the results of poll() for the n entries relaylink_pollfds filled. */
void relaylink_process(struct relaylink *rl, const struct pollfd *pfd, int n);

/*
 * True when messages wait that a wake-up's time budget left (the loop should
 * poll with timeout 0 and call relaylink_process again).
 */
bool relaylink_busy(const struct relaylink *rl);

/* True when a relayd is connected and has said hello. */
bool relaylink_connected(const struct relaylink *rl);

/*
 * Pushes to relayd; 0 when queued, -ENOTCONN when no relayd is connected. port_add's
 * transport: "udp" is sent as such, "tcp" or NULL as no member (ctl_proto.h).
 */
int relaylink_port_add(struct relaylink *rl, unsigned port, const char *tunnel_id,
		       const char *transport);
int relaylink_port_del(struct relaylink *rl, unsigned port);
int relaylink_kick(struct relaylink *rl, const char *tunnel_id, const char *reason);
/* Asks relayd to reload (navectl reload); -ENOTCONN when it is not connected. */
int relaylink_reload(struct relaylink *rl);
/* A remote rule operation (ctl_proto.h rule_push; m not consumed): 0, or -errno. */
int relaylink_rule_push(struct relaylink *rl, const json_t *m);
/*
 * Queues a message for relayd (obj is consumed; NULL is -ENOMEM): 0, -ENOTCONN when none
 * is connected, or -errno (a full queue closes the connection).
 */
int relaylink_send(struct relaylink *rl, json_t *obj);
struct support;
/* The support sessions' state that answers relay.sock's support_* (NULL: they are ignored). */
void relaylink_set_support(struct relaylink *rl, struct support *sup);
struct support *relaylink_support(const struct relaylink *rl);
/* How many relayd connections were greeted: a change means a new relayd to tell again. */
unsigned relaylink_generation(const struct relaylink *rl);
/* Publishes (keyauth) or withdraws (keyauth NULL) an ACME HTTP-01 answer (CTL_ACME_CHALLENGE). */
int relaylink_acme_challenge(struct relaylink *rl, const char *domain, const char *token,
			     const char *keyauth);
/* Tells relayd to read its certificates now (CTL_CERTS). */
int relaylink_certs(struct relaylink *rl);
/*
 * The firewall changed: relayd is sent the whole of it, both lists as the
 * store holds them then, as CTL_FIREWALL (in pieces when it does not fit one
 * message, see ctl_proto.h) once what is queued for it has gone out, so a
 * burst of changes is one push. 0, or -ENOTCONN when no relayd is connected
 * (it gets the lists when it says hello).
 */
int relaylink_firewall(struct relaylink *rl);
/*
 * The mesh policy changed: relayd is sent every rule as the store holds them
 * then (CTL_MESH_POLICY, in pieces like the firewall's) once its queue is
 * empty. 0, or -ENOTCONN (it gets them when it says hello).
 */
int relaylink_mesh(struct relaylink *rl);
/* Pushes domain_del: the domain no longer routes to its tunnel. */
int relaylink_domain_del(struct relaylink *rl, const char *domain);

/* What a request released: port numbers and domain names, as JSON arrays. */
struct relaylink_released {
	json_t *ports;
	json_t *domains;
};

/* Two empty arrays; false (nothing allocated) when out of memory. */
bool relaylink_released_init(struct relaylink_released *r);
void relaylink_released_free(struct relaylink_released *r);
/* Pushes port_del for every port and domain_del for every domain of r. */
void relaylink_released_push(struct relaylink *rl, const struct relaylink_released *r);

struct store_port;
struct store_domain;
/* A store_port_cb / store_domain_cb appending to a struct relaylink_released. */
int relaylink_collect_port(const struct store_port *p, void *released);
int relaylink_collect_domain(const struct store_domain *d, void *released);

/*
 * The "relay" object of GET /api/v1/status (a new reference): connected,
 * then pid, workers, ktls, steering, conns, conns_total, bytes_in, bytes_out,
 * links, links_ktls, links_tls, ktls_fallbacks, refused_per_source,
 * idle_timeouts, pending_timeouts, refused_max_links, refused_fd_limit, records_sent,
 * records_dropped, listeners,
 * maps, xdp,
 * firewall_refused
 * from the hello and the latest stats (null when unknown or malformed).
 */
json_t *relaylink_status(const struct relaylink *rl);
/*
 * The "records" object of GET /api/v1/status (a new reference): connection
 * records received from relayd since controld started, stored, refused
 * (malformed, or of a tunnel the store does not know) and failed (the store
 * could not take them).
 */
json_t *relaylink_records_status(const struct relaylink *rl);
/*
 * The latest stats message of a connected relayd (NULL: none, or no relayd),
 * without type, online and port_counters, its kernel-assist members and
 * worker_stats checked (other members as relayd sent them: check before use).
 * Owned by the link: valid until the next relaylink_process.
 */
const json_t *relaylink_stats(const struct relaylink *rl);
/* The checked port_counters {"PORT": [packets, bytes]} (NULL: none); as above. */
const json_t *relaylink_counters(const struct relaylink *rl);
/*
 * The packets and payload bytes relayd's XDP counted for port, from the
 * latest hello or stats; false when relayd reported none for it.
 */
bool relaylink_port_counters(const struct relaylink *rl, unsigned port, int64_t *packets,
			     int64_t *bytes);

#endif
