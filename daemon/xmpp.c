/* xmpp.c: the XMPP transport driver on libstrophe (SASL ANONYMOUS, XEP-0060 nodes as inboxes). */

/*
 * Names: x_* are this file's, xmpp_* are libstrophe's.
 *
 * Identity.  Every connection logs in with SASL ANONYMOUS, so the server
 * hands out a fresh random JID each time; the "client ID" of the transport
 * interface is the connection itself.  set_client_id() only records the
 * wish, the rotation happens because disconnect + connect makes a new
 * connection.  XMPP cannot choose the JID: every reconnect, wanted or
 * not, is a new identity at the server.  There is no session to expire and
 * no credential to present: those calls are ignored.
 *
 * Inboxes.  A topic is a publish-subscribe node of the same name on the
 * configured service (mqtt.topic_prefix is MQTT's alone: node names are
 * the engine's names).  On every connect, for every live topic: create the
 * node (open access, open publishing, persistent items, max_items "max";
 * a conflict or refusal just means it exists or is not ours to create),
 * subscribe the current full JID, then fetch the stored items and deliver
 * those not seen yet.  The fetch is what gives offline delivery: frames
 * published while we were away wait in the node.  Items are not retracted
 * after delivery: the node's creator (an anonymous JID) is gone after its
 * first reconnect and prosody lets only owners and publishers retract, so
 * the node is a ring of its last max_items frames instead (docs/xmpp.md).
 * A publish to a node that does not exist yet creates it, so a frame sent
 * before the peer's first subscribe waits there too.
 *
 * Payload.  One item, server-assigned id, one element of a fixed namespace
 * whose text is the frame in standard base64; IQ ids are random and of a
 * fixed length, so every publish of a fixed-size frame to a fixed-length
 * node name has the same size on the wire.
 *
 * Input from the server is bounded where we can bound it.  libstrophe
 * parses a whole stanza into memory before any handler runs and has no
 * size limit of its own, so one stanza costs what the server sends; what
 * this file adds per item is constant: an item is dropped (and counted)
 * unless its id is at most XMPP_ITEM_ID_MAX bytes and its payload text is
 * exactly the base64 length of one frame, checked before decoding, and it
 * decodes into one preallocated frame buffer without copying the text.  At
 * most XMPP_ITEMS_MAX items of one stanza are looked at.  Seen item ids are
 * remembered in a hash per node (at most XMPP_SEEN_MAX, oldest forgotten
 * first), and IQ answers find their publish or topic by hash: nothing is
 * scanned per answer or per item.
 *
 * TLS, xmpp.tls: "off" never asks for STARTTLS (XMPP_CONN_FLAG_DISABLE_TLS),
 * "starttls" uses it when offered, "required" refuses a server that does
 * not offer it (XMPP_CONN_FLAG_MANDATORY_TLS), reported once as a refusal.
 * Certificates are checked against OpenSSL's default trust store.
 *
 * Event loop.  libstrophe has no fd accessor and no user pointer in its
 * socket-options callback: a file-level registry maps connection objects to
 * ours, and the callback learns each new socket there.  xmpp_run_once(ctx,
 * 0) runs from read/write events on those sockets, from a deferred event
 * after our own sends, and from a 1 s timer only while a connection is
 * being set up or torn down (libstrophe's connect and disconnect timeouts
 * are timed handlers).  An established idle connection costs no wake-ups;
 * TCP keepalive finds a dead server.  libstrophe reads 4096 bytes per
 * call: on a TLS connection it is called until the socket has stayed
 * empty long enough to drain what OpenSSL has already decrypted
 * (x_run()).  It uses select(): a socket
 * >= FD_SETSIZE is refused before connect.  Name resolution (SRV, A) and
 * the TLS handshake are blocking inside libstrophe; give xmpp.host as an
 * address to avoid the former.
 */

#define _GNU_SOURCE		/* asprintf, strcasestr */

#include <sys/ioctl.h>
#include <sys/queue.h>
#include <sys/select.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include <sodium.h>
#include <strophe.h>

#include "compat.h"
#include "config.h"
#include "log.h"
#include "transport_driver.h"

#define X_NS_PUBSUB		"http://jabber.org/protocol/pubsub"
#define X_NS_EVENT		"http://jabber.org/protocol/pubsub#event"
#define X_NS_PAYLOAD		"urn:xmpp:veil:0"
#define XMPP_TICK_MS		1000
#define XMPP_TLS_SPINS		5	/* 16 KiB TLS record / 4096 per call */
#define XMPP_SPINS_MAX		64	/* per run: 256 KiB, then the loop */
#define XMPP_ID_LEN		16	/* hex digits of a 64-bit request */
#define XMPP_SEEN_MAX		1024	/* item ids remembered per node */
#define XMPP_ITEM_ID_MAX	64	/* prosody's are UUIDs, 36 bytes */
#define XMPP_ITEMS_MAX		XMPP_SEEN_MAX	/* looked at per stanza */
#define XMPP_KEEPIDLE		60	/* s */
#define XMPP_KEEPINTVL		10
#define XMPP_KEEPCNT		3

#define XP_CREATED		0x1	/* publish: tried creating the node */

enum tstep { TS_IDLE, TS_CREATE, TS_SUBSCRIBE, TS_ITEMS, TS_READY };

struct xseen {
	TAILQ_ENTRY(xseen)	 entry;		/* oldest first */
	struct transport_hlink	 link;
	char			 id[];
};
TAILQ_HEAD(xseen_list, xseen);

struct xtopic {
	struct transport_topic	 tt;		/* first: transport.c's part */
	char			*ename;		/* XML-escaped; NULL: not set up */
	enum tstep		 step;		/* on the current connection */
	int			 delivering;	/* on_message calls under way */
	struct transport_hash	 seen;
	struct xseen_list	 seenq;
	size_t			 nseen;
};

struct xmpp;

struct xconn {
	LIST_ENTRY(xconn)	 entry;		/* x->dead */
	LIST_ENTRY(xconn)	 reg;		/* x_registry */
	struct xmpp		*x;
	xmpp_conn_t		*conn;
	int			 fd;
	int			 tcp_pending;	/* nonblocking connect() */
	int			 closed;	/* libstrophe reported the end */
	int			 evset;		/* io added with ioflags */
	short			 ioflags;
	struct event		 io;
};
LIST_HEAD(xconn_list, xconn);

struct xmpp {
	struct transport	 t;
	xmpp_ctx_t		*ctx;
	xmpp_log_t		 logger;

	char			*domain;
	char			*host;
	char			*pubsub;
	char			*epubsub;	/* XML-escaped */
	unsigned short		 port;
	enum veild_xmpp_tls	 tls;
	size_t			 b64len;	/* of one frame, padded */
	unsigned char		*rxbuf;		/* one decoded frame */

	int			 want;		/* connect() without disconnect() */
	struct xconn		*cur;
	struct xconn_list	 dead;		/* closing, released when closed */
	char			 lasterr[256];
	char			*jid;		/* bound full JID, escaped */
	int			 in_run;
	int			 freeing;

	struct event		*run_ev;	/* deferred xmpp_run_once() */
	struct event		*reap_ev;	/* release closed connections */
	struct event		*tick_ev;
};

/*
 * libstrophe's socket-options callback gets the connection object only:
 * this maps it back.  Loop thread only, like everything in libstrophe.
 */
static struct xconn_list x_registry = LIST_HEAD_INITIALIZER(x_registry);

static void	x_start_connect(struct xmpp *);
static void	x_io(evutil_socket_t, short, void *);
static void	x_topic_next(struct xmpp *, struct xtopic *);
static int	x_iq_cb(xmpp_conn_t *, xmpp_stanza_t *, void *);

/* --- helpers ----------------------------------------------------------------- */

static char *
x_escape(const char *s)
{
	size_t	 n = 0, i;
	char	*d, *p;

	for (i = 0; s[i] != '\0'; i++)
		n += (s[i] == '&') ? 5 : (s[i] == '<' || s[i] == '>') ? 4 :
		    (s[i] == '"' || s[i] == '\'') ? 6 : 1;
	if ((d = p = malloc(n + 1)) == NULL)
		return NULL;
	for (i = 0; s[i] != '\0'; i++) {
		switch (s[i]) {
		case '&':
			memcpy(p, "&amp;", 5), p += 5;
			break;
		case '<':
			memcpy(p, "&lt;", 4), p += 4;
			break;
		case '>':
			memcpy(p, "&gt;", 4), p += 4;
			break;
		case '"':
			memcpy(p, "&quot;", 6), p += 6;
			break;
		case '\'':
			memcpy(p, "&apos;", 6), p += 6;
			break;
		default:
			*p++ = s[i];
		}
	}
	*p = '\0';
	return d;
}

/*
 * Random, fixed length: IQ ids say nothing and keep stanza sizes equal.
 * The id is the request number in hex, so an answer finds its publish or
 * topic by hash.
 */
static uint64_t
x_new_id(char id[XMPP_ID_LEN + 1])
{
	uint64_t	 req;

	do
		randombytes_buf(&req, sizeof(req));
	while (req == 0);
	snprintf(id, XMPP_ID_LEN + 1, "%016" PRIx64, req);
	return req;
}

/* 0 unless id is one of ours in form. */
static uint64_t
x_parse_id(const char *id)
{
	uint64_t	 req = 0;
	size_t		 i;

	for (i = 0; i < XMPP_ID_LEN; i++) {
		if (id[i] >= '0' && id[i] <= '9')
			req = req << 4 | (uint64_t)(id[i] - '0');
		else if (id[i] >= 'a' && id[i] <= 'f')
			req = req << 4 | (uint64_t)(id[i] - 'a' + 10);
		else
			return 0;
	}
	return id[i] == '\0' ? req : 0;
}

static void
x_topic_free(struct transport_topic *tp)
{
	struct xtopic	*xt = (struct xtopic *)tp;
	struct xseen	*s;

	if (xt->ename == NULL)
		return;
	while ((s = TAILQ_FIRST(&xt->seenq)) != NULL) {
		TAILQ_REMOVE(&xt->seenq, s, entry);
		free(s);
	}
	transport_hash_free(&xt->seen);
	free(xt->ename);
}

/* Unsubscribed, nothing outstanding, nobody inside a callback for it. */
static void
x_topic_gc(struct xmpp *x, struct xtopic *xt)
{
	if (!xt->tt.live && xt->tt.req == 0 && xt->step != TS_SUBSCRIBE &&
	    xt->delivering == 0)
		transport_topic_free(&x->t, &xt->tt);
}

/* Returns 1 if id was new (and remembers it). */
static int
x_seen_add(struct xtopic *xt, const char *id)
{
	struct transport_hlink	*l;
	struct xseen		*s;
	uint64_t		 key = transport_hash_str(id);
	size_t			 n = strlen(id);

	for (l = transport_hash_get(&xt->seen, key); l != NULL;
	    l = transport_hash_next(l))
		if (strcmp(TRANSPORT_OF(l, struct xseen, link)->id, id) == 0)
			return 0;
	/* Out of memory: deliver anyway, the engine dedupes. */
	if ((s = malloc(sizeof(*s) + n + 1)) == NULL)
		return 1;
	memcpy(s->id, id, n + 1);
	if (transport_hash_add(&xt->seen, &s->link, key) == -1) {
		free(s);
		return 1;
	}
	TAILQ_INSERT_TAIL(&xt->seenq, s, entry);
	if (++xt->nseen > XMPP_SEEN_MAX) {
		s = TAILQ_FIRST(&xt->seenq);
		TAILQ_REMOVE(&xt->seenq, s, entry);
		transport_hash_del(&xt->seen, &s->link);
		free(s);
		xt->nseen--;
	}
	return 1;
}

/* --- libevent <-> libstrophe ------------------------------------------------- */

static void
x_kick(struct xmpp *x)
{
	event_active(x->run_ev, EV_TIMEOUT, 0);
}

/*
 * One event per socket: libstrophe closes sockets behind our back, and
 * libevent forgives a DEL on a closed descriptor but not a MOD, which is
 * what removing one of two events on the same descriptor would be.
 */
static void
x_conn_events_del(struct xconn *xc)
{
	if (!xc->evset)
		return;
	event_del(&xc->io);
	xc->evset = 0;
}

static void
x_conn_events_set(struct xconn *xc, int want_write)
{
	short	 flags = EV_READ | EV_PERSIST | (want_write ? EV_WRITE : 0);

	if (xc->fd < 0 || xc->closed || (xc->evset && xc->ioflags == flags))
		return;
	x_conn_events_del(xc);
	event_assign(&xc->io, xc->x->t.base, xc->fd, flags, x_io, xc);
	event_add(&xc->io, NULL);
	xc->ioflags = flags;
	xc->evset = 1;
}

/* Read interest always, write interest while connecting or queued. */
static void
x_sync_events(struct xmpp *x)
{
	struct xconn	*xc;
	struct timeval	 tv;
	int		 busy = 0;

	if ((xc = x->cur) != NULL && xc->evset && !xc->closed)
		x_conn_events_set(xc, xc->tcp_pending ||
		    xmpp_conn_send_queue_len(xc->conn) > 0);
	LIST_FOREACH(xc, &x->dead, entry) {
		busy = 1;
		if (xc->evset && !xc->closed)
			x_conn_events_set(xc,
			    xmpp_conn_send_queue_len(xc->conn) > 0);
	}
	if (x->cur != NULL && x->t.state != TRANSPORT_UP)
		busy = 1;
	if (busy) {
		if (!evtimer_pending(x->tick_ev, NULL)) {
			tv.tv_sec = XMPP_TICK_MS / 1000;
			tv.tv_usec = (XMPP_TICK_MS % 1000) * 1000;
			evtimer_add(x->tick_ev, &tv);
		}
	} else
		evtimer_del(x->tick_ev);
}

/* Bytes the kernel holds for the current connection's socket. */
static int
x_sock_queued(struct xmpp *x)
{
	int	 n;

	if (x->cur == NULL || x->cur->fd < 0 || x->cur->closed ||
	    ioctl(x->cur->fd, FIONREAD, &n) == -1)
		return 0;
	return n;
}

static void
x_run(struct xmpp *x)
{
	struct xconn	*xc;
	int		 i, quiet, before;

	if (x->in_run || x->freeing)
		return;
	x->in_run = 1;
	/*
	 * A run writes what is queued, then reads and calls handlers, which
	 * may queue more: libstrophe's own stanzas (stream headers, SASL,
	 * bind, </stream:stream>) do not count in xmpp_conn_send_queue_len(),
	 * so no write event would ever flush them.  A second run does.
	 */
	xmpp_run_once(x->ctx, 0);
	xmpp_run_once(x->ctx, 0);
	/*
	 * With TLS, OpenSSL decrypts a whole record (up to 16 KiB) when
	 * libstrophe reads 4096 bytes, and what is left there raises no event
	 * once the socket is empty: the last frames of a burst would wait for
	 * the server's next word.  So run until XMPP_TLS_SPINS runs in a row
	 * found the socket empty before and after (they drain a record), or
	 * XMPP_SPINS_MAX, and then go on from a deferred event.
	 */
	if (x->cur != NULL && xmpp_conn_is_secured(x->cur->conn)) {
		for (i = quiet = 0; x->cur != NULL && quiet < XMPP_TLS_SPINS;
		    i++) {
			if (i == XMPP_SPINS_MAX) {
				x_kick(x);
				break;
			}
			before = x_sock_queued(x);
			xmpp_run_once(x->ctx, 0);
			quiet = before == 0 && x_sock_queued(x) == 0 ?
			    quiet + 1 : 0;
		}
	}
	x->in_run = 0;
	LIST_FOREACH(xc, &x->dead, entry)
		if (xc->closed || xmpp_conn_is_disconnected(xc->conn)) {
			event_active(x->reap_ev, EV_TIMEOUT, 0);
			break;
		}
	x_sync_events(x);
}

static void
x_io(evutil_socket_t fd, short what, void *arg)
{
	struct xconn	*xc = arg;

	(void)fd;
	if (what & EV_WRITE)
		xc->tcp_pending = 0;
	x_run(xc->x);
}

static void
x_run_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	x_run(arg);
}

static void
x_conn_free(struct xconn *xc)
{
	x_conn_events_del(xc);
	LIST_REMOVE(xc, reg);
	xmpp_conn_release(xc->conn);
	free(xc);
}

/* Outside any libstrophe call and any of the connection's own events. */
static void
x_reap(evutil_socket_t fd, short what, void *arg)
{
	struct xmpp	*x = arg;
	struct xconn	*xc, *next;

	(void)fd;
	(void)what;
	for (xc = LIST_FIRST(&x->dead); xc != NULL; xc = next) {
		next = LIST_NEXT(xc, entry);
		if (!xc->closed && !xmpp_conn_is_disconnected(xc->conn))
			continue;
		LIST_REMOVE(xc, entry);
		x_conn_free(xc);
	}
	x_sync_events(x);
}

static int
x_sockopt(xmpp_conn_t *conn, void *sock)
{
	struct xconn	*xc;
	int		 fd = *(int *)sock, on = 1, v;

	LIST_FOREACH(xc, &x_registry, reg)
		if (xc->conn == conn)
			break;
	if (xc == NULL)
		return -1;
	x_conn_events_del(xc);
	if (fd < 0 || fd >= FD_SETSIZE) {
		/* libstrophe's select() would write past its fd_set. */
		log_warnx("xmpp: socket %d beyond select()'s limit", fd);
		return -1;
	}
	/* A server that vanished without a FIN is noticed in ~90 s. */
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
	/* Small frames, often answered: Nagle plus delayed ACKs would add
	 * ~40 ms per exchange. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	v = XMPP_KEEPIDLE;
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &v, sizeof(v));
	v = XMPP_KEEPINTVL;
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &v, sizeof(v));
	v = XMPP_KEEPCNT;
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &v, sizeof(v));
	xc->fd = fd;
	xc->tcp_pending = 1;
	x_conn_events_set(xc, 1);
	return 0;
}

static void
x_strophe_log(void *arg, xmpp_log_level_t level, const char *area,
    const char *msg)
{
	struct xmpp	*x = arg;

	/* Stanza dumps ("conn" at debug) would put frames in the log. */
	if (level == XMPP_LEVEL_DEBUG)
		return;
	if (level >= XMPP_LEVEL_WARN)
		snprintf(x->lasterr, sizeof(x->lasterr), "%s", msg);
	log_debug("xmpp: libstrophe %s: %s", area, msg);
}

/* --- stanzas ----------------------------------------------------------------- */

static int	x_send_iq(struct xmpp *, uint64_t *, xmpp_handler,
		    const char *, const char *, ...)
		    __attribute__((format(printf, 5, 6)));

/*
 * One IQ to the pubsub service.  With h, its answer goes to h and *req
 * receives the request it carries.  -1: out of memory, nothing sent (the
 * connection's next life sends it again).
 */
static int
x_send_iq(struct xmpp *x, uint64_t *req, xmpp_handler h, const char *type,
    const char *fmt, ...)
{
	va_list		 ap;
	char		 id[XMPP_ID_LEN + 1], *body = NULL, *iq = NULL;
	uint64_t	 r;
	int		 n;

	r = x_new_id(id);
	va_start(ap, fmt);
	n = vasprintf(&body, fmt, ap);
	va_end(ap);
	if (n == -1) {
		body = NULL;
		goto fail;
	}
	if ((n = asprintf(&iq, "<iq type=\"%s\" id=\"%s\" to=\"%s\">"
	    "<pubsub xmlns=\"" X_NS_PUBSUB "\">%s</pubsub></iq>", type, id,
	    x->epubsub, body)) == -1) {
		iq = NULL;
		goto fail;
	}
	if (h != NULL)
		xmpp_id_handler_add(x->cur->conn, h, id, x->cur);
	xmpp_send_raw(x->cur->conn, iq, (size_t)n);
	free(body);
	free(iq);
	x_kick(x);
	if (req != NULL)
		*req = r;
	return 0;
fail:
	log_warnx("xmpp: out of memory");
	free(body);
	return -1;
}

static int
x_send_create(struct xmpp *x, uint64_t *req, xmpp_handler h,
    const char *ename)
{
	return x_send_iq(x, req, h, "set", "<create node=\"%s\"/><configure>"
	    "<x xmlns=\"jabber:x:data\" type=\"submit\">"
	    "<field var=\"FORM_TYPE\" type=\"hidden\"><value>"
	    X_NS_PUBSUB "#node_config</value></field>"
	    "<field var=\"pubsub#access_model\"><value>open</value></field>"
	    "<field var=\"pubsub#publish_model\"><value>open</value></field>"
	    "<field var=\"pubsub#persist_items\"><value>1</value></field>"
	    "<field var=\"pubsub#max_items\"><value>max</value></field>"
	    "<field var=\"pubsub#send_last_published_item\"><value>never"
	    "</value></field>"
	    "<field var=\"pubsub#notification_type\"><value>headline"
	    "</value></field></x></configure>", ename);
}

/* The frame goes as base64 text; with create, after a node creation. */
static int
x_send_publish(struct xmpp *x, struct transport_pub *p, int create,
    uint64_t *req)
{
	size_t	 blen;
	char	*ename, *b64;
	int	 rc = -1;

	blen = sodium_base64_encoded_len(p->len, sodium_base64_VARIANT_ORIGINAL);
	if ((ename = x_escape(p->wire)) == NULL)
		return -1;
	if ((b64 = malloc(blen)) != NULL) {
		sodium_bin2base64(b64, blen, p->buf, p->len,
		    sodium_base64_VARIANT_ORIGINAL);
		if (!create || x_send_create(x, NULL, NULL, ename) == 0)
			rc = x_send_iq(x, req, x_iq_cb, "set",
			    "<publish node=\"%s\"><item><f xmlns=\""
			    X_NS_PAYLOAD "\">%s</f></item></publish>", ename,
			    b64);
		free(b64);
	}
	free(ename);
	return rc;
}

static const char *
x_error_condition(xmpp_stanza_t *st)
{
	xmpp_stanza_t	*e, *c;

	if ((e = xmpp_stanza_get_child_by_name(st, "error")) == NULL)
		return "error";
	for (c = xmpp_stanza_get_children(e); c != NULL;
	    c = xmpp_stanza_get_next(c))
		if (xmpp_stanza_is_tag(c) && xmpp_stanza_get_name(c) != NULL &&
		    strcmp(xmpp_stanza_get_name(c), "text") != 0)
			return xmpp_stanza_get_name(c);
	return "error";
}

/*
 * One <item>: checked, decoded into x->rxbuf and handed over if new.  -1:
 * not a frame of ours (dropped); 0: delivered, or seen before.  What the
 * checks cost does not depend on what the item holds.
 */
static int
x_deliver_item(struct xmpp *x, struct xtopic *xt, xmpp_stanza_t *item)
{
	xmpp_stanza_t	*pl, *txt;
	const char	*id, *ns, *name, *text;
	size_t		 blen;

	if ((id = xmpp_stanza_get_id(item)) == NULL ||
	    strnlen(id, XMPP_ITEM_ID_MAX + 1) > XMPP_ITEM_ID_MAX)
		return -1;
	for (pl = xmpp_stanza_get_children(item); pl != NULL;
	    pl = xmpp_stanza_get_next(pl))
		if (xmpp_stanza_is_tag(pl))
			break;
	if (pl == NULL || (ns = xmpp_stanza_get_ns(pl)) == NULL ||
	    strcmp(ns, X_NS_PAYLOAD) != 0 ||
	    (name = xmpp_stanza_get_name(pl)) == NULL || strcmp(name, "f") != 0)
		return -1;
	/* One text child, read in place: libstrophe's copy would cost what
	 * the server chose to send. */
	if ((txt = xmpp_stanza_get_children(pl)) == NULL ||
	    !xmpp_stanza_is_text(txt) || xmpp_stanza_get_next(txt) != NULL ||
	    (text = xmpp_stanza_get_text_ptr(txt)) == NULL ||
	    strnlen(text, x->b64len + 1) != x->b64len)
		return -1;
	if (sodium_base642bin(x->rxbuf, x->t.frame_size, text, x->b64len, NULL,
	    &blen, NULL, sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    blen != x->t.frame_size)
		return -1;
	if (x_seen_add(xt, id))
		x->t.cbs.on_message(xt->tt.name, x->rxbuf, blen, x->t.arg);
	return 0;
}

/* The <item>s under items, at most XMPP_ITEMS_MAX of them; the rest and
 * the junk are counted as dropped. */
static void
x_deliver_items(struct xmpp *x, struct xconn *xc, struct xtopic *xt,
    xmpp_stanza_t *items)
{
	xmpp_stanza_t	*it;
	const char	*name;
	unsigned int	 n = 0, dropped = 0;

	/* The callbacks may unsubscribe xt: it stays until we are done. */
	xt->delivering++;
	for (it = xmpp_stanza_get_children(items); it != NULL;
	    it = xmpp_stanza_get_next(it)) {
		if (!xmpp_stanza_is_tag(it) ||
		    (name = xmpp_stanza_get_name(it)) == NULL ||
		    strcmp(name, "item") != 0)
			continue;
		if (n++ >= XMPP_ITEMS_MAX || x_deliver_item(x, xt, it) == -1)
			dropped++;
		if (x->freeing || xc != x->cur || !xt->tt.live)
			break;
	}
	xt->delivering--;
	transport_dropped(&x->t, dropped);
}

/* The answer to a publish. */
static void
x_pub_answer(struct xmpp *x, struct transport_pub *p, xmpp_stanza_t *st,
    int ok)
{
	uint64_t	 req;

	if (!ok && !(p->flags & XP_CREATED) &&
	    strcmp(x_error_condition(st), "item-not-found") == 0) {
		/* The peer has not subscribed yet: make the node, so the
		 * frame waits there for it. */
		p->flags |= XP_CREATED;
		if (x_send_publish(x, p, 1, &req) == 0)
			transport_pub_set_req(&x->t, p, req);
		else
			transport_pub_again(&x->t, p);
		return;
	}
	if (!ok)
		log_warnx("xmpp: publish refused: %s", x_error_condition(st));
	transport_pub_answer(&x->t, p, ok);
}

/* One IQ answer: a publish, or a step of a topic's (re)subscription. */
static int
x_iq_cb(xmpp_conn_t *conn, xmpp_stanza_t *st, void *arg)
{
	struct xconn		*xc = arg;
	struct xmpp		*x = xc->x;
	struct transport_pub	*p;
	struct transport_topic	*tp;
	struct xtopic		*xt;
	xmpp_stanza_t		*ps, *items;
	const char		*id, *type;
	uint64_t		 req;
	int			 ok;

	(void)conn;
	if (x->freeing || xc != x->cur || x->t.state != TRANSPORT_UP)
		return 0;
	if ((id = xmpp_stanza_get_id(st)) == NULL || (req = x_parse_id(id)) == 0)
		return 0;
	type = xmpp_stanza_get_type(st);
	ok = type != NULL && strcmp(type, "result") == 0;

	if ((p = transport_pub_find(&x->t, req)) != NULL) {
		x_pub_answer(x, p, st, ok);
		return 0;
	}
	if ((tp = transport_topic_by_req(&x->t, req)) == NULL)
		return 0;
	xt = (struct xtopic *)tp;
	transport_topic_set_req(&x->t, tp, 0);
	switch (xt->step) {
	case TS_CREATE:
		/* conflict: it exists; forbidden: not ours to create.  The
		 * subscribe says whether the node is usable. */
		if (!ok)
			log_debug("xmpp: create %s: %s", tp->name,
			    x_error_condition(st));
		xt->step = TS_SUBSCRIBE;
		x_topic_next(x, xt);
		break;
	case TS_SUBSCRIBE:
		if (!ok) {
			log_warnx("xmpp: subscription refused: %s",
			    x_error_condition(st));
			xt->step = TS_IDLE;
		} else
			xt->step = TS_ITEMS;
		if (tp->live && !tp->reported) {
			tp->reported = 1;
			xt->delivering++;	/* the callback may unsubscribe */
			x->t.cbs.on_subscribed(tp->name, ok, x->t.arg);
			xt->delivering--;
		}
		if (ok && xt->step == TS_ITEMS)
			x_topic_next(x, xt);
		break;
	case TS_ITEMS:
		xt->step = TS_READY;
		if (!ok || !tp->live)
			break;
		if ((ps = xmpp_stanza_get_child_by_ns(st, X_NS_PUBSUB)) !=
		    NULL && (items = xmpp_stanza_get_child_by_name(ps,
		    "items")) != NULL)
			x_deliver_items(x, xc, xt, items);
		break;
	default:
		break;
	}
	/* Unsubscribed meanwhile and nothing outstanding: forget it. */
	x_topic_gc(x, xt);
	return 0;
}

/* Send the IQ for the topic's current step. */
static void
x_topic_next(struct xmpp *x, struct xtopic *xt)
{
	uint64_t	 req = 0;

	switch (xt->step) {
	case TS_CREATE:
		(void)x_send_create(x, &req, x_iq_cb, xt->ename);
		break;
	case TS_SUBSCRIBE:
		(void)x_send_iq(x, &req, x_iq_cb, "set",
		    "<subscribe node=\"%s\" jid=\"%s\"/>", xt->ename, x->jid);
		break;
	case TS_ITEMS:
		(void)x_send_iq(x, &req, x_iq_cb, "get", "<items node=\"%s\"/>",
		    xt->ename);
		break;
	default:
		break;
	}
	transport_topic_set_req(&x->t, &xt->tt, req);
}

static void
x_send_unsubscribe(struct xmpp *x, struct xtopic *xt)
{
	(void)x_send_iq(x, NULL, NULL, "set",
	    "<unsubscribe node=\"%s\" jid=\"%s\"/>", xt->ename, x->jid);
}

static int
x_message_cb(xmpp_conn_t *conn, xmpp_stanza_t *st, void *arg)
{
	struct xconn		*xc = arg;
	struct xmpp		*x = xc->x;
	struct transport_topic	*tp;
	xmpp_stanza_t		*ev, *items;
	const char		*from, *node;

	(void)conn;
	if (x->freeing || xc != x->cur || x->t.state != TRANSPORT_UP)
		return 1;
	/* Only the service may speak for its nodes. */
	if ((from = xmpp_stanza_get_from(st)) == NULL ||
	    strcmp(from, x->pubsub) != 0)
		return 1;
	if ((ev = xmpp_stanza_get_child_by_ns(st, X_NS_EVENT)) == NULL ||
	    (items = xmpp_stanza_get_child_by_name(ev, "items")) == NULL ||
	    (node = xmpp_stanza_get_attribute(items, "node")) == NULL)
		return 1;
	/* After unsubscribe() nothing more is delivered. */
	if ((tp = transport_topic_find_wire(&x->t, node)) == NULL || !tp->live) {
		log_debug("xmpp: dropped an event for %s", node);
		return 1;
	}
	x_deliver_items(x, xc, (struct xtopic *)tp, items);
	x_topic_gc(x, (struct xtopic *)tp);
	return 1;
}

/* --- connection life ----------------------------------------------------------- */

/* Topics restart from scratch on the next connection; dead ones go. */
static void
x_reset_topics(struct xmpp *x)
{
	struct transport_topic	*tp, *ttp;

	TAILQ_FOREACH_SAFE(tp, &x->t.topics, entry, ttp) {
		transport_topic_set_req(&x->t, tp, 0);
		((struct xtopic *)tp)->step = TS_IDLE;
		x_topic_gc(x, (struct xtopic *)tp);
	}
}

/* Leave the current connection: politely if it is up. */
static void
x_leave(struct xmpp *x, int polite)
{
	struct xconn		*xc = x->cur;
	struct transport_topic	*tp;

	if (xc == NULL)
		return;
	if (polite && x->t.state == TRANSPORT_UP) {
		/* Else the node keeps a subscriber that no longer exists. */
		TAILQ_FOREACH(tp, &x->t.topics, entry)
			if (((struct xtopic *)tp)->step >= TS_ITEMS)
				x_send_unsubscribe(x, (struct xtopic *)tp);
	}
	x->cur = NULL;
	x->t.state = TRANSPORT_DOWN;
	free(x->jid);
	x->jid = NULL;
	transport_requeue(&x->t);
	x_reset_topics(x);
	LIST_INSERT_HEAD(&x->dead, xc, entry);
	/* Queues </stream:stream> behind our stanzas; may call x_conn_cb(),
	 * which ignores a connection that is not current. */
	if (!xc->closed)
		xmpp_disconnect(xc->conn);
	x_kick(x);
}

/* Why a connection ended, in buf; 1 if it is a refusal that will stay. */
static int
x_reason(struct xmpp *x, int error, xmpp_stream_error_t *se, char *buf,
    size_t len)
{
	if (strcasestr(x->lasterr, "anonymous") != NULL ||
	    (se != NULL && se->type == XMPP_SE_NOT_AUTHORIZED)) {
		snprintf(buf, len, "server does not allow anonymous login");
		return 1;
	}
	/* libstrophe: "TLS is not supported, but set as mandatory". */
	if (x->tls == VEILD_TLS_REQUIRED &&
	    strstr(x->lasterr, "TLS is not supported") != NULL) {
		snprintf(buf, len, "server does not offer TLS, which "
		    "xmpp.tls = \"required\" demands");
		return 1;
	}
	/* libstrophe: "No certfail handler set, canceling connection
	 * attempt" after OpenSSL refused the certificate. */
	if (strstr(x->lasterr, "certfail") != NULL) {
		snprintf(buf, len, "the server's TLS certificate is not "
		    "trusted");
		return 1;
	}
	if (se != NULL)
		snprintf(buf, len, "stream error%s%s",
		    se->text != NULL ? ": " : "", se->text != NULL ? se->text : "");
	else if (error != 0)
		snprintf(buf, len, "connection failed: %s", strerror(error));
	else if (x->lasterr[0] != '\0')
		snprintf(buf, len, "connection closed: %s", x->lasterr);
	else
		snprintf(buf, len, "connection closed");
	return 0;
}

/* From transport_went_up(): every live topic starts over. */
static void
x_restore(struct transport *t)
{
	struct xmpp		*x = (struct xmpp *)t;
	struct transport_topic	*tp;

	TAILQ_FOREACH(tp, &t->topics, entry) {
		if (!tp->live)
			continue;
		((struct xtopic *)tp)->step = TS_CREATE;
		x_topic_next(x, (struct xtopic *)tp);
	}
}

static void
x_on_up(struct xmpp *x, struct xconn *xc)
{
	const char	*jid;

	if ((jid = xmpp_conn_get_bound_jid(xc->conn)) == NULL ||
	    (x->jid = x_escape(jid)) == NULL) {
		log_warnx("xmpp: no bound JID");
		x_leave(x, 0);
		transport_retry_arm(&x->t);
		return;
	}
	x->lasterr[0] = '\0';
	log_debug("xmpp: bound to %s", jid);
	xmpp_handler_add(xc->conn, x_message_cb, NULL, "message", NULL, xc);
	transport_went_up(&x->t, xmpp_conn_is_secured(xc->conn) ? " (TLS)" :
	    "");
}

static void
x_conn_cb(xmpp_conn_t *conn, xmpp_conn_event_t status, int error,
    xmpp_stream_error_t *se, void *arg)
{
	struct xconn	*xc = arg;
	struct xmpp	*x = xc->x;
	char		 why[300];
	int		 was_up, refused;

	(void)conn;
	if (status == XMPP_CONN_DISCONNECT || status == XMPP_CONN_FAIL) {
		xc->closed = 1;
		/* libstrophe has closed the socket: drop it from epoll before
		 * the number is reused. */
		x_conn_events_del(xc);
	}
	if (x->freeing || xc != x->cur)
		return;
	if (status == XMPP_CONN_CONNECT) {
		if (x->t.state == TRANSPORT_CONNECTING)
			x_on_up(x, xc);
		return;
	}
	if (status != XMPP_CONN_DISCONNECT && status != XMPP_CONN_FAIL)
		return;
	was_up = x->t.state == TRANSPORT_UP;
	refused = x_reason(x, error, se, why, sizeof(why));
	x_leave(x, 0);
	x->lasterr[0] = '\0';
	transport_went_down(&x->t, was_up, why, refused);
}

static void
x_start_connect(struct xmpp *x)
{
	struct xconn	*xc;
	long		 flags = XMPP_CONN_FLAG_DISABLE_SM;

	if ((xc = calloc(1, sizeof(*xc))) == NULL ||
	    (xc->conn = xmpp_conn_new(x->ctx)) == NULL) {
		free(xc);
		log_warnx("xmpp: out of memory");
		transport_retry_arm(&x->t);
		return;
	}
	xc->x = x;
	xc->fd = -1;
	LIST_INSERT_HEAD(&x_registry, xc, reg);
	/* Stream management would let a session, and its JID, outlive the
	 * connection: every connection is meant to be a new identity. */
	switch (x->tls) {
	case VEILD_TLS_OFF:
		flags |= XMPP_CONN_FLAG_DISABLE_TLS;
		break;
	case VEILD_TLS_REQUIRED:
		flags |= XMPP_CONN_FLAG_MANDATORY_TLS;
		break;
	case VEILD_TLS_STARTTLS:
		break;
	}
	xmpp_conn_set_flags(xc->conn, flags);
	xmpp_conn_set_jid(xc->conn, x->domain);	/* bare domain: ANONYMOUS */
	xmpp_conn_set_sockopt_callback(xc->conn, x_sockopt);
	x->cur = xc;
	x->t.state = TRANSPORT_CONNECTING;
	x->lasterr[0] = '\0';
	if (xmpp_connect_client(xc->conn, x->host, x->port, x_conn_cb, xc) !=
	    XMPP_EOK) {
		log_warnx("xmpp: cannot connect to %s%s%s",
		    x->host != NULL ? x->host : x->domain,
		    x->lasterr[0] != '\0' ? ": " : "", x->lasterr);
		x->cur = NULL;
		x->t.state = TRANSPORT_DOWN;
		xc->closed = 1;
		LIST_INSERT_HEAD(&x->dead, xc, entry);
		event_active(x->reap_ev, EV_TIMEOUT, 0);
		transport_retry_arm(&x->t);
		return;
	}
	x_kick(x);
}

static void
x_retry(struct transport *t)
{
	struct xmpp	*x = (struct xmpp *)t;

	if (x->want && x->cur == NULL)
		x_start_connect(x);
}

/* transport_pump() has checked the window. */
static int
x_send(struct transport *t, struct transport_pub *p, uint64_t *req)
{
	/* Out of memory: try again at the next answer. */
	return x_send_publish((struct xmpp *)t, p, 0, req) == 0 ? 0 : 1;
}

/* --- operations ------------------------------------------------------------- */

static int
x_op_connect(struct transport *t)
{
	struct xmpp	*x = (struct xmpp *)t;

	if (x->want)
		return 0;
	x->want = 1;
	t->backoff_ms = TRANSPORT_BACKOFF_MIN;
	if (x->cur == NULL)
		x_start_connect(x);
	return 0;
}

static void
x_op_disconnect(struct transport *t)
{
	struct xmpp	*x = (struct xmpp *)t;

	x->want = 0;
	transport_retry_cancel(t);
	x_leave(x, 1);
}

static int
x_op_subscribe(struct transport *t, struct transport_topic *tp)
{
	struct xmpp	*x = (struct xmpp *)t;
	struct xtopic	*xt = (struct xtopic *)tp;

	if (xt->ename == NULL) {
		if ((xt->ename = x_escape(tp->wire)) == NULL)
			return -1;
		TAILQ_INIT(&xt->seenq);
	}
	/* An unsubscribe still in flight is answered first; then this
	 * starts over (the step machine ignores the old answer's id). */
	if (t->state == TRANSPORT_UP) {
		xt->step = TS_CREATE;
		x_topic_next(x, xt);
	}
	return 0;
}

static void
x_op_unsubscribe(struct transport *t, struct transport_topic *tp)
{
	struct xmpp	*x = (struct xmpp *)t;
	struct xtopic	*xt = (struct xtopic *)tp;

	if (t->state == TRANSPORT_UP && xt->step >= TS_SUBSCRIBE)
		x_send_unsubscribe(x, xt);
	/* A step outstanding: x_iq_cb() frees it at the answer. */
	if (tp->req != 0 || xt->delivering)
		xt->step = TS_IDLE;
	else
		transport_topic_free(t, tp);
}

static const char *
x_op_client_id(const struct transport *t)
{
	const struct xmpp	*x = (const struct xmpp *)t;

	if (x->cur == NULL || t->state != TRANSPORT_UP)
		return NULL;
	return xmpp_conn_get_bound_jid(x->cur->conn);
}

static void
x_op_close(struct transport *t, int deliver)
{
	struct xmpp	*x = (struct xmpp *)t;
	struct xconn	*xc;

	(void)deliver;		/* nothing is held back: delivery is synchronous */
	/* No callback from here on, even from libstrophe closing sockets. */
	x->freeing = 1;
	if (x->cur != NULL)
		LIST_INSERT_HEAD(&x->dead, x->cur, entry);
	x->cur = NULL;
	while ((xc = LIST_FIRST(&x->dead)) != NULL) {
		LIST_REMOVE(xc, entry);
		x_conn_free(xc);
	}
	if (x->ctx != NULL)
		xmpp_ctx_free(x->ctx);
	if (x->run_ev != NULL)
		event_free(x->run_ev);
	if (x->reap_ev != NULL)
		event_free(x->reap_ev);
	if (x->tick_ev != NULL)
		event_free(x->tick_ev);
	free(x->domain);
	free(x->host);
	free(x->pubsub);
	free(x->epubsub);
	free(x->jid);
	free(x->rxbuf);
}

static const struct transport_ops x_transport_ops = {
	.name = "xmpp",
	.topic_size = sizeof(struct xtopic),
	.connect = x_op_connect,
	.disconnect = x_op_disconnect,
	.retry = x_retry,
	.restore = x_restore,
	.subscribe = x_op_subscribe,
	.unsubscribe = x_op_unsubscribe,
	.send = x_send,
	.topic_free = x_topic_free,
	.client_id = x_op_client_id,
	.close = x_op_close,
};

/* Safe inside our stanzas' attributes, and nothing a JID would mangle. */
static int
x_valid_name(const char *s)
{
	size_t	 i;

	if (s == NULL || s[0] == '\0' || strlen(s) > 1023)
		return 0;
	for (i = 0; s[i] != '\0'; i++)
		if (s[i] <= 0x20 || s[i] > 0x7e || strchr("\"'<>&@/", s[i]))
			return 0;
	return 1;
}

struct transport *
xmpp_transport_new(const struct veild_config *cfg, struct event_base *base,
    const struct transport_cbs *cbs, void *arg, char *err, size_t errlen)
{
	struct xmpp	*x;

	if (!x_valid_name(cfg->xmpp.domain)) {
		snprintf(err, errlen, "xmpp: need a domain");
		return NULL;
	}
	if (!x_valid_name(cfg->xmpp.pubsub)) {
		snprintf(err, errlen, "xmpp: need a pubsub service");
		return NULL;
	}
	if (cfg->xmpp.host != NULL && !x_valid_name(cfg->xmpp.host)) {
		snprintf(err, errlen, "xmpp: bad host");
		return NULL;
	}
	if (sodium_init() == -1) {
		snprintf(err, errlen, "xmpp: libsodium failed to start");
		return NULL;
	}
	if ((x = calloc(1, sizeof(*x))) == NULL) {
		snprintf(err, errlen, "xmpp: %s", strerror(errno));
		return NULL;
	}
	LIST_INIT(&x->dead);
	/* Node names are the engine's: no prefix. */
	if (transport_init(&x->t, &x_transport_ops, cfg, base, cbs, arg, "",
	    (int)cfg->xmpp.inflight, err, errlen) == -1) {
		transport_free(&x->t);
		return NULL;
	}
	x->port = (unsigned short)cfg->xmpp.port;
	x->tls = cfg->xmpp.tls;
	x->b64len = sodium_base64_encoded_len(x->t.frame_size,
	    sodium_base64_VARIANT_ORIGINAL) - 1;
	x->logger.handler = x_strophe_log;
	x->logger.userdata = x;

	xmpp_initialize();
	x->domain = strdup(cfg->xmpp.domain);
	x->pubsub = strdup(cfg->xmpp.pubsub);
	x->epubsub = x_escape(cfg->xmpp.pubsub);
	/* Without a host libstrophe resolves the domain (SRV, then A). */
	x->host = cfg->xmpp.host != NULL ? strdup(cfg->xmpp.host) : NULL;
	x->rxbuf = malloc(x->t.frame_size);
	x->ctx = xmpp_ctx_new(NULL, &x->logger);
	x->run_ev = event_new(base, -1, 0, x_run_cb, x);
	x->reap_ev = event_new(base, -1, 0, x_reap, x);
	x->tick_ev = evtimer_new(base, x_run_cb, x);
	if (x->domain == NULL || x->pubsub == NULL || x->epubsub == NULL ||
	    (cfg->xmpp.host != NULL && x->host == NULL) || x->rxbuf == NULL ||
	    x->ctx == NULL || x->run_ev == NULL || x->reap_ev == NULL ||
	    x->tick_ev == NULL) {
		snprintf(err, errlen, "xmpp: out of memory");
		transport_free(&x->t);
		return NULL;
	}
	return &x->t;
}
