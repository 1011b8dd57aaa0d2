/* transport.h: the broker interface the daemon uses without knowing MQTT or XMPP. */
#ifndef VEIL_TRANSPORT_H
#define VEIL_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct transport;

/*
 * Everything a driver needs, filled by the config module.  Strings are
 * borrowed only for the duration of transport_new(): drivers copy them.
 * Zero/NULL means "driver default" for every numeric and optional field.
 */
struct transport_config {
	/* MQTT */
	const char *const *uris;	/* "tcp://127.0.0.1:1883", tried in order */
	size_t		 nuris;
	const char	*username;	/* NULL: none */
	const char	*password;	/* NULL: none */
	unsigned int	 keepalive_ms;	/* 0: 60 s; rounded up to whole seconds */
	unsigned int	 inflight;	/* unacknowledged publishes; 0: 100 */
	unsigned int	 session_expiry_s; /* broker keeps our session (and the
					   * QoS 1 messages for it) this long
					   * while we are offline; 0: 7 days */
	const char	*proxy;		/* "http://host:port" (HTTP CONNECT);
					 * NULL: none, and http(s)_proxy are
					 * removed from the environment */

	/* XMPP (driver to come) */
	const char	*xmpp_domain;
	const char	*xmpp_host;	/* NULL: resolve the domain */
	unsigned int	 xmpp_port;	/* 0: 5222 */
	const char	*xmpp_pubsub;	/* pubsub service JID */
	int		 xmpp_tls;	/* 1: require STARTTLS */
};

/*
 * Callbacks, all invoked on the loop thread from the event loop, never
 * from inside a transport_*() call, so they may call any transport_*()
 * function except transport_free().  arg is the one given at creation.
 */
struct transport_cbs {
	/* Connection came up (up = 1: subscriptions are being restored) or
	 * went down on its own (up = 0; the driver reconnects with backoff).
	 * An explicit transport_disconnect() is not reported. */
	void	(*on_state)(int up, const char *reason, void *arg);
	/* A frame arrived on a subscribed topic.  data is only valid during
	 * the call.  Delivery is at least once: duplicates happen. */
	void	(*on_message)(const char *topic, const void *data, size_t len,
		    void *arg);
	/* The broker acknowledged the frame (ok = 1), or refused it for good
	 * (ok = 0).  Reported exactly once per transport_publish() that
	 * returned 0, unless the transport is freed first.  "At the broker"
	 * is not "at the peer": a topic nobody subscribes to drops it. */
	void	(*on_published)(uint64_t cookie, int ok, void *arg);
	/* The first (re)subscription of a transport_subscribe() call was
	 * granted (ok = 1) or refused (ok = 0).  Later re-subscriptions after
	 * reconnects are silent. */
	void	(*on_subscribed)(const char *topic, int ok, void *arg);
};

/*
 * Operations; drivers embed struct transport first and fill ops.  They are
 * called only through the transport_*() functions below, which have
 * already checked what this header promises of topics and client IDs.
 */
struct transport_ops {
	int	(*connect)(struct transport *);
	void	(*disconnect)(struct transport *);
	int	(*subscribe)(struct transport *, const char *topic);
	int	(*unsubscribe)(struct transport *, const char *topic);
	int	(*publish)(struct transport *, const char *topic,
		    const void *buf, size_t len, uint64_t cookie);
	int	(*set_client_id)(struct transport *, const char *id);
	void	(*free)(struct transport *);
	void	(*retire)(struct transport *);	/* optional: see transport_retire() */
};

struct transport {
	const struct transport_ops	*ops;
	const char			*name;
};

/*
 * Create the transport called name ("mqtt").  Threaded drivers need
 * evthread_use_pthreads() to have been called before the event base was
 * created: that is the caller's job.  Returns NULL and a message in err.
 */
struct transport *transport_new(const char *name, struct event_base *,
		    const struct transport_config *, const struct transport_cbs *,
		    void *arg, char *err, size_t errlen);

/* Start connecting (asynchronous; on_state reports).  Needs a client ID. */
int	transport_connect(struct transport *);
/* Drop the connection; subscriptions and queued publishes are kept for the
 * next transport_connect(). */
void	transport_disconnect(struct transport *);
/* Add topic to the live set; it is (re)subscribed on every connect.
 * Topics are 1-65535 bytes of printable ASCII without '+' or '#'. */
int	transport_subscribe(struct transport *, const char *topic);
/* Remove topic from the live set: nothing more is delivered for it. */
int	transport_unsubscribe(struct transport *, const char *topic);
/* Queue a copy of buf for topic (QoS 1); on_published(cookie) follows.
 * Frames queue while disconnected and are sent once connected. */
int	transport_publish(struct transport *, const char *topic,
	    const void *buf, size_t len, uint64_t cookie);
/* 1-23 characters of [0-9a-zA-Z]; takes effect at the next connect.  To
 * rotate: set_client_id, disconnect, connect.  The session of the old ID
 * is then discarded at the broker. */
int	transport_set_client_id(struct transport *, const char *id);
/* Drop the connection and free everything; no callback follows. */
void	transport_free(struct transport *);
/* The same, but first the frames already received and acknowledged to the
 * broker (a threaded driver may hold some not yet handed over) go to
 * on_message, from inside this call: the caller must have let go of every
 * reference to the transport, since on_message may run any code. */
void	transport_retire(struct transport *);

/* Drivers, created through transport_new() (which has checked cbs). */
struct transport *mqtt_transport_new(struct event_base *,
		    const struct transport_config *, const struct transport_cbs *,
		    void *arg, char *err, size_t errlen);
struct transport *xmpp_transport_new(struct event_base *,
		    const struct transport_config *, const struct transport_cbs *,
		    void *arg, char *err, size_t errlen);

/* For the drivers: what they share beyond the interface. */
#define TRANSPORT_CLIENT_ID_MAX	23
#define TRANSPORT_BACKOFF_MIN	500	/* ms: first reconnect delay */
#define TRANSPORT_BACKOFF_MAX	30000	/* ms */

struct event;

/* Arm timer for the next reconnect attempt after about *backoff_ms, then
 * double *backoff_ms up to TRANSPORT_BACKOFF_MAX. */
void	transport_backoff(struct event *timer, int *backoff_ms);
/* Log a connection going down (why): a warning, unless it is one more
 * failed attempt to come back after having been up. */
void	transport_log_down(const struct transport *, int was_up, int ever_up,
	    const char *why);

#endif /* VEIL_TRANSPORT_H */
