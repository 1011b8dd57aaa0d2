/* veil-demo: the protocol walk-through (card, agreement, messages, key periods, update) with real libveil calls and a simulated broker. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "veil.h"

#define FRAME_SIZE VEIL_FRAME_DEFAULT
#define MAX_WIRE 16
#define KEY_PERIOD 3600		/* both users' key period, seconds */
#define EPOCH_LEN 3600		/* both users' epoch length */
#define GRACE 120		/* receive tolerance around a boundary */
/* Tag-table owners: 0..5 the contact's receive keys (veil_pair_rxslot),
 * 6 the agreement's first key (ACCEPT). */
#define OWNER_EPOCH0 VEIL_PAIR_OWNERS
#define NOT_FOUND (-1)
#define SEALED (-2)

/* One user's device: identity, the tag table that finds senders, receive keys. */
struct device {
	const char *name;
	struct veil_identity id;
	struct veil_tagtab *tags;
	struct veil_pair *pair;		/* the one contact of the demo */
	struct veil_rxdir *epoch0;
};

/* One frame as the broker handles it: a topic and bytes. */
struct wire {
	char topic[VEIL_ID_TEXT_MAX + 1];
	uint8_t frame[FRAME_SIZE];
	const char *what;	/* for the summary only: the broker never knows this */
};

static struct wire wirelog[MAX_WIRE];
static size_t nwire;
static int step;

static void
fail(const char *what, int err)
{
	fprintf(stderr, "\nveil-demo: step %d failed: %s: %s\n", step, what,
	    err < 0 ? veil_strerror(err) : "unexpected result");
	exit(1);
}

static void
check(int rc, const char *what)
{
	if (rc < 0)
		fail(what, rc);
}

static void
expect(int cond, const char *what)
{
	if (!cond)
		fail(what, 0);
}

static void
heading(const char *title)
{
	printf("\n[%d] %s\n", ++step, title);
}

static void
say(const char *who, const char *fmt, ...)
{
	va_list ap;

	printf("    %-9s ", who);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

static void
id_text(const struct veil_id *id, char out[VEIL_ID_TEXT_MAX + 1])
{
	check(veil_id_to_text(id, out, VEIL_ID_TEXT_MAX + 1), "inbox to text");
}

/* Publishes one frame: the only thing an observer of the broker sees. */
static struct wire *
publish(const char *topic, const uint8_t *frame, const char *what)
{
	struct wire *w;

	expect(nwire < MAX_WIRE, "wire log full");
	w = &wirelog[nwire++];
	snprintf(w->topic, sizeof(w->topic), "%s", topic);
	memcpy(w->frame, frame, FRAME_SIZE);
	w->what = what;
	say("Wire:", "topic %s, %d bytes of ciphertext", w->topic, FRAME_SIZE);
	return w;
}

static void
device_init(struct device *d, const char *name)
{
	memset(d, 0, sizeof(*d));
	d->name = name;
	check(veil_identity_new(&d->id), "new identity");
	d->tags = veil_tagtab_new(64);
	expect(d->tags != NULL, "tag table");
}

/* The topic a peer publishes to at time t: derived from the inbox seed it
 * was given and the epoch number, fresh every epoch. */
static void
topic_of(const struct veil_inbox *in, uint64_t t, char out[VEIL_ID_TEXT_MAX + 1])
{
	check(veil_topic_text(in->seed, veil_epoch_number(t, in->epoch), out,
	    VEIL_ID_TEXT_MAX + 1), "derive topic");
}

static void
device_arm_pair(struct device *d, struct veil_pair *p)
{
	d->pair = p;
	check(veil_pair_arm(d->tags, p, 0, VEIL_LOOKAHEAD), "arm receive tags");
}

static void
device_arm_epoch0(struct device *d, struct veil_rxdir *rx)
{
	d->epoch0 = rx;
	check(veil_rx_arm(d->tags, rx, OWNER_EPOCH0, VEIL_LOOKAHEAD), "arm receive tags");
}

static void
device_disarm_epoch0(struct device *d)
{
	veil_rx_disarm(d->tags, d->epoch0, VEIL_LOOKAHEAD);
	d->epoch0 = NULL;
}

/*
 * What a device does with a frame from its subscription: look the 8-byte
 * tag up, open under the key it names; unknown tags are tried as a sealed
 * frame to the identity key.  Returns the owner, SEALED or NOT_FOUND.
 */
static int
receive(struct device *d, const struct wire *w, struct veil_frame_hdr *h, uint8_t *body)
{
	uint8_t tag[VEIL_TAG_BYTES];
	uint64_t owner, seq;
	struct veil_rxdir *rx;

	veil_frame_tag(w->frame, tag);
	if (veil_tagtab_get(d->tags, tag, &owner, &seq) != 0) {
		if (veil_frame_open_box(w->frame, FRAME_SIZE, d->id.pk, d->id.sk, h,
		    body) != 0)
			return NOT_FOUND;
		return SEALED;
	}
	if (owner == OWNER_EPOCH0)
		rx = d->epoch0;
	else
		rx = veil_pair_rxslot(d->pair, (unsigned)owner);
	expect(rx != NULL, "tag names a known key");
	check(veil_window_check(&rx->w, seq), "replay window");
	check(veil_frame_open(w->frame, FRAME_SIZE, &rx->k, seq, h, body), "open frame");
	check(veil_rx_commit(d->tags, rx, owner, seq, VEIL_LOOKAHEAD), "commit sequence number");
	expect(h->frag_cnt == 1, "single-frame message");
	return (int)owner;
}

/* Seals under the transmit chain, moved to the sender's clock first. */
static void
seal_tx(struct veil_txchain *tx, uint64_t now, uint8_t type, const uint8_t *body,
    size_t len, uint8_t frame[FRAME_SIZE])
{
	uint8_t msgid[VEIL_MSGID_BYTES];

	check(veil_txchain_advance(tx, now), "move the transmit chain to now");
	veil_msgid_new(msgid);
	expect(veil_message_seal(frame, FRAME_SIZE, FRAME_SIZE, &tx->k, &tx->seq,
	    type, msgid, body, len) == 1, "seal frame");
}

static void
send_text(struct veil_pair *from, uint64_t now, const char *text, struct wire **w)
{
	uint8_t frame[FRAME_SIZE];
	char topic[VEIL_ID_TEXT_MAX + 1];

	seal_tx(&from->tx, now, VEIL_T_TEXT, (const uint8_t *)text, strlen(text), frame);
	topic_of(&from->peer_inbox, now, topic);
	*w = publish(topic, frame, "TEXT");
}

static void
read_text(struct device *d, const struct wire *w, const char *from)
{
	struct veil_frame_hdr h;
	uint8_t body[FRAME_SIZE];
	int owner = receive(d, w, &h, body);

	expect(owner >= 0 && owner < VEIL_PAIR_OWNERS, "frame found under the contact's key");
	expect(h.type == VEIL_T_TEXT, "a TEXT frame");
	say(d->name, "sees: %s: \"%.*s\"   (seq %llu of key period %llu, found by its tag)",
	    from, (int)h.len, (const char *)body, (unsigned long long)h.seq,
	    (unsigned long long)veil_pair_rxslot(d->pair, (unsigned)owner)->period);
}

static void
summary(void)
{
	size_t topics = 0;

	printf("\n[%d] What the broker saw\n", ++step);
	for (size_t i = 0; i < nwire; i++) {
		int seen = 0;

		for (size_t j = 0; j < i; j++)
			seen |= strcmp(wirelog[i].topic, wirelog[j].topic) == 0;
		topics += !seen;
		printf("    %2zu  topic %-24s %d bytes    (really: %s)\n", i + 1,
		    wirelog[i].topic, FRAME_SIZE, wirelog[i].what);
	}
	printf("    %zu frames on %zu random topics, every one %d bytes of random-looking\n"
	    "    bytes: no names, no keys, no types, no sizes. The last column is what\n"
	    "    only Alice and Bob know.\n", nwire, topics, FRAME_SIZE);
}

int
main(int argc, char **argv)
{
	struct device alice, bob;
	struct veil_card card, scanned;
	struct veil_id alice_cid;
	struct veil_inbox alice_inbox, bob_inbox, alice_new;
	struct veil_agree ag_a, ag_b;
	struct veil_pair pa, pb;
	struct veil_dirkey r2i, i2r;
	struct veil_rxdir bob_epoch0;
	struct veil_clock clk;
	struct veil_frame_hdr h;
	struct veil_ccm ccm;
	struct wire *w;
	uint8_t frame[FRAME_SIZE], body[FRAME_SIZE], out[VEIL_AGREE_BODY_MAX];
	uint8_t msgid[VEIL_MSGID_BYTES], old_root[VEIL_KEY_BYTES], type = 0;
	char uri[VEIL_CARD_URI_MAX], t1[VEIL_ID_TEXT_MAX + 1], t2[VEIL_ID_TEXT_MAX + 1];
	char fp_a[VEIL_FP_TEXT], fp_b[VEIL_FP_TEXT], *qr = NULL, *upd = NULL, *ack = NULL;
	size_t len, updlen, acklen;
	uint64_t now = (uint64_t)time(NULL), period;

	if (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
		printf("usage: %s\n  Walks through veil's protocol between two local users "
		    "with real keys and frames.\n", argv[0]);
		return 0;
	}
	if (veil_init() != 0) {
		fprintf(stderr, "veil-demo: libsodium failed to initialise\n");
		return 1;
	}
	memset(&ag_a, 0, sizeof(ag_a));
	memset(&ag_b, 0, sizeof(ag_b));
	memset(&pa, 0, sizeof(pa));
	memset(&pb, 0, sizeof(pb));
	memset(&bob_epoch0, 0, sizeof(bob_epoch0));
	clk.now = now;
	clk.grace = clk.lead = GRACE;

	printf("veil demo (wire protocol %d): Alice and Bob become contacts and talk\n"
	    "through a broker that learns nothing but random-looking topic names and\n"
	    "same-sized frames (%d bytes).  Everything below is real: real keys, real\n"
	    "sealed frames, opened again; the clock is simulated where the demo skips\n"
	    "ahead.\n", VEIL_PROTOCOL_VERSION, FRAME_SIZE);

	heading("Alice makes a contact card");
	device_init(&alice, "Alice");
	device_init(&bob, "Bob");
	memset(&card, 0, sizeof(card));
	check(veil_id_new(&alice_cid, 0), "new card inbox");
	card.cid = alice_cid;
	memcpy(card.pk, alice.id.pk, VEIL_KEY_BYTES);
	snprintf(card.name, sizeof(card.name), "Alice");
	card.expires = now + 7 * 86400;
	check(veil_card_encode(&card, uri, sizeof(uri)), "encode card");
	say("Alice", "sees her card (valid 7 days), to show on screen or send as a link:");
	printf("      %s\n", uri);
	check(veil_qr_utf8(uri, &qr), "QR code");
	fputs(qr, stdout);
	free(qr);
	say("Wire:", "nothing: the card travels out of band (scanned, or sent as a link).");

	heading("Bob scans the card");
	check(veil_card_decode(&scanned, uri, now), "decode card");
	id_text(&scanned.cid, t1);
	say("Bob", "sees: \"%s\" wants to be reachable; card checked (checksum, expiry).",
	    scanned.name);
	say("", "Her request inbox is %s, a random name.", t1);
	say("Wire:", "nothing yet.");

	heading("Agreement 1/3, REQUEST: Bob asks to connect");
	veil_seed_new(bob_inbox.seed);
	bob_inbox.epoch = EPOCH_LEN;
	bob_inbox.period = KEY_PERIOD;
	len = sizeof(out);
	check(veil_agree_request(&ag_b, &scanned, bob.id.pk, "Bob", &bob_inbox, now, out,
	    &len), "build REQUEST");
	veil_msgid_new(msgid);
	expect(veil_message_seal_box(frame, sizeof(frame), FRAME_SIZE, scanned.pk,
	    VEIL_T_REQUEST, msgid, out, len) == 1, "seal REQUEST");
	/* Bob will receive ACCEPT under the agreement's first key. */
	veil_agree_epoch0(&ag_b, &r2i, &i2r);
	bob_epoch0.k = r2i;
	veil_window_init(&bob_epoch0.w);
	bob_epoch0.live = 1;
	device_arm_epoch0(&bob, &bob_epoch0);
	say("Bob", "sees: \"Request sent to Alice.\"  It names a secret inbox seed for him,");
	say("", "so no inbox name of his ever travels.");
	id_text(&scanned.cid, t1);
	w = publish(t1, frame, "REQUEST, sealed to Alice's key");
	expect(receive(&alice, w, &h, body) == SEALED && h.type == VEIL_T_REQUEST,
	    "Alice opens the sealed REQUEST");
	check(veil_agree_on_request(&ag_a, &alice_cid, alice.id.pk, now, 3 * 86400, body,
	    h.len), "check REQUEST");
	check(veil_fingerprint(alice.id.pk, ag_a.peer_pk, fp_a), "fingerprint");
	say("Alice", "sees: \"%s wants to connect. Accept?\"  (nothing is sent until she says yes)",
	    ag_a.peer_name);
	say("", "Safety number %s: UNVERIFIED (only a claim so far).", fp_a);

	heading("Agreement 2/3, ACCEPT: Alice says yes");
	veil_seed_new(alice_inbox.seed);
	alice_inbox.epoch = EPOCH_LEN;
	alice_inbox.period = KEY_PERIOD;
	len = sizeof(out);
	check(veil_agree_accept(&ag_a, alice.id.sk, &alice_inbox, &clk, out, &len, &pa),
	    "build ACCEPT");
	veil_agree_epoch0(&ag_a, &r2i, &i2r);
	{
		uint64_t seq = 0;

		veil_msgid_new(msgid);
		expect(veil_message_seal(frame, sizeof(frame), FRAME_SIZE, &r2i, &seq,
		    VEIL_T_ACCEPT, msgid, out, len) == 1, "seal ACCEPT");
	}
	veil_dirkey_wipe(&r2i);
	veil_dirkey_wipe(&i2r);
	device_arm_pair(&alice, &pa);
	say("Alice", "sees: \"Accepted. Waiting for Bob to prove his key.\"");
	topic_of(&ag_a.peer_inbox, now, t1);
	w = publish(t1, frame, "ACCEPT");
	expect(receive(&bob, w, &h, body) == OWNER_EPOCH0 && h.type == VEIL_T_ACCEPT &&
	    veil_agree_epoch0_allows(&ag_b, h.type), "Bob opens ACCEPT");
	device_disarm_epoch0(&bob);
	veil_dirkey_wipe(&bob_epoch0.k);
	len = sizeof(out);
	check(veil_agree_on_accept(&ag_b, bob.id.sk, &clk, body, h.len, &pb, out, &len,
	    &type), "check ACCEPT");
	expect(type == VEIL_T_CONFIRM && ag_b.state == VEIL_AG_ESTABLISHED,
	    "transcript hashes match");
	device_arm_pair(&bob, &pb);
	say("Bob", "sees: \"Alice accepted.\" His device checked her keyed transcript hash;");
	say("", "his keys need both identity keys and both ephemeral keys.");

	heading("Agreement 3/3, CONFIRM: Bob proves his key");
	seal_tx(&pb.tx, now, type, out, len, frame);
	topic_of(&pb.peer_inbox, now, t1);
	w = publish(t1, frame, "CONFIRM");
	expect(receive(&alice, w, &h, body) >= 0 && h.type == VEIL_T_CONFIRM,
	    "Alice opens CONFIRM under the chain only Bob's secret key derives");
	check(veil_agree_on_confirm(&ag_a, body, h.len), "check CONFIRM");
	check(veil_fingerprint(alice.id.pk, ag_a.peer_pk, fp_a), "fingerprint");
	check(veil_fingerprint(bob.id.pk, ag_b.peer_pk, fp_b), "fingerprint");
	expect(strcmp(fp_a, fp_b) == 0, "both see the same safety number");
	say("Alice", "sees: \"Bob is now a contact.\"  His key is proven.");
	say("Both", "see the safety number %s", fp_a);
	say("", "(equal on both phones: nobody sat in the middle)");
	veil_agree_wipe(&ag_a);
	veil_agree_wipe(&ag_b);

	heading("Messages, one each way");
	send_text(&pb, now, "Hi Alice, it's Bob!", &w);
	read_text(&alice, w, "Bob");
	send_text(&pa, now, "Hello Bob. Nice and quiet here.", &w);
	read_text(&bob, w, "Alice");

	heading("An hour later: new epoch, new key period, nothing sent about it");
	topic_of(&pb.peer_inbox, now, t1);
	memcpy(old_root, pb.tx.k.root, sizeof(old_root));
	period = pb.tx.period;
	now = (now / KEY_PERIOD + 1) * KEY_PERIOD + GRACE + 5;
	clk.now = now;
	expect(veil_pair_advance(&pa, &clk, alice.tags, 0, VEIL_LOOKAHEAD) >= 0 &&
	    veil_pair_advance(&pb, &clk, bob.tags, 0, VEIL_LOOKAHEAD) >= 0,
	    "every chain moves to the new key period");
	topic_of(&pb.peer_inbox, now, t2);
	say("Both", "move every key chain one period on: key %llu is wiped, %llu is used,",
	    (unsigned long long)period, (unsigned long long)pb.tx.period);
	say("", "and the old key cannot be derived back from the new one.");
	expect(sodium_memcmp(old_root, pb.tx.k.root, VEIL_KEY_BYTES) != 0 &&
	    veil_rxchain_find(&pa.rx, period) == NULL, "the old key is gone");
	say("Bob", "now sends to Alice at %s (was %s):", t2, t1);
	say("", "the same seed, the next epoch; nobody without the seed can tell that");
	say("", "the two topics belong together.");
	send_text(&pb, now, "Still here, new key.", &w);
	read_text(&alice, w, "Bob");

	heading("Update: Alice moves to a new inbox seed (UPDATE, UPDATE-ACK)");
	veil_seed_new(alice_new.seed);
	alice_new.epoch = EPOCH_LEN;
	alice_new.period = KEY_PERIOD;
	check(veil_update_build(&pa, alice.id.pk, "Alice", &alice_new, 0, &upd, &updlen),
	    "build UPDATE");
	seal_tx(&pa.tx, now, VEIL_T_UPDATE, (const uint8_t *)upd, updlen, frame);
	say("Alice", "sees: nothing; her device rotates on its own schedule.");
	topic_of(&pa.peer_inbox, now, t1);
	w = publish(t1, frame, "UPDATE (new seed, fresh ephemeral key)");
	expect(receive(&bob, w, &h, body) >= 0 && h.type == VEIL_T_UPDATE,
	    "Bob opens UPDATE");
	topic_of(&pb.peer_inbox, now, t1);
	check(veil_update_on_update(&pb, "Alice", now, (const char *)body, h.len, &ccm,
	    &ack, &acklen), "apply UPDATE");
	topic_of(&pb.peer_inbox, now, t2);
	say("Bob", "sees: nothing; his device now sends to %s", t2);
	say("", "(was %s); her key and her old seed in it were checked.", t1);
	/* The ACK goes under the chain Alice reads; Bob's new one waits. */
	seal_tx(&pb.tx, now, VEIL_T_UPDATE_ACK, (const uint8_t *)ack, acklen, frame);
	w = publish(t2, frame, "UPDATE-ACK (Bob's fresh ephemeral key)");
	expect(receive(&alice, w, &h, body) >= 0 && h.type == VEIL_T_UPDATE_ACK,
	    "Alice opens UPDATE-ACK");
	/* Alice's receive chains change: re-index her tag table around it. */
	veil_pair_disarm(alice.tags, &pa, VEIL_LOOKAHEAD);
	check(veil_update_on_ack(&pa, &clk, (const char *)body, h.len), "apply UPDATE-ACK");
	device_arm_pair(&alice, &pa);
	expect(sodium_memcmp(pa.rx.bind, pb.tx_next.bind, VEIL_KEY_BYTES) == 0,
	    "both sides derived the same new chain");
	say("Alice", "sees: nothing; her device holds the new chain from Bob.");
	free(upd);
	free(ack);

	heading("Alice confirms she holds the new chain (UPDATE-DONE)");
	check(veil_update_done_build(&pa, &upd, &updlen), "build UPDATE-DONE");
	seal_tx(&pa.tx, now, VEIL_T_UPDATE_DONE, (const uint8_t *)upd, updlen, frame);
	topic_of(&pa.peer_inbox, now, t1);
	w = publish(t1, frame, "UPDATE-DONE");
	expect(receive(&bob, w, &h, body) >= 0 && h.type == VEIL_T_UPDATE_DONE,
	    "Bob opens UPDATE-DONE");
	check(veil_update_on_done(&pb, (const char *)body, h.len), "switch to the new chain");
	say("Bob", "sees: nothing; from now on he seals under the new chain.");
	free(upd);

	heading("Bob writes to Alice's new inbox");
	send_text(&pb, now, "Still there?", &w);
	read_text(&alice, w, "Bob");
	say("", "The old chain is kept only for a grace period, then wiped.");
	veil_pair_disarm(alice.tags, &pa, VEIL_LOOKAHEAD);
	veil_pair_drop_prev(&pa);
	device_arm_pair(&alice, &pa);

	summary();
	printf("\nDemo finished: every step succeeded.\n");

	veil_tagtab_free(alice.tags);
	veil_tagtab_free(bob.tags);
	veil_pair_wipe(&pa);
	veil_pair_wipe(&pb);
	veil_identity_wipe(&alice.id);
	veil_identity_wipe(&bob.id);
	return 0;
}
