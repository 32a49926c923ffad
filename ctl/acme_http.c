// SPDX-License-Identifier: Apache-2.0
/* The ACME client's HTTP/1.1 (acme_http.h). */
#include "ctl/acme_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util.h"

#include <http_parser.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#define SYSTEM_CA "/etc/ssl/certs/ca-certificates.crt"

/* snprintf whose truncation is fine (messages, copies of checked lengths) */
__attribute__((format(printf, 3, 4))) static void sfmt(char *out, size_t n, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(out, n, fmt, ap);
	va_end(ap);
}

/* ---- URLs ---- */

int acme_url_parse(const char *url, struct acme_url *u)
{
	struct http_parser_url pu;
	size_t n = strlen(url);

	memset(u, 0, sizeof(*u));
	if (n >= ACME_URL_MAX)
		return -1;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f)
			return -1;
	http_parser_url_init(&pu);
	if (http_parser_parse_url(url, n, 0, &pu) || !(pu.field_set & (1 << UF_SCHEMA)) ||
	    !(pu.field_set & (1 << UF_HOST)))
		return -1;
	if (pu.field_data[UF_SCHEMA].len == 5 &&
	    !strncasecmp(url + pu.field_data[UF_SCHEMA].off, "https", 5))
		u->tls = true;
	else if (pu.field_data[UF_SCHEMA].len != 4 ||
		 strncasecmp(url + pu.field_data[UF_SCHEMA].off, "http", 4))
		return -1;
	if (pu.field_data[UF_HOST].len >= sizeof(u->host) || (pu.field_set & (1 << UF_USERINFO)))
		return -1;
	memcpy(u->host, url + pu.field_data[UF_HOST].off, pu.field_data[UF_HOST].len);
	sfmt(u->port, sizeof(u->port), "%u", pu.port ? pu.port : u->tls ? 443 : 80);
	if (pu.field_set & (1 << UF_PATH)) {
		/* the path and what follows it (the query), not the fragment */
		size_t end = pu.field_set & (1 << UF_QUERY)
				 ? pu.field_data[UF_QUERY].off + pu.field_data[UF_QUERY].len
				 : pu.field_data[UF_PATH].off + pu.field_data[UF_PATH].len;

		sfmt(u->path, sizeof(u->path), "%.*s", (int)(end - pu.field_data[UF_PATH].off),
		     url + pu.field_data[UF_PATH].off);
	} else {
		strcpy(u->path, "/");
	}
	return 0;
}

/* ---- responses ---- */

enum { H_NONE, H_NONCE, H_LOCATION, H_CTYPE, H_RETRY };

struct parse {
	struct acme_resp *r;
	bool is_head;	/* the answer to a HEAD: no body whatever its headers say */
	int hdr;	/* which header the value is for */
	char field[32]; /* the header name, cut */
	size_t flen;
	char value[ACME_URL_MAX]; /* the value being read */
	size_t vlen;
	bool vlong;  /* the value is longer than value: refused for the headers kept */
	size_t head; /* bytes of head seen */
	char why[128];
};

static int on_field(http_parser *p, const char *at, size_t n)
{
	struct parse *s = p->data;

	if (s->hdr != -1) {
		s->flen = 0;
		s->hdr = -1; /* a new field: which one is decided at its value */
	}
	for (size_t i = 0; i < n && s->flen + 1 < sizeof(s->field); i++)
		s->field[s->flen++] = at[i];
	s->field[s->flen] = '\0';
	s->vlen = 0;
	s->vlong = false;
	s->head += n;
	return s->head > ACME_HTTP_HEAD_MAX;
}

static int on_value(http_parser *p, const char *at, size_t n)
{
	struct parse *s = p->data;

	if (s->hdr == -1) {
		s->hdr = !strcasecmp(s->field, "Replay-Nonce")	 ? H_NONCE
			 : !strcasecmp(s->field, "Location")	 ? H_LOCATION
			 : !strcasecmp(s->field, "Content-Type") ? H_CTYPE
			 : !strcasecmp(s->field, "Retry-After")	 ? H_RETRY
								 : H_NONE;
	}
	s->head += n;
	if (s->head > ACME_HTTP_HEAD_MAX)
		return 1;
	if (s->hdr == H_NONE)
		return 0;
	if (s->vlen + n >= sizeof(s->value)) {
		s->vlong = true;
		return 0;
	}
	memcpy(s->value + s->vlen, at, n);
	s->vlen += n;
	s->value[s->vlen] = '\0';
	return 0;
}

/* a finished value of a kept header into r */
static int value_done(struct parse *s)
{
	struct acme_resp *r = s->r;
	size_t i;

	if (s->hdr <= H_NONE)
		return 0;
	if (s->vlong) {
		sfmt(s->why, sizeof(s->why), "the %s header is too long", s->field);
		return -1;
	}
	for (i = 0; i < s->vlen; i++)
		if ((unsigned char)s->value[i] < 0x20 || (unsigned char)s->value[i] >= 0x7f)
			break;
	if (i < s->vlen) {
		sfmt(s->why, sizeof(s->why), "the %s header holds control characters", s->field);
		return -1;
	}
	switch (s->hdr) {
	case H_NONCE:
		for (i = 0; i < s->vlen; i++)
			if (!strchr(
				"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
				s->value[i]))
				break;
		if (i < s->vlen || !s->vlen || s->vlen >= sizeof(r->nonce)) {
			sfmt(s->why, sizeof(s->why), "the Replay-Nonce is not base64url");
			return -1;
		}
		memcpy(r->nonce, s->value, s->vlen + 1);
		break;
	case H_LOCATION:
		memcpy(r->location, s->value, s->vlen + 1);
		break;
	case H_CTYPE:
		sfmt(r->ctype, sizeof(r->ctype), "%s", s->value);
		break;
	case H_RETRY: {
		char *end;
		unsigned long v = strtoul(s->value, &end, 10);

		r->retry_after = *end || end == s->value ? 0 : v > 3600 ? 3600 : (unsigned)v;
		break;
	}
	}
	s->hdr = H_NONE;
	return 0;
}

static int on_field_check(http_parser *p, const char *at, size_t n)
{
	struct parse *s = p->data;

	if (s->hdr > H_NONE && value_done(s) < 0)
		return 1;
	return on_field(p, at, n);
}

static int on_headers(http_parser *p)
{
	struct parse *s = p->data;

	/* not 1 or 2 here: those mean "no body" and "upgrade" to http_parser */
	if (s->hdr > H_NONE && value_done(s) < 0)
		return -1;
	s->r->status = (int)p->status_code;
	if (s->r->status < 100 || s->r->status > 999) {
		sfmt(s->why, sizeof(s->why), "the status is not three digits");
		return -1;
	}
	if (s->is_head)
		return 1; /* http_parser: no body follows */
	if (p->content_length != (uint64_t)-1 && p->content_length > ACME_HTTP_BODY_MAX) {
		sfmt(s->why, sizeof(s->why), "the body is larger than %u bytes",
		     ACME_HTTP_BODY_MAX);
		return -1;
	}
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
	struct parse *s = p->data;
	struct acme_resp *r = s->r;
	char *nb;

	if (r->len + n > ACME_HTTP_BODY_MAX) {
		sfmt(s->why, sizeof(s->why), "the body is larger than %u bytes",
		     ACME_HTTP_BODY_MAX);
		return 1;
	}
	nb = realloc(r->body, r->len + n + 1);
	if (!nb) {
		sfmt(s->why, sizeof(s->why), "out of memory");
		return 1;
	}
	memcpy(nb + r->len, at, n);
	r->body = nb;
	r->len += n;
	nb[r->len] = '\0';
	return 0;
}

static int on_complete(http_parser *p)
{
	struct parse *s = p->data;

	if (!s->r->status)
		return -1; /* never without a head */
	s->r->complete = true;
	http_parser_pause(p, 1); /* nothing after the first response is read */
	return 0;
}

static const http_parser_settings settings = {
    .on_header_field = on_field_check,
    .on_header_value = on_value,
    .on_headers_complete = on_headers,
    .on_body = on_body,
    .on_message_complete = on_complete,
};

struct rparser {
	http_parser hp;
	struct parse s;
};

static void rparser_init(struct rparser *rp, struct acme_resp *r)
{
	memset(rp, 0, sizeof(*rp));
	memset(r, 0, sizeof(*r));
	http_parser_init(&rp->hp, HTTP_RESPONSE);
	rp->hp.data = &rp->s;
	rp->s.r = r;
	rp->s.hdr = H_NONE;
}

/* feeds n bytes (n = 0: the end of the stream); 0 going on, 1 complete, -1 with err */
static int rparser_feed(struct rparser *rp, const uint8_t *buf, size_t n, char *err, size_t el)
{
	size_t used = http_parser_execute(&rp->hp, &settings, (const char *)buf, n);
	enum http_errno e = HTTP_PARSER_ERRNO(&rp->hp);

	if (rp->s.r->complete)
		return 1;
	if (e != HPE_OK || used != n) {
		if (rp->s.why[0])
			sfmt(err, el, "bad HTTP response: %s", rp->s.why);
		else
			sfmt(err, el, "bad HTTP response: %s", http_errno_description(e));
		return -1;
	}
	if (!n) {
		sfmt(err, el, "the response ended early");
		return -1;
	}
	return 0;
}

int acme_http_parse(const uint8_t *buf, size_t n, struct acme_resp *r, char *err, size_t errlen)
{
	struct rparser rp;
	int ret;

	rparser_init(&rp, r);
	ret = rparser_feed(&rp, buf, n, err, errlen);
	if (ret == 0)
		ret = rparser_feed(&rp, NULL, 0, err, errlen);
	if (ret < 0) {
		acme_resp_free(r);
		return -1;
	}
	return 0;
}

void acme_resp_free(struct acme_resp *r)
{
	free(r->body);
	r->body = NULL;
	r->len = 0;
}

/* ---- connections ---- */

void acme_http_init(struct acme_http *h)
{
	memset(h, 0, sizeof(*h));
	h->fd = -1;
	h->timeout_ms = 15000;
	h->total_ms = 60000;
	pthread_mutex_init(&h->lock, NULL);
	sfmt(h->user_agent, sizeof(h->user_agent), "nave-controld/%s", NAVE_VERSION);
}

int acme_http_set_ca(struct acme_http *h, const char *ca, char *err, size_t errlen)
{
	const char *file = ca && *ca ? ca : SYSTEM_CA;
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method()), *old;

	if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)) {
		sfmt(err, errlen, "out of memory");
		SSL_CTX_free(ctx);
		return -1;
	}
	if (SSL_CTX_load_verify_locations(ctx, file, NULL) != 1) {
		sfmt(err, errlen, "%s: cannot read CA certificates from it", file);
		ERR_clear_error();
		SSL_CTX_free(ctx);
		return -1;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	pthread_mutex_lock(&h->lock);
	old = h->ctx;
	h->ctx = ctx;
	pthread_mutex_unlock(&h->lock);
	SSL_CTX_free(old);
	return 0;
}

void acme_http_free(struct acme_http *h)
{
	SSL_CTX_free(h->ctx);
	h->ctx = NULL;
	pthread_mutex_destroy(&h->lock);
}

void acme_http_abort(struct acme_http *h)
{
	pthread_mutex_lock(&h->lock);
	h->aborted = true;
	if (h->fd >= 0)
		shutdown(h->fd, SHUT_RDWR);
	pthread_mutex_unlock(&h->lock);
}

void acme_http_resume(struct acme_http *h)
{
	pthread_mutex_lock(&h->lock);
	h->aborted = false;
	pthread_mutex_unlock(&h->lock);
}

bool acme_url_https(const char *url)
{
	struct acme_url u;

	return url && acme_url_parse(url, &u) == 0 && u.tls;
}

static int wait_fd(int fd, short ev, unsigned ms)
{
	struct pollfd p = {.fd = fd, .events = ev};
	int n;

	do
		n = poll(&p, 1, (int)ms);
	while (n < 0 && errno == EINTR);
	return n > 0 ? 0 : n == 0 ? -ETIMEDOUT : -errno;
}

/* a connected socket to host:port (or connect_to "ADDR:PORT"), with the timeouts set */
static int dial(struct acme_http *h, const char *host, const char *port, char *err, size_t el)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res, *a;
	struct timeval tv = {.tv_sec = h->timeout_ms / 1000,
			     .tv_usec = (h->timeout_ms % 1000) * 1000};
	int fd = -1, e, last = 0;

	e = getaddrinfo(host, port, &hints, &res);
	if (e) {
		sfmt(err, el, "%s: %s", host, gai_strerror(e));
		return -1;
	}
	for (a = res; a; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			last = errno;
			continue;
		}
		pthread_mutex_lock(&h->lock);
		if (h->aborted) {
			pthread_mutex_unlock(&h->lock);
			close(fd);
			fd = -1;
			last = ECANCELED;
			break;
		}
		h->fd = fd;
		pthread_mutex_unlock(&h->lock);
		e = connect(fd, a->ai_addr, a->ai_addrlen) == 0 ? 0 : -errno;
		if (e == -EINPROGRESS) {
			socklen_t l = sizeof(e);

			e = wait_fd(fd, POLLOUT, h->timeout_ms);
			if (!e && getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &l) == 0)
				e = -e;
		}
		if (!e && fcntl(fd, F_SETFL, 0) == 0 &&
		    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0 &&
		    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == 0)
			break;
		last = e ? -e : errno;
		pthread_mutex_lock(&h->lock);
		h->fd = -1;
		pthread_mutex_unlock(&h->lock);
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		sfmt(err, el, "connect to %s port %s: %s", host, port,
		     last == ECANCELED ? "stopping" : strerror(last));
	return fd;
}

static void undial(struct acme_http *h, int fd)
{
	pthread_mutex_lock(&h->lock);
	h->fd = -1;
	pthread_mutex_unlock(&h->lock);
	close(fd);
}

static bool is_ip(const char *host)
{
	unsigned char a[16];

	return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

int acme_http_request(struct acme_http *h, const char *method, const char *url, const char *host,
		      const char *connect_to, const char *ctype, const char *body,
		      struct acme_resp *r, char *err, size_t errlen)
{
	char chost[300], cport[8], hosthdr[300], *req = NULL;
	const char *verify = host;
	struct acme_url u;
	struct rparser rp;
	SSL *ssl = NULL;
	size_t blen = body ? strlen(body) : 0, rlen, total = 0;
	uint64_t deadline;
	int fd, ret = -1, n;

	rparser_init(&rp, r);
	rp.s.is_head = !strcmp(method, "HEAD");
	deadline = now_ms() + h->total_ms;
	if (acme_url_parse(url, &u) < 0) {
		sfmt(err, errlen, "%.200s: not an http(s) URL", url);
		return -1;
	}
	if (!host) {
		/* the Host the server sees names the port when it is not the scheme's: ACME
		   servers build the URLs they send back from it */
		bool dflt = !strcmp(u.port, u.tls ? "443" : "80");

		sfmt(hosthdr, sizeof(hosthdr),
		     dflt		   ? "%s"
		     : strchr(u.host, ':') ? "[%s]:%s"
					   : "%s:%s",
		     u.host, u.port);
		host = hosthdr;
		verify = u.host;
	}
	sfmt(chost, sizeof(chost), "%s", u.host);
	sfmt(cport, sizeof(cport), "%s", u.port);
	if (connect_to) {
		const char *colon = strrchr(connect_to, ':');

		if (!colon || (size_t)(colon - connect_to) >= sizeof(chost)) {
			sfmt(err, errlen, "%s: not ADDR:PORT", connect_to);
			return -1;
		}
		sfmt(chost, sizeof(chost), "%.*s", (int)(colon - connect_to), connect_to);
		if (chost[0] == '[') { /* [V6] */
			memmove(chost, chost + 1, strlen(chost));
			chost[strcspn(chost, "]")] = '\0';
		}
		sfmt(cport, sizeof(cport), "%s", colon + 1);
	}
	rlen = strlen(method) + strlen(u.path) + strlen(host) + strlen(h->user_agent) +
	       (ctype ? strlen(ctype) : 0) + blen + 256;
	req = malloc(rlen);
	if (!req) {
		sfmt(err, errlen, "out of memory");
		return -1;
	}
	n = snprintf(req, rlen,
		     "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\nAccept: */*\r\n"
		     "Connection: close\r\n",
		     method, u.path, host, h->user_agent);
	if (body)
		n += snprintf(req + n, rlen - (size_t)n,
			      "Content-Type: %s\r\nContent-Length: %zu\r\n",
			      ctype ? ctype : "application/jose+json", blen);
	n += snprintf(req + n, rlen - (size_t)n, "\r\n");
	if (body)
		memcpy(req + n, body, blen);
	rlen = (size_t)n + blen;

	fd = dial(h, chost, cport, err, errlen);
	if (fd < 0)
		goto out;
	if (u.tls) {
		X509_VERIFY_PARAM *vp;

		pthread_mutex_lock(&h->lock);
		ssl = h->ctx ? SSL_new(h->ctx) : NULL;
		pthread_mutex_unlock(&h->lock);
		if (!ssl || !SSL_set_fd(ssl, fd)) {
			sfmt(err, errlen, "out of memory");
			goto out;
		}
		vp = SSL_get0_param(ssl);
		if (is_ip(verify)) {
			X509_VERIFY_PARAM_set1_ip_asc(vp, verify);
		} else {
			SSL_set_tlsext_host_name(ssl, verify);
			X509_VERIFY_PARAM_set1_host(vp, verify, strlen(verify));
		}
		if (SSL_connect(ssl) != 1) {
			long v = SSL_get_verify_result(ssl);

			if (v != X509_V_OK)
				sfmt(err, errlen, "TLS with %s: the certificate is not trusted: %s",
				     host, X509_verify_cert_error_string(v));
			else
				sfmt(err, errlen, "TLS with %s: the handshake failed", host);
			ERR_clear_error();
			goto out;
		}
	}
	for (size_t off = 0; off < rlen;) {
		long w = ssl ? SSL_write(ssl, req + off, (int)(rlen - off))
			     : send(fd, req + off, rlen - off, MSG_NOSIGNAL);

		if (w <= 0) {
			if (!ssl && errno == EINTR)
				continue;
			sfmt(err, errlen, "sending to %s: %s", host,
			     ssl ? "TLS write failed" : strerror(errno));
			ERR_clear_error();
			goto out;
		}
		off += (size_t)w;
	}
	for (;;) {
		uint8_t buf[16384];
		long got;
		int fed;

		if (ssl) {
			int g = SSL_read(ssl, buf, sizeof(buf)),
			    e = g > 0 ? 0 : SSL_get_error(ssl, g);

			got = g;
			if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && g == 0))
				got = 0; /* the end, with or without close_notify */
			else if (e)
				got = -1;
		} else {
			got = recv(fd, buf, sizeof(buf), 0);
			if (got < 0 && errno == EINTR)
				continue;
		}
		if (got < 0) {
			sfmt(err, errlen, "reading from %s: %s", host,
			     errno == EAGAIN ? "timed out"
			     : ssl	     ? "TLS read failed"
					     : strerror(errno));
			ERR_clear_error();
			goto out;
		}
		if (now_ms() > deadline) {
			sfmt(err, errlen, "%s: no whole answer within %u s", host,
			     h->total_ms / 1000);
			goto out;
		}
		total += (size_t)got;
		if (total > ACME_HTTP_BODY_MAX + ACME_HTTP_HEAD_MAX + 65536) {
			sfmt(err, errlen, "%s: the response is too large", host);
			goto out;
		}
		fed = rparser_feed(&rp, buf, (size_t)got, err, errlen);
		if (fed < 0)
			goto out;
		if (fed == 1)
			break;
	}
	ret = 0;
out:
	if (ssl) {
		SSL_shutdown(ssl);
		SSL_free(ssl);
	}
	if (fd >= 0)
		undial(h, fd);
	free(req);
	if (ret < 0)
		acme_resp_free(r);
	return ret;
}
