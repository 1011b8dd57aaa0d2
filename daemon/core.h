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

#define INBOX_MAX	(STORE_TOPIC_MAX + 1)	/* text of a topic */
#define CONTACT_SEEDS	4	/* inboxes a contact may write to at once */

/* Key slots of a contact in the tag table: the pair's (veil_pair_arm) and
 * the agreement's epoch-0 receive key. */
#define SLOT_EPOCH0	VEIL_PAIR_OWNERS
#define SLOT_BITS	3
_Static_assert(VEIL_PAIR_OWNERS + 1 <= (1 << SLOT_BITS), "slot bits");

struct contact {
	int64_t		 id;
	char		 name[VEIL_NAME_MAX + 1];
	int		 state;			/* enum contact_state */
	char		 peer_name[VEIL_NAME_MAX + 1];
	uint8_t		 peer_pk[VEIL_KEY_BYTES];	/* proven once established */
	char		 card_topic[INBOX_MAX];	/* requested: the card we asked at */
	int		 verified;
	int64_t		 created;
	struct veil_pair pair;
	struct veil_agree *agree;	/* during the agreement only */
	struct veil_rxdir *ep0;		/* SLOT_EPOCH0 key, during the agreement only */
	int		 armed;		/* its keys are in the tag table */
	unsigned	 dup_acks;	/* copies answered, to climb resync levels */
	int64_t		 dup_last;	/* ms of the last copy */
	uint64_t	 jumped_at;	/* tick of the last resync jump */
	uint64_t	 done_at;	/* tick of the last UPDATE-DONE sent */
	uint64_t	 hurried_at;	/* tick its outbox was last hurried */
	uint64_t	 reseed_gen;	/* forced rotations it was told of */
	/* The seeds this contact writes to, as registered with inbox.c. */
	struct veil_inbox reg[CONTACT_SEEDS];
	int		 nreg;
	/* Stored with the row (store_contact). */
	uint8_t		 upd_msgid[VEIL_MSGID_BYTES];	/* our UPDATE's outbox row */
	int		 has_upd_msgid;
	int64_t		 upd_prev_until;	/* rx_prev kept at least until (ms) */
	uint8_t		 req_msgid[VEIL_MSGID_BYTES];	/* our REQUEST's outbox row */
	int		 has_req_msgid;
	int64_t		 req_deadline;		/* the REQUEST is given up (ms) */
	uint8_t		 seed_prev[VEIL_SEED_BYTES];	/* our old seed, in grace */
	int		 has_seed_prev;
	uint32_t	 seed_prev_epoch;
	int64_t		 seed_prev_until;
	int64_t		 heal_at;		/* next Diffie-Hellman re-key (ms) */
	/* After our CONFIRM (in memory only): proof frames still to send. */
	int		 proof_left;
	int64_t		 proof_at;		/* the next one (ms) */
	/* After a restore (reset.c, stored apart from the row). */
	int		 reset_due;		/* a reset is to start */
	struct veil_reset *reset;		/* ours, awaiting its ACK */
	uint8_t		 reset_msgid[VEIL_MSGID_BYTES];	/* its outbox row */
};

/*
 * What an obscurity level means, in one place (SPEC section 2): each
 * level is a bundle of these policies, and code asks for the policy, not
 * for the level.
 */
struct level_policy {
	int	 pair_inboxes;	/* an inbox seed per contact (2), else one shared (1, 3) */
	int	 rotates;	/* one connection per epoch, topics per epoch (2, 3) */
	int	 card_conn;	/* cards live on connections of their own (2, 3) */
	int	 card_per_conn;	/* each card its own connection, cards expire (3) */
};

/* engine.c */
const struct veild_config	*eng_cfg(void);
struct store			*eng_store(void);
struct event_base		*eng_base(void);
const struct veil_identity	*eng_identity(void);
const struct level_policy	*eng_policy(void);
uint64_t			 eng_tick(void);	/* seconds ticked */
/* Our receive parameters: the epoch length L (0 at level 1) and key
 * period Pd, seconds, and the clock for libveil (grace and lead). */
uint32_t	eng_epoch_len(void);
uint32_t	eng_key_period(void);
void		eng_clock(struct veil_clock *clk);
/* A write to the store succeeded (ok: it changed something) or failed:
 * the engine follows whether the disk takes changes, and says so. */
void	eng_store_result(int ok);
/* Queues an event for after the commit (strings are copied). */
void	eng_event(const struct engine_event *ev);
void	eng_event_state(const struct contact *c, const char *warning);

/* util.c */
int64_t	now_ms(void);
int64_t	mono_us(void);
uint64_t now_s(void);
void	copystr(char *dst, const char *src, size_t len);
void	seterr(char *err, size_t len, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));
void	msgid_hex(const uint8_t id[VEIL_MSGID_BYTES], char out[ENGINE_ID_TEXT]);
/* (Re)arms a one-shot timer ms milliseconds from now (0: next loop pass). */
int	timer_add_ms(struct event *ev, int64_t ms);
/* An exponential variate with the given mean, from libsodium's RNG. */
double	random_exp(double mean);
/* Uniform in [0, n), n >= 1 (n = 0 gives 0). */
int64_t	random_below(int64_t n);

/* contact.c: the contact table, rows, and the tag table of expected nonces. */
int	contact_init(void);
void	contact_shutdown(void);
size_t	contact_count(void);
struct contact *contact_at(size_t i);		/* by id order */
size_t	contact_count_state(int state);
#define CONTACT_STATES	(VEIL_AG_REJECTED + 1)
void	contact_tally(size_t by_state[CONTACT_STATES]);
struct contact *contact_find(int64_t id);
struct contact *contact_by_name(const char *name);
/* An established contact with this (proven) key, or NULL. */
struct contact *contact_established_by_pk(const uint8_t pk[VEIL_KEY_BYTES]);
int	contact_insert(struct contact *c);
/* Disarms, unregisters, unlinks and frees (the row is the caller's). */
void	contact_drop(struct contact *c);
void	contact_free(struct contact *c);
/* Puts its keys in the tag table (pair and epoch-0), or takes them out. */
void	contact_arm(struct contact *c, int on);
void	contact_set_ep0(struct contact *c);
int	contact_save(struct contact *c);
struct contact *contact_from_row(const struct store_contact *row);
/* The receive key behind a frame's tag, or NULL. */
struct veil_rxdir *contact_lookup(const uint8_t tag[VEIL_TAG_BYTES],
	    struct contact **c, int *slot, uint64_t *seq);
void	contact_rx_commit(struct contact *c, int slot, uint64_t seq);
/* Moves the contact's key chains to now (and its tags with them). */
int	contact_advance(struct contact *c);
/* COVER frames after a CONFIRM: retransmit.initial after it, then twice
 * as long each time (protocol.md 4). */
#define PROOF_FRAMES	3
/* Has anything arrived under a key of this receive chain? */
int	rxchain_used(const struct veil_rxchain *rx);
/* One batch of the sweep over every contact (keys, heals, deadlines). */
void	contact_sweep(void);

/* txn.c: group commit. */
int	txn_init(void);
void	txn_shutdown(void);
int	txn_begin(void);
int	txn_commit(void);
int	txn_rollback(void);
/* Commits the open group now: its frames leave and its replies go. */
int	txn_flush(void);
void	after_commit(void (*fn)(void *, int), void *arg);
/* Frames for topic, sealed during our epoch epoch: they leave after the
 * commit when a group is open, at once otherwise. */
void	txn_publish(int64_t epoch, const char *topic, const uint8_t *frames, int n);

/* conn.c: broker connections — one per epoch, the cards', one-shot ones. */
int	conn_init(char *err, size_t errlen);
int	conn_start(void);
void	conn_shutdown(void);
/* The connection of the current epoch is up. */
int	conn_up(void);
/* Our current epoch (0 at level 1); at the instant t (ms). */
int64_t	conn_epoch(void);
int64_t	conn_epoch_at(int64_t t);
/* When the next epoch starts (ms; 0 at level 1). */
int64_t	conn_next_epoch_ms(void);
const char *conn_transport_name(void);
/* Frames handed to the current connection, not yet at the broker. */
uint64_t conn_backlog(void);
uint64_t conn_frames_out(void);
/* Frames sealed in epoch: out on that epoch's connection, if it is still
 * there (else dropped: the outbox resends under the then current epoch). */
void	conn_publish(int64_t epoch, const char *topic, const uint8_t *frames, int n);
/* A frame (a REQUEST) from a connection of its own, gone once published. */
int	conn_oneshot(const char *topic, const uint8_t *frames, int n);
/* The set of our inbox topics changed (inbox.c): subscriptions follow. */
void	conn_topic_add(const struct veil_inbox *in);
void	conn_topic_del(const struct veil_inbox *in);
/* Card topics came or went (inbox.c). */
void	conn_cards_changed(void);
/* Our epoch length changed (reload): the schedule follows. */
void	conn_reschedule(void);
/* Every identifier in use, for status {verbose}. */
void	conn_foreach_id(void (*client)(const char *, void *),
	    void (*topic)(const char *, void *), void *arg);

/* inbox.c: our inbox seeds (which topics a connection of an epoch holds) and our cards. */
int	inbox_init(char *err, size_t errlen);
void	inbox_shutdown(void);
/* The shared seed (levels 1 and 3) as we give it out. */
void	inbox_shared(struct veil_inbox *out);
/* A new shared seed (level 3, after a contact went; veilctl rotate). */
int	inbox_reseed_shared(void);
void	inbox_params_changed(void);
/* A fresh inbox for a new contact: its own seed at level 2, else shared. */
void	inbox_for_contact(struct veil_inbox *out);
/* Makes inbox.c's view of what c writes to match c (after any change). */
void	inbox_contact_sync(struct contact *c);
void	inbox_contact_forget(struct contact *c);
/* Calls cb with the topic of every seed, for our epoch epoch (at epoch_len;
 * at level 1, now). */
void	inbox_foreach_topic(int64_t epoch, void (*cb)(const char *, void *), void *arg);
/* Level 1: when a seed's topic changes next (ms), 0 if none does. */
int64_t	inbox_next_change_ms(void);
/* Cards: the current card, a one-time card, a card's contact ID by its
 * topic (0: not a live card of ours), what the card connections hold. */
int	inbox_card(int one_time, struct veil_id *cid, uint64_t *expires);
int	inbox_card_live(const char *topic, struct veil_id *cid, int *one_time);
void	inbox_card_consume(const char *topic);
void	inbox_foreach_card(void (*cb)(const char *topic, int64_t expires, void *), void *arg);
const char *inbox_card_topic(void);
/* Expired cards go (a tick's housekeeping). */
void	inbox_housekeeping(void);

/* outbox.c: sealing, sending, retransmission, cover traffic. */
int	outbox_init(void);
void	outbox_shutdown(void);
int64_t	backoff(int attempts);
/* Seals under k (advancing *seq) into a malloc'd buffer of *nframes frames. */
uint8_t *seal_msg(const struct veil_dirkey *k, uint64_t *seq, uint8_t type,
	    const uint8_t msgid[VEIL_MSGID_BYTES], const uint8_t *body,
	    size_t len, int *nframes);
/* The topic of an inbox now, and our epoch of the same instant: the
 * epoch whose connection may publish to it. */
int64_t	inbox_topic_now(const struct veil_inbox *in, char out[INBOX_MAX]);
/* The contact's inbox topic now, and the epoch to publish it in. */
int64_t	peer_topic(const struct contact *c, char out[INBOX_MAX]);
/* Seals under the contact's transmit chain, saves, publishes (attempt > 0:
 * a retransmission, which may jump to a resync landmark). */
int	send_to(struct contact *c, uint8_t type,
	    const uint8_t msgid[VEIL_MSGID_BYTES], const uint8_t *body,
	    size_t len, int attempt);
/* The resync level for answering a copy. */
int	dup_attempt(struct contact *c);
void	outbox_flush(void);
void	outbox_flush_later(void);
/* A frame from c arrived: what is due to it goes now. */
void	outbox_hurry(struct contact *c);
void	cover_arm(void);
/* Publishes, after the configured jitter. */
void	publish_direct(int64_t epoch, const char *topic, const uint8_t *frames, int n);

/* recv.c: frames in, to the handler of their type. */
int	recv_init(void);
void	recv_shutdown(void);
void	recv_frame(const char *topic, const uint8_t *frame, size_t len);
void	recv_forget(int64_t contact_id);
void	recv_tick(int64_t now);
void	recv_count_dropped(unsigned n);
void	recv_counters(uint64_t *in, uint64_t *dropped);

/* pairing.c: the contact agreement, cards, contact operations. */
void	handle_request(const char *topic, const uint8_t *body, size_t len);
void	handle_accept(struct contact *c, const uint8_t *body, size_t len);
void	handle_confirm(struct contact *c, const uint8_t *body, size_t len);
void	handle_fail(struct contact *c, const uint8_t *body, size_t len);
/* A frame opened under the pair's keys of a contact we accepted: the
 * requester proved its key.  1 when this established it. */
int	pairing_proven(struct contact *c, uint8_t type, const uint8_t *body,
	    size_t len);
/* Wipes the agreement state once it ended (established or failed). */
void	finish_agreement(struct contact *c);
/* The REQUEST in the outbox: sealed afresh, from a one-shot connection;
 * 0, or 1 when its lifetime ended (the contact failed). */
int	resend_request(struct contact *c, const uint8_t msgid[VEIL_MSGID_BYTES],
	    const uint8_t *body, size_t len);
void	pairing_prune(void);
/* Requests made to us, unanswered or unproven past requests.pending_ttl,
 * go. */
void	pairing_expire(void);

/* file.c, file_out.c, file_in.c: file transfers (docs/protocol.md 7.1). */
int	file_init(char *err, size_t errlen);
void	file_start(void);
void	file_shutdown(void);
/* A FILE message from c (its ACK is file.c's to send). */
void	file_handle(struct contact *c, const uint8_t msgid[VEIL_MSGID_BYTES],
	    const uint8_t *body, size_t len);
/* c acknowledged our FILE message msgid. */
void	file_acked(struct contact *c, const uint8_t msgid[VEIL_MSGID_BYTES]);
/* A contact went: the files of its transfers go too. */
void	file_sweep(void);
void	file_housekeeping(int64_t now);
/* The file a "file" message in the receive queue stands for. */
int	file_rx_info(const uint8_t *body, size_t len, struct engine_file *out);

/* reset.c: the contact reset after a restore (protocol.md 6.1). */
int	reset_load(void);
/* A restored contact whose keys are not renewed yet: nothing is sealed
 * for it under the stale chains. */
int	contact_resetting(const struct contact *c);
/* Sweep work: a due reset starts (once connected). */
void	reset_check(struct contact *c);
/* The outbox's RESET row is due: sealed afresh; 1 when the reset is over
 * (the row is stale and was removed). */
int	reset_resend(struct contact *c, const uint8_t msgid[VEIL_MSGID_BYTES],
	    const uint8_t *body, size_t len);
/* Sealed frames to our identity key. */
void	handle_reset(const uint8_t *body, size_t len);
void	handle_reset_ack(const uint8_t *body, size_t len);

/* rotation.c: the contact update (UPDATE, UPDATE-ACK, UPDATE-DONE). */
void	handle_update(struct contact *c, const uint8_t *body, size_t len);
void	handle_update_ack(struct contact *c, const uint8_t *body, size_t len);
void	handle_update_done(struct contact *c, const uint8_t *body, size_t len);
void	send_done(struct contact *c);
/* Starts an UPDATE to c (new: where we want it to send, NULL: keep;
 * with a fresh DH either way).  0, or -1. */
int	update_start(struct contact *c, const struct veil_inbox *new);
/* Sweep work for c: a due heal, an old key or seed whose time is up. */
void	rotation_check(struct contact *c, int64_t now);
/* The next heal of a contact, at a random time around keys.heal. */
int64_t	rotation_heal_time(void);
/* Re-seeds (level 3: the shared seed) and re-keys every contact. */
int	rotation_reseed_all(int *announced);
void	rotation_shutdown(void);
/* Tells every contact our seeds (new_seed) or our current settings. */
int	rotation_announce_all(int new_seed, int *announced);

#endif
