/* mqtt_connect.c: what one MQTT connection presents: CONNECT options, TLS, credentials and the proxy. */

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

#include "compat.h"
#include "config.h"
#include "log.h"
#include "mqtt_int.h"

/*
 * TCP_NODELAY on our broker connections.  veil's traffic is small frames
 * that are often answered (delivery ACKs, UPDATE-ACKs): with Nagle on, a
 * frame written right after another waits for the broker's delayed ACK,
 * about 40 ms each way (measured: docs/benchmarks.md).  paho gives no
 * access to its socket, so every TCP socket of the process gets the
 * option; the daemon has no other TCP sockets (the control socket is a
 * Unix socket).
 */
void
mqtt_nodelay(void)
{
	DIR		*d;
	struct dirent	*de;
	int		 on = 1, fd, type, domain;
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
	}
	closedir(d);
}

void
mqtt_start_connect(struct mqtt *m)
{
	MQTTAsync_connectOptions	 co = MQTTAsync_connectOptions_initializer5;
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

	co.keepAliveInterval = m->keepalive_s;
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
	co.httpProxy = m->proxy;
	co.httpsProxy = m->proxy;

	m->t.state = TRANSPORT_CONNECTING;
	rc = MQTTAsync_connect(m->cur->cli, &co);
	MQTTProperties_free(&props);
	if (rc != MQTTASYNC_SUCCESS) {
		mqtt_req_done(rq);
		m->t.state = TRANSPORT_DOWN;
		log_warnx("mqtt: connect: %s", MQTTAsync_strerror(rc));
		transport_retry_arm(&m->t);
	}
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
