// SPDX-License-Identifier: Apache-2.0
/* The ACME HTTP-01 answers relayd gives (acme_chal.h). */
#include "datapath/acme_chal.h"

#include <pthread.h>
#include <string.h>

#include "domain.h"

struct chal {
	char domain[DOMAIN_MAX + 1];
	char token[ACME_TOKEN_MAX + 1];
	char keyauth[ACME_KEYAUTH_MAX + 1];
	uint64_t expires; /* 0: a free slot */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct chal tab[ACME_CHAL_MAX];

static bool b64url(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_'))
			return false;
	}
	return true;
}

int acme_chal_set(const char *domain, const char *token, const char *keyauth, uint64_t now,
		  const char **why)
{
	char d[DOMAIN_MAX + 1];
	size_t tl = token ? strnlen(token, ACME_TOKEN_MAX + 1) : 0;
	struct chal *slot = NULL;

	if (!domain || !domain_norm(domain, strlen(domain), d, false)) {
		*why = "the domain is no DNS name";
		return -1;
	}
	if (tl < ACME_TOKEN_MIN || tl > ACME_TOKEN_MAX || !b64url(token, tl)) {
		*why = "the token is not 16-128 characters of base64url";
		return -1;
	}
	if (!keyauth || strnlen(keyauth, ACME_KEYAUTH_MAX + 1) != tl + 1 + 43 ||
	    memcmp(keyauth, token, tl) || keyauth[tl] != '.' || !b64url(keyauth + tl + 1, 43)) {
		*why = "the key authorization is not TOKEN.THUMBPRINT";
		return -1;
	}
	pthread_mutex_lock(&lock);
	for (unsigned i = 0; i < ACME_CHAL_MAX; i++) {
		struct chal *c = &tab[i];

		if (c->expires && c->expires <= now)
			c->expires = 0;
		if (c->expires && !strcmp(c->token, token)) {
			slot = c;
			break;
		}
		if (!c->expires && !slot)
			slot = c;
	}
	if (slot) {
		memcpy(slot->domain, d, sizeof(d));
		memcpy(slot->token, token, tl + 1);
		memcpy(slot->keyauth, keyauth, tl + 1 + 43 + 1);
		slot->expires = now + ACME_CHAL_TTL_MS;
	}
	pthread_mutex_unlock(&lock);
	if (!slot) {
		*why = "too many challenges published at once";
		return -1;
	}
	return 0;
}

void acme_chal_del(const char *token)
{
	pthread_mutex_lock(&lock);
	for (unsigned i = 0; i < ACME_CHAL_MAX; i++)
		if (tab[i].expires && token && !strcmp(tab[i].token, token))
			tab[i].expires = 0;
	pthread_mutex_unlock(&lock);
}

size_t acme_chal_find(const char *host, const char *token, size_t tlen, char *out, uint64_t now)
{
	size_t n = 0;

	if (tlen < ACME_TOKEN_MIN || tlen > ACME_TOKEN_MAX)
		return 0;
	pthread_mutex_lock(&lock);
	for (unsigned i = 0; i < ACME_CHAL_MAX; i++) {
		const struct chal *c = &tab[i];

		if (c->expires > now && !strncmp(c->token, token, tlen) && !c->token[tlen] &&
		    !strcmp(c->domain, host)) {
			n = strlen(c->keyauth);
			memcpy(out, c->keyauth, n + 1);
			break;
		}
	}
	pthread_mutex_unlock(&lock);
	return n;
}

unsigned acme_chal_count(uint64_t now)
{
	unsigned n = 0;

	pthread_mutex_lock(&lock);
	for (unsigned i = 0; i < ACME_CHAL_MAX; i++)
		n += tab[i].expires > now;
	pthread_mutex_unlock(&lock);
	return n;
}
