/* transport_driver.h: what a transport driver implements, and the parts every driver shares (transport.c). */
#ifndef VEILD_TRANSPORT_DRIVER_H
#define VEILD_TRANSPORT_DRIVER_H

/*
 * A driver embeds struct transport first in its own and keeps only its
 * connection mechanics.  The topic registry, the publish queue with its
 * window, and reconnecting with backoff live in transport.c and are the
 * same for every driver.  Everything here runs on the loop thread.
 */

#include <sys/queue.h>

#include <stddef.h>
#include <stdint.h>

#include "htab.h"
#include "transport.h"

struct event;

#define TRANSPORT_BACKOFF_MIN	500	/* ms: first reconnect delay */
#define TRANSPORT_BACKOFF_MAX	30000	/* ms */
#define TRANSPORT_REFUSED_MIN	5000	/* ms: after a refusal that stays */
#define TRANSPORT_FRAME_MAX	(1 << 20)

/* --- the shared state ------------------------------------------------------- */

/* A topic; a driver's record starts with one (ops->topic_size). */
struct transport_topic {
	TAILQ_ENTRY(transport_topic)	 entry;
	struct hlink		 byname;
	struct hlink		 byreq;
	char				*wire;	/* the server's name: prefix + name */
	const char			*name;	/* the engine's, inside wire */
	int				 live;	/* 0: still to leave at the server */
	int				 reported; /* on_subscribed done */
	uint64_t			 req;	/* outstanding request, 0: none */
};
TAILQ_HEAD(transport_topic_list, transport_topic);

struct transport_pub {
	TAILQ_ENTRY(transport_pub)	 entry;
	struct hlink		 byreq;
	char				*wire;	/* the topic as the server knows it */
	void				*buf;
	size_t				 len;
	uint64_t			 cookie;
	uint64_t			 req;	/* in flight: its request */
	int				 flags;	/* the driver's; 0 when requeued */
};
TAILQ_HEAD(transport_pub_list, transport_pub);

enum transport_state {
	TRANSPORT_DOWN,
	TRANSPORT_CONNECTING,
	TRANSPORT_UP
};

/*
 * What a driver does.  transport.c calls these only with arguments it has
 * checked, and only from the loop thread.
 */
struct transport_ops {
	const char	*name;
	size_t		 topic_size;	/* >= sizeof(struct transport_topic) */
	/* transport_connect(), with a client ID set; once only until the
	 * next disconnect. */
	int	(*connect)(struct transport *);
	void	(*disconnect)(struct transport *);
	/* The backoff timer ran out: try again if still wanted. */
	void	(*retry)(struct transport *);
	/* From transport_went_up(): subscribe again what is live. */
	void	(*restore)(struct transport *);
	/* tp just became live (new, or unsubscribed before): subscribe it if
	 * up.  -1: out of memory, tp is undone by the caller. */
	int	(*subscribe)(struct transport *, struct transport_topic *);
	/* tp just stopped being live: leave it at the server if up.  May
	 * free tp (transport_topic_free()). */
	void	(*unsubscribe)(struct transport *, struct transport_topic *);
	/* Up, and the window has room: hand p to the server.  0: sent, *req
	 * is its request; 1: not now (the next answer or connect pumps
	 * again); -1: never (on_published(0) follows from the loop). */
	int	(*send)(struct transport *, struct transport_pub *, uint64_t *req);
	/* Optional: free what the driver added to a topic record. */
	void	(*topic_free)(struct transport_topic *);
	/* Optional: see transport.h; NULL means ignored. */
	int	(*set_session_expiry)(struct transport *, uint32_t);
	int	(*set_credentials)(struct transport *, const char *,
		    const char *);
	const char *(*client_id)(const struct transport *);
	/* Release the connection and the driver's own parts (not struct
	 * transport's); deliver: transport_retire(). */
	void	(*close)(struct transport *, int deliver);
};

struct transport {
	const struct transport_ops	*ops;
	struct event_base		*base;
	struct transport_cbs		 cbs;
	void				*arg;
	size_t				 frame_size;
	char				*prefix;	/* before every wire name */
	size_t				 prefixlen;
	char				 client_id[TRANSPORT_CLIENT_ID_MAX + 1];

	enum transport_state		 state;
	int				 backoff_ms;
	int				 ever_up;
	int				 refusal_reported;
	struct event			*retry_ev;

	struct transport_topic_list	 topics;
	struct htab		 tbyname, tbyreq;

	struct transport_pub_list	 pending;
	struct transport_pub_list	 inflight;
	struct transport_pub_list	 refused;	/* on_published(0) due */
	struct htab		 pbyreq;
	int				 ninflight;
	int				 window;
	struct event			*refused_ev;
};

/*
 * Each driver's constructor: cfg has been checked by the config module
 * (transport_new() has checked base and cbs).
 */
struct transport *mqtt_transport_new(const struct veild_config *,
		    struct event_base *, const struct transport_cbs *, void *,
		    char *, size_t);
struct transport *xmpp_transport_new(const struct veild_config *,
		    struct event_base *, const struct transport_cbs *, void *,
		    char *, size_t);

/* Fill the shared part of t (zeroed by the driver's calloc).  On -1, err
 * says why and transport_free(t) undoes what was done. */
int	transport_init(struct transport *, const struct transport_ops *,
	    const struct veild_config *, struct event_base *,
	    const struct transport_cbs *, void *arg, const char *prefix,
	    int window, char *err, size_t errlen);

/* --- topics --- */
struct transport_topic *transport_topic_find(const struct transport *,
	    const char *name);
/* By the server's name: NULL unless it carries our prefix. */
struct transport_topic *transport_topic_find_wire(const struct transport *,
	    const char *wire);
/* The first topic waiting for req (several may: a batch). */
struct transport_topic *transport_topic_by_req(const struct transport *,
	    uint64_t req);
void	transport_topic_set_req(struct transport *, struct transport_topic *,
	    uint64_t req);
void	transport_topic_free(struct transport *, struct transport_topic *);

/* --- publish queue --- */
/* Hand the server what the window allows. */
void	transport_pump(struct transport *);
struct transport_pub *transport_pub_find(const struct transport *,
	    uint64_t req);
void	transport_pub_set_req(struct transport *, struct transport_pub *,
	    uint64_t req);
/* The server answered p: on_published(ok), p freed, the window moves. */
void	transport_pub_answer(struct transport *, struct transport_pub *,
	    int ok);
/* p failed for a reason that passes: first in line again. */
void	transport_pub_again(struct transport *, struct transport_pub *);
/* Every unacknowledged publish back in front of the queue, in order. */
void	transport_requeue(struct transport *);

/* --- connection life --- */
/* Up: backoff reset, ops->restore(), pump, on_state(1).  note follows
 * "connected" in the log line. */
void	transport_went_up(struct transport *, const char *note);
/* Down on its own (state already DOWN): log, arm the retry timer and
 * report.  refused: a refusal that will not change soon, retried no
 * sooner than TRANSPORT_REFUSED_MIN and reported once. */
void	transport_went_down(struct transport *, int was_up, const char *why,
	    int refused);
/* Arm the retry timer for the next attempt; the delay doubles. */
void	transport_retry_arm(struct transport *);
void	transport_retry_cancel(struct transport *);
/* n frames from the server were dropped: on_dropped(n). */
void	transport_dropped(struct transport *, unsigned int n);

#endif /* VEILD_TRANSPORT_DRIVER_H */
