/* xmpp_conn.c: libstrophe connections inside the libevent loop: the socket registry, running the library, connecting, leaving, and why a connection ended. */

/*
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

#define _GNU_SOURCE		/* strcasestr */

#include <sys/ioctl.h>
#include <sys/queue.h>
#include <sys/select.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include <strophe.h>

#include "compat.h"
#include "config.h"
#include "log.h"
#include "transport_tls.h"
#include "xmpp_int.h"

/*
 * libstrophe's socket-options callback gets the connection object only:
 * this maps it back.  Loop thread only, like everything in libstrophe.
 */
static struct xconn_list x_registry = LIST_HEAD_INITIALIZER(x_registry);

static void	x_io(evutil_socket_t, short, void *);


/* --- libevent <-> libstrophe ------------------------------------------------- */

void
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
void
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
			tv.tv_sec = X_TICK_MS / 1000;
			tv.tv_usec = (X_TICK_MS % 1000) * 1000;
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
	 * the server's next word.  So run until X_TLS_SPINS runs in a row
	 * found the socket empty before and after (they drain a record), or
	 * X_SPINS_MAX, and then go on from a deferred event.
	 */
	if (x->cur != NULL && xmpp_conn_is_secured(x->cur->conn)) {
		for (i = quiet = 0; x->cur != NULL && quiet < X_TLS_SPINS;
		    i++) {
			if (i == X_SPINS_MAX) {
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

void
x_run_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	x_run(arg);
}

void
x_conn_free(struct xconn *xc)
{
	x_conn_events_del(xc);
	LIST_REMOVE(xc, reg);
	xmpp_conn_release(xc->conn);
	free(xc);
}

/* Outside any libstrophe call and any of the connection's own events. */
void
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

int
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
	v = X_KEEPIDLE;
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &v, sizeof(v));
	v = X_KEEPINTVL;
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &v, sizeof(v));
	v = X_KEEPCNT;
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &v, sizeof(v));
	xc->fd = fd;
	xc->tcp_pending = 1;
	x_conn_events_set(xc, 1);
	return 0;
}

void
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

/* --- connection life ----------------------------------------------------------- */

/* Topics restart from scratch on the next connection; dead ones go. */
void
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
void
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
	char	 tls[256];

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
	/* transport_tls.c's verdict (the certificate and why, a key that
	 * is not pinned), else libstrophe's "No certfail handler set,
	 * canceling connection attempt" after OpenSSL refused the chain. */
	transport_tls_take_error(x->domain, tls, sizeof(tls));
	if (tls[0] != '\0') {
		snprintf(buf, len, "TLS: %s", tls);
		return 1;
	}
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
	/* Up once the service has said what it does (x_disco_cb). */
	if (x_send_disco(x) == -1) {
		x_leave(x, 0);
		transport_retry_arm(&x->t);
	}
}

/* No answer to disco#info: the connection is given up and tried again
 * later, rather than left connecting for ever. */
int
x_disco_timeout(xmpp_conn_t *conn, void *arg)
{
	struct xconn	*xc = arg;
	struct xmpp	*x = xc->x;
	char		 why[300];

	(void)conn;
	if (x->freeing || xc != x->cur || x->t.state != TRANSPORT_CONNECTING)
		return 0;
	snprintf(why, sizeof(why), "%s did not answer disco#info within %d s",
	    x->pubsub, X_DISCO_WAIT_MS / 1000);
	x_leave(x, 0);
	transport_went_down(&x->t, 0, why, 0);
	return 0;
}

/*
 * The answer to x_send_disco(): whatever it says (an error included),
 * the connection is up now.  Only the auto-create feature is looked for,
 * in at most X_FEATURES_MAX children.
 */
int
x_disco_cb(xmpp_conn_t *conn, xmpp_stanza_t *st, void *arg)
{
	struct xconn	*xc = arg;
	struct xmpp	*x = xc->x;
	xmpp_stanza_t	*q, *c;
	const char	*name, *var;
	unsigned int	 n = 0;

	xmpp_timed_handler_delete(conn, x_disco_timeout);
	if (x->freeing || xc != x->cur || x->t.state != TRANSPORT_CONNECTING)
		return 0;
	x->autocreate = 0;
	if ((q = xmpp_stanza_get_child_by_ns(st, X_NS_DISCO_INFO)) != NULL)
		for (c = xmpp_stanza_get_children(q);
		    c != NULL && n < X_FEATURES_MAX;
		    c = xmpp_stanza_get_next(c), n++)
			if (xmpp_stanza_is_tag(c) &&
			    (name = xmpp_stanza_get_name(c)) != NULL &&
			    strcmp(name, "feature") == 0 &&
			    (var = xmpp_stanza_get_attribute(c, "var")) != NULL &&
			    strcmp(var, X_NS_PUBSUB "#auto-create") == 0)
				x->autocreate = 1;
	log_debug("xmpp: %s %s nodes on publish", x->pubsub,
	    x->autocreate ? "creates" : "does not create");
	transport_went_up(&x->t, xmpp_conn_is_secured(xc->conn) ? " (TLS)" :
	    "");
	return 0;
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

void
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
	case VEILD_TLS_DIRECT:
		flags |= XMPP_CONN_FLAG_LEGACY_SSL;
		break;
	case VEILD_TLS_STARTTLS:
		break;
	}
	if (x->tls != VEILD_TLS_OFF && !x->tls_verify)
		flags |= XMPP_CONN_FLAG_TRUST_TLS;
	xmpp_conn_set_flags(xc->conn, flags);
	if (x->ca_file != NULL)
		xmpp_conn_set_cafile(xc->conn, x->ca_file);
	if (x->ca_path != NULL)
		xmpp_conn_set_capath(xc->conn, x->ca_path);
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

void
x_retry(struct transport *t)
{
	struct xmpp	*x = (struct xmpp *)t;

	if (x->want && x->cur == NULL)
		x_start_connect(x);
}
