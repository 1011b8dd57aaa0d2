/* mqtt_connect.c: what one MQTT connection presents: CONNECT options, TLS, credentials and the proxy. */

/*
 * TLS.  ssl://, mqtts:// and wss:// URIs go through paho's OpenSSL with
 * mqtt.tls: the chain is checked against ca_file/ca_path (only them when
 * given, else the system's store) and the host name of the URI against
 * the certificate, unless verify = false.  paho checks the host name only
 * after the handshake and says nothing about why a chain was refused, and
 * it cannot pin a key: transport_tls.c does those inside the handshake for
 * the host names registered here, and keeps the reason, which
 * mqtt_tls_reason() turns into the line the user sees ("the server's
 * certificate was refused: certificate has expired").  A refused
 * certificate is a refusal that stays: reported once, retried slowly.
 *
 * Proxy.  With mqtt.proxy every connection is an HTTP CONNECT tunnel; with
 * mqtt.proxy_isolate each client ID presents its own random user:password
 * there (paho sends it as Proxy-Authorization: Basic), so that Tor's
 * HTTPTunnelPort, which isolates streams by those credentials, puts each
 * identity on its own circuit.  Like random usernames they are drawn per
 * client ID, not per reconnect: a reconnect of the same identity may
 * reuse its circuit, a new identity never shares one.
 */

#define _GNU_SOURCE		/* asprintf */

#include <sys/queue.h>

#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include <MQTTAsync.h>

#include <sodium.h>

#include "compat.h"
#include "config.h"
#include "log.h"
#include "mqtt_int.h"
#include "transport_tls.h"

#define MQTT_PROXY_USER		16	/* random characters */
#define MQTT_PROXY_PASS		24

/*
 * Options on our broker connections.  TCP_NODELAY: veil's traffic is small
 * frames that are often answered (delivery ACKs, UPDATE-ACKs): with Nagle
 * on, a frame written right after another waits for the broker's delayed
 * ACK, about 40 ms each way (measured: docs/benchmarks.md).  TCP
 * keepalive, idle mqtt.keepalive, then 3 probes a third of that apart:
 * it finds a broker that vanished without closing the connection, in
 * place of MQTT's keep-alive, which veild turns off (keepAliveInterval 0):
 * paho sends the PINGREQs of all our connections from one thread, in one
 * pass, so two connections' PINGREQs, or one's PINGREQ and another's
 * CONNECT or SUBSCRIBE, reach the broker within microseconds and link them
 * (docs/metadata.md).  The kernel's probes are per socket and never reach
 * the broker's MQTT layer.  paho gives no access to its socket, so every
 * TCP socket of the process gets the options; the daemon has no other TCP
 * sockets (the control socket is a Unix socket).
 */
void
mqtt_sockopts(int keepalive_s)
{
	DIR		*d;
	struct dirent	*de;
	int		 on = 1, fd, type, domain, v;
	socklen_t	 len;

	if ((d = opendir("/proc/self/fd")) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		fd = atoi(de->d_name);
		len = sizeof(type);
		if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == -1 ||
		    type != SOCK_STREAM)
			continue;
		len = sizeof(domain);
		if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == -1 ||
		    (domain != AF_INET && domain != AF_INET6))
			continue;
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
		(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
		v = keepalive_s;
		(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &v, sizeof(v));
		v = keepalive_s / 3 > 0 ? keepalive_s / 3 : 1;
		(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &v, sizeof(v));
		v = 3;
		(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &v, sizeof(v));
	}
	closedir(d);
}

/* paho's thread: OpenSSL's error queue, line by line; the last one kept. */
static int
mqtt_cb_ssl_error(const char *str, size_t len, void *u)
{
	struct mqtt	*m = u;

	while (len > 0 && (str[len - 1] == '\n' || str[len - 1] == '\r'))
		len--;
	pthread_mutex_lock(&m->lock);
	snprintf(m->tls_err, sizeof(m->tls_err), "%.*s", (int)len, str);
	pthread_mutex_unlock(&m->lock);
	return 0;
}

void
mqtt_start_connect(struct mqtt *m)
{
	MQTTAsync_connectOptions	 co = MQTTAsync_connectOptions_initializer5;
	MQTTAsync_SSLOptions		 so = MQTTAsync_SSLOptions_initializer;
	MQTTProperties			 props = MQTTProperties_initializer;
	MQTTProperty			 prop;
	struct mreq			*rq;
	int				 rc;

	if ((rq = mqtt_req_new(m, MEV_UP)) == NULL) {
		transport_retry_arm(&m->t);
		return;
	}
	m->attempt = rq->seq;
	memset(&prop, 0, sizeof(prop));
	prop.identifier = MQTTPROPERTY_CODE_SESSION_EXPIRY_INTERVAL;
	prop.value.integer4 = m->expiry_s;
	rc = MQTTProperties_add(&props, &prop);
	memset(&prop, 0, sizeof(prop));
	prop.identifier = MQTTPROPERTY_CODE_MAXIMUM_PACKET_SIZE;
	prop.value.integer4 = m->max_packet;
	if (rc == 0)
		rc = MQTTProperties_add(&props, &prop);
	if (rc != 0) {
		/* Without them the session or the bound would be wrong. */
		log_warnx("mqtt: connect: cannot set the properties");
		MQTTProperties_free(&props);
		mqtt_req_done(rq);
		transport_retry_arm(&m->t);
		return;
	}

	/* TCP keepalive instead (mqtt_sockopts()): no PINGREQ. */
	co.keepAliveInterval = 0;
	co.cleansession = 0;
	co.cleanstart = 0;
	co.maxInflight = m->t.window;
	co.username = m->cur->user;
	co.password = m->cur->pass;
	co.connectTimeout = MQTT_CONNECT_TIMEOUT;
	co.retryInterval = 0;
	co.serverURIs = m->uris;
	co.serverURIcount = m->nuris;
	co.MQTTVersion = MQTTVERSION_5;
	co.automaticReconnect = 0;
	co.connectProperties = &props;
	co.onSuccess5 = mqtt_cb_connected;
	co.onFailure5 = mqtt_cb_connect_failed;
	co.context = rq;
	co.httpProxy = m->cur->proxy != NULL ? m->cur->proxy : m->proxy;
	co.httpsProxy = co.httpProxy;
	if (m->ntls_hosts > 0) {
		so.trustStore = m->ca_file;
		so.CApath = m->ca_path;
		so.keyStore = m->cert_file;
		so.privateKey = m->key_file;
		so.enableServerCertAuth = m->tls_verify;
		so.verify = m->tls_verify;
		so.ssl_error_cb = mqtt_cb_ssl_error;
		so.ssl_error_context = m;
		co.ssl = &so;
	}

	m->t.state = TRANSPORT_CONNECTING;
	rc = MQTTAsync_connect(m->cur->cli, &co);
	MQTTProperties_free(&props);
	if (rc != MQTTASYNC_SUCCESS) {
		mqtt_req_done(rq);
		m->t.state = TRANSPORT_DOWN;
		log_warnx("mqtt: connect: %s", MQTTAsync_strerror(rc));
		transport_retry_arm(&m->t);
	} else
		mqtt_nudge_start();
}

/* n random characters of [0-9a-zA-Z]. */
static char *
mqtt_random_text(size_t n)
{
	static const char	 a[] =
	    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
	char			*s;
	size_t			 i;

	if ((s = malloc(n + 1)) == NULL)
		return NULL;
	for (i = 0; i < n; i++)
		s[i] = a[arc4random_uniform(sizeof(a) - 1)];
	s[n] = '\0';
	return s;
}

char *
mqtt_strdup_opt(const char *s, int *bad)
{
	char	*d;

	if (s == NULL)
		return NULL;
	if ((d = strdup(s)) == NULL)
		*bad = 1;
	return d;
}

/* "http://USER:PASS@host:port" for this handle, from mqtt.proxy (which
 * config_load() made sure has no credentials of its own). */
static int
mqtt_proxy_creds(struct mqtt *m, struct mhandle *h)
{
	char	*u, *p;
	int	 n;

	u = mqtt_random_text(MQTT_PROXY_USER);
	p = mqtt_random_text(MQTT_PROXY_PASS);
	n = u == NULL || p == NULL ? -1 : asprintf(&h->proxy, "http://%s:%s@%s",
	    u, p, m->proxy + strlen("http://"));
	free(u);
	if (p != NULL) {
		explicit_bzero(p, strlen(p));
		free(p);
	}
	if (n == -1) {
		h->proxy = NULL;
		return 1;
	}
	return 0;
}

/*
 * What this client ID presents.  Random ones are drawn per client ID, not
 * per reconnect: a broker sees one name per session either way, and one
 * that changed under a resumed session would only stand out.
 */
int
mqtt_handle_creds(struct mqtt *m, struct mhandle *h)
{
	int	 bad = 0;

	if (m->own_creds) {
		h->user = mqtt_strdup_opt(m->own_user, &bad);
		h->pass = mqtt_strdup_opt(m->own_pass, &bad);
	} else if (m->random_username) {
		h->user = mqtt_random_text(MQTT_RANDOM_USER);
		h->pass = mqtt_random_text(MQTT_RANDOM_PASS);
		bad = h->user == NULL || h->pass == NULL;
	} else {
		h->user = mqtt_strdup_opt(m->username, &bad);
		h->pass = mqtt_strdup_opt(m->password, &bad);
	}
	if (m->proxy != NULL && m->proxy_isolate && !bad)
		bad = mqtt_proxy_creds(m, h);
	return bad ? -1 : 0;
}

static size_t
mqtt_varint_len(size_t v)
{
	size_t	 n = 1;

	while (v >= 128) {
		v /= 128;
		n++;
	}
	return n;
}

/*
 * The largest packet the broker may send us: a PUBLISH of one frame at
 * QoS 1 on our longest possible topic, with no properties (veil publishes
 * none, and we ask for neither topic aliases nor subscription
 * identifiers).  Everything else a broker sends is small; the floor keeps
 * room for a CONNACK's properties and the SUBACK of a batch even with the
 * probe's tiny frames.
 */
uint32_t
mqtt_max_packet(size_t frame, size_t topic)
{
	size_t	 rl;

	rl = 2 + topic		/* topic name, length first */
	    + 2			/* packet identifier (QoS 1) */
	    + 1			/* property length: 0 */
	    + frame;
	rl += 1 + mqtt_varint_len(rl);	/* packet type, remaining length */
	return rl < MQTT_CONTROL_MIN ? MQTT_CONTROL_MIN : (uint32_t)rl;
}

/* The host of a URI, for SNI: between "://" and the port; [v6] bare. */
static char *
mqtt_uri_host(const char *uri)
{
	const char	*h = strstr(uri, "://") + 3;
	size_t		 n;

	if (*h == '[') {
		h++;
		n = strcspn(h, "]");
	} else
		n = strcspn(h, ":/");
	return strndup(h, n);
}

static int
mqtt_uri_tls(const char *uri)
{
	return strncmp(uri, "ssl://", 6) == 0 || strncmp(uri, "mqtts://", 8) == 0 ||
	    strncmp(uri, "wss://", 6) == 0;
}

int
mqtt_connect_init(struct mqtt *m, const struct veild_config *cfg, char *err,
    size_t errlen)
{
	struct transport_tls_policy	 pol;
	const struct veild_tls		*t = &cfg->mqtt.tls;
	char				 why[200];
	size_t				 i;
	int				 bad = 0;

	m->proxy = mqtt_strdup_opt(cfg->mqtt.proxy, &bad);
	m->proxy_isolate = cfg->mqtt.proxy_isolate;
	m->tls_verify = t->verify;
	m->ca_file = mqtt_strdup_opt(t->ca_file, &bad);
	m->ca_path = mqtt_strdup_opt(t->ca_path, &bad);
	m->cert_file = mqtt_strdup_opt(t->cert_file, &bad);
	m->key_file = mqtt_strdup_opt(t->key_file, &bad);
	if (bad || (m->tls_hosts = calloc(cfg->mqtt.nuris,
	    sizeof(*m->tls_hosts))) == NULL) {
		snprintf(err, errlen, "mqtt: out of memory");
		return -1;
	}
	memset(&pol, 0, sizeof(pol));
	pol.verify = t->verify;
	if (t->pin_sha256 != NULL &&
	    transport_tls_parse_pins(t->pin_sha256, &pol, why, sizeof(why)) == -1) {
		snprintf(err, errlen, "mqtt.tls.pin_sha256: %s", why);
		return -1;
	}
	for (i = 0; i < cfg->mqtt.nuris; i++) {
		if (!mqtt_uri_tls(cfg->mqtt.uris[i]))
			continue;
		if ((m->tls_hosts[m->ntls_hosts] =
		    mqtt_uri_host(cfg->mqtt.uris[i])) == NULL) {
			snprintf(err, errlen, "mqtt: out of memory");
			return -1;
		}
		if (transport_tls_expect(m->tls_hosts[m->ntls_hosts++], &pol,
		    why, sizeof(why)) == -1) {
			snprintf(err, errlen, "mqtt.tls: %s", why);
			return -1;
		}
	}
	if (pol.npins > 0 && m->ntls_hosts == 0) {
		snprintf(err, errlen, "mqtt.tls.pin_sha256: no ssl://, mqtts:// "
		    "or wss:// URI to check it on");
		return -1;
	}
	return 0;
}

int
mqtt_tls_reason(struct mqtt *m, char *buf, size_t len)
{
	char	 lib[sizeof(m->tls_err)], verdict[256];
	int	 i;

	buf[0] = verdict[0] = '\0';
	for (i = 0; i < m->ntls_hosts && verdict[0] == '\0'; i++)
		transport_tls_take_error(m->tls_hosts[i], verdict,
		    sizeof(verdict));
	pthread_mutex_lock(&m->lock);
	memcpy(lib, m->tls_err, sizeof(lib));
	m->tls_err[0] = '\0';
	pthread_mutex_unlock(&m->lock);
	if (verdict[0] != '\0') {
		snprintf(buf, len, "TLS: %s", verdict);
		return 1;
	}
	/* No verdict of ours: OpenSSL's own words (a file it could not
	 * read, a handshake the server broke off). */
	if (lib[0] != '\0')
		snprintf(buf, len, "TLS: %s", lib);
	return 0;
}

void
mqtt_connect_free(struct mqtt *m)
{
	int	 i;

	for (i = 0; i < m->ntls_hosts; i++)
		free(m->tls_hosts[i]);
	free(m->tls_hosts);
	free(m->ca_file);
	free(m->ca_path);
	free(m->cert_file);
	free(m->key_file);
	if (m->proxy != NULL)
		explicit_bzero(m->proxy, strlen(m->proxy));
	free(m->proxy);
}
