/* xmpp.c: the XMPP transport driver on libstrophe (SASL ANONYMOUS, XEP-0060 nodes as inboxes). */

/*
 * Identity.  Every connection logs in with SASL ANONYMOUS, so the server
 * hands out a fresh random JID each time; the "client ID" of the transport
 * interface is the connection itself.  set_client_id() only records the
 * wish, the rotation happens because disconnect + connect makes a new
 * connection.  XMPP cannot choose the JID: every reconnect, wanted or
 * not, is a new identity at the server.
 *
 * Inboxes.  A topic is a publish-subscribe node of the same name on the
 * configured service.  On every connect, for every live topic: create the
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
 * Event loop.  libstrophe has no fd accessor and no user pointer in its
 * socket-options callback: a file-level registry maps connection objects to
 * ours, and the callback learns each new socket there.  xmpp_run_once(ctx,
 * 0) runs from read/write events on those sockets, from a deferred event
 * after our own sends, and from a 1 s timer only while a connection is
 * being set up or torn down (libstrophe's connect and disconnect timeouts
 * are timed handlers).  An established idle connection costs no wake-ups;
 * TCP keepalive finds a dead server.  libstrophe reads 4096 bytes per
 * call: after a read on a TLS connection it is called a few more times to
 * empty what OpenSSL has already decrypted.  It uses select(): a socket
 * >= FD_SETSIZE is refused before connect.  Name resolution (SRV, A) and
 * the TLS handshake are blocking inside libstrophe; give xmpp.host as an
 * address to avoid the former.
 */

#define _GNU_SOURCE		/* asprintf, strcasestr */

#include <sys/queue.h>
#include <sys/select.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
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
#include "log.h"
#include "transport.h"

#define XMPP_NS_PUBSUB		"http://jabber.org/protocol/pubsub"
#define XMPP_NS_EVENT		"http://jabber.org/protocol/pubsub#event"
#define XMPP_NS_PAYLOAD		"urn:xmpp:veil:0"
#define XMPP_INFLIGHT_DEFAULT	100
#define XMPP_PORT_DEFAULT	5222
#define XMPP_TICK_MS		1000
#define XMPP_TLS_SPINS		5	/* 16 KiB TLS record / 4096 per call */
#define XMPP_ID_LEN		16
#define XMPP_SEEN_MAX		1024	/* item ids remembered per node */
#define XMPP_FRAME_MAX		(1 << 20)
#define XMPP_KEEPIDLE		60	/* s */
#define XMPP_KEEPINTVL		10
#define XMPP_KEEPCNT		3

enum tstep { TS_IDLE, TS_CREATE, TS_SUBSCRIBE, TS_ITEMS, TS_READY };

struct xtopic {
	TAILQ_ENTRY(xtopic)	 entry;
	char			*name;
	char			*ename;		/* XML-escaped */
	int			 live;
	int			 reported;	/* on_subscribed done */
	enum tstep		 step;		/* on the current connection */
	char			 iqid[XMPP_ID_LEN + 1];
	char			**seen;		/* ring of item ids */
	size_t			 nseen, seenpos;
};
TAILQ_HEAD(xtopic_list, xtopic);

struct xpub {
	TAILQ_ENTRY(xpub)	 entry;
	char			*ename;		/* XML-escaped node */
	char			*b64;
	uint64_t		 cookie;
	int			 created;	/* tried creating the node */
	char			 iqid[XMPP_ID_LEN + 1];
};
TAILQ_HEAD(xpub_list, xpub);

struct xmpp;

struct xconn {
	LIST_ENTRY(xconn)	 entry;		/* x->dead */
	LIST_ENTRY(xconn)	 reg;		/* xmpp_registry */
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

enum xstate { XMPP_DOWN, XMPP_CONNECTING, XMPP_UP };

struct xmpp {
	struct transport	 t;
	struct event_base	*base;
	struct transport_cbs	 cbs;
	void			*arg;
	xmpp_ctx_t		*ctx;
	xmpp_log_t		 logger;

	char			*domain;
	char			*host;
	char			*pubsub;
	char			*epubsub;	/* XML-escaped */
	unsigned short		 port;
	int			 tls;
	int			 window;

	char			 client_id[TRANSPORT_CLIENT_ID_MAX + 1];
	int			 want;		/* connect() without disconnect() */
	struct xconn		*cur;
	struct xconn_list	 dead;		/* closing, released when closed */
	enum xstate		 state;
	int			 backoff_ms;
	int			 ever_up;
	int			 refusal_reported;
	char			 lasterr[256];
	char			*jid;		/* bound full JID, escaped */
	int			 in_run;
	int			 freeing;

	struct event		*run_ev;	/* deferred xmpp_run_once() */
	struct event		*reap_ev;	/* release closed connections */
	struct event		*tick_ev;
	struct event		*retry_ev;

	struct xtopic_list	 topics;
	struct xpub_list	 pending;
	struct xpub_list	 inflight;
	int			 ninflight;
};

/*
 * libstrophe's socket-options callback gets the connection object only:
 * this maps it back.  Loop thread only, like everything in libstrophe.
 */
static struct xconn_list xmpp_registry = LIST_HEAD_INITIALIZER(xmpp_registry);

static void	x_start_connect(struct xmpp *);
static void	x_io(evutil_socket_t, short, void *);
static void	x_pump(struct xmpp *);
static void	x_topic_next(struct xmpp *, struct xtopic *);

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

/* Random, fixed length: IQ ids say nothing and keep stanza sizes equal. */
static void
x_new_id(char id[XMPP_ID_LEN + 1])
{
	static const char	 hex[] = "0123456789abcdef";
	unsigned char		 r[XMPP_ID_LEN / 2];
	size_t			 i;

	randombytes_buf(r, sizeof(r));
	for (i = 0; i < sizeof(r); i++) {
		id[2 * i] = hex[r[i] >> 4];
		id[2 * i + 1] = hex[r[i] & 0xf];
	}
	id[XMPP_ID_LEN] = '\0';
}

static struct xtopic *
x_topic_find(struct xmpp *x, const char *name)
{
	struct xtopic	*tp;

	TAILQ_FOREACH(tp, &x->topics, entry)
		if (strcmp(tp->name, name) == 0)
			return tp;
	return NULL;
}

static void
x_topic_free(struct xmpp *x, struct xtopic *tp)
{
	size_t	 i;

	TAILQ_REMOVE(&x->topics, tp, entry);
	for (i = 0; i < tp->nseen; i++)
		free(tp->seen[i]);
	free(tp->seen);
	free(tp->name);
	free(tp->ename);
	free(tp);
}

/* Returns 1 if id was new (and remembers it). */
static int
x_seen_add(struct xtopic *tp, const char *id)
{
	size_t	 i;
	char	*d;

	for (i = 0; i < tp->nseen; i++)
		if (strcmp(tp->seen[i], id) == 0)
			return 0;
	if ((d = strdup(id)) == NULL)
		return 1;	/* deliver anyway: the engine dedupes */
	if (tp->nseen < XMPP_SEEN_MAX)
		tp->seen[tp->nseen++] = d;
	else {
		free(tp->seen[tp->seenpos]);
		tp->seen[tp->seenpos] = d;
		tp->seenpos = (tp->seenpos + 1) % XMPP_SEEN_MAX;
	}
	return 1;
}

static void
x_pub_free(struct xpub *p)
{
	free(p->ename);
	free(p->b64);
	free(p);
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
	event_assign(&xc->io, xc->x->base, xc->fd, flags, x_io, xc);
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
	if (x->cur != NULL && x->state != XMPP_UP)
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

static void
x_run(struct xmpp *x)
{
	struct xconn	*xc;
	int		 i, spins;

	if (x->in_run || x->freeing)
		return;
	x->in_run = 1;
	/*
	 * A run writes what is queued, then reads and calls handlers, which
	 * may queue more: libstrophe's own stanzas (stream headers, SASL,
	 * bind, </stream:stream>) do not count in xmpp_conn_send_queue_len(),
	 * so no write event would ever flush them.  A second run does.
	 */
	spins = x->cur != NULL && x->state == XMPP_UP &&
	    xmpp_conn_is_secured(x->cur->conn) ? XMPP_TLS_SPINS : 2;
	for (i = 0; i < spins; i++)
		xmpp_run_once(x->ctx, 0);
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
x_xconn_free(struct xconn *xc)
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
		x_xconn_free(xc);
	}
	x_sync_events(x);
}

static int
x_sockopt(xmpp_conn_t *conn, void *sock)
{
	struct xconn	*xc;
	int		 fd = *(int *)sock, on = 1, v;

	LIST_FOREACH(xc, &xmpp_registry, reg)
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

static void	x_send_iq(struct xmpp *, char [XMPP_ID_LEN + 1], xmpp_handler,
		    const char *, const char *, ...)
		    __attribute__((format(printf, 5, 6)));

static void
x_send_iq(struct xmpp *x, char id[XMPP_ID_LEN + 1], xmpp_handler h,
    const char *type, const char *fmt, ...)
{
	va_list	 ap;
	char	*body = NULL, *iq = NULL;
	int	 n;

	x_new_id(id);
	va_start(ap, fmt);
	n = vasprintf(&body, fmt, ap);
	va_end(ap);
	if (n == -1) {
		body = NULL;
		goto fail;
	}
	if ((n = asprintf(&iq, "<iq type=\"%s\" id=\"%s\" to=\"%s\">"
	    "<pubsub xmlns=\"" XMPP_NS_PUBSUB "\">%s</pubsub></iq>", type, id,
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
	return;
fail:
	/* The connection's next life sends it again. */
	log_warnx("xmpp: out of memory");
	free(body);
	id[0] = '\0';
}

static void
x_send_create(struct xmpp *x, char id[XMPP_ID_LEN + 1], xmpp_handler h,
    const char *ename)
{
	x_send_iq(x, id, h, "set", "<create node=\"%s\"/><configure>"
	    "<x xmlns=\"jabber:x:data\" type=\"submit\">"
	    "<field var=\"FORM_TYPE\" type=\"hidden\"><value>"
	    XMPP_NS_PUBSUB "#node_config</value></field>"
	    "<field var=\"pubsub#access_model\"><value>open</value></field>"
	    "<field var=\"pubsub#publish_model\"><value>open</value></field>"
	    "<field var=\"pubsub#persist_items\"><value>1</value></field>"
	    "<field var=\"pubsub#max_items\"><value>max</value></field>"
	    "<field var=\"pubsub#send_last_published_item\"><value>never"
	    "</value></field>"
	    "<field var=\"pubsub#notification_type\"><value>headline"
	    "</value></field></x></configure>", ename);
}

static void
x_send_publish(struct xmpp *x, struct xpub *p, xmpp_handler h)
{
	x_send_iq(x, p->iqid, h, "set", "<publish node=\"%s\"><item>"
	    "<f xmlns=\"" XMPP_NS_PAYLOAD "\">%s</f></item></publish>",
	    p->ename, p->b64);
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

/* Decode one <item> and hand it over if it is new. */
static void
x_deliver_item(struct xmpp *x, struct xtopic *tp, xmpp_stanza_t *item)
{
	xmpp_stanza_t	*pl;
	const char	*id;
	char		*text;
	unsigned char	*bin;
	size_t		 tlen, blen;

	if ((id = xmpp_stanza_get_id(item)) == NULL)
		return;
	for (pl = xmpp_stanza_get_children(item); pl != NULL;
	    pl = xmpp_stanza_get_next(pl))
		if (xmpp_stanza_is_tag(pl))
			break;
	if (pl == NULL || xmpp_stanza_get_ns(pl) == NULL ||
	    strcmp(xmpp_stanza_get_ns(pl), XMPP_NS_PAYLOAD) != 0)
		return;		/* not ours: someone else's item */
	if ((text = xmpp_stanza_get_text(pl)) == NULL)
		return;
	tlen = strlen(text);
	if (tlen > XMPP_FRAME_MAX / 3 * 4 + 4 ||
	    (bin = malloc(tlen / 4 * 3 + 3)) == NULL) {
		xmpp_free(x->ctx, text);
		return;
	}
	if (sodium_base642bin(bin, tlen / 4 * 3 + 3, text, tlen, " \t\r\n",
	    &blen, NULL, sodium_base64_VARIANT_ORIGINAL) != 0) {
		log_debug("xmpp: undecodable item on %s", tp->name);
	} else if (x_seen_add(tp, id))
		x->cbs.on_message(tp->name, bin, blen, x->arg);
	free(bin);
	xmpp_free(x->ctx, text);
}

/* One IQ answer: a publish, or a step of a topic's (re)subscription. */
static int
x_iq_cb(xmpp_conn_t *conn, xmpp_stanza_t *st, void *arg)
{
	struct xconn	*xc = arg;
	struct xmpp	*x = xc->x;
	struct xpub	*p;
	struct xtopic	*tp;
	xmpp_stanza_t	*ps, *items, *it;
	const char	*id, *type;
	int		 ok;

	(void)conn;
	if (x->freeing || xc != x->cur || x->state != XMPP_UP)
		return 0;
	if ((id = xmpp_stanza_get_id(st)) == NULL)
		return 0;
	type = xmpp_stanza_get_type(st);
	ok = type != NULL && strcmp(type, "result") == 0;

	TAILQ_FOREACH(p, &x->inflight, entry)
		if (strcmp(p->iqid, id) == 0)
			break;
	if (p != NULL) {
		if (!ok && !p->created &&
		    strcmp(x_error_condition(st), "item-not-found") == 0) {
			/* The peer has not subscribed yet: make the node, so
			 * the frame waits there for it. */
			char	 cid[XMPP_ID_LEN + 1];

			p->created = 1;
			x_send_create(x, cid, NULL, p->ename);
			x_send_publish(x, p, x_iq_cb);
			return 0;
		}
		TAILQ_REMOVE(&x->inflight, p, entry);
		x->ninflight--;
		if (!ok)
			log_warnx("xmpp: publish refused: %s",
			    x_error_condition(st));
		x->cbs.on_published(p->cookie, ok, x->arg);
		x_pub_free(p);
		x_pump(x);
		return 0;
	}

	TAILQ_FOREACH(tp, &x->topics, entry)
		if (strcmp(tp->iqid, id) == 0)
			break;
	if (tp == NULL)
		return 0;
	tp->iqid[0] = '\0';
	switch (tp->step) {
	case TS_CREATE:
		/* conflict: it exists; forbidden: not ours to create.  The
		 * subscribe says whether the node is usable. */
		if (!ok)
			log_debug("xmpp: create %s: %s", tp->name,
			    x_error_condition(st));
		tp->step = TS_SUBSCRIBE;
		x_topic_next(x, tp);
		break;
	case TS_SUBSCRIBE:
		if (!ok) {
			log_warnx("xmpp: subscription refused: %s",
			    x_error_condition(st));
			tp->step = TS_IDLE;
		} else
			tp->step = TS_ITEMS;
		if (tp->live && !tp->reported) {
			tp->reported = 1;
			x->cbs.on_subscribed(tp->name, ok, x->arg);
		}
		if (ok)
			x_topic_next(x, tp);
		break;
	case TS_ITEMS:
		tp->step = TS_READY;
		if (!ok || !tp->live)
			break;
		if ((ps = xmpp_stanza_get_child_by_ns(st, XMPP_NS_PUBSUB)) ==
		    NULL || (items = xmpp_stanza_get_child_by_name(ps,
		    "items")) == NULL)
			break;
		for (it = xmpp_stanza_get_children(items); it != NULL;
		    it = xmpp_stanza_get_next(it)) {
			if (!xmpp_stanza_is_tag(it) ||
			    strcmp(xmpp_stanza_get_name(it), "item") != 0)
				continue;
			x_deliver_item(x, tp, it);
			/* The callback may have unsubscribed. */
			if (!tp->live)
				break;
		}
		break;
	default:
		break;
	}
	/* Unsubscribed meanwhile and nothing outstanding: forget it. */
	if (!tp->live && tp->iqid[0] == '\0' && tp->step != TS_SUBSCRIBE)
		x_topic_free(x, tp);
	return 0;
}

/* Send the IQ for the topic's current step. */
static void
x_topic_next(struct xmpp *x, struct xtopic *tp)
{
	switch (tp->step) {
	case TS_CREATE:
		x_send_create(x, tp->iqid, x_iq_cb, tp->ename);
		break;
	case TS_SUBSCRIBE:
		x_send_iq(x, tp->iqid, x_iq_cb, "set",
		    "<subscribe node=\"%s\" jid=\"%s\"/>", tp->ename, x->jid);
		break;
	case TS_ITEMS:
		x_send_iq(x, tp->iqid, x_iq_cb, "get", "<items node=\"%s\"/>",
		    tp->ename);
		break;
	default:
		break;
	}
}

static void
x_send_unsubscribe(struct xmpp *x, struct xtopic *tp)
{
	char	 id[XMPP_ID_LEN + 1];

	x_send_iq(x, id, NULL, "set", "<unsubscribe node=\"%s\" jid=\"%s\"/>",
	    tp->ename, x->jid);
}

static int
x_message_cb(xmpp_conn_t *conn, xmpp_stanza_t *st, void *arg)
{
	struct xconn	*xc = arg;
	struct xmpp	*x = xc->x;
	struct xtopic	*tp;
	xmpp_stanza_t	*ev, *items, *it;
	const char	*from, *node;

	(void)conn;
	if (x->freeing || xc != x->cur || x->state != XMPP_UP)
		return 1;
	/* Only the service may speak for its nodes. */
	if ((from = xmpp_stanza_get_from(st)) == NULL ||
	    strcmp(from, x->pubsub) != 0)
		return 1;
	if ((ev = xmpp_stanza_get_child_by_ns(st, XMPP_NS_EVENT)) == NULL ||
	    (items = xmpp_stanza_get_child_by_name(ev, "items")) == NULL ||
	    (node = xmpp_stanza_get_attribute(items, "node")) == NULL)
		return 1;
	/* After unsubscribe() nothing more is delivered. */
	if ((tp = x_topic_find(x, node)) == NULL || !tp->live) {
		log_debug("xmpp: dropped an event for %s", node);
		return 1;
	}
	for (it = xmpp_stanza_get_children(items); it != NULL;
	    it = xmpp_stanza_get_next(it)) {
		if (!xmpp_stanza_is_tag(it) ||
		    strcmp(xmpp_stanza_get_name(it), "item") != 0)
			continue;
		x_deliver_item(x, tp, it);
		if (x->freeing || xc != x->cur || !tp->live)
			break;
	}
	return 1;
}

/* --- connection life ----------------------------------------------------------- */

/* Unacknowledged publishes go back in front, in order. */
static void
x_requeue_inflight(struct xmpp *x)
{
	struct xpub	*p;

	while ((p = TAILQ_LAST(&x->inflight, xpub_list)) != NULL) {
		TAILQ_REMOVE(&x->inflight, p, entry);
		p->iqid[0] = '\0';
		p->created = 0;
		TAILQ_INSERT_HEAD(&x->pending, p, entry);
	}
	x->ninflight = 0;
}

/* Topics restart from scratch on the next connection; dead ones go. */
static void
x_reset_topics(struct xmpp *x)
{
	struct xtopic	*tp, *ttp;

	TAILQ_FOREACH_SAFE(tp, &x->topics, entry, ttp) {
		tp->iqid[0] = '\0';
		tp->step = TS_IDLE;
		if (!tp->live)
			x_topic_free(x, tp);
	}
}

/* Leave the current connection: politely if it is up. */
static void
x_retire(struct xmpp *x, int polite)
{
	struct xconn	*xc = x->cur;
	struct xtopic	*tp;

	if (xc == NULL)
		return;
	if (polite && x->state == XMPP_UP) {
		/* Else the node keeps a subscriber that no longer exists. */
		TAILQ_FOREACH(tp, &x->topics, entry)
			if (tp->step >= TS_ITEMS)
				x_send_unsubscribe(x, tp);
	}
	x->cur = NULL;
	x->state = XMPP_DOWN;
	free(x->jid);
	x->jid = NULL;
	x_requeue_inflight(x);
	x_reset_topics(x);
	LIST_INSERT_HEAD(&x->dead, xc, entry);
	/* Queues </stream:stream> behind our stanzas; may call x_conn_cb(),
	 * which ignores a connection that is not current. */
	if (!xc->closed)
		xmpp_disconnect(xc->conn);
	x_kick(x);
}

static const char *
x_reason(struct xmpp *x, int error, xmpp_stream_error_t *se, char *buf,
    size_t len)
{
	if (strcasestr(x->lasterr, "anonymous") != NULL ||
	    (se != NULL && se->type == XMPP_SE_NOT_AUTHORIZED))
		snprintf(buf, len, "server does not allow anonymous login");
	else if (se != NULL)
		snprintf(buf, len, "stream error%s%s",
		    se->text != NULL ? ": " : "", se->text != NULL ? se->text : "");
	else if (error != 0)
		snprintf(buf, len, "connection failed: %s", strerror(error));
	else if (x->lasterr[0] != '\0')
		snprintf(buf, len, "connection closed: %s", x->lasterr);
	else
		snprintf(buf, len, "connection closed");
	return buf;
}

static void
x_on_up(struct xmpp *x, struct xconn *xc)
{
	struct xtopic	*tp;
	const char	*jid;

	if ((jid = xmpp_conn_get_bound_jid(xc->conn)) == NULL ||
	    (x->jid = x_escape(jid)) == NULL) {
		log_warnx("xmpp: no bound JID");
		x_retire(x, 0);
		transport_backoff(x->retry_ev, &x->backoff_ms);
		return;
	}
	evtimer_del(x->retry_ev);
	x->state = XMPP_UP;
	x->backoff_ms = TRANSPORT_BACKOFF_MIN;
	x->ever_up = 1;
	x->refusal_reported = 0;
	x->lasterr[0] = '\0';
	log_info("xmpp: connected%s", xmpp_conn_is_secured(xc->conn) ?
	    " (TLS)" : "");
	log_debug("xmpp: bound to %s", jid);
	xmpp_handler_add(xc->conn, x_message_cb, NULL, "message", NULL, xc);
	/* Subscriptions first, then the queue: the server handles them in
	 * stream order. */
	TAILQ_FOREACH(tp, &x->topics, entry) {
		if (!tp->live)
			continue;
		tp->step = TS_CREATE;
		x_topic_next(x, tp);
	}
	x_pump(x);
	x->cbs.on_state(1, "connected", x->arg);
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
		if (x->state == XMPP_CONNECTING)
			x_on_up(x, xc);
		return;
	}
	if (status != XMPP_CONN_DISCONNECT && status != XMPP_CONN_FAIL)
		return;
	was_up = x->state == XMPP_UP;
	x_reason(x, error, se, why, sizeof(why));
	refused = strstr(why, "anonymous") != NULL;
	x_retire(x, 0);
	x->lasterr[0] = '\0';
	transport_log_down(&x->t, was_up, x->ever_up, why);
	if (refused && x->backoff_ms < 5000)
		x->backoff_ms = 5000;	/* will not change soon */
	transport_backoff(x->retry_ev, &x->backoff_ms);
	if (was_up || (refused && !x->refusal_reported)) {
		x->refusal_reported = refused;
		x->cbs.on_state(0, why, x->arg);
	}
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
		transport_backoff(x->retry_ev, &x->backoff_ms);
		return;
	}
	xc->x = x;
	xc->fd = -1;
	LIST_INSERT_HEAD(&xmpp_registry, xc, reg);
	/* Stream management would let a session, and its JID, outlive the
	 * connection: every connection is meant to be a new identity. */
	if (x->tls == 1)
		flags |= XMPP_CONN_FLAG_MANDATORY_TLS;
	xmpp_conn_set_flags(xc->conn, flags);
	xmpp_conn_set_jid(xc->conn, x->domain);	/* bare domain: ANONYMOUS */
	xmpp_conn_set_sockopt_callback(xc->conn, x_sockopt);
	x->cur = xc;
	x->state = XMPP_CONNECTING;
	x->lasterr[0] = '\0';
	if (xmpp_connect_client(xc->conn, x->host, x->port, x_conn_cb, xc) !=
	    XMPP_EOK) {
		log_warnx("xmpp: cannot connect to %s%s%s",
		    x->host != NULL ? x->host : x->domain,
		    x->lasterr[0] != '\0' ? ": " : "", x->lasterr);
		x->cur = NULL;
		x->state = XMPP_DOWN;
		xc->closed = 1;
		LIST_INSERT_HEAD(&x->dead, xc, entry);
		event_active(x->reap_ev, EV_TIMEOUT, 0);
		transport_backoff(x->retry_ev, &x->backoff_ms);
		return;
	}
	x_kick(x);
}

static void
x_retry(evutil_socket_t fd, short what, void *arg)
{
	struct xmpp	*x = arg;

	(void)fd;
	(void)what;
	if (x->want && x->cur == NULL)
		x_start_connect(x);
}

/* Hand the server the next publishes, up to the window. */
static void
x_pump(struct xmpp *x)
{
	struct xpub	*p;

	while (x->state == XMPP_UP && x->ninflight < x->window &&
	    (p = TAILQ_FIRST(&x->pending)) != NULL) {
		x_send_publish(x, p, x_iq_cb);
		if (p->iqid[0] == '\0')
			return;		/* out of memory: try at next answer */
		TAILQ_REMOVE(&x->pending, p, entry);
		TAILQ_INSERT_TAIL(&x->inflight, p, entry);
		x->ninflight++;
	}
}

/* --- operations ------------------------------------------------------------- */

static int
xmpp_op_connect(struct transport *t)
{
	struct xmpp	*x = (struct xmpp *)t;

	if (x->client_id[0] == '\0') {
		log_warnx("xmpp: connect without a client ID");
		return -1;
	}
	if (x->want)
		return 0;
	x->want = 1;
	x->backoff_ms = TRANSPORT_BACKOFF_MIN;
	if (x->cur == NULL)
		x_start_connect(x);
	return 0;
}

static void
xmpp_op_disconnect(struct transport *t)
{
	struct xmpp	*x = (struct xmpp *)t;

	x->want = 0;
	evtimer_del(x->retry_ev);
	x_retire(x, 1);
}

static int
xmpp_op_subscribe(struct transport *t, const char *topic)
{
	struct xmpp	*x = (struct xmpp *)t;
	struct xtopic	*tp;

	if ((tp = x_topic_find(x, topic)) == NULL) {
		if ((tp = calloc(1, sizeof(*tp))) == NULL ||
		    (tp->name = strdup(topic)) == NULL ||
		    (tp->ename = x_escape(topic)) == NULL ||
		    (tp->seen = calloc(XMPP_SEEN_MAX, sizeof(*tp->seen))) ==
		    NULL) {
			if (tp != NULL) {
				free(tp->name);
				free(tp->ename);
			}
			free(tp);
			log_warn("xmpp");
			return -1;
		}
		TAILQ_INSERT_TAIL(&x->topics, tp, entry);
	}
	if (tp->live)
		return 0;
	tp->live = 1;
	tp->reported = 0;
	/* An unsubscribe still in flight is answered first; then this
	 * starts over (the step machine ignores the old answer's id). */
	if (x->state == XMPP_UP) {
		tp->step = TS_CREATE;
		x_topic_next(x, tp);
	}
	return 0;
}

static int
xmpp_op_unsubscribe(struct transport *t, const char *topic)
{
	struct xmpp	*x = (struct xmpp *)t;
	struct xtopic	*tp;

	if ((tp = x_topic_find(x, topic)) == NULL || !tp->live)
		return 0;
	tp->live = 0;
	tp->reported = 0;
	if (x->state == XMPP_UP && tp->step >= TS_SUBSCRIBE)
		x_send_unsubscribe(x, tp);
	if (tp->iqid[0] == '\0') {
		x_topic_free(x, tp);
		return 0;
	}
	/* A step is outstanding: x_iq_cb() frees it at the answer. */
	tp->step = TS_IDLE;
	return 0;
}

static int
xmpp_op_publish(struct transport *t, const char *topic, const void *buf,
    size_t len, uint64_t cookie)
{
	struct xmpp	*x = (struct xmpp *)t;
	struct xpub	*p;
	size_t		 blen;

	if (len == 0 || len > XMPP_FRAME_MAX || buf == NULL) {
		log_warnx("xmpp: publish: bad payload");
		return -1;
	}
	blen = sodium_base64_encoded_len(len, sodium_base64_VARIANT_ORIGINAL);
	if ((p = calloc(1, sizeof(*p))) == NULL ||
	    (p->ename = x_escape(topic)) == NULL ||
	    (p->b64 = malloc(blen)) == NULL) {
		if (p != NULL)
			free(p->ename);
		free(p);
		log_warn("xmpp");
		return -1;
	}
	sodium_bin2base64(p->b64, blen, buf, len,
	    sodium_base64_VARIANT_ORIGINAL);
	p->cookie = cookie;
	TAILQ_INSERT_TAIL(&x->pending, p, entry);
	x_pump(x);
	return 0;
}

static int
xmpp_op_set_client_id(struct transport *t, const char *id)
{
	struct xmpp	*x = (struct xmpp *)t;

	/* Only recorded: the server picks the JID, anew at every connect.
	 * transport_set_client_id() has checked that it fits. */
	memcpy(x->client_id, id, strlen(id) + 1);
	return 0;
}

static void
xmpp_op_free(struct transport *t)
{
	struct xmpp	*x = (struct xmpp *)t;
	struct xconn	*xc;
	struct xtopic	*tp;
	struct xpub	*p;

	/* No callback from here on, even from libstrophe closing sockets. */
	x->freeing = 1;
	if (x->cur != NULL)
		LIST_INSERT_HEAD(&x->dead, x->cur, entry);
	x->cur = NULL;
	while ((xc = LIST_FIRST(&x->dead)) != NULL) {
		LIST_REMOVE(xc, entry);
		x_xconn_free(xc);
	}
	if (x->ctx != NULL)
		xmpp_ctx_free(x->ctx);
	if (x->run_ev != NULL)
		event_free(x->run_ev);
	if (x->reap_ev != NULL)
		event_free(x->reap_ev);
	if (x->tick_ev != NULL)
		event_free(x->tick_ev);
	if (x->retry_ev != NULL)
		event_free(x->retry_ev);
	while ((tp = TAILQ_FIRST(&x->topics)) != NULL)
		x_topic_free(x, tp);
	while ((p = TAILQ_FIRST(&x->pending)) != NULL) {
		TAILQ_REMOVE(&x->pending, p, entry);
		x_pub_free(p);
	}
	while ((p = TAILQ_FIRST(&x->inflight)) != NULL) {
		TAILQ_REMOVE(&x->inflight, p, entry);
		x_pub_free(p);
	}
	free(x->domain);
	free(x->host);
	free(x->pubsub);
	free(x->epubsub);
	free(x->jid);
	free(x);
}

static const struct transport_ops xmpp_transport_ops = {
	.connect = xmpp_op_connect,
	.disconnect = xmpp_op_disconnect,
	.subscribe = xmpp_op_subscribe,
	.unsubscribe = xmpp_op_unsubscribe,
	.publish = xmpp_op_publish,
	.set_client_id = xmpp_op_set_client_id,
	.free = xmpp_op_free,
};

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
xmpp_transport_new(struct event_base *base, const struct transport_config *cfg,
    const struct transport_cbs *cbs, void *arg, char *err, size_t errlen)
{
	struct xmpp	*x;

	if (!x_valid_name(cfg->xmpp_domain)) {
		snprintf(err, errlen, "xmpp: need a domain");
		return NULL;
	}
	if (!x_valid_name(cfg->xmpp_pubsub)) {
		snprintf(err, errlen, "xmpp: need a pubsub service");
		return NULL;
	}
	if (cfg->xmpp_host != NULL && !x_valid_name(cfg->xmpp_host)) {
		snprintf(err, errlen, "xmpp: bad host");
		return NULL;
	}
	if (cfg->xmpp_port > 65535) {
		snprintf(err, errlen, "xmpp: bad port %u", cfg->xmpp_port);
		return NULL;
	}
	if (cfg->inflight > 65535) {
		snprintf(err, errlen, "xmpp: in-flight window over 65535");
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
	x->t.ops = &xmpp_transport_ops;
	x->t.name = "xmpp";
	x->base = base;
	x->cbs = *cbs;
	x->arg = arg;
	x->port = cfg->xmpp_port == 0 ? XMPP_PORT_DEFAULT :
	    (unsigned short)cfg->xmpp_port;
	x->tls = cfg->xmpp_tls;
	x->window = cfg->inflight == 0 ? XMPP_INFLIGHT_DEFAULT :
	    (int)cfg->inflight;
	x->backoff_ms = TRANSPORT_BACKOFF_MIN;
	x->state = XMPP_DOWN;
	TAILQ_INIT(&x->topics);
	TAILQ_INIT(&x->pending);
	TAILQ_INIT(&x->inflight);
	LIST_INIT(&x->dead);
	x->logger.handler = x_strophe_log;
	x->logger.userdata = x;

	xmpp_initialize();
	x->domain = strdup(cfg->xmpp_domain);
	x->pubsub = strdup(cfg->xmpp_pubsub);
	x->epubsub = x_escape(cfg->xmpp_pubsub);
	/* Without a host libstrophe resolves the domain (SRV, then A). */
	x->host = cfg->xmpp_host != NULL ? strdup(cfg->xmpp_host) : NULL;
	x->ctx = xmpp_ctx_new(NULL, &x->logger);
	x->run_ev = event_new(base, -1, 0, x_run_cb, x);
	x->reap_ev = event_new(base, -1, 0, x_reap, x);
	x->tick_ev = evtimer_new(base, x_run_cb, x);
	x->retry_ev = evtimer_new(base, x_retry, x);
	if (x->domain == NULL || x->pubsub == NULL || x->epubsub == NULL ||
	    (cfg->xmpp_host != NULL && x->host == NULL) || x->ctx == NULL ||
	    x->run_ev == NULL || x->reap_ev == NULL || x->tick_ev == NULL ||
	    x->retry_ev == NULL) {
		snprintf(err, errlen, "xmpp: out of memory");
		xmpp_op_free(&x->t);
		return NULL;
	}
	return &x->t;
}
