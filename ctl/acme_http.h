/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ACME client's HTTP/1.1: one request per connection (Connection: close),
 * HTTPS with the peer verified against a CA file and the URL's host, or plain
 * HTTP for the self-check against relayd's own listener. Responses are parsed
 * by libhttp-parser (Content-Length, chunked, or to the end) with limits: a
 * head of 16 KiB, a body of ACME_HTTP_BODY_MAX. Blocking, with timeouts; only
 * controld's ACME thread uses it.
 */
#ifndef NAVE_ACME_HTTP_H
#define NAVE_ACME_HTTP_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#define ACME_HTTP_BODY_MAX (1u << 20)
#define ACME_HTTP_HEAD_MAX (16u << 10)
#define ACME_URL_MAX	   1024
#define ACME_NONCE_MAX	   256

struct acme_url {
	bool tls;
	char host[256];
	char port[8];
	char path[ACME_URL_MAX]; /* with the query */
};

/* http:// or https:// HOST[:PORT][/PATH][?QUERY]; 0 or -1 */
int acme_url_parse(const char *url, struct acme_url *u);

struct acme_resp {
	int status;
	char nonce[ACME_NONCE_MAX];  /* Replay-Nonce (base64url) */
	char location[ACME_URL_MAX]; /* Location */
	char ctype[128];	     /* Content-Type */
	unsigned retry_after;	     /* Retry-After in seconds (0: none or a date) */
	char *body;		     /* NUL-terminated; malloc'd */
	size_t len;
	bool complete;
};

/*
 * Parses a whole response in buf (the fuzz target's entry): 0 with r filled
 * (free with acme_resp_free), or -1 with the reason in err. Headers with
 * characters a URL or nonce may not hold are refused.
 */
int acme_http_parse(const uint8_t *buf, size_t n, struct acme_resp *r, char *err, size_t errlen);
void acme_resp_free(struct acme_resp *r);

struct acme_http {
	pthread_mutex_t lock; /* guards fd, aborted and ctx against acme_http_abort */
	SSL_CTX *ctx;	      /* verifies servers against the CA file; NULL: not set yet */
	int fd;		      /* the connection in use, -1 */
	bool aborted;	      /* acme_http_abort: requests fail until acme_http_resume */
	unsigned timeout_ms;  /* connect, and each read or write */
	unsigned total_ms;    /* a whole request, however slowly the server drips */
	char user_agent[64];
};

/* Once, for the module's life. */
void acme_http_init(struct acme_http *h);
void acme_http_free(struct acme_http *h);
/* Trust ca (a CA file; NULL or "": the system's) for HTTPS from now on (read again). 0 or -1. */
int acme_http_set_ca(struct acme_http *h, const char *ca, char *err, size_t errlen);
/* From another thread: the request in progress and every later one fail at once... */
void acme_http_abort(struct acme_http *h);
/* ... until the thread that makes them resumes. */
void acme_http_resume(struct acme_http *h);
/* An https:// URL (acme_url_parse): what every URL an ACME server names must be. */
bool acme_url_https(const char *url);
/*
 * method url with an optional body (ctype its Content-Type); host: the Host to
 * send and verify (NULL: the URL's); connect_to: an address to connect to
 * instead of the URL's host (NULL: resolve it). 0 with r, or -1 with err.
 */
int acme_http_request(struct acme_http *h, const char *method, const char *url, const char *host,
		      const char *connect_to, const char *ctype, const char *body,
		      struct acme_resp *r, char *err, size_t errlen);

#endif
