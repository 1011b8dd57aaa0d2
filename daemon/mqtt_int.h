/* mqtt_int.h: what the MQTT driver's files (mqtt.c, mqtt_paho.c, mqtt_connect.c) share. */
#ifndef VEILD_MQTT_INT_H
#define VEILD_MQTT_INT_H

#include <sys/queue.h>

#include <pthread.h>
#include <stdint.h>

#include <event2/util.h>

#include <MQTTAsync.h>

#include "transport_driver.h"

struct veild_config;

#define MQTT_CONNECT_TIMEOUT	10	/* s, per server URI */
#define MQTT_DISCONNECT_WAIT	1000	/* ms for in-flight work at a rotation */
#define MQTT_CLOSE_WAIT		1000	/* ms for paho to say DISCONNECT at free */
#define MQTT_DRAIN_BATCH	256	/* events per wake before yielding */
#define MQTT_QUEUE_MSGS		1024	/* frames waiting for the loop */
#define MQTT_QUEUE_BYTES	(4 << 20)
#define MQTT_CONTROL_MIN	512	/* bytes: CONNACK, SUBACK of a batch */
#define MQTT_SUB_BATCH		128
#define MQTT_RANDOM_USER	16	/* characters */
#define MQTT_RANDOM_PASS	24

enum mev_type {
	MEV_UP,		/* seq = connect attempt */
	MEV_DOWN,	/* seq = connect attempt; text = reason */
	MEV_LOST,	/* seq = handle generation */
	MEV_CLOSED,	/* seq = handle generation */
	MEV_MSG,	/* text = topic; data, len */
	MEV_PUB,	/* seq = request */
	MEV_SUB,
	MEV_UNSUB,
};

struct mreq;

/* One allocation: text and data point into buf. */
struct mev {
	TAILQ_ENTRY(mev)	 entry;
	enum mev_type		 type;
	uint64_t		 seq;
	int			 ok;
	int			 permanent;	/* MEV_PUB failure: do not retry */
	int			 poison;	/* MEV_PUB: a write failed in paho */
	int			 session_present;
	struct mreq		*rq;		/* to free on the loop */
	char			*text;
	void			*data;
	size_t			 len;
	size_t			 cost;		/* MEV_MSG: against the bound */
	char			 buf[];
};
TAILQ_HEAD(mev_list, mev);

struct mqtt;

/*
 * Context of one paho request.  The loop thread owns it: the callback only
 * reads it and hands it back in its event, and the loop frees it then, or
 * at transport_free() for requests paho never answered.
 */
struct mreq {
	LIST_ENTRY(mreq)	 entry;
	struct mqtt		*m;
	uint64_t		 seq;
	enum mev_type		 type;
	int			 batch;		/* topics of a subscribeMany */
	uint64_t		 gen;		/* MEV_PUB: the handle it went to */
};
LIST_HEAD(mreq_list, mreq);

/* One paho client: paho fixes the client ID at creation. */
struct mhandle {
	struct mqtt	*m;
	uint64_t	 gen;
	MQTTAsync	 cli;
	char		 id[TRANSPORT_CLIENT_ID_MAX + 1];
	char		*user;		/* presented at every (re)connect */
	char		*pass;
	char		*proxy;		/* with this ID's proxy credentials */
	int		 poisoned;	/* paho's state unsafe (mqtt_paho.c) */
	struct mhandle	*next;		/* in the quarantine */
};

struct mqtt {
	struct transport	 t;

	/* From the configuration; read-only once created (paho's threads
	 * read frame_size and wire_max too). */
	char			**uris;
	int			 nuris;
	char			*username;
	char			*password;
	int			 random_username;
	char			*proxy;		/* mqtt.proxy */
	int			 proxy_isolate;
	/* mqtt.tls, for ssl://, mqtts:// and wss:// URIs. */
	int			 tls_verify;
	char			*ca_file;
	char			*ca_path;
	char			*cert_file;
	char			*key_file;
	char			**tls_hosts;	/* of the TLS URIs, for reasons */
	int			 ntls_hosts;
	int			 keepalive_s;
	uint32_t		 expiry_s;
	uint32_t		 max_packet;
	size_t			 wire_max;	/* longest topic, prefix included */

	/* transport_set_credentials(): they win over the configuration. */
	int			 own_creds;
	char			*own_user;
	char			*own_pass;

	struct mhandle		*cur;		/* NULL: disconnect()ed */
	struct mhandle		*closing;	/* sending its DISCONNECT */
	/*
	 * A destroyed handle is freed only at the next destroy: a paho thread
	 * may still be inside one of its callbacks, reading h->m and h->gen.
	 */
	struct mhandle		*dead;
	uint64_t		 seq;
	uint64_t		 attempt;	/* current connect request */
	int			 session_present; /* of the last CONNACK */
	struct mreq_list	 reqs;		/* outstanding */

	struct event		*wake_ev;
	struct event		*more_ev;	/* drain continues here */
	int			 lock_ok;
	pthread_mutex_t		 lock;		/* guards what follows */
	pthread_cond_t		 cond;		/* an event was queued */
	struct mev_list		 events;
	size_t			 qmsgs, qbytes;	/* MEV_MSG in events */
	unsigned int		 qdropped;	/* not yet reported */
	char			 tls_err[256];	/* OpenSSL's last word */
};

/* --- mqtt_paho.c: paho's threads, the hand-off queue, requests, handles --- */
struct mreq	*mqtt_req_new(struct mqtt *, enum mev_type);
void		 mqtt_req_done(struct mreq *);
void		 mqtt_handle_free(struct mhandle *);
/* paho's client goes; h is freed at the next destroy (a paho thread may
 * still be reading it). */
void		 mqtt_destroy_handle(struct mqtt *, struct mhandle *);
void		 mqtt_wait_closed(struct mqtt *, const struct mhandle *);
/* The wake-up event: drains the queue on the loop thread. */
void		 mqtt_wake(evutil_socket_t, short, void *);
void		 mqtt_cb_connected(void *, MQTTAsync_successData5 *);
void		 mqtt_cb_connect_failed(void *, MQTTAsync_failureData5 *);
void		 mqtt_cb_lost(void *, char *);
void		 mqtt_cb_server_disconnect(void *, MQTTProperties *,
		    enum MQTTReasonCodes);
int		 mqtt_cb_message(void *, char *, int, MQTTAsync_message *);
void		 mqtt_cb_done(void *, MQTTAsync_successData5 *);
void		 mqtt_cb_failed(void *, MQTTAsync_failureData5 *);
void		 mqtt_cb_disconnected(void *, MQTTAsync_successData5 *);
void		 mqtt_cb_disconnect_failed(void *, MQTTAsync_failureData5 *);

/* --- mqtt.c: what the drained events do ---------------------------------- */
void		 mqtt_on_up(struct mqtt *, struct mev *);
void		 mqtt_on_down(struct mqtt *, struct mev *);
void		 mqtt_on_pub(struct mqtt *, struct mev *);
void		 mqtt_on_sub(struct mqtt *, struct mev *);
void		 mqtt_on_message(struct mqtt *, struct mev *);

/* --- mqtt_connect.c: what one connection presents ------------------------- */
void		 mqtt_start_connect(struct mqtt *);
char		*mqtt_strdup_opt(const char *, int *bad);
int		 mqtt_handle_creds(struct mqtt *, struct mhandle *);
uint32_t	 mqtt_max_packet(size_t frame, size_t topic);
/* TCP_NODELAY and TCP keepalive on every TCP socket of the process. */
void		 mqtt_sockopts(int keepalive_s);
/* mqtt.tls and mqtt.proxy into m; -1 with err set. */
int		 mqtt_connect_init(struct mqtt *, const struct veild_config *,
		    char *err, size_t errlen);
void		 mqtt_connect_free(struct mqtt *);
/* Why a TLS connect failed, if TLS is why, in buf (else ""); 1 when the
 * server's certificate or key was refused, which will not pass soon. */
int		 mqtt_tls_reason(struct mqtt *, char *buf, size_t len);

/* --- mqtt_nudge.c: paho's receive thread looks at once -------------------- */
/* Right after MQTTAsync_connect(): for a moment paho's receive thread
 * polls every millisecond, so the CONNECT follows the TCP handshake. */
void		 mqtt_nudge_start(void);

#endif /* VEILD_MQTT_INT_H */
