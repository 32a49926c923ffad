/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The nave client runtime: the control link to relayd (HELLO, heartbeats,
 * rule requests, reconnect with capped exponential backoff and jitter), the
 * data-link pool (the relay engine in client role) and the local control
 * socket through which `nave tunnel ...` changes a running client.
 */
#ifndef NAVE_CLIENT_H
#define NAVE_CLIENT_H

#include "config/cfg.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Connects to the server once in "configure" mode: validates the key or
 * trades the registration token for an auth token. On success fills
 * tunnel_id and token (token may be empty when a key was given) and returns
 * 0; else -1 with a one-line reason in err.
 */
int client_configure(const struct cfg_client *c, const char *registration, const char *key,
		     char *tunnel_id, size_t idlen, char *token, size_t toklen, char *err,
		     size_t errlen);

/*
 * Revokes the configured token on the server over one short connection
 * (HELLO in mode "deauth"; an online session of the tunnel is shut down).
 * 0 with tunnel_id filled, else -1 with a one-line reason in err.
 */
int client_deauth_offline(const struct cfg_client *c, char *tunnel_id, size_t idlen, char *err,
			  size_t errlen);

/*
 * A certificate directory (nodes/NAME of navectl pki) the client may use:
 * tls.crt there, tls.key a regular file only its owner may read. 0 or -1 with
 * a one-line reason in err.
 */
int client_cert_check(const char *dir, char *err, size_t errlen);

/* Runs the tunnel until SIGTERM/SIGINT or a server SHUTDOWN. Returns the exit status. */
int client_run(struct cfg_client *c);

/*
 * An HTTP rule as `nave tunnel ls --json` shows it: name, type "http",
 * domain, to or webroot, flags (tls_passthrough, redirect_https, host_header,
 * basic_auth: those set), host_header and basic_auth_user when set (never the
 * hash), state, route when granted (route != 0), reason when refused
 * (reason non-empty).
 */
json_t *client_http_rule_json(const struct cfg_http_rule *h, unsigned route, const char *state,
			      const char *reason);

/*
 * A TCP socket bound to addr:port (an IPv4 or IPv6 literal), listening when
 * listen is set (the local end of a port map or SOCKS proxy); with udp a
 * datagram socket bound there instead (a UDP port map's). The fd, or -1
 * with a one-line reason in err ("local port 16379 is already in use on
 * 127.0.0.1"). `nave ports map` of a stopped client binds without listening
 * and closes again: a port in use is refused before it is saved.
 */
int client_listen_local(const char *addr, uint16_t port, bool listen, bool udp, char *err,
			size_t errlen);

/*
 * The port maps (socks false) or SOCKS proxies of a config as `nave ports ls
 * --json` / `nave proxies ls --json` show them (state "saved").
 */
json_t *client_listeners_json(const struct cfg_client *c, bool socks);

/*
 * Sends one request to a running client's local socket and waits for the
 * answer (ownership of the result passes to the caller). NULL with errno set
 * (ENOENT/ECONNREFUSED: not running).
 */
json_t *client_local_request(const char *socket_path, json_t *req, int timeout_ms);

#endif
