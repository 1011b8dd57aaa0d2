/* transport.h: the broker interface the daemon uses without knowing MQTT or XMPP. */
#ifndef VEILD_TRANSPORT_H
#define VEILD_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct transport;
struct veild_config;

/*
 * A topic is the engine's name for an inbox: 1 to TRANSPORT_TOPIC_MAX bytes
 * of printable ASCII without '+' or '#'.  What the server sees may differ
 * (the MQTT driver puts mqtt.topic_prefix in front); every call and
 * callback here speaks the engine's names.
 */
#define TRANSPORT_TOPIC_MAX	128
#define TRANSPORT_CLIENT_ID_MAX	23

/*
 * Callbacks, all invoked on the loop thread from the event loop, never
 * from inside a transport_*() call, so they may call any transport_*()
 * function except transport_free() and transport_retire().  arg is the
 * one given at creation.
 */
struct transport_cbs {
	/* Connection came up (up = 1: subscriptions are being restored) or
	 * went down on its own (up = 0; the driver reconnects with backoff).
	 * A refusal that will not change soon (no anonymous login, no TLS
	 * where it is required) is reported once even if never up.  An
	 * explicit transport_disconnect() is not reported. */
	void	(*on_state)(int up, const char *reason, void *arg);
	/* A frame arrived on a subscribed topic.  len is always the
	 * configured frames.size; data is only valid during the call.
	 * Delivery is at least once: duplicates happen. */
	void	(*on_message)(const char *topic, const void *data, size_t len,
		    void *arg);
	/* The broker acknowledged the frame (ok = 1), or refused it for good
	 * (ok = 0).  Reported exactly once per transport_publish() that
	 * returned 0, unless the transport is freed first.  "At the broker"
	 * is not "at the peer": a topic nobody subscribes to drops it. */
	void	(*on_published)(uint64_t cookie, int ok, void *arg);
	/* The first subscription of a transport_subscribe() call was granted
	 * (ok = 1) or refused (ok = 0).  Later re-subscriptions after
	 * reconnects are silent. */
	void	(*on_subscribed)(const char *topic, int ok, void *arg);
	/* Optional (NULL: not counted).  n frames from the server were
	 * dropped before on_message: not exactly frames.size bytes, not
	 * decodable, or beyond what the driver holds for the loop. */
	void	(*on_dropped)(unsigned int n, void *arg);
};

/*
 * The driver named by cfg->transport, reading its own section of cfg (and
 * frames.size) now: cfg need not outlive the call.  Threaded drivers need
 * evthread_use_pthreads() to have been called before the event base was
 * created: that is the caller's job.  Returns NULL and a message in err.
 */
struct transport *transport_new(const struct veild_config *cfg,
		    struct event_base *, const struct transport_cbs *,
		    void *arg, char *err, size_t errlen);

/* "mqtt" or "xmpp". */
const char	*transport_name(const struct transport *);

/* Start connecting (asynchronous; on_state reports).  Needs a client ID. */
int	transport_connect(struct transport *);
/* Drop the connection; subscriptions and queued publishes are kept for the
 * next transport_connect(), and so is the MQTT session at the broker when
 * the client ID stays the same. */
void	transport_disconnect(struct transport *);
/* Add topic to the live set; it is (re)subscribed on every connect.  A
 * topic already live is left as it is. */
int	transport_subscribe(struct transport *, const char *topic);
/* Remove topic from the live set: nothing more is delivered for it. */
int	transport_unsubscribe(struct transport *, const char *topic);
/* Queue a copy of buf, exactly frames.size bytes, for topic (QoS 1);
 * on_published(cookie) follows.  Frames queue while disconnected and are
 * sent once connected. */
int	transport_publish(struct transport *, const char *topic,
	    const void *buf, size_t len, uint64_t cookie);

/*
 * For the next transport_connect(), each until changed:
 *
 * set_client_id: 1-23 characters of [0-9a-zA-Z].  To rotate: set_client_id,
 * disconnect, connect; the session of the old ID is then discarded at the
 * broker.  XMPP records it only: the server names every connection anew.
 *
 * set_session_expiry: how long the broker keeps the session (and the QoS 1
 * frames for it) after the connection is lost without a DISCONNECT (MQTT 5
 * Session Expiry Interval; the default is mqtt.session_expiry).  XMPP has
 * no session to keep: ignored.
 *
 * set_credentials: the username and password to present (NULL, NULL: back
 * to mqtt.username/password, or to fresh random ones per client ID with
 * mqtt.random_username).  XMPP logs in anonymously: ignored.
 */
int	transport_set_client_id(struct transport *, const char *id);
int	transport_set_session_expiry(struct transport *, uint32_t seconds);
int	transport_set_credentials(struct transport *, const char *user,
	    const char *pass);

/* The name the server knows the current connection by (the MQTT client
 * ID, the XMPP full JID), or NULL when there is none.  Valid until the
 * next transport_*() call. */
const char	*transport_client_id(const struct transport *);
/* Calls fn for every live topic, by the name the server sees (with the
 * MQTT prefix).  fn must not change the transport's topics. */
void	transport_foreach_topic(const struct transport *,
	    void (*fn)(const char *topic, void *), void *arg);

/* Drop the connection and free everything; no callback follows.  An MQTT
 * connection that is up says DISCONNECT with Session Expiry 0 first (the
 * session ends with the connection), waiting for paho up to about a
 * second. */
void	transport_free(struct transport *);
/* The same, but first the frames already received and acknowledged to the
 * broker (a threaded driver may hold some not yet handed over) go to
 * on_message, from inside this call: the caller must have let go of every
 * reference to the transport, since on_message may run any code. */
void	transport_retire(struct transport *);

#endif /* VEILD_TRANSPORT_H */
