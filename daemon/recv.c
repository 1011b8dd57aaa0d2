/* recv.c: frames in — the sender lookup, opening, the replay window, reassembly, and the handler for each frame type. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core.h"
#include "log.h"

/*
 * Reassembly: limits.reassembly in all; each contact at most two of its
 * largest messages (one completing while the next begins) and
 * REASM_PEER_MSGS partial ones.  A contact that sends more loses its own
 * oldest partial message; when the total is reached the contact holding
 * the most loses (libveil's per-sender budgets).  Anonymous senders hold
 * nothing: a sealed frame is one whole REQUEST.
 */
#define REASM_MSGS	1024
#define REASM_PEER_MSGS	64
#define REASM_AGE_MS	(10 * 60 * 1000)
/* The largest body of a protocol message (ACCEPT, UPDATE, ACK, ...):
 * limits.message_max bounds what people send, not these. */
#define PROTO_BODY_MAX	(64u << 10)
/* Seconds between "over its quota" lines in the log. */
#define QUOTA_LOG_S	60

static struct {
	struct veil_reasm	*reasm;
	uint8_t			*bbuf;	/* one frame's body, scratch */
	uint64_t		 frames_in, dropped;
	int64_t			 quota_logged;	/* ms of the last quota line, 0: none */
} R;

void
recv_count_dropped(unsigned n)
{
	R.dropped += n;
}

void
recv_counters(uint64_t *in, uint64_t *dropped)
{
	*in = R.frames_in;
	*dropped = R.dropped;
}

void
recv_forget(int64_t contact_id)
{
	if (R.reasm != NULL)
		veil_reasm_forget(R.reasm, (uint64_t)contact_id);
}

void
recv_tick(int64_t now)
{
	veil_reasm_expire(R.reasm, (uint64_t)now, REASM_AGE_MS);
}

static void
handle_text(struct contact *c, uint8_t type, const uint8_t msgid[VEIL_MSGID_BYTES],
    const uint8_t *body, size_t len)
{
	struct store *st = eng_store();
	int64_t rid = 0;
	int isnew;
	uint8_t ackid[VEIL_MSGID_BYTES];
	struct engine_event ev;

	int64_t rows, bytes;
	int over;

	if (c->state != CONTACT_ESTABLISHED)
		return;
	if (txn_begin() != 0) {
		log_warnx("store: %s", store_errmsg(st));
		return;
	}
	/* A contact over its unread quota is not acknowledged: it keeps
	 * the message and sends it again later, when an app may have
	 * acknowledged some (nothing is lost, it waits).  A copy of one we
	 * hold is acknowledged as always. */
	if (store_rx_usage(st, c->id, &rows, &bytes) != 0)
		goto fail;
	over = rows >= (int64_t)eng_cfg()->limits.unread_messages ||
	    bytes + (int64_t)len > (int64_t)eng_cfg()->limits.unread_bytes;
	isnew = store_rx_add(st, c->id, msgid, type, body, len, now_ms(), &rid);
	if (isnew < 0)
		goto fail;
	if (isnew && over) {
		txn_rollback();
		R.dropped++;
		if (R.quota_logged == 0 ||
		    now_ms() - R.quota_logged >= QUOTA_LOG_S * 1000) {
			R.quota_logged = now_ms();
			log_info("contact %" PRId64 " is over its unread quota "
			    "(%" PRId64 " messages, %" PRId64 " bytes): its "
			    "messages wait at the sender until an app "
			    "acknowledges some", c->id, rows, bytes);
		}
		return;
	}
	/* ACK every copy: the first ACK may have been lost.  A copy means
	 * the sender did not hear us, maybe because it lost more of our
	 * frames than its lookahead covers: answer it at a resync landmark,
	 * climbing a level with each copy. */
	veil_msgid_new(ackid);
	if (send_to(c, VEIL_T_ACK, ackid, msgid, VEIL_MSGID_BYTES,
	    isnew ? 0 : dup_attempt(c)) != 0)
		goto fail;
	if (txn_commit() != 0)
		goto fail;
	if (isnew) {
		memset(&ev, 0, sizeof ev);
		ev.type = ENGINE_EV_MESSAGE;
		ev.msgtype = type;
		ev.name = c->name;
		msgid_hex(msgid, ev.msgid);
		ev.received = now_ms() / 1000;
		log_debug("message %s stored", ev.msgid);
		eng_event(&ev);
	}
	return;
fail:
	log_warnx("store: cannot keep a received message: %s", store_errmsg(st));
	txn_rollback();
}

static void
handle_ack(struct contact *c, const uint8_t *body, size_t len)
{
	struct store_outbox row;
	struct engine_event ev;

	if (len % VEIL_MSGID_BYTES != 0)
		return;
	for (size_t off = 0; off < len; off += VEIL_MSGID_BYTES) {
		int r = store_outbox_ack(eng_store(), c->id, body + off, &row);

		/* A file's parts count for its transfer; apps hear of the
		 * transfer, not of each part. */
		if (r == 1 && row.type == VEIL_T_FILE)
			file_acked(c, body + off);
		else if (r == 1) {
			memset(&ev, 0, sizeof ev);
			ev.type = ENGINE_EV_DELIVERY;
			ev.name = c->name;
			msgid_hex(body + off, ev.msgid);
			eng_event(&ev);
		} else if (r < 0)
			log_warnx("store: %s", store_errmsg(eng_store()));
	}
	contact_save(c);	/* persists the receive window */
}

/* Adapters to one handler shape. */
static void
on_text(struct contact *c, uint8_t t, const uint8_t *id, const uint8_t *b, size_t n)
{
	handle_text(c, t, id, b, n);
}

static void
on_file(struct contact *c, uint8_t t, const uint8_t *id, const uint8_t *b, size_t n)
{
	(void)t;
	file_handle(c, id, b, n);
}
#define ADAPT(name, fn)							\
static void								\
name(struct contact *c, uint8_t t, const uint8_t *id, const uint8_t *b,	\
    size_t n)								\
{									\
	(void)t;							\
	(void)id;							\
	fn(c, b, n);							\
}
ADAPT(on_ack, handle_ack)
ADAPT(on_accept, handle_accept)
ADAPT(on_fail, handle_fail)
ADAPT(on_update, handle_update)
ADAPT(on_update_ack, handle_update_ack)
ADAPT(on_update_done, handle_update_done)

#define S_EP0	1	/* the agreement's epoch-0 key */
#define S_PAIR	2	/* the pair's chains */

/*
 * Which frame type is accepted under which key, and who handles it.  The
 * epoch-0 key (K alone) proves nothing about the peer: it carries the
 * ACCEPT to the initiator and a FAIL, nothing else (libveil's
 * veil_agree_epoch0_allows() says which side may take which); everything
 * else, the CONFIRM first, only under the pair's chains, which only the
 * holders of both identity keys can derive.  COVER is dropped after
 * authentication.
 */
static const struct dispatch {
	uint8_t	 type;
	int	 slots;
	void	(*fn)(struct contact *, uint8_t, const uint8_t *,
		    const uint8_t *, size_t);
} dispatch[] = {
	{ VEIL_T_TEXT,		S_PAIR,	on_text },
	{ VEIL_T_FILE,		S_PAIR,	on_file },
	{ VEIL_T_ACK,		S_PAIR,	on_ack },
	{ VEIL_T_ACCEPT,	S_EP0,	on_accept },
	{ VEIL_T_CONFIRM,	S_PAIR,	NULL },	/* pairing_proven took it */
	{ VEIL_T_FAIL,		S_EP0,	on_fail },
	{ VEIL_T_UPDATE,	S_PAIR,	on_update },
	{ VEIL_T_UPDATE_ACK,	S_PAIR,	on_update_ack },
	{ VEIL_T_UPDATE_DONE,	S_PAIR,	on_update_done },
	{ VEIL_T_COVER,		S_PAIR,	NULL },
};

static void
dispatch_msg(struct contact *c, int slot, uint8_t type,
    const uint8_t msgid[VEIL_MSGID_BYTES], const uint8_t *body, size_t len)
{
	int kind = slot == SLOT_EPOCH0 ? S_EP0 : S_PAIR;

	if (kind == S_EP0 && (c->agree == NULL ||
	    !veil_agree_epoch0_allows(c->agree, type))) {
		log_debug("contact %" PRId64 ": %s under the agreement key dropped",
		    c->id, veil_type_name(type));
		return;
	}
	/* The requester's first frame under the pair's chains proves its
	 * key: only then is the contact established (protocol.md 4). */
	if (kind == S_PAIR && c->state == CONTACT_ACCEPTED) {
		pairing_proven(c, type, body, len);
		if (type == VEIL_T_CONFIRM || c->state != CONTACT_ESTABLISHED)
			return;
	}
	for (size_t i = 0; i < sizeof dispatch / sizeof dispatch[0]; i++) {
		const struct dispatch *d = &dispatch[i];

		if (d->type != type)
			continue;
		if (!(d->slots & kind)) {
			log_debug("contact %" PRId64 ": %s under key slot %d dropped",
			    c->id, veil_type_name(type), slot);
			return;
		}
		if (d->fn != NULL)
			d->fn(c, type, msgid, body, len);
		return;
	}
}

/* The largest body of a message of this type we take. */
static size_t
msg_max(uint8_t type)
{
	if (type == VEIL_T_TEXT || type == VEIL_T_FILE)
		return eng_cfg()->limits.message_max;
	return PROTO_BODY_MAX;
}

/* One authenticated frame of contact c: window, reassembly, dispatch. */
static void
contact_frame(struct contact *c, int slot, struct veil_rxdir *d, uint64_t seq,
    const uint8_t *frame)
{
	size_t fs = eng_cfg()->frames.size;
	struct veil_frame_hdr h;
	uint8_t *msg = NULL;
	uint64_t clock_slot;
	size_t msglen;
	int r;

	if ((r = veil_frame_open(frame, fs, &d->k, seq, &h, R.bbuf)) != 0 ||
	    (r = veil_window_check(&d->w, seq)) != 0) {
		log_debug("contact %" PRId64 " slot %d seq %" PRIu64 ": frame dropped: %s",
		    c->id, slot, seq, veil_strerror(r));
		R.dropped++;
		return;
	}
	contact_rx_commit(c, slot, seq);
	/* A sender beyond the resync ladder met us here (protocol.md 2.1). */
	if (veil_clock_landmark(seq, &clock_slot))
		log_debug("contact %" PRId64 " slot %d: frame at the clock "
		    "landmark of slot %" PRIu64, c->id, slot, clock_slot);
	/* Still the old chain after our UPDATE-DONE: it was lost. */
	if (slot >= VEIL_PAIR_PREV && slot < VEIL_PAIR_OWNERS &&
	    !rxchain_used(&c->pair.rx) && !c->pair.upd_pending &&
	    c->done_at != eng_tick() && txn_begin() == 0) {
		send_done(c);
		txn_commit();
	}
	outbox_hurry(c);
	/* Refused at its first frame, before any memory is set aside for
	 * it, and never acknowledged: a larger message than we take. */
	if ((uint64_t)h.frag_cnt * veil_frame_capacity(fs, 0) >
	    msg_max(h.type) + veil_frame_capacity(fs, 0) - 1) {
		log_debug("contact %" PRId64 ": %s of %u frames over the limit, "
		    "dropped", c->id, veil_type_name(h.type), h.frag_cnt);
		R.dropped++;
		return;
	}
	r = veil_reasm_add(R.reasm, (uint64_t)c->id, &h, R.bbuf,
	    veil_frame_capacity(fs, 0), (uint64_t)now_ms(), &msg, &msglen);
	if (r == 1 && msglen > msg_max(h.type)) {
		R.dropped++;
		sodium_memzero(msg, msglen);
		free(msg);
		return;
	}
	if (r < 0) {
		log_debug("contact %" PRId64 ": fragment dropped: %s", c->id,
		    veil_strerror(r));
		R.dropped++;
	}
	if (r == 1) {
		/* One bracket: the handler's writes and the frames it answers
		 * with go together (and are grouped with the other frames of
		 * this loop iteration). */
		int bracket = txn_begin() == 0;

		dispatch_msg(c, slot, h.type, h.msgid, msg, msglen);
		if (bracket)
			txn_commit();
		sodium_memzero(msg, msglen);
		free(msg);
	}
}

void
recv_frame(const char *topic, const uint8_t *frame, size_t len)
{
	const struct veil_identity *id = eng_identity();
	size_t fs = eng_cfg()->frames.size;
	uint8_t tag[VEIL_TAG_BYTES];
	struct veil_frame_hdr h;
	struct contact *c = NULL;
	struct veil_rxdir *d;
	uint64_t seq;
	int slot, on_card;

	R.frames_in++;
	if (len != fs) {
		R.dropped++;
		return;
	}
	veil_frame_tag(frame, tag);
	if ((d = contact_lookup(tag, &c, &slot, &seq)) != NULL) {
		contact_frame(c, slot, d, seq, frame);
		return;
	}
	if (c != NULL) {	/* a slot whose key is gone */
		R.dropped++;
		return;
	}
	/*
	 * Unknown tag: maybe a frame sealed to our identity: a first-contact
	 * REQUEST on a live card of ours (an in-memory set), or a contact's
	 * RESET or RESET-ACK after a restore on one of its inboxes.  Each
	 * costs one X25519, whatever the number of contacts, and no store
	 * access before it opens; a REQUEST anywhere but on a card, or a
	 * reset on a card, is dropped.  One frame always: an anonymous sender
	 * reserves no reassembly memory.
	 */
	{
		struct veil_id cid;
		int one_time;

		on_card = inbox_card_live(topic, &cid, &one_time);
	}
	if (veil_frame_open_box(frame, fs, id->pk, id->sk, &h, R.bbuf) != 0) {
		log_debug("frame on %s dropped: no key expects it", topic);
		R.dropped++;
		return;
	}
	{
		int bracket = txn_begin() == 0;

		/* veil_frame_open_box took only the sealed types. */
		if ((h.type == VEIL_T_REQUEST) != on_card) {
			log_debug("frame on %s dropped: sealed type 0x%02x "
			    "out of place", topic, h.type);
			R.dropped++;
		} else if (h.type == VEIL_T_RESET)
			handle_reset(R.bbuf, h.len);
		else if (h.type == VEIL_T_RESET_ACK)
			handle_reset_ack(R.bbuf, h.len);
		else
			handle_request(topic, R.bbuf, h.len);
		if (bracket)
			txn_commit();
	}
	sodium_memzero(R.bbuf, fs);
}

int
recv_init(void)
{
	const struct veild_config *cfg = eng_cfg();

	memset(&R, 0, sizeof R);
	/* Two of the largest messages, each rounded up to whole frames. */
	R.reasm = veil_reasm_new(cfg->limits.reassembly, REASM_MSGS);
	R.bbuf = malloc(cfg->frames.size);
	if (R.reasm == NULL || R.bbuf == NULL ||
	    veil_reasm_limit_peer(R.reasm, 2 * (cfg->limits.message_max +
	    veil_frame_capacity(cfg->frames.size, 0)), REASM_PEER_MSGS) != 0)
		return -1;
	return 0;
}

void
recv_shutdown(void)
{
	veil_reasm_free(R.reasm);
	if (R.bbuf != NULL) {
		sodium_memzero(R.bbuf, eng_cfg()->frames.size);
		free(R.bbuf);
	}
	memset(&R, 0, sizeof R);
}
