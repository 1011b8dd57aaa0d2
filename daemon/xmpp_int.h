/* xmpp_int.h: what the XMPP driver's files (xmpp.c, xmpp_conn.c, xmpp_pubsub.c) share.  Names: x_* are the driver's, xmpp_* libstrophe's. */
#ifndef VEILD_XMPP_INT_H
#define VEILD_XMPP_INT_H

#include <sys/queue.h>

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include <strophe.h>

#include "config.h"
#include "transport_driver.h"

#define X_NS_PUBSUB		"http://jabber.org/protocol/pubsub"
#define X_NS_EVENT		"http://jabber.org/protocol/pubsub#event"
#define X_NS_PAYLOAD		"urn:xmpp:veil:0"
#define X_NS_DISCO_INFO		"http://jabber.org/protocol/disco#info"
#define X_TICK_MS		1000
#define X_TLS_SPINS		5	/* 16 KiB TLS record / 4096 per call */
#define X_SPINS_MAX		64	/* per run: 256 KiB, then the loop */
#define X_ID_LEN		16	/* hex digits of a 64-bit request */
#define X_SEEN_MAX		1024	/* item ids remembered per node */
#define X_ITEM_ID_MAX	64	/* prosody's are UUIDs, 36 bytes */
#define X_ITEMS_MAX		X_SEEN_MAX	/* looked at per stanza */
#define X_CREATE_TRIES	10	/* ejabberd aborts racing creates */
#define X_FEATURES_MAX	256	/* disco#info children looked at */
#define X_DISCO_WAIT_MS	15000	/* for the answer to disco#info */
#define X_FLUSH_MS		250	/* a retired connection's last stanzas */
#define X_KEEPIDLE		60	/* s */
#define X_KEEPINTVL		10
#define X_KEEPCNT		3

#define XP_CREATED		0x1	/* publish: tried creating the node */
#define XP_CREATING		0x2	/* its create is the request in flight */
#define XP_TRY			0x100	/* one more create that hit a server error */
#define XP_TRIES(p)		((p)->flags / XP_TRY)

enum tstep { TS_IDLE, TS_CREATE, TS_SUBSCRIBE, TS_ITEMS, TS_READY };

struct xseen {
	TAILQ_ENTRY(xseen)	 entry;		/* oldest first */
	struct hlink	 link;
	char			 id[];
};
TAILQ_HEAD(xseen_list, xseen);

struct xtopic {
	struct transport_topic	 tt;		/* first: transport.c's part */
	char			*ename;		/* XML-escaped; NULL: not set up */
	enum tstep		 step;		/* on the current connection */
	int			 delivering;	/* on_message calls under way */
	int			 tries;		/* creates that hit a server error */
	struct htab	 seen;
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
	int			 tls_verify;	/* xmpp.tls_verify */
	char			*ca_file;
	char			*ca_path;
	size_t			 b64len;	/* of one frame, padded */
	unsigned char		*rxbuf;		/* one decoded frame */

	int			 want;		/* connect() without disconnect() */
	struct xconn		*cur;
	struct xconn_list	 dead;		/* closing, released when closed */
	char			 lasterr[256];
	char			*jid;		/* bound full JID, escaped */
	int			 autocreate;	/* the service creates on publish */
	int			 in_run;
	int			 freeing;

	struct event		*run_ev;	/* deferred xmpp_run_once() */
	struct event		*reap_ev;	/* release closed connections */
	struct event		*tick_ev;
};

/* --- xmpp_conn.c: libstrophe connections inside the libevent loop ------- */
void	x_kick(struct xmpp *);
void	x_run_cb(evutil_socket_t, short, void *);
void	x_reap(evutil_socket_t, short, void *);
void	x_sync_events(struct xmpp *);
void	x_conn_free(struct xconn *);
int	x_sockopt(xmpp_conn_t *, void *);
void	x_strophe_log(void *, xmpp_log_level_t, const char *, const char *);
void	x_reset_topics(struct xmpp *);
void	x_leave(struct xmpp *, int polite);
void	x_start_connect(struct xmpp *);
void	x_retry(struct transport *);
int	x_disco_cb(xmpp_conn_t *, xmpp_stanza_t *, void *);
int	x_disco_timeout(xmpp_conn_t *, void *);

/* --- xmpp_pubsub.c: the XEP-0060 steps ------------------------------------- */
char	*x_escape(const char *);
void	x_topic_free(struct transport_topic *);
void	x_topic_gc(struct xmpp *, struct xtopic *);
int	x_send_iq(struct xmpp *, uint64_t *, xmpp_handler, const char *,
	    const char *, ...) __attribute__((format(printf, 5, 6)));
int	x_iq_cb(xmpp_conn_t *, xmpp_stanza_t *, void *);
int	x_send_disco(struct xmpp *);
void	x_topic_next(struct xmpp *, struct xtopic *);
void	x_send_unsubscribe(struct xmpp *, struct xtopic *);
int	x_message_cb(xmpp_conn_t *, xmpp_stanza_t *, void *);
void	x_restore(struct transport *);
int	x_send(struct transport *, struct transport_pub *, uint64_t *);

#endif /* VEILD_XMPP_INT_H */
