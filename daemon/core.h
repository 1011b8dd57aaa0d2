/* core.h: what veild's engine modules share (struct contact, the level policy) and their prototypes, per file. */
#ifndef VEILD_CORE_H
#define VEILD_CORE_H

/*
 * Private to daemon/: the engine is one state machine cut into modules,
 * each owning its state (only that file writes it) behind the functions
 * below, grouped per file as in OpenBSD's dhcpleased.h.  engine.c calls
 * the _init functions in dependency order and the _shutdown ones in
 * reverse.
 */

#include <stddef.h>
#include <stdint.h>

#include "veil.h"

#include "config.h"
#include "engine.h"
#include "store.h"

struct event;
struct event_base;
struct transport;

#define INBOX_MAX	(STORE_TOPIC_MAX + 1)	/* text of an inbox ID */

/* Key slots of a contact in the tag table. */
#define SLOT_RX		0	/* pair.rx */
#define SLOT_RX_PREV	1	/* pair.rx_prev, during a rotation's grace */
#define SLOT_EPOCH0	2	/* agreement keys before the DH (ACCEPT / FAIL) */
#define SLOT_COUNT	3

struct contact {
	int64_t		 id;
	char		 name[VEIL_NAME_MAX + 1];
	int		 state;			/* enum contact_state */
	char		 peer_name[VEIL_NAME_MAX + 1];
	uint8_t		 peer_pk[VEIL_KEY_BYTES];
	char		 peer_inbox[INBOX_MAX];
	char		 my_inbox[INBOX_MAX];
	int		 verified;
	int64_t		 created;
	struct veil_pair pair;
	struct veil_agree *agree;	/* during the agreement only */
	struct veil_rxdir *ep0;		/* SLOT_EPOCH0 key, during the agreement only */
	int		 armed;		/* bit per slot */
	unsigned	 dup_acks;	/* copies answered, to climb resync levels */
	int64_t		 dup_last;	/* ms of the last copy */
	uint64_t	 jumped_at;	/* tick of the last resync jump */
	uint64_t	 done_at;	/* tick of the last UPDATE-DONE sent */
	/* Stored with the row (store_contact). */
	char		 upd_inbox[INBOX_MAX];	/* announced, awaiting UPDATE-ACK */
	uint8_t		 upd_msgid[VEIL_MSGID_BYTES];	/* that UPDATE's outbox row */
	int		 has_upd_msgid;
	int64_t		 upd_prev_until;	/* rx_prev kept at least until (ms) */
	uint8_t		 req_msgid[VEIL_MSGID_BYTES];	/* our REQUEST's outbox row */
	int		 has_req_msgid;
};

/*
 * What an obscurity level means, in one place (SPEC section 2): each
 * level is a bundle of these policies, and code asks for the policy, not
 * for the level.
 */
struct level_policy {
	int	 pair_inboxes;	/* an inbox per contact (2), else one shared (1, 3) */
	int	 rotates;	/* client ID and inboxes are replaced (2, 3) */
	int	 card_conn;	/* the card topic has a connection of its own (2) */
	int	 card_rotates;	/* the card's contact ID is replaced at each
				 * rotation and cards expire with the epoch (3) */
};

/* engine.c */
const struct veild_config	*eng_cfg(void);
struct store			*eng_store(void);
struct event_base		*eng_base(void);
const struct veil_identity	*eng_identity(void);
const struct level_policy	*eng_policy(void);
uint64_t			 eng_tick(void);	/* seconds ticked */
/* Queues an event for after the commit (strings are copied). */
void	eng_event(const struct engine_event *ev);
void	eng_event_state(const struct contact *c, const char *warning);

/* util.c */
int64_t	now_ms(void);
void	copystr(char *dst, const char *src, size_t len);
void	seterr(char *err, size_t len, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));
void	msgid_hex(const uint8_t id[VEIL_MSGID_BYTES], char out[ENGINE_ID_TEXT]);
/* (Re)arms a one-shot timer ms milliseconds from now (0: next loop pass). */
int	timer_add_ms(struct event *ev, int64_t ms);
/* An exponential variate with the given mean, from libsodium's RNG. */
double	random_exp(double mean);

/* contact.c: the contact table, rows, and the tag table of expected nonces. */
int	contact_init(void);
void	contact_shutdown(void);
size_t	contact_count(void);
struct contact *contact_at(size_t i);		/* by id order */
size_t	contact_count_state(int state);
struct contact *contact_find(int64_t id);
struct contact *contact_by_name(const char *name);
struct contact *contact_by_peer_pk(const uint8_t pk[VEIL_KEY_BYTES]);
int	contact_insert(struct contact *c);
/* Disarms, unlinks and frees (the row is the caller's business). */
void	contact_drop(struct contact *c);
void	contact_free(struct contact *c);
void	contact_arm(struct contact *c, int slot, int on);
void	contact_arm_all(struct contact *c, int on);
void	contact_set_ep0(struct contact *c);
int	contact_save(struct contact *c);
struct contact *contact_from_row(const struct store_contact *row);
/* The receive direction behind a frame's tag, or NULL. */
struct veil_rxdir *contact_lookup(const uint8_t tag[VEIL_TAG_BYTES],
	    struct contact **c, int *slot, uint64_t *seq);
void	contact_rx_commit(struct contact *c, int slot, uint64_t seq);
/* On the hour: the clock landmarks move on. */
void	contact_clock_tick(void);
uint64_t contact_clock_hour(void);

/* txn.c: group commit. */
int	txn_init(void);
void	txn_shutdown(void);
int	txn_begin(void);
int	txn_commit(void);
int	txn_rollback(void);
/* Commits the open group now: its frames leave and its replies go. */
int	txn_flush(void);
void	after_commit(void (*fn)(void *, int), void *arg);
/* Frames leave after the commit when a group is open, at once otherwise. */
void	txn_publish(const char *inbox, const uint8_t *frames, int n);

/* conn.c: broker connections under client IDs. */
int	conn_init(char *err, size_t errlen);
int	conn_start(void);
void	conn_shutdown(void);
int	conn_up(void);
int	conn_has_card(void);
int	conn_has_old(void);
const char *conn_client_id(void);
const char *conn_transport_name(void);
/* Frames handed to the current connection, not yet at the broker. */
uint64_t conn_backlog(void);
uint64_t conn_frames_out(void);
void	conn_publish(const char *inbox, const uint8_t *frames, int n);
enum conn_which { CONN_CUR, CONN_OLD, CONN_CARD };
void	conn_subscribe(enum conn_which which, const char *inbox);
/* From every connection. */
void	conn_unsubscribe(const char *inbox);
/* Make-before-break: a new connection under id becomes current. */
int	conn_rotate(const char *id);
/* Frees the previous connection when the last grace period ends. */
void	conn_drain_arm(void);

/* inbox.c: inbox identifiers, which connection holds which, their lifetimes. */
int	inbox_init(char *err, size_t errlen);
void	inbox_shutdown(void);
const struct veil_id *inbox_card_cid(void);
const char *inbox_card_topic(void);
const char *inbox_shared(void);
/* The level 3 rotation's new shared inbox and card (rows already added). */
void	inbox_replace_shared(const char *shared, const char *card);
void	inbox_new_id(char out[INBOX_MAX]);
/* Adds a row (if new) and subscribes it on the current connection. */
int	inbox_add(const char *inbox, int64_t contact_id, int kind, int one_time);
/* Retired at the end of a grace period: lives at least until at. */
void	inbox_retire(const char *inbox, int64_t at);
enum sub_mode { SUB_START, SUB_ROTATE, SUB_KEEP_GRACE };
int	inbox_subscribe_all(enum sub_mode mode);
void	inbox_housekeeping(void);
int	inbox_in_grace(void);
/* The latest retirement time of the inboxes in their grace period. */
int64_t	inbox_grace_end(void);

/* outbox.c: sealing, sending, retransmission, cover traffic. */
int	outbox_init(void);
void	outbox_shutdown(void);
int64_t	backoff(int attempts);
/* Seals under k (advancing *seq) into a malloc'd buffer of *nframes frames. */
uint8_t *seal_msg(const struct veil_dirkey *k, uint64_t *seq, uint8_t type,
	    const uint8_t msgid[VEIL_MSGID_BYTES], const uint8_t *body,
	    size_t len, int *nframes);
/* Seals under the contact's transmit key, saves, publishes (attempt > 0:
 * a retransmission, which may jump to a resync landmark). */
int	send_to(struct contact *c, uint8_t type,
	    const uint8_t msgid[VEIL_MSGID_BYTES], const uint8_t *body,
	    size_t len, int attempt);
/* The resync level for answering a copy. */
int	dup_attempt(struct contact *c);
void	outbox_flush(void);
void	outbox_flush_later(void);
void	cover_arm(void);
/* Publishes, after the configured jitter. */
void	publish_direct(const char *inbox, const uint8_t *frames, int n);

/* recv.c: frames in, to the handler of their type. */
int	recv_init(void);
void	recv_shutdown(void);
void	recv_frame(const char *topic, const uint8_t *frame, size_t len);
void	recv_forget(int64_t contact_id);
void	recv_tick(int64_t now);
void	recv_count_dropped(void);
void	recv_counters(uint64_t *in, uint64_t *dropped);
void	handle_text(struct contact *c, uint8_t type,
	    const uint8_t msgid[VEIL_MSGID_BYTES], const uint8_t *body,
	    size_t len);

/* pairing.c: the contact agreement, cards, contact operations. */
void	handle_request(const uint8_t *body, size_t len);
void	handle_accept(struct contact *c, const uint8_t *body, size_t len);
void	handle_confirm(struct contact *c, const uint8_t *body, size_t len);
void	handle_fail(struct contact *c, const uint8_t *body, size_t len);
/* Wipes the agreement state once it ended (established or failed). */
void	finish_agreement(struct contact *c);
/* The REQUEST in the outbox, sealed afresh. */
void	resend_request(struct contact *c, const uint8_t msgid[VEIL_MSGID_BYTES],
	    const uint8_t *body, size_t len);

/* rotation.c: the rotation scheduler and the contact update. */
int	rotation_init(void);
int	rotation_start(void);
void	rotation_shutdown(void);
void	rotation_reload(void);
int64_t	rotation_epoch(void);
int64_t	rotation_next(void);
void	handle_update(struct contact *c, const uint8_t *body, size_t len);
void	handle_update_ack(struct contact *c, const uint8_t *body, size_t len);
void	handle_update_done(struct contact *c, const uint8_t *body, size_t len);
void	send_done(struct contact *c);
void	drop_prev_keys(void);

#endif
