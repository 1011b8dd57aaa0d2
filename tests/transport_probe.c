/* transport_probe.c: drives one transport ("mqtt" or "xmpp") against a real broker for tests/test_mqtt.py and tests/test_xmpp.py. */

/*
 * transport_probe [-v] [-n N] [-s SIZE] [-w WINDOW] [-t SECONDS]
 *     [--expect-reconnect | --rotate | --offline | --listen | --send-to T]
 *     [--idle] [--client-id ID] [--prefix P] [--stall MS] [--crash]
 *     [--session-expiry S] [--random-username] [--credentials USER:PASS]
 *     [--mqtt-inflight N] [--password P] [--plaintext-password]
 *     [--proxy URL] [--no-proxy-isolate] [--transport mqtt] URI...
 * transport_probe ... --transport xmpp --domain DOMAIN --pubsub SERVICE
 *     [--host HOST] [--port PORT] [--tls off|starttls|required|direct]
 * Both: [--ca-file F] [--ca-path D] [--no-verify] [--pin B64[,B64]]
 *     [--cert-file F] [--key-file F] (mqtt.tls; xmpp.tls_*)
 *
 * Subscribes a random topic T and a random topic U, publishes N frames of
 * SIZE bytes to T and counts them back, then checks U: frames published to
 * U arrive while subscribed and none after transport_unsubscribe().
 * --expect-reconnect publishes slowly (one frame every 10 ms) and requires
 * at least one down/up cycle (the test restarts the broker meanwhile).
 * --rotate changes the client ID half way through (set_client_id +
 * disconnect + connect).  --offline subscribes T, disconnects, has a second
 * transport publish the N frames to T, then reconnects and expects all of
 * them (the broker kept them); the U checks are skipped.  --idle stays
 * connected and quiet after the U checks until -t runs out.
 *
 * --listen subscribes T and U, publishes nothing, and returns once N frames
 * on T were delivered or dropped (on_dropped): the test publishes to T.
 * --stall MS makes its first on_message block the loop that long, so that
 * a flood piles up in the driver.  --send-to T only publishes N frames to
 * topic T (the engine's name) and returns once all are acknowledged.
 *
 * Exits 0 when every frame arrived at least once and every publish was
 * acknowledged exactly once (--listen: N frames seen, --send-to: N acked).
 * Prints "client_id ID" lines, then "ready" once subscribed, after
 * "topic_t T", "now ID" (transport_client_id()) and one "wire W" per live
 * topic (transport_foreach_topic()), for the test driver; the last line
 * holds the counts and the peak RSS ("vmhwm" in KiB).  --crash leaves
 * without transport_free(), as a killed daemon would (no DISCONNECT).
 * The same code drives both transports: what it checks is the
 * transport.h contract, which does not depend on the broker.
 */

#include <sys/time.h>

#include <err.h>
#include <limits.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "../daemon/config.h"
#include "../daemon/transport.h"

static int probe_verbose;

#ifndef PROBE_LOG_SHIM
#include "../daemon/log.h"
#else
/* Without daemon/log.c (a build by hand): the same four calls, to stderr. */

static void
probe_vlog(const char *pfx, const char *fmt, va_list ap)
{
	fprintf(stderr, "%s", pfx);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

#define PROBE_LOGFN(name, pfx, cond)					\
void name(const char *, ...) __attribute__((format(printf, 1, 2)));	\
void									\
name(const char *fmt, ...)						\
{									\
	va_list	ap;							\
	if (!(cond))							\
		return;							\
	va_start(ap, fmt);						\
	probe_vlog(pfx, fmt, ap);					\
	va_end(ap);							\
}
PROBE_LOGFN(log_warn, "warn: ", 1)
PROBE_LOGFN(log_warnx, "warn: ", 1)
PROBE_LOGFN(log_info, "info: ", probe_verbose)
PROBE_LOGFN(log_debug, "debug: ", probe_verbose)
#endif

#define UCOUNT	5		/* frames on U before and after unsubscribe */

enum phase {
	PH_SUBSCRIBING,
	PH_MAIN,		/* N frames on T */
	PH_U_BEFORE,		/* UCOUNT frames on U, subscribed */
	PH_U_AFTER,		/* UCOUNT frames on U, then a sentinel on T */
	PH_DONE,
};

struct probe {
	struct event_base	*base;
	struct transport	*t;
	struct event		*tick;
	char			 topic_t[32];
	char			 topic_u[32];
	enum phase		 phase;
	int			 n, size;
	int			 expect_reconnect, rotate, rotated;
	int			 subscribed;
	int			 sent;		/* frames handed to publish */
	unsigned char		*seen;		/* per frame on T */
	int			 got, dups;
	int			 acked, ackdup, nacked;
	unsigned char		*acks;		/* per cookie */
	int			 u_before, u_after, u_acked;
	int			 sentinel;
	int			 ups, downs;
	int			 failed;
	unsigned char		*frame;
	int			 offline;
	int			 idle;
	struct transport	*pub;		/* --offline: the sender */
	int			 pub_acked;
	int			 listen;
	const char		*send_to;
	int			 stall_ms, stalled;
	unsigned int		 dropped;	/* on_dropped */
	const char		*fixed_id;
};

#define COOKIE_U	1000000000ULL	/* cookies for U frames start here */
#define COOKIE_SENTINEL	2000000000ULL

/* A string of the config, owned by it (config_free() frees it). */
static void
probe_set(char **dst, const char *v)
{
	free(*dst);
	if ((*dst = strdup(v)) == NULL)
		err(1, NULL);
}

static void
rand_alnum(char *buf, size_t n)
{
	static const char	 a[] =
	    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
	size_t			 i;

	for (i = 0; i < n; i++)
		buf[i] = a[arc4random_uniform(sizeof(a) - 1)];
	buf[n] = '\0';
}

static void
probe_set_id(struct probe *p)
{
	char	 id[23];

	if (p->fixed_id != NULL && !p->rotated)
		snprintf(id, sizeof(id), "%s", p->fixed_id);
	else
		rand_alnum(id, 22);
	if (transport_set_client_id(p->t, id) == -1)
		errx(1, "set_client_id");
	printf("client_id %s\n", id);
	fflush(stdout);
}

static void
probe_publish_on(struct probe *p, struct transport *t, const char *topic,
    uint32_t idx, uint64_t cookie)
{
	arc4random_buf(p->frame, (size_t)p->size);
	memcpy(p->frame, &idx, sizeof(idx));
	if (transport_publish(t, topic, p->frame, (size_t)p->size,
	    cookie) == -1)
		errx(1, "publish");
}

static void
probe_publish(struct probe *p, const char *topic, uint32_t idx,
    uint64_t cookie)
{
	probe_publish_on(p, p->t, topic, idx, cookie);
}

static void
probe_check_done(struct probe *p)
{
	int	 i;

	switch (p->phase) {
	case PH_MAIN:
		if (p->listen || p->send_to != NULL) {
			if ((p->listen ? p->got + (int)p->dropped :
			    p->acked + p->nacked) < p->n)
				return;
			p->phase = PH_DONE;
			event_base_loopexit(p->base, NULL);
			return;
		}
		if (p->got < p->n || p->acked + p->nacked < p->n)
			return;
		if (p->offline) {
			p->phase = PH_DONE;
			event_base_loopexit(p->base, NULL);
			return;
		}
		p->phase = PH_U_BEFORE;
		for (i = 0; i < UCOUNT; i++)
			probe_publish(p, p->topic_u, (uint32_t)i, COOKIE_U + i);
		break;
	case PH_U_BEFORE:
		if (p->u_before < UCOUNT || p->u_acked < UCOUNT)
			return;
		p->phase = PH_U_AFTER;
		if (transport_unsubscribe(p->t, p->topic_u) == -1)
			errx(1, "unsubscribe");
		for (i = 0; i < UCOUNT; i++)
			probe_publish(p, p->topic_u, (uint32_t)i,
			    COOKIE_U + UCOUNT + i);
		/* Published after the U frames on the same connection: once
		 * it is back, the broker has routed those too. */
		probe_publish(p, p->topic_t, 0xffffffffU, COOKIE_SENTINEL);
		break;
	case PH_U_AFTER:
		if (!p->sentinel || p->u_acked < 2 * UCOUNT)
			return;
		p->phase = PH_DONE;
		if (p->idle) {
			/* Stay connected and quiet until -t, for CPU meters. */
			event_del(p->tick);
			printf("idle\n");
			fflush(stdout);
			break;
		}
		event_base_loopexit(p->base, NULL);
		break;
	default:
		break;
	}
}

static void
on_state(int up, const char *reason, void *arg)
{
	struct probe	*p = arg;

	fprintf(stderr, "probe: %s (%s)\n", up ? "up" : "down", reason);
	if (up)
		p->ups++;
	else
		p->downs++;
}

static void
print_wire(const char *topic, void *arg)
{
	(void)arg;
	printf("wire %s\n", topic);
}

/* What the engine would show in status {verbose}. */
static void
probe_show(struct probe *p)
{
	const char	*id = transport_client_id(p->t);

	printf("topic_t %s\nnow %s\n", p->topic_t, id != NULL ? id : "-");
	transport_foreach_topic(p->t, print_wire, NULL);
}

static void
on_dropped(unsigned int n, void *arg)
{
	struct probe	*p = arg;

	p->dropped += n;
	probe_check_done(p);
}

static void
on_subscribed(const char *topic, int ok, void *arg)
{
	struct probe	*p = arg;

	if (!ok) {
		warnx("subscription refused");
		p->failed = 1;
		event_base_loopexit(p->base, NULL);
		return;
	}
	if (++p->subscribed == 2 && p->phase == PH_SUBSCRIBING) {
		p->phase = PH_MAIN;
		probe_show(p);
		printf("ready\n");
		fflush(stdout);
		if (p->offline) {
			/* Away while every frame is published. */
			transport_disconnect(p->t);
			for (; p->sent < p->n; p->sent++)
				probe_publish_on(p, p->pub, p->topic_t,
				    (uint32_t)p->sent, (uint64_t)p->sent);
		}
	}
	(void)topic;
}

static void
on_message(const char *topic, const void *data, size_t len, void *arg)
{
	struct probe	*p = arg;
	uint32_t	 idx;

	if (len != (size_t)p->size) {
		warnx("frame of %zu bytes", len);
		p->failed = 1;
		return;
	}
	memcpy(&idx, data, sizeof(idx));
	if (p->stall_ms > 0 && !p->stalled) {
		/* A slow loop (a long fsync, say) while the server floods. */
		p->stalled = 1;
		usleep((useconds_t)p->stall_ms * 1000);
	}
	if (p->listen) {
		if (strcmp(topic, p->topic_t) == 0)
			p->got++;
		else if (strcmp(topic, p->topic_u) != 0) {
			warnx("frame on a topic never subscribed");
			p->failed = 1;
		}
	} else if (strcmp(topic, p->topic_u) == 0) {
		if (p->phase == PH_U_AFTER)
			p->u_after++;
		else
			p->u_before++;
	} else if (strcmp(topic, p->topic_t) == 0) {
		if (idx == 0xffffffffU)
			p->sentinel = 1;
		else if (idx >= (uint32_t)p->n) {
			warnx("unknown frame index");
			p->failed = 1;
		} else if (p->seen[idx])
			p->dups++;
		else {
			p->seen[idx] = 1;
			p->got++;
		}
	} else {
		warnx("frame on a topic never subscribed");
		p->failed = 1;
	}
	probe_check_done(p);
}

static void
on_published(uint64_t cookie, int ok, void *arg)
{
	struct probe	*p = arg;

	if (cookie >= COOKIE_SENTINEL)
		;
	else if (cookie >= COOKIE_U)
		p->u_acked++;
	else if (cookie >= (uint64_t)p->n) {
		warnx("unknown cookie");
		p->failed = 1;
	} else if (p->acks[cookie]++)
		p->ackdup++;
	else if (ok)
		p->acked++;
	else
		p->nacked++;

	if (p->rotate && !p->rotated && p->acked >= p->n / 2) {
		p->rotated = 1;
		probe_set_id(p);
		transport_disconnect(p->t);
		if (transport_connect(p->t) == -1)
			errx(1, "connect");
	}
	probe_check_done(p);
}

static void
on_state_pub(int up, const char *reason, void *arg)
{
	(void)arg;
	fprintf(stderr, "probe: sender %s (%s)\n", up ? "up" : "down", reason);
}

static void
on_message_pub(const char *topic, const void *data, size_t len, void *arg)
{
	struct probe	*p = arg;

	(void)topic;
	(void)data;
	(void)len;
	warnx("the sender got a frame");
	p->failed = 1;
}

static void
on_subscribed_pub(const char *topic, int ok, void *arg)
{
	(void)topic;
	(void)ok;
	(void)arg;
}

/* The sender's acks count as the probe's; all in: the receiver returns. */
static void
on_published_pub(uint64_t cookie, int ok, void *arg)
{
	struct probe	*p = arg;

	on_published(cookie, ok, arg);
	if (++p->pub_acked == p->n) {
		printf("published\n");
		fflush(stdout);
		if (transport_connect(p->t) == -1)
			errx(1, "connect");
	}
}

/* Feeds frames: all at once, or one per tick when pacing across a restart. */
static void
probe_tick(evutil_socket_t fd, short what, void *arg)
{
	struct probe	*p = arg;
	int		 burst;

	(void)fd;
	(void)what;
	if (p->phase == PH_SUBSCRIBING || p->offline || p->listen)
		return;
	burst = p->expect_reconnect ? 1 : p->n;
	while (burst-- > 0 && p->sent < p->n) {
		probe_publish(p, p->send_to != NULL ? p->send_to : p->topic_t,
		    (uint32_t)p->sent, (uint64_t)p->sent);
		p->sent++;
	}
}

/* Peak resident set, KiB, or -1. */
static long
probe_vmhwm(void)
{
	FILE	*fp;
	char	 line[128];
	long	 kb = -1;

	if ((fp = fopen("/proc/self/status", "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), fp) != NULL)
		if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
			break;
	fclose(fp);
	return kb;
}

static __attribute__((noreturn)) void
usage(void)
{
	fprintf(stderr, "usage: transport_probe [-v] [-n N] [-s SIZE] "
	    "[-w WINDOW] [-t SECONDS]\n"
	    "\t[--expect-reconnect | --rotate | --offline | --listen | "
	    "--send-to T]\n"
	    "\t[--idle] [--client-id ID] [--prefix P] [--stall MS] [--crash]\n"
	    "\t[--session-expiry S] [--random-username] "
	    "[--credentials USER:PASS]\n"
	    "\t[--mqtt-inflight N] [--transport mqtt] URI...\n"
	    "\t--transport xmpp --domain DOMAIN --pubsub SERVICE "
	    "[--host HOST] [--port PORT]\n"
	    "\t[--tls off|starttls|required|direct]\n"
	    "\t[--ca-file F] [--ca-path D] [--no-verify] [--pin B64] "
	    "[--cert-file F] [--key-file F]\n"
	    "\t[--proxy URL] [--no-proxy-isolate] [--password P] "
	    "[--plaintext-password]\n");
	exit(2);
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "expect-reconnect", no_argument, NULL, 'R' },
		{ "rotate", no_argument, NULL, 'X' },
		{ "offline", no_argument, NULL, 'O' },
		{ "idle", no_argument, NULL, 'I' },
		{ "transport", required_argument, NULL, 'T' },
		{ "domain", required_argument, NULL, 'D' },
		{ "host", required_argument, NULL, 'H' },
		{ "port", required_argument, NULL, 'P' },
		{ "pubsub", required_argument, NULL, 'S' },
		{ "listen", no_argument, NULL, 'L' },
		{ "send-to", required_argument, NULL, 'B' },
		{ "client-id", required_argument, NULL, 'C' },
		{ "prefix", required_argument, NULL, 'F' },
		{ "stall", required_argument, NULL, 'Z' },
		{ "crash", no_argument, NULL, 'K' },
		{ "session-expiry", required_argument, NULL, 'E' },
		{ "random-username", no_argument, NULL, 'U' },
		{ "credentials", required_argument, NULL, 'A' },
		{ "mqtt-inflight", required_argument, NULL, 'M' },
		{ "tls", required_argument, NULL, 'Y' },
		{ "ca-file", required_argument, NULL, 1001 },
		{ "ca-path", required_argument, NULL, 1002 },
		{ "no-verify", no_argument, NULL, 1003 },
		{ "pin", required_argument, NULL, 1004 },
		{ "cert-file", required_argument, NULL, 1005 },
		{ "key-file", required_argument, NULL, 1006 },
		{ "proxy", required_argument, NULL, 1007 },
		{ "no-proxy-isolate", no_argument, NULL, 1008 },
		{ "password", required_argument, NULL, 1009 },
		{ "plaintext-password", no_argument, NULL, 1010 },
		{ NULL, 0, NULL, 0 },
	};
	struct veild_config	 cfg;
	struct transport_cbs	 pcbs = {
		.on_state = on_state_pub,
		.on_message = on_message_pub,
		.on_published = on_published_pub,
		.on_subscribed = on_subscribed_pub,
	};
	struct transport_cbs	 cbs = {
		.on_state = on_state,
		.on_message = on_message,
		.on_published = on_published,
		.on_subscribed = on_subscribed,
		.on_dropped = on_dropped,
	};
	struct probe		 p;
	struct timeval		 tv, limit = { 10, 0 };
	const char		*name = "mqtt";
	char			 errbuf[256], *user = NULL, *pass = NULL;
	long			 expiry = -1, mqtt_inflight = 0;
	int			 ch, ok, window = 0, xmpp, i, crash = 0;

	memset(&p, 0, sizeof(p));
	/* What veild would run with, less what the options change. */
	if (config_defaults(&cfg) == -1)
		err(1, NULL);
	p.n = 1000;
	p.size = 1024;
	while ((ch = getopt_long(argc, argv, "n:s:t:vw:", longopts, NULL))
	    != -1) {
		switch (ch) {
		case 'n':
			p.n = atoi(optarg);
			break;
		case 's':
			p.size = atoi(optarg);
			break;
		case 't':
			limit.tv_sec = atoi(optarg);
			break;
		case 'v':
			probe_verbose = 1;
			break;
		case 'w':
			window = atoi(optarg);
			break;
		case 'R':
			p.expect_reconnect = 1;
			break;
		case 'X':
			p.rotate = 1;
			break;
		case 'O':
			p.offline = 1;
			break;
		case 'I':
			p.idle = 1;
			break;
		case 'T':
			name = optarg;
			break;
		case 'D':
			probe_set(&cfg.xmpp.domain, optarg);
			break;
		case 'H':
			probe_set(&cfg.xmpp.host, optarg);
			break;
		case 'P':
			cfg.xmpp.port = (unsigned int)atoi(optarg);
			break;
		case 'S':
			probe_set(&cfg.xmpp.pubsub, optarg);
			break;
		case 'L':
			p.listen = 1;
			break;
		case 'B':
			p.send_to = optarg;
			break;
		case 'C':
			p.fixed_id = optarg;
			break;
		case 'F':
			probe_set(&cfg.mqtt.topic_prefix, optarg);
			break;
		case 'Z':
			p.stall_ms = atoi(optarg);
			break;
		case 'K':
			crash = 1;
			break;
		case 'E':
			expiry = atol(optarg);
			break;
		case 'U':
			cfg.mqtt.random_username = 1;
			break;
		case 'A':
			/* USER:PASS, for transport_set_credentials(). */
			if ((user = strdup(optarg)) == NULL)
				err(1, NULL);
			if ((pass = strchr(user, ':')) == NULL)
				usage();
			*pass++ = '\0';
			break;
		case 'M':
			mqtt_inflight = atol(optarg);
			break;
		case 'Y':
			if (strcmp(optarg, "off") == 0)
				cfg.xmpp.tls = VEILD_TLS_OFF;
			else if (strcmp(optarg, "starttls") == 0)
				cfg.xmpp.tls = VEILD_TLS_STARTTLS;
			else if (strcmp(optarg, "required") == 0)
				cfg.xmpp.tls = VEILD_TLS_REQUIRED;
			else if (strcmp(optarg, "direct") == 0)
				cfg.xmpp.tls = VEILD_TLS_DIRECT;
			else
				usage();
			break;
		/* TLS settings go to both sections: only one is read. */
		case 1001:
			probe_set(&cfg.mqtt.tls.ca_file, optarg);
			probe_set(&cfg.xmpp.trust.ca_file, optarg);
			break;
		case 1002:
			probe_set(&cfg.mqtt.tls.ca_path, optarg);
			probe_set(&cfg.xmpp.trust.ca_path, optarg);
			break;
		case 1003:
			cfg.mqtt.tls.verify = cfg.xmpp.trust.verify = 0;
			break;
		case 1004:
			probe_set(&cfg.mqtt.tls.pin_sha256, optarg);
			probe_set(&cfg.xmpp.trust.pin_sha256, optarg);
			break;
		case 1005:
			probe_set(&cfg.mqtt.tls.cert_file, optarg);
			break;
		case 1006:
			probe_set(&cfg.mqtt.tls.key_file, optarg);
			break;
		case 1007:
			probe_set(&cfg.mqtt.proxy, optarg);
			break;
		case 1008:
			cfg.mqtt.proxy_isolate = 0;
			break;
		case 1009:
			probe_set(&cfg.mqtt.password, optarg);
			break;
		case 1010:
			cfg.mqtt.plaintext_password = 1;
			break;
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;
	/* MQTT takes server URIs, XMPP a domain and a service: never both. */
	xmpp = strcmp(name, "xmpp") == 0;
	if ((xmpp ? argc != 0 || cfg.xmpp.domain == NULL ||
	    cfg.xmpp.pubsub == NULL : argc < 1 ||
	    argc > CONFIG_MQTT_URIS_MAX || cfg.xmpp.domain != NULL ||
	    cfg.xmpp.host != NULL || cfg.xmpp.pubsub != NULL) ||
	    p.n < 2 || p.n > 1000000 || p.size < 4 || p.size > 1 << 20 ||
	    window < 0 || window > 65535 || cfg.xmpp.port < 1 ||
	    cfg.xmpp.port > 65535 || limit.tv_sec < 1 ||
	    p.expect_reconnect + p.rotate + p.offline + p.listen +
	    (p.send_to != NULL) > 1 || p.stall_ms < 0 || p.stall_ms > 60000 ||
	    expiry < -1 || expiry > UINT32_MAX || mqtt_inflight < 0 ||
	    mqtt_inflight > 65535 || (p.fixed_id != NULL &&
	    strlen(p.fixed_id) > 22))
		usage();
	if (mqtt_inflight > 0)
		cfg.mqtt.inflight = (unsigned int)mqtt_inflight;
	cfg.transport = xmpp ? VEILD_TRANSPORT_XMPP : VEILD_TRANSPORT_MQTT;
	cfg.frames.size = (size_t)p.size;
	if (window > 0)
		*(xmpp ? &cfg.xmpp.inflight : &cfg.mqtt.inflight) =
		    (unsigned int)window;
	if (!xmpp) {
		free(cfg.mqtt.uris[0]);
		cfg.mqtt.nuris = 0;
		for (i = 0; i < argc; i++) {
			cfg.mqtt.uris[i] = NULL;
			probe_set(&cfg.mqtt.uris[i], argv[i]);
			cfg.mqtt.nuris++;
		}
		/* Short enough to notice a dead broker within a test. */
		cfg.mqtt.keepalive_ms = 5000;
		cfg.mqtt.session_expiry_ms = 600 * 1000;
	}

#ifndef PROBE_LOG_SHIM
	log_init(1, probe_verbose, "transport_probe");
#endif
	if ((p.seen = calloc((size_t)p.n, 1)) == NULL ||
	    (p.acks = calloc((size_t)p.n, 1)) == NULL ||
	    (p.frame = malloc((size_t)p.size)) == NULL)
		err(1, NULL);

	if (evthread_use_pthreads() == -1)
		errx(1, "evthread_use_pthreads");
	if ((p.base = event_base_new()) == NULL)
		errx(1, "event_base_new");

	if ((p.t = transport_new(&cfg, p.base, &cbs, &p, errbuf,
	    sizeof(errbuf))) == NULL)
		errx(1, "%s", errbuf);
	if (p.offline) {
		if ((p.pub = transport_new(&cfg, p.base, &pcbs, &p,
		    errbuf, sizeof(errbuf))) == NULL)
			errx(1, "%s", errbuf);
		if (transport_set_client_id(p.pub, "sender") == -1 ||
		    transport_connect(p.pub) == -1)
			errx(1, "sender");
	}

	if ((user != NULL && transport_set_credentials(p.t, user, pass) == -1) ||
	    (expiry >= 0 &&
	    transport_set_session_expiry(p.t, (uint32_t)expiry) == -1))
		errx(1, "credentials or session expiry");
	rand_alnum(p.topic_t, 22);
	rand_alnum(p.topic_u, 22);
	probe_set_id(&p);
	if (p.send_to != NULL)
		/* Nothing to wait for: publish from the first tick. */
		p.phase = PH_MAIN;
	else if (transport_subscribe(p.t, p.topic_t) == -1 ||
	    transport_subscribe(p.t, p.topic_u) == -1)
		errx(1, "subscribe");
	if (transport_connect(p.t) == -1)
		errx(1, "connect");

	p.tick = event_new(p.base, -1, EV_PERSIST, probe_tick, &p);
	tv.tv_sec = 0;
	tv.tv_usec = 10000;
	event_add(p.tick, &tv);
	if (event_base_loopexit(p.base, &limit) == -1)
		errx(1, "loopexit");
	event_base_dispatch(p.base);

	if (p.listen)
		ok = !p.failed && p.phase == PH_DONE;
	else if (p.send_to != NULL)
		ok = !p.failed && p.phase == PH_DONE && p.acked == p.n;
	else
		ok = !p.failed && p.phase == PH_DONE && p.got == p.n &&
		    p.acked == p.n && p.nacked == 0 && p.ackdup == 0 &&
		    (p.offline || p.u_before >= UCOUNT) && p.u_after == 0 &&
		    (!p.expect_reconnect || (p.downs >= 1 && p.ups >= 2));
	printf("frames %d received %d duplicates %d acked %d nacked %d "
	    "ackdup %d u_before %d u_after %d ups %d downs %d phase %d "
	    "dropped %u vmhwm %ld\n",
	    p.n, p.got, p.dups, p.acked, p.nacked, p.ackdup, p.u_before,
	    p.u_after, p.ups, p.downs, (int)p.phase, p.dropped, probe_vmhwm());
	fflush(stdout);
	if (crash)
		_exit(ok ? 0 : 1);	/* no DISCONNECT: the session stays */

	transport_free(p.t);
	if (p.pub != NULL)
		transport_free(p.pub);
	event_free(p.tick);
	event_base_free(p.base);
	free(p.seen);
	free(p.acks);
	free(p.frame);
	config_free(&cfg);
	free(user);
	return ok ? 0 : 1;
}
