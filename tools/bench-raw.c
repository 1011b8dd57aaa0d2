/* bench-raw: the benchmark's raw baseline, the same frames at QoS 1 through the same broker and paho with no veil. */
/*
 * Two MQTTAsync clients (MQTT 5, like veild) on one broker: a publisher
 * sends N frames of S random bytes on a random topic, a subscriber receives
 * them.  The first 8 bytes of a frame are the CLOCK_MONOTONIC send time in
 * ns and the next 8 its sequence number, so receipt time minus send time is
 * the one-way latency (both clients live in this process: one clock).
 *
 * Modes:
 *   throughput  publish as fast as the in-flight window allows;
 *               msg/s from the first publish to the last receipt.
 *   latency     one frame at a time (the next only after the previous
 *               arrived), so the percentiles measure the path, not a queue.
 *   ack         the subscriber answers every frame with a same-size frame
 *               on a second topic, like veil's delivery receipt; the
 *               publisher measures send -> answer received.  One frame at a
 *               time unless --concurrency says otherwise.
 *
 * paho runs every callback on its own threads.  The callbacks only record
 * and signal under one mutex; all publishing is done by our own threads
 * (main for frames, an answer thread for ACKs), as veild does from its
 * loop: publishing from inside paho callbacks is what the DEPS notes warn
 * against.  The publisher keeps at most --window publishes unacknowledged
 * by the broker (PUBACK), like veild's mqtt_pump(), and paho's maxInflight
 * is set to the same window.
 */

#define _DEFAULT_SOURCE	/* clock_gettime, dirfd, unsetenv under -std=c11 */

#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <MQTTAsync.h>

#define BENCH_WINDOW_DEFAULT	64	/* conf/veild.conf inflight */
#define BENCH_COUNT_DEFAULT	10000
#define BENCH_SIZE_DEFAULT	1024
#define BENCH_TIMEOUT_DEFAULT	60	/* s */
#define BENCH_HDR		16	/* send time + sequence number */
#define BENCH_SIZE_MAX		(256 * 1024 * 1024)
#define BENCH_BUSY_WAIT_NS	1000000	/* paho full: retry after 1 ms */

enum bench_mode { MODE_THROUGHPUT, MODE_LATENCY, MODE_ACK };

static const char *const mode_names[] = { "throughput", "latency", "ack" };

struct bench;

/* One MQTT client and what its callbacks need. */
struct client {
	struct bench		*b;
	const char		*role;	/* "publisher", "subscriber" */
	MQTTAsync		 cli;
	char			 id[32];
	int			 inflight;	/* sent, PUBACK not yet seen */
	int			 up;		/* connect answered: 1 ok, -1 failed */
	int			 subscribed;	/* 1 ok, -1 failed */
	int			 gone;		/* disconnect answered */
};

struct bench {
	/* options */
	const char		*uri;
	enum bench_mode		 mode;
	uint32_t		 count;
	size_t			 size;
	int			 window;
	uint32_t		 concurrency;	/* 0: window only */
	int			 timeout_s;
	int			 json;
	int			 nodelay;

	char			 topic[64];	/* publisher -> subscriber */
	char			 topic_ack[64];	/* subscriber -> publisher */

	pthread_mutex_t		 mtx;
	pthread_cond_t		 cv;
	struct client		 pub, sub;
	char			 err[256];	/* first fatal error, under mtx */

	/* Receipts.  In ack mode "done" counts answers at the publisher. */
	uint8_t			*seen;		/* per sequence number */
	uint8_t			*seen_ack;
	uint64_t		*lat;		/* ns, indexed by arrival order */
	uint64_t		*lat_oneway;	/* ack mode: send -> subscriber */
	uint32_t		 nrecv;		/* distinct frames at subscriber */
	uint32_t		 ndone;
	uint32_t		 ndup;
	uint32_t		 nbusy;		/* MQTTASYNC_MAX_MESSAGES_INFLIGHT */
	uint64_t		 t_first, t_last;

	/* ack mode: what the subscriber must answer, in arrival order */
	struct ackq {
		uint8_t		 hdr[BENCH_HDR];
	}			*ackq;
	uint32_t		 ackq_head, ackq_tail;
	int			 stopping;
	pthread_t		 ack_thread;
	int			 ack_thread_started;
};

static uint64_t
now_ns(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void
put64(uint8_t *p, uint64_t v)
{
	int	i;

	for (i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t
get64(const uint8_t *p)
{
	uint64_t	v = 0;
	int		i;

	for (i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static void __attribute__((format(printf, 1, 2), noreturn))
die(const char *fmt, ...)
{
	va_list	ap;

	fprintf(stderr, "bench-raw: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* Record the first fatal error; the waiting thread reports it. */
static void
bench_fail(struct bench *b, const char *fmt, ...)
{
	va_list	ap;

	pthread_mutex_lock(&b->mtx);
	if (b->err[0] == '\0') {
		va_start(ap, fmt);
		vsnprintf(b->err, sizeof(b->err), fmt, ap);
		va_end(ap);
	}
	pthread_cond_broadcast(&b->cv);
	pthread_mutex_unlock(&b->mtx);
}

static void
random_fill(void *buf, size_t len)
{
	uint8_t	*p = buf;
	ssize_t	 n;

	while (len > 0) {
		n = getrandom(p, len, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("getrandom: %s", strerror(errno));
		}
		p += n;
		len -= (size_t)n;
	}
}

/*
 * Payload bytes: random but cheap, so the baseline measures the broker
 * path and not getrandom().  xorshift64* seeded from getrandom().
 */
static void
payload_fill(uint64_t *state, uint8_t *p, size_t len)
{
	uint64_t	x = *state, r;
	size_t		i, k;

	for (i = 0; i < len; i += 8) {
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		r = x * 0x2545F4914F6CDD1DULL;
		for (k = 0; k < 8 && i + k < len; k++)
			p[i + k] = (uint8_t)(r >> (8 * k));
	}
	*state = x;
}

static void
hex_id(char *out, size_t outlen, const char *prefix, size_t nbytes)
{
	uint8_t		raw[16];
	size_t		i, off;

	if (nbytes > sizeof(raw))
		nbytes = sizeof(raw);
	random_fill(raw, nbytes);
	off = (size_t)snprintf(out, outlen, "%s", prefix);
	for (i = 0; i < nbytes && off + 2 < outlen; i++, off += 2)
		snprintf(out + off, outlen - off, "%02x", raw[i]);
}

/* Absolute deadline for pthread_cond_timedwait (CLOCK_MONOTONIC cv). */
static struct timespec
deadline_in(uint64_t ns)
{
	struct timespec	ts;
	uint64_t	t = now_ns() + ns;

	ts.tv_sec = (time_t)(t / 1000000000u);
	ts.tv_nsec = (long)(t % 1000000000u);
	return ts;
}

/* Wait on the cv until the deadline; 0 on a wake-up, -1 once it passed. */
static int
wait_until(struct bench *b, const struct timespec *dl)
{
	int	rc;

	rc = pthread_cond_timedwait(&b->cv, &b->mtx, dl);
	return rc == ETIMEDOUT ? -1 : 0;
}

/* --- paho callbacks (paho's threads): record and signal only ------------ */

static void
cb_connected(void *ctx, MQTTAsync_successData5 *r)
{
	struct client	*c = ctx;

	(void)r;
	pthread_mutex_lock(&c->b->mtx);
	c->up = 1;
	pthread_cond_broadcast(&c->b->cv);
	pthread_mutex_unlock(&c->b->mtx);
}

static void
cb_connect_failed(void *ctx, MQTTAsync_failureData5 *r)
{
	struct client	*c = ctx;

	bench_fail(c->b, "%s: connect to %s failed: %s", c->role, c->b->uri,
	    r != NULL && r->message != NULL ? r->message :
	    MQTTAsync_strerror(r != NULL ? r->code : MQTTASYNC_FAILURE));
	pthread_mutex_lock(&c->b->mtx);
	c->up = -1;
	pthread_cond_broadcast(&c->b->cv);
	pthread_mutex_unlock(&c->b->mtx);
}

static void
cb_subscribed(void *ctx, MQTTAsync_successData5 *r)
{
	struct client	*c = ctx;
	int		 ok = 1;

	/* MQTT 5 reports a refused subscription as a success with a code. */
	if (r != NULL && r->reasonCode >= MQTTREASONCODE_UNSPECIFIED_ERROR)
		ok = 0;
	if (!ok)
		bench_fail(c->b, "%s: subscribe refused: %s", c->role,
		    MQTTReasonCode_toString(r->reasonCode));
	pthread_mutex_lock(&c->b->mtx);
	c->subscribed = ok ? 1 : -1;
	pthread_cond_broadcast(&c->b->cv);
	pthread_mutex_unlock(&c->b->mtx);
}

static void
cb_subscribe_failed(void *ctx, MQTTAsync_failureData5 *r)
{
	struct client	*c = ctx;

	bench_fail(c->b, "%s: subscribe failed: %s", c->role,
	    MQTTAsync_strerror(r != NULL ? r->code : MQTTASYNC_FAILURE));
	pthread_mutex_lock(&c->b->mtx);
	c->subscribed = -1;
	pthread_cond_broadcast(&c->b->cv);
	pthread_mutex_unlock(&c->b->mtx);
}

static void
cb_puback(void *ctx, MQTTAsync_successData5 *r)
{
	struct client	*c = ctx;

	(void)r;
	pthread_mutex_lock(&c->b->mtx);
	c->inflight--;
	pthread_cond_broadcast(&c->b->cv);
	pthread_mutex_unlock(&c->b->mtx);
}

static void
cb_publish_failed(void *ctx, MQTTAsync_failureData5 *r)
{
	struct client	*c = ctx;

	bench_fail(c->b, "%s: publish failed: %s", c->role,
	    MQTTAsync_strerror(r != NULL ? r->code : MQTTASYNC_FAILURE));
	pthread_mutex_lock(&c->b->mtx);
	c->inflight--;
	pthread_cond_broadcast(&c->b->cv);
	pthread_mutex_unlock(&c->b->mtx);
}

static void
cb_lost(void *ctx, char *cause)
{
	struct client	*c = ctx;

	bench_fail(c->b, "%s: connection lost%s%s", c->role,
	    cause != NULL ? ": " : "", cause != NULL ? cause : "");
}

static void
cb_disconnected(void *ctx, MQTTAsync_successData5 *r)
{
	struct client	*c = ctx;

	(void)r;
	pthread_mutex_lock(&c->b->mtx);
	c->gone = 1;
	pthread_cond_broadcast(&c->b->cv);
	pthread_mutex_unlock(&c->b->mtx);
}

static void
cb_disconnect_failed(void *ctx, MQTTAsync_failureData5 *r)
{
	(void)r;
	cb_disconnected(ctx, NULL);
}

/* A frame at the subscriber, or an answer at the publisher (ack mode). */
static int
cb_message(void *ctx, char *topic, int topiclen, MQTTAsync_message *m)
{
	struct client	*c = ctx;
	struct bench	*b = c->b;
	uint64_t	 t = now_ns(), sent, seq;
	const uint8_t	*p = m->payload;
	int		 at_pub = (c == &b->pub);

	(void)topiclen;
	if (m->payloadlen < 0 || (size_t)m->payloadlen != b->size) {
		bench_fail(b, "%s: frame of %d bytes, expected %zu", c->role,
		    m->payloadlen, b->size);
		goto out;
	}
	sent = get64(p);
	seq = get64(p + 8);
	if (seq >= b->count || sent > t) {
		bench_fail(b, "%s: foreign or corrupt frame (seq %" PRIu64
		    ")", c->role, seq);
		goto out;
	}
	pthread_mutex_lock(&b->mtx);
	if (!at_pub) {
		if (b->seen[seq]) {
			b->ndup++;	/* QoS 1 may deliver twice */
		} else {
			b->seen[seq] = 1;
			if (b->mode == MODE_ACK) {
				b->lat_oneway[b->nrecv++] = t - sent;
				memcpy(b->ackq[b->ackq_tail++].hdr, p,
				    BENCH_HDR);
			} else {
				b->lat[b->nrecv++] = t - sent;
				b->ndone++;
				b->t_last = t;
			}
		}
	} else {
		if (b->seen_ack[seq]) {
			b->ndup++;
		} else {
			b->seen_ack[seq] = 1;
			b->lat[b->ndone++] = t - sent;
			b->t_last = t;
		}
	}
	pthread_cond_broadcast(&b->cv);
	pthread_mutex_unlock(&b->mtx);
out:
	MQTTAsync_freeMessage(&m);
	MQTTAsync_free(topic);
	return 1;
}

/* --- our side ------------------------------------------------------------ */

static void
client_create(struct bench *b, struct client *c, const char *role)
{
	MQTTAsync_createOptions	cro = MQTTAsync_createOptions_initializer5;
	int			rc;

	c->b = b;
	c->role = role;
	hex_id(c->id, sizeof(c->id), "bench-", 8);
	cro.sendWhileDisconnected = 0;
	rc = MQTTAsync_createWithOptions(&c->cli, b->uri, c->id,
	    MQTTCLIENT_PERSISTENCE_NONE, NULL, &cro);
	if (rc != MQTTASYNC_SUCCESS)
		die("%s: create for %s: %s", role, b->uri,
		    MQTTAsync_strerror(rc));
	rc = MQTTAsync_setCallbacks(c->cli, c, cb_lost, cb_message, NULL);
	if (rc != MQTTASYNC_SUCCESS)
		die("%s: callbacks: %s", role, MQTTAsync_strerror(rc));
}

/* Block until every client in the list reached the wanted state. */
static void
wait_clients(struct bench *b, const struct timespec *dl, const char *what,
    int (*done)(const struct client *))
{
	pthread_mutex_lock(&b->mtx);
	while (b->err[0] == '\0' && !(done(&b->pub) && done(&b->sub))) {
		if (wait_until(b, dl) == -1) {
			pthread_mutex_unlock(&b->mtx);
			die("timed out waiting for %s", what);
		}
	}
	if (b->err[0] != '\0') {
		pthread_mutex_unlock(&b->mtx);
		die("%s", b->err);
	}
	pthread_mutex_unlock(&b->mtx);
}

static int
client_is_up(const struct client *c)
{
	return c->up == 1;
}

static int
client_is_subscribed(const struct client *c)
{
	return c->subscribed == 1;
}

static int
client_is_gone(const struct client *c)
{
	return c->gone;
}

static void
client_connect(struct bench *b, struct client *c)
{
	MQTTAsync_connectOptions	co = MQTTAsync_connectOptions_initializer5;
	int				rc;

	co.keepAliveInterval = 60;
	co.cleanstart = 1;
	co.maxInflight = b->window;
	co.connectTimeout = b->timeout_s < 10 ? b->timeout_s : 10;
	co.retryInterval = 0;
	co.MQTTVersion = MQTTVERSION_5;
	co.automaticReconnect = 0;
	co.onSuccess5 = cb_connected;
	co.onFailure5 = cb_connect_failed;
	co.context = c;
	rc = MQTTAsync_connect(c->cli, &co);
	if (rc != MQTTASYNC_SUCCESS)
		die("%s: connect to %s: %s", c->role, b->uri,
		    MQTTAsync_strerror(rc));
}

static void
client_subscribe(struct client *c, const char *topic)
{
	MQTTAsync_responseOptions	ro = MQTTAsync_responseOptions_initializer;
	int				rc;

	ro.onSuccess5 = cb_subscribed;
	ro.onFailure5 = cb_subscribe_failed;
	ro.context = c;
	rc = MQTTAsync_subscribe(c->cli, topic, 1, &ro);
	if (rc != MQTTASYNC_SUCCESS)
		die("%s: subscribe: %s", c->role, MQTTAsync_strerror(rc));
}

/*
 * Publish one frame on c, keeping at most window publishes unacknowledged.
 * Called with b->mtx held; drops it around the paho call, which may answer
 * on another thread before it returns.  -1: error or deadline (b->err set).
 */
static int
client_publish(struct bench *b, struct client *c, const char *topic,
    uint8_t *frame, const struct timespec *dl, int stamp)
{
	MQTTAsync_responseOptions	ro;
	MQTTAsync_message		msg;
	int				rc;

	for (;;) {
		while (b->err[0] == '\0' && !b->stopping &&
		    c->inflight >= b->window)
			if (wait_until(b, dl) == -1)
				goto timeout;
		if (b->err[0] != '\0' || b->stopping)
			return -1;
		c->inflight++;
		pthread_mutex_unlock(&b->mtx);

		ro = (MQTTAsync_responseOptions)MQTTAsync_responseOptions_initializer;
		msg = (MQTTAsync_message)MQTTAsync_message_initializer;
		ro.onSuccess5 = cb_puback;
		ro.onFailure5 = cb_publish_failed;
		ro.context = c;
		msg.payload = frame;
		msg.payloadlen = (int)b->size;
		msg.qos = 1;
		if (stamp) {
			uint64_t t = now_ns();

			put64(frame, t);
			if (b->t_first == 0)
				b->t_first = t;	/* only main writes it */
		}
		rc = MQTTAsync_sendMessage(c->cli, topic, &msg, &ro);

		pthread_mutex_lock(&b->mtx);
		if (rc == MQTTASYNC_SUCCESS)
			return 0;
		c->inflight--;
		if (rc != MQTTASYNC_MAX_MESSAGES_INFLIGHT) {
			pthread_mutex_unlock(&b->mtx);
			bench_fail(b, "%s: publish: %s", c->role,
			    MQTTAsync_strerror(rc));
			pthread_mutex_lock(&b->mtx);
			return -1;
		}
		/* paho counts its in-flight slots a moment after the PUBACK
		 * callback: retry on the next answer or in a millisecond. */
		b->nbusy++;
		{
			struct timespec	busy = deadline_in(BENCH_BUSY_WAIT_NS);

			(void)wait_until(b, &busy);
		}
	}
timeout:
	pthread_mutex_unlock(&b->mtx);
	bench_fail(b, "%s: timed out with %d publishes unacknowledged",
	    c->role, c->inflight);
	pthread_mutex_lock(&b->mtx);
	return -1;
}

/* ack mode: the subscriber application answering each frame it got. */
static void *
ack_main(void *arg)
{
	struct bench	*b = arg;
	struct timespec	 dl = deadline_in((uint64_t)b->timeout_s * 1000000000u);
	uint8_t		*frame;
	uint64_t	 rng;

	if ((frame = malloc(b->size)) == NULL) {
		bench_fail(b, "answer thread: out of memory");
		return NULL;
	}
	random_fill(&rng, sizeof(rng));
	rng |= 1;
	pthread_mutex_lock(&b->mtx);
	while (b->err[0] == '\0' && !b->stopping) {
		if (b->ackq_head == b->ackq_tail) {
			if (wait_until(b, &dl) == -1)
				break;
			continue;
		}
		memcpy(frame, b->ackq[b->ackq_head++].hdr, BENCH_HDR);
		pthread_mutex_unlock(&b->mtx);
		payload_fill(&rng, frame + BENCH_HDR, b->size - BENCH_HDR);
		pthread_mutex_lock(&b->mtx);
		if (client_publish(b, &b->sub, b->topic_ack, frame, &dl,
		    0) == -1)
			break;
	}
	pthread_mutex_unlock(&b->mtx);
	free(frame);
	return NULL;
}

/*
 * --nodelay: paho never sets TCP_NODELAY and has no hook to reach its
 * socket, so a small PUBACK followed by a PUBLISH on the same connection
 * waits for the peer's delayed ACK (~40 ms on Linux).  The only TCP
 * sockets in this process are paho's two broker connections: find them
 * in /proc/self/fd.  Returns how many were set.
 */
static int
set_nodelay_all(void)
{
	DIR		*d;
	struct dirent	*de;
	struct stat	 st;
	int		 fd, type, one = 1, n = 0;
	socklen_t	 len;
	struct sockaddr_storage	ss;

	if ((d = opendir("/proc/self/fd")) == NULL)
		die("--nodelay: /proc/self/fd: %s", strerror(errno));
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		fd = atoi(de->d_name);
		if (fd == dirfd(d) || fstat(fd, &st) == -1 ||
		    !S_ISSOCK(st.st_mode))
			continue;
		len = sizeof(type);
		if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == -1 ||
		    type != SOCK_STREAM)
			continue;
		len = sizeof(ss);
		if (getpeername(fd, (struct sockaddr *)&ss, &len) == -1 ||
		    (ss.ss_family != AF_INET && ss.ss_family != AF_INET6))
			continue;
		if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
		    sizeof(one)) == -1)
			die("--nodelay: setsockopt: %s", strerror(errno));
		n++;
	}
	closedir(d);
	return n;
}

/* Publish all frames and wait for the last receipt (or answer). */
static void
run(struct bench *b)
{
	struct timespec	 dl = deadline_in((uint64_t)b->timeout_s * 1000000000u);
	uint8_t		*frame;
	uint64_t	 rng, seq;
	uint32_t	 conc = b->concurrency;

	if ((frame = malloc(b->size)) == NULL)
		die("out of memory");
	random_fill(&rng, sizeof(rng));
	rng |= 1;
	pthread_mutex_lock(&b->mtx);
	for (seq = 0; seq < b->count; seq++) {
		while (b->err[0] == '\0' && conc != 0 && seq - b->ndone >= conc)
			if (wait_until(b, &dl) == -1)
				goto out;
		if (b->err[0] != '\0')
			goto out;
		pthread_mutex_unlock(&b->mtx);
		payload_fill(&rng, frame, b->size);
		put64(frame + 8, seq);
		pthread_mutex_lock(&b->mtx);
		if (client_publish(b, &b->pub, b->topic, frame, &dl, 1) == -1)
			goto out;
	}
	while (b->err[0] == '\0' && b->ndone < b->count)
		if (wait_until(b, &dl) == -1)
			break;
out:
	if (b->err[0] == '\0' && b->ndone < b->count)
		snprintf(b->err, sizeof(b->err), "timed out after %d s: %"
		    PRIu32 " of %" PRIu32 " %s arrived (%" PRIu32 " frames at"
		    " the subscriber)", b->timeout_s, b->ndone, b->count,
		    b->mode == MODE_ACK ? "answers" : "frames", b->nrecv);
	b->stopping = 1;
	pthread_cond_broadcast(&b->cv);
	pthread_mutex_unlock(&b->mtx);
	free(frame);
}

static void
client_disconnect(struct client *c)
{
	MQTTAsync_disconnectOptions	dop = MQTTAsync_disconnectOptions_initializer5;

	dop.timeout = 1000;
	dop.onSuccess5 = cb_disconnected;
	dop.onFailure5 = cb_disconnect_failed;
	dop.context = c;
	if (MQTTAsync_disconnect(c->cli, &dop) != MQTTASYNC_SUCCESS)
		c->gone = 1;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t	x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

struct stats {
	double	min, mean, p50, p90, p99, max;	/* µs */
};

/* Nearest-rank percentiles; sorts v. */
static struct stats
stats_of(uint64_t *v, uint32_t n)
{
	struct stats	s;
	double		sum = 0;
	uint32_t	i;

	memset(&s, 0, sizeof(s));
	if (n == 0)
		return s;
	qsort(v, n, sizeof(*v), cmp_u64);
	for (i = 0; i < n; i++)
		sum += (double)v[i];
#define RANK(p)	(v[(uint32_t)(((uint64_t)(p) * n + 99) / 100) - 1] / 1e3)
	s.min = v[0] / 1e3;
	s.p50 = RANK(50);
	s.p90 = RANK(90);
	s.p99 = RANK(99);
#undef RANK
	s.max = v[n - 1] / 1e3;
	s.mean = sum / n / 1e3;
	return s;
}

static void
print_stats_json(const char *name, const struct stats *s)
{
	printf("\"%s\":{\"min\":%.1f,\"mean\":%.1f,\"p50\":%.1f,\"p90\":%.1f,"
	    "\"p99\":%.1f,\"max\":%.1f}", name, s->min, s->mean, s->p50,
	    s->p90, s->p99, s->max);
}

static void
report(struct bench *b)
{
	struct stats	lat, ow = { 0, 0, 0, 0, 0, 0 };
	double		secs, rate;
	const char	*kind;
	char		conc[16];

	secs = b->t_last > b->t_first ? (b->t_last - b->t_first) / 1e9 : 0;
	rate = secs > 0 ? b->count / secs : 0;
	lat = stats_of(b->lat, b->ndone);
	kind = b->mode == MODE_ACK ? "send_to_ack" : "send_to_receive";
	if (b->mode == MODE_ACK)
		ow = stats_of(b->lat_oneway, b->nrecv);
	if (b->json) {
		printf("{\"tool\":\"bench-raw\",\"mode\":\"%s\",\"uri\":\"%s\","
		    "\"count\":%" PRIu32 ",\"size\":%zu,\"window\":%d,"
		    "\"concurrency\":%" PRIu32 ",\"qos\":1,\"mqtt\":5,"
		    "\"received\":%" PRIu32 ",\"duplicates\":%" PRIu32 ","
		    "\"nodelay\":%s,"
		    "\"paho_busy\":%" PRIu32 ",\"elapsed_s\":%.6f,"
		    "\"msgs_per_s\":%.1f,\"latency_kind\":\"%s\",",
		    mode_names[b->mode], b->uri, b->count, b->size, b->window,
		    b->concurrency, b->ndone, b->ndup,
		    b->nodelay ? "true" : "false", b->nbusy, secs, rate,
		    kind);
		print_stats_json("latency_us", &lat);
		if (b->mode == MODE_ACK) {
			putchar(',');
			print_stats_json("oneway_us", &ow);
		}
		printf("}\n");
		return;
	}
	if (b->concurrency == 0)
		snprintf(conc, sizeof(conc), "unbounded");
	else
		snprintf(conc, sizeof(conc), "%" PRIu32, b->concurrency);
	printf("%s: %" PRIu32 " x %zu B, QoS 1, window %d, concurrency %s: "
	    "%.0f msg/s (%.3f s); %s us p50 %.1f p90 %.1f p99 %.1f (max %.1f)",
	    mode_names[b->mode], b->count, b->size, b->window, conc, rate,
	    secs, kind, lat.p50, lat.p90, lat.p99, lat.max);
	if (b->mode == MODE_ACK)
		printf("; one-way p50 %.1f p99 %.1f", ow.p50, ow.p99);
	if (b->nodelay)
		printf("; TCP_NODELAY");
	if (b->ndup != 0)
		printf("; %" PRIu32 " duplicates", b->ndup);
	putchar('\n');
}

static void __attribute__((noreturn))
usage(int status)
{
	fprintf(status ? stderr : stdout,
"usage: bench-raw [--uri URI] [--mode throughput|latency|ack] [--count N]\n"
"                 [--size BYTES] [--window W] [--concurrency C]\n"
"                 [--timeout SECONDS] [--nodelay] [--json]\n"
"\n"
"The raw baseline of veil-bench: N frames of BYTES random bytes at QoS 1\n"
"from one paho MQTTAsync client to another through the broker at URI\n"
"(default tcp://127.0.0.1:1883), no veil.\n"
"\n"
"  --mode throughput  publish as fast as the window allows (default)\n"
"  --mode latency     one frame at a time, send -> receive percentiles\n"
"  --mode ack         the receiver answers each frame with a same-size frame;\n"
"                     send -> answer percentiles (one at a time by default)\n"
"  --count N          frames (default %d)\n"
"  --size BYTES       frame size, >= %d (default %d)\n"
"  --window W         unacknowledged publishes per client (default %d)\n"
"  --concurrency C    frames sent but not yet received/answered; 0 = window\n"
"                     only (default: 0 for throughput, 1 otherwise; latency\n"
"                     mode is always 1)\n"
"  --timeout SECONDS  give up and exit 1 after this long (default %d)\n"
"  --nodelay          set TCP_NODELAY on paho's sockets (paho does not; a\n"
"                     diagnostic, not the baseline)\n"
"  --json             one JSON object instead of one line\n",
	    BENCH_COUNT_DEFAULT, BENCH_HDR, BENCH_SIZE_DEFAULT,
	    BENCH_WINDOW_DEFAULT, BENCH_TIMEOUT_DEFAULT);
	exit(status);
}

static long long
num_arg(const char *name, const char *s, long long min, long long max)
{
	char		*end;
	long long	 v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		die("%s: expected an integer from %lld to %lld, got \"%s\"",
		    name, min, max, s);
	return v;
}

int
main(int argc, char *argv[])
{
	static const struct option	 longopts[] = {
		{ "uri",		required_argument, NULL, 'u' },
		{ "count",		required_argument, NULL, 'n' },
		{ "size",		required_argument, NULL, 's' },
		{ "window",		required_argument, NULL, 'w' },
		{ "mode",		required_argument, NULL, 'm' },
		{ "concurrency",	required_argument, NULL, 'c' },
		{ "timeout",		required_argument, NULL, 't' },
		{ "json",		no_argument,	   NULL, 'j' },
		{ "nodelay",		no_argument,	   NULL, 'D' },
		{ "help",		no_argument,	   NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	static struct bench	 bench;
	struct bench		*b = &bench;
	pthread_condattr_t	 ca;
	struct timespec		 dl;
	long long		 conc = -1;
	int			 ch, failed;

	b->uri = "tcp://127.0.0.1:1883";
	b->mode = MODE_THROUGHPUT;
	b->count = BENCH_COUNT_DEFAULT;
	b->size = BENCH_SIZE_DEFAULT;
	b->window = BENCH_WINDOW_DEFAULT;
	b->timeout_s = BENCH_TIMEOUT_DEFAULT;
	while ((ch = getopt_long(argc, argv, "u:n:s:w:m:c:t:jDh", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'u':
			b->uri = optarg;
			break;
		case 'n':
			b->count = (uint32_t)num_arg("--count", optarg, 1,
			    100000000);
			break;
		case 's':
			b->size = (size_t)num_arg("--size", optarg, BENCH_HDR,
			    BENCH_SIZE_MAX);
			break;
		case 'w':
			b->window = (int)num_arg("--window", optarg, 1, 65535);
			break;
		case 'm':
			for (b->mode = 0; b->mode <= MODE_ACK; b->mode++)
				if (strcmp(optarg, mode_names[b->mode]) == 0)
					break;
			if (b->mode > MODE_ACK)
				die("--mode: expected throughput, latency or "
				    "ack, got \"%s\"", optarg);
			break;
		case 'c':
			conc = num_arg("--concurrency", optarg, 0, UINT32_MAX);
			break;
		case 't':
			b->timeout_s = (int)num_arg("--timeout", optarg, 1,
			    86400);
			break;
		case 'j':
			b->json = 1;
			break;
		case 'D':
			b->nodelay = 1;
			break;
		case 'h':
			usage(0);
		default:
			usage(1);
		}
	}
	if (optind != argc)
		usage(1);
	if (b->mode == MODE_LATENCY) {
		if (conc > 1)
			die("--mode latency sends one frame at a time; use "
			    "--mode throughput for concurrency");
		conc = 1;
	} else if (conc == -1)
		conc = b->mode == MODE_THROUGHPUT ? 0 : 1;
	b->concurrency = (uint32_t)conc;

	/* paho reads these even for tcp:// and ignores no_proxy; the
	 * baseline talks to the broker directly, as veild does unless a
	 * proxy is configured. */
	unsetenv("http_proxy");
	unsetenv("https_proxy");
	unsetenv("HTTP_PROXY");
	unsetenv("HTTPS_PROXY");

	if ((b->seen = calloc(b->count, 1)) == NULL ||
	    (b->lat = calloc(b->count, sizeof(*b->lat))) == NULL)
		die("out of memory for %" PRIu32 " frames", b->count);
	if (b->mode == MODE_ACK &&
	    ((b->seen_ack = calloc(b->count, 1)) == NULL ||
	    (b->lat_oneway = calloc(b->count, sizeof(*b->lat))) == NULL ||
	    (b->ackq = calloc(b->count, sizeof(*b->ackq))) == NULL))
		die("out of memory for %" PRIu32 " frames", b->count);

	pthread_mutex_init(&b->mtx, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&b->cv, &ca);
	pthread_condattr_destroy(&ca);

	hex_id(b->topic, sizeof(b->topic), "bench/", 12);
	snprintf(b->topic_ack, sizeof(b->topic_ack), "%.56s/ack", b->topic);

	client_create(b, &b->pub, "publisher");
	client_create(b, &b->sub, "subscriber");
	dl = deadline_in((uint64_t)b->timeout_s * 1000000000u);
	client_connect(b, &b->pub);
	client_connect(b, &b->sub);
	wait_clients(b, &dl, "the broker to accept both clients",
	    client_is_up);
	if (b->nodelay && set_nodelay_all() != 2)
		die("--nodelay: expected paho's 2 broker sockets");
	client_subscribe(&b->sub, b->topic);
	if (b->mode == MODE_ACK)
		client_subscribe(&b->pub, b->topic_ack);
	else
		b->pub.subscribed = 1;
	wait_clients(b, &dl, "the subscriptions", client_is_subscribed);

	if (b->mode == MODE_ACK) {
		if (pthread_create(&b->ack_thread, NULL, ack_main, b) != 0)
			die("pthread_create failed");
		b->ack_thread_started = 1;
	}
	run(b);
	if (b->ack_thread_started)
		pthread_join(b->ack_thread, NULL);

	pthread_mutex_lock(&b->mtx);
	failed = b->err[0] != '\0';
	pthread_mutex_unlock(&b->mtx);
	if (failed) {
		/* paho threads may still be blocked on a dead broker:
		 * leave without tearing the clients down. */
		fprintf(stderr, "bench-raw: %s\n", b->err);
		return 1;
	}
	client_disconnect(&b->pub);
	client_disconnect(&b->sub);
	dl = deadline_in(3000000000u);
	pthread_mutex_lock(&b->mtx);
	while (!(client_is_gone(&b->pub) && client_is_gone(&b->sub)))
		if (wait_until(b, &dl) == -1)
			break;
	pthread_mutex_unlock(&b->mtx);
	MQTTAsync_destroy(&b->pub.cli);
	MQTTAsync_destroy(&b->sub.cli);

	report(b);
	return 0;
}
