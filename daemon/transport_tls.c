/* transport_tls.c: the TLS checks neither paho nor libstrophe can be asked for: key pins, the host name inside the handshake, why a handshake failed. */

/*
 * Why here and how.  paho.mqtt.c makes its own SSL_CTX and gives no
 * verification callback, and libstrophe's only one runs when OpenSSL has
 * already refused the chain; neither can be told to accept a server only
 * if its key is one we pinned.  Both call SSL_connect() through the
 * dynamic linker, so this file defines SSL_connect() in the executable
 * (exported with --export-dynamic-symbol, see Makefile.am): it finds the
 * policy registered for the server name the library put in the SNI, sets
 * the expected host name on the SSL object before the first handshake
 * step, calls OpenSSL's SSL_connect(), and once the handshake is done
 * compares the peer's keys with the pins.  A mismatch fails the handshake
 * with an OpenSSL error, so the library drops the connection before it has
 * sent a byte of MQTT or XMPP (the password included).  A connection with
 * no registered server name passes through untouched.
 *
 * transport_tls_expect() refuses to register pins unless this definition
 * is the one the libraries see (dlsym), so a build that lost the export
 * fails at start instead of silently not pinning.
 *
 * paho runs SSL_connect() on its own threads: the table is guarded by a
 * mutex, and a policy is copied out before OpenSSL is called.
 */

#define _GNU_SOURCE		/* RTLD_NEXT, RTLD_DEFAULT */

#include <arpa/inet.h>

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <sodium.h>

#include "transport_tls.h"

#define TLS_ERR_MAX	256

struct tls_host {
	struct tls_host			*next;
	char				*host;
	struct transport_tls_policy	 pol;
	char				 err[TLS_ERR_MAX];
};

static pthread_mutex_t	 tls_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tls_host	*tls_hosts;		/* never freed: a few hosts */
static pthread_once_t	 tls_once = PTHREAD_ONCE_INIT;
static int		(*tls_real_connect)(SSL *);

static void
tls_resolve(void)
{
	void	*f = dlsym(RTLD_NEXT, "SSL_connect");

	memcpy(&tls_real_connect, &f, sizeof(f));
}

/* tls_lock held. */
static struct tls_host *
tls_find(const char *host)
{
	struct tls_host	*h;

	for (h = tls_hosts; h != NULL; h = h->next)
		if (strcmp(h->host, host) == 0)
			return h;
	return NULL;
}

static void
tls_set_error(const char *host, const char *what, const char *detail)
{
	struct tls_host	*h;

	pthread_mutex_lock(&tls_lock);
	if ((h = tls_find(host)) != NULL)
		snprintf(h->err, sizeof(h->err), "%s%s", what, detail);
	pthread_mutex_unlock(&tls_lock);
}

static int
tls_is_address(const char *s)
{
	unsigned char	 b[16];

	return inet_pton(AF_INET, s, b) == 1 || inet_pton(AF_INET6, s, b) == 1;
}

/* 1 if a certificate the server sent has a pinned key. */
static int
tls_pinned(SSL *ssl, const struct transport_tls_policy *pol)
{
	STACK_OF(X509)	*chain;
	unsigned char	 md[TRANSPORT_TLS_PIN_LEN], *der;
	int		 i, j, n, found = 0;

	/* Client side: the leaf is the first of the chain. */
	if ((chain = SSL_get_peer_cert_chain(ssl)) == NULL)
		return 0;
	for (i = 0; i < sk_X509_num(chain) && !found; i++) {
		der = NULL;
		n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(sk_X509_value(chain, i)),
		    &der);
		if (n <= 0)
			continue;
		if (EVP_Digest(der, (size_t)n, md, NULL, EVP_sha256(), NULL) == 1)
			for (j = 0; j < pol->npins; j++)
				if (sodium_memcmp(md, pol->pins[j], sizeof(md)) == 0)
					found = 1;
		OPENSSL_free(der);
	}
	return found;
}

int
SSL_connect(SSL *ssl)
{
	struct transport_tls_policy	 pol;
	struct tls_host			*h;
	const char			*sni;
	long				 vr;
	int				 rc, have = 0;

	pthread_once(&tls_once, tls_resolve);
	if (tls_real_connect == NULL)
		return -1;
	sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	if (sni != NULL) {
		pthread_mutex_lock(&tls_lock);
		if ((h = tls_find(sni)) != NULL) {
			pol = h->pol;
			have = 1;
		}
		pthread_mutex_unlock(&tls_lock);
	}
	if (!have)
		return tls_real_connect(ssl);

	/* Inside the handshake, so that a mismatch is a verification
	 * failure that says so (paho checks only afterwards, silently). */
	if (pol.verify && SSL_in_before(ssl)) {
		if (tls_is_address(sni))
			X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), sni);
		else
			SSL_set1_host(ssl, sni);
	}
	rc = tls_real_connect(ssl);
	if (rc == 1) {
		if (pol.npins > 0 && !tls_pinned(ssl, &pol)) {
			tls_set_error(sni, "the server's key is not one of the "
			    "pinned keys (pin_sha256)", "");
			ERR_raise_data(ERR_LIB_SSL, SSL_R_CERTIFICATE_VERIFY_FAILED,
			    "server key not pinned");
			return -1;
		}
		return 1;
	}
	if ((vr = SSL_get_verify_result(ssl)) != X509_V_OK)
		tls_set_error(sni, "the server's certificate was refused: ",
		    X509_verify_cert_error_string(vr));
	return rc;
}

int
transport_tls_parse_pins(const char *s, struct transport_tls_policy *p,
    char *err, size_t errlen)
{
	const char	*end;
	size_t		 n, len;

	p->npins = 0;
	while (*s != '\0') {
		n = strcspn(s, ",");
		if (p->npins == TRANSPORT_TLS_PINS_MAX) {
			snprintf(err, errlen, "at most %d pins",
			    TRANSPORT_TLS_PINS_MAX);
			return -1;
		}
		if (sodium_base642bin(p->pins[p->npins], TRANSPORT_TLS_PIN_LEN,
		    s, n, " ", &len, &end, sodium_base64_VARIANT_ORIGINAL) != 0 ||
		    end != s + n || len != TRANSPORT_TLS_PIN_LEN) {
			snprintf(err, errlen, "each pin must be the base64 of a "
			    "SHA-256 (44 characters)");
			return -1;
		}
		p->npins++;
		s += n;
		if (*s == ',')
			s++;
	}
	return 0;
}

int
transport_tls_expect(const char *host, const struct transport_tls_policy *pol,
    char *err, size_t errlen)
{
	struct tls_host	*h;
	void		*seen, *ours;
	int		(*fn)(SSL *) = SSL_connect;

	seen = dlsym(RTLD_DEFAULT, "SSL_connect");
	memcpy(&ours, &fn, sizeof(ours));
	if (pol->npins > 0 && seen != ours) {
		snprintf(err, errlen, "pin_sha256 cannot be checked: this "
		    "build does not export SSL_connect (see transport_tls.c)");
		return -1;
	}
	pthread_mutex_lock(&tls_lock);
	if ((h = tls_find(host)) == NULL) {
		if ((h = calloc(1, sizeof(*h))) == NULL ||
		    (h->host = strdup(host)) == NULL) {
			pthread_mutex_unlock(&tls_lock);
			free(h);
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		h->next = tls_hosts;
		tls_hosts = h;
	}
	h->pol = *pol;
	pthread_mutex_unlock(&tls_lock);
	return 0;
}

void
transport_tls_take_error(const char *host, char *buf, size_t len)
{
	struct tls_host	*h;

	buf[0] = '\0';
	pthread_mutex_lock(&tls_lock);
	if ((h = tls_find(host)) != NULL) {
		snprintf(buf, len, "%s", h->err);
		h->err[0] = '\0';
	}
	pthread_mutex_unlock(&tls_lock);
}
