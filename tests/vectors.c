/* The known-answer scenario: every value of tests/vectors/v2.txt, produced with real libveil calls. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "veil.h"
#include "testutil.h"
#include "vectors.h"

/* Largest byte string written as one hex value (UPDATE bodies are text). */
#define VO_HEX_MAX 1024
/* A fixed "now" (2026-01-01 00:00 UTC): Bob's t_B, and the card's
 * expiry check. */
#define VECTORS_NOW 1767225600ULL
/* The card expires 2030-01-01: after VECTORS_NOW, so it decodes. */
#define VECTORS_EXPIRES 1893456000ULL

struct vout {
	char *p;
	size_t len, cap;
	int err;
};

static void
vo_line(struct vout *o, const char *name, const char *val)
{
	int n;

	if (o->err)
		return;
	n = snprintf(o->p + o->len, o->cap - o->len, "%s = %s\n", name, val);
	if (n < 0 || (size_t)n >= o->cap - o->len) {
		o->err = 1;
		return;
	}
	o->len += (size_t)n;
}

static void
vo_hex(struct vout *o, const char *name, const uint8_t *b, size_t n)
{
	char hex[2 * VO_HEX_MAX + 1];

	if (n > VO_HEX_MAX) {
		o->err = 1;
		return;
	}
	sodium_bin2hex(hex, sizeof(hex), b, n);
	vo_line(o, name, hex);
}

/* Text values must stay on one line, or the file format breaks. */
static void
vo_text(struct vout *o, const char *name, const char *s, size_t n)
{
	char buf[2 * VO_HEX_MAX + 1];

	if (n >= sizeof(buf)) {
		o->err = 1;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
			o->err = 1;
			return;
		}
	}
	memcpy(buf, s, n);
	buf[n] = '\0';
	vo_line(o, name, buf);
}

static void
vo_u64(struct vout *o, const char *name, uint64_t v)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "%" PRIu64, v);
	vo_line(o, name, buf);
}

static void
vo_id(struct vout *o, const char *name, const struct veil_id *id)
{
	char text[VEIL_ID_TEXT_MAX + 1];

	if (veil_id_to_text(id, text, sizeof(text)) < 0) {
		o->err = 1;
		return;
	}
	vo_line(o, name, text);
}

static void
fill_seq(uint8_t *b, size_t n, uint8_t start)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(start + i);
}

#define STEP(name, cond) do {				\
	if (!(cond) || o.err) {				\
		*why = (name);				\
		goto out;				\
	}						\
} while (0)

static void
vo_inbox(struct vout *o, const char *prefix, const struct veil_inbox *in)
{
	char name[64];

	snprintf(name, sizeof(name), "%s.seed", prefix);
	vo_hex(o, name, in->seed, VEIL_SEED_BYTES);
	snprintf(name, sizeof(name), "%s.epoch", prefix);
	vo_u64(o, name, in->epoch);
	snprintf(name, sizeof(name), "%s.period", prefix);
	vo_u64(o, name, in->period);
}

int
vectors_generate(const char *seed, char *out, size_t outlen, const char **why)
{
	static const char text[] = "Hello Bob! This is veil test vector one.";
	static const uint64_t seqs[] = { 0, 1, UINT64_C(1) << 32 };
	static const uint64_t epochs[] = { 0, 1, VECTORS_NOW / 3600 };
	static const char done_want[] = "{\"Data\":\"UpdateDone\",\"Seq\":1}";
	struct vout o = { out, 0, outlen, 0 };
	uint8_t root[VEIL_KEY_BYTES], next[VEIL_KEY_BYTES], tag[VEIL_TAG_BYTES];
	uint8_t msgid[VEIL_MSGID_BYTES], frame[VECTORS_FRAME * 3], bind[VEIL_KEY_BYTES];
	uint8_t body[VEIL_FRAME_MAX], pbody[VECTORS_FRAME], tseed[VEIL_SEED_BYTES];
	uint8_t bseed[crypto_box_SEEDBYTES], bpk[VEIL_KEY_BYTES], bsk[VEIL_KEY_BYTES];
	uint8_t rbody[VEIL_AGREE_BODY_MAX], abody[VEIL_AGREE_BODY_MAX], cbody[VEIL_AGREE_BODY_MAX];
	uint8_t ctype = 0;
	char name[64], uri[VEIL_CARD_URI_MAX], fp[VEIL_FP_TEXT], fp2[VEIL_FP_TEXT];
	char topic[VEIL_TOPIC_TEXT];
	struct veil_dirkey dk, r2i, i2r, r2i_b, i2r_b;
	struct veil_frame_hdr h, h2;
	struct veil_identity alice, bob;
	struct veil_card card, scanned;
	struct veil_inbox bob_inbox, alice_inbox, alice_new;
	struct veil_agree ab, aa;
	struct veil_pair bob_pair, alice_pair;
	struct veil_rxdir *d;
	struct veil_clock clk;
	struct veil_ccm ccm;
	char *ubody = NULL, *ack = NULL, *done = NULL;
	size_t len, rlen, alen, clen, ulen = 0, acklen = 0, donelen = 0, cap;
	uint64_t seq;
	int ret = -1;

	*why = NULL;
	memset(&alice, 0, sizeof(alice));
	memset(&bob, 0, sizeof(bob));
	memset(&ab, 0, sizeof(ab));
	memset(&aa, 0, sizeof(aa));
	memset(&bob_pair, 0, sizeof(bob_pair));
	memset(&alice_pair, 0, sizeof(alice_pair));
	memset(&dk, 0, sizeof(dk));
	memset(&r2i, 0, sizeof(r2i));
	memset(&i2r, 0, sizeof(i2r));
	memset(&r2i_b, 0, sizeof(r2i_b));
	memset(&i2r_b, 0, sizeof(i2r_b));
	if (outlen == 0) {
		*why = "output buffer";
		return -1;
	}
	out[0] = '\0';
	tu_rng_reseed(seed);

	/* 1. Direction keys and the ratchet from a fixed root: no randomness. */
	fill_seq(root, sizeof(root), 0x00);
	STEP("dirkey", veil_dirkey_from_root(&dk, root, VEIL_DIR_I2R) == 0);
	vo_hex(&o, "dirkey.root", root, sizeof(root));
	vo_hex(&o, "dirkey.key", dk.key, sizeof(dk.key));
	vo_hex(&o, "dirkey.nkey", dk.nkey, sizeof(dk.nkey));
	for (size_t i = 0; i < sizeof(seqs) / sizeof(seqs[0]); i++) {
		veil_dirkey_tag(&dk, seqs[i], tag);
		snprintf(name, sizeof(name), "dirkey.tag.%" PRIu64, seqs[i]);
		vo_hex(&o, name, tag, sizeof(tag));
	}
	veil_root_next(next, root);
	vo_hex(&o, "dirkey.next", next, sizeof(next));
	veil_chain_bind(bind, root);
	vo_hex(&o, "dirkey.bind", bind, sizeof(bind));
	STEP("dirkey", 1);

	/* 2. One AEAD TEXT frame under that key, direction 1; the nonce's
	 * random part is the first draw from the stream. */
	memset(&h, 0, sizeof(h));
	h.type = VEIL_T_TEXT;
	h.len = (uint16_t)strlen(text);
	h.seq = 1;
	fill_seq(h.msgid, sizeof(h.msgid), 0xa0);
	h.frag_idx = 0;
	h.frag_cnt = 1;
	STEP("aead seal", veil_frame_seal(frame, VECTORS_FRAME, &dk, &h,
	    (const uint8_t *)text) >= 0);
	vo_u64(&o, "aead.size", VECTORS_FRAME);
	vo_u64(&o, "aead.dir", dk.dir);
	vo_u64(&o, "aead.type", h.type);
	vo_u64(&o, "aead.seq", h.seq);
	vo_hex(&o, "aead.msgid", h.msgid, sizeof(h.msgid));
	vo_hex(&o, "aead.body", (const uint8_t *)text, h.len);
	vo_hex(&o, "aead.frame", frame, VECTORS_FRAME);
	STEP("aead open", veil_frame_open(frame, VECTORS_FRAME, &dk, 1, &h2, pbody) >= 0 &&
	    h2.type == VEIL_T_TEXT && h2.len == h.len && h2.seq == 1 &&
	    memcmp(pbody, text, h.len) == 0);

	/* 3. A sealed REQUEST frame to a key pair made from a fixed seed. */
	fill_seq(bseed, sizeof(bseed), 0x20);
	STEP("seal keypair", crypto_box_seed_keypair(bpk, bsk, bseed) == 0);
	memset(&h, 0, sizeof(h));
	h.type = VEIL_T_REQUEST;
	h.len = 100;
	fill_seq(h.msgid, sizeof(h.msgid), 0xc0);
	h.frag_cnt = 1;
	for (size_t i = 0; i < h.len; i++)
		body[i] = (uint8_t)(3 * i + 1);
	STEP("seal", veil_frame_seal_box(frame, VECTORS_FRAME, bpk, &h, body) >= 0);
	vo_hex(&o, "seal.seed", bseed, sizeof(bseed));
	vo_hex(&o, "seal.pk", bpk, sizeof(bpk));
	vo_hex(&o, "seal.sk", bsk, sizeof(bsk));
	vo_u64(&o, "seal.type", h.type);
	vo_hex(&o, "seal.msgid", h.msgid, sizeof(h.msgid));
	vo_hex(&o, "seal.body", body, h.len);
	vo_hex(&o, "seal.frame", frame, VECTORS_FRAME);
	STEP("seal open", veil_frame_open_box(frame, VECTORS_FRAME, bpk, bsk, &h2, pbody) >= 0 &&
	    h2.type == VEIL_T_REQUEST && h2.len == h.len && h2.seq == 0 &&
	    memcmp(pbody, body, h.len) == 0);

	/* 4. A message of two full fragments and a partial one, seq 2..4. */
	cap = veil_frame_capacity(VECTORS_FRAME, 0);
	STEP("capacity", cap == VECTORS_FRAME - VEIL_AEAD_OVERHEAD - VEIL_FRAME_HDR);
	len = 2 * cap + 100;
	for (size_t i = 0; i < len; i++)
		body[i] = (uint8_t)(7 * i + 3);
	fill_seq(msgid, sizeof(msgid), 0xd0);
	seq = 2;
	STEP("multi frames", veil_message_frames(len, VECTORS_FRAME, 0) == 3);
	STEP("multi seal", veil_message_seal(frame, sizeof(frame), VECTORS_FRAME, &dk,
	    &seq, VEIL_T_TEXT, msgid, body, len) == 3 && seq == 5);
	vo_u64(&o, "multi.seq", 2);
	vo_hex(&o, "multi.msgid", msgid, sizeof(msgid));
	vo_hex(&o, "multi.body", body, len);
	for (int i = 0; i < 3; i++) {
		snprintf(name, sizeof(name), "multi.frame.%d", i);
		vo_hex(&o, name, frame + (size_t)i * VECTORS_FRAME, VECTORS_FRAME);
		STEP("multi open", veil_frame_open(frame + (size_t)i * VECTORS_FRAME,
		    VECTORS_FRAME, &dk, 2 + (uint64_t)i, &h2, pbody) >= 0 &&
		    h2.frag_idx == i && h2.frag_cnt == 3 &&
		    memcmp(pbody, body + (size_t)i * cap, h2.len) == 0);
	}

	/* 5. Derived topics of a fixed seed: no randomness. */
	fill_seq(tseed, sizeof(tseed), 0x40);
	vo_hex(&o, "topic.seed", tseed, sizeof(tseed));
	for (size_t i = 0; i < sizeof(epochs) / sizeof(epochs[0]); i++) {
		STEP("topic", veil_topic_text(tseed, epochs[i], topic, sizeof(topic)) == 0);
		snprintf(name, sizeof(name), "topic.%" PRIu64, epochs[i]);
		vo_text(&o, name, topic, strlen(topic));
	}

	/* 6. Identities and Alice's card: from here on values come from the
	 * seeded RNG, in the order libveil draws them. */
	STEP("identity", veil_identity_new(&alice) == 0 && veil_identity_new(&bob) == 0);
	vo_hex(&o, "alice.pk", alice.pk, sizeof(alice.pk));
	vo_hex(&o, "alice.sk", alice.sk, sizeof(alice.sk));
	vo_hex(&o, "bob.pk", bob.pk, sizeof(bob.pk));
	vo_hex(&o, "bob.sk", bob.sk, sizeof(bob.sk));
	memset(&card, 0, sizeof(card));
	STEP("card cid", veil_id_new(&card.cid, 0) == 0);
	memcpy(card.pk, alice.pk, sizeof(card.pk));
	snprintf(card.name, sizeof(card.name), "Alice");
	snprintf(card.hints, sizeof(card.hints), "mqtt 127.0.0.1:1883");
	card.expires = VECTORS_EXPIRES;
	card.flags = VEIL_CARD_ONE_TIME;
	STEP("card encode", veil_card_encode(&card, uri, sizeof(uri)) > 0);
	vo_hex(&o, "card.cid", card.cid.b, card.cid.len);
	vo_id(&o, "card.cid_text", &card.cid);
	vo_text(&o, "card.name", card.name, strlen(card.name));
	vo_text(&o, "card.hints", card.hints, strlen(card.hints));
	vo_u64(&o, "card.expires", card.expires);
	vo_u64(&o, "card.flags", card.flags);
	vo_text(&o, "card.uri", uri, strlen(uri));
	STEP("card decode", veil_card_decode(&scanned, uri, VECTORS_NOW) == 0 &&
	    veil_id_equal(&scanned.cid, &card.cid) &&
	    memcmp(scanned.pk, card.pk, sizeof(card.pk)) == 0);

	/*
	 * 7. The agreement, every step through real frames.  Bob asks at
	 * t_B = VECTORS_NOW; Alice (key period 3600) answers 600 s later,
	 * Bob (key period 600) reads the ACCEPT at + 800: the chain towards
	 * Bob has moved one period since t_B (and its grace has passed: the
	 * key of t_B's period is gone), the one towards Alice none.
	 */
	veil_seed_new(bob_inbox.seed);
	bob_inbox.epoch = 3600;
	bob_inbox.period = 600;
	rlen = sizeof(rbody);
	STEP("request", veil_agree_request(&ab, &scanned, bob.pk, "Bob", &bob_inbox,
	    VECTORS_NOW, rbody, &rlen) == 0 && rlen <= sizeof(rbody));
	vo_inbox(&o, "agree.bob_inbox", &bob_inbox);
	vo_u64(&o, "agree.t_b", VECTORS_NOW);
	vo_hex(&o, "agree.s", ab.secret, sizeof(ab.secret));
	vo_hex(&o, "agree.k", ab.pairkey, sizeof(ab.pairkey));
	/* Published so a reader can recompute the root key's DH terms. */
	vo_hex(&o, "agree.bob_eph_sk", ab.eph_sk, sizeof(ab.eph_sk));
	vo_hex(&o, "agree.bob_eph_pk", ab.eph_pk, sizeof(ab.eph_pk));
	vo_hex(&o, "agree.request_body", rbody, rlen);
	vo_hex(&o, "agree.t1", ab.t1, sizeof(ab.t1));
	veil_msgid_new(msgid);
	STEP("request seal", veil_message_seal_box(frame, sizeof(frame), VECTORS_FRAME,
	    scanned.pk, VEIL_T_REQUEST, msgid, rbody, rlen) == 1);
	vo_hex(&o, "agree.request_frame", frame, VECTORS_FRAME);

	clk.now = VECTORS_NOW + 600;
	clk.grace = clk.lead = 120;
	STEP("request open", veil_frame_open_box(frame, VECTORS_FRAME, alice.pk, alice.sk,
	    &h2, pbody) >= 0 && h2.type == VEIL_T_REQUEST && h2.frag_cnt == 1);
	STEP("on_request", veil_agree_on_request(&aa, &card.cid, alice.pk, clk.now,
	    86400, pbody, h2.len) == 0 && aa.state == VEIL_AG_PENDING);
	veil_seed_new(alice_inbox.seed);
	alice_inbox.epoch = 3600;
	alice_inbox.period = 3600;
	alen = sizeof(abody);
	STEP("accept", veil_agree_accept(&aa, alice.sk, &alice_inbox, &clk, abody,
	    &alen, &alice_pair) == 0 && alen == VEIL_ACCEPT_BODY);
	vo_inbox(&o, "agree.alice_inbox", &alice_inbox);
	vo_u64(&o, "agree.accept_time", clk.now);
	vo_hex(&o, "agree.accept_body", abody, alen);
	vo_hex(&o, "agree.t2", aa.t2, sizeof(aa.t2));
	vo_hex(&o, "agree.hs", abody + VEIL_KEY_BYTES, VEIL_KEY_BYTES);
	veil_agree_epoch0(&aa, &r2i, &i2r);
	vo_hex(&o, "agree.d0_r2i", r2i.root, sizeof(r2i.root));
	vo_hex(&o, "agree.d0_i2r", i2r.root, sizeof(i2r.root));
	veil_msgid_new(msgid);
	seq = 0;
	STEP("accept seal", veil_message_seal(frame, sizeof(frame), VECTORS_FRAME, &r2i,
	    &seq, VEIL_T_ACCEPT, msgid, abody, alen) == 1);
	vo_hex(&o, "agree.accept_frame", frame, VECTORS_FRAME);

	clk.now = VECTORS_NOW + 800;
	veil_agree_epoch0(&ab, &r2i_b, &i2r_b);
	STEP("epoch0 agrees", sodium_memcmp(r2i.root, r2i_b.root, VEIL_KEY_BYTES) == 0 &&
	    sodium_memcmp(i2r.root, i2r_b.root, VEIL_KEY_BYTES) == 0);
	STEP("accept open", veil_frame_open(frame, VECTORS_FRAME, &r2i_b, 0, &h2, pbody) >= 0 &&
	    h2.type == VEIL_T_ACCEPT);
	clen = sizeof(cbody);
	STEP("on_accept", veil_agree_on_accept(&ab, bob.sk, &clk, pbody, h2.len, &bob_pair,
	    cbody, &clen, &ctype) == 0 && ctype == VEIL_T_CONFIRM &&
	    ab.state == VEIL_AG_ESTABLISHED && clen <= sizeof(cbody));
	vo_u64(&o, "agree.confirm_time", clk.now);
	vo_hex(&o, "agree.confirm_body", cbody, clen);
	veil_msgid_new(msgid);
	STEP("confirm seq", bob_pair.tx.seq == 0);
	STEP("confirm seal", veil_message_seal(frame, sizeof(frame), VECTORS_FRAME,
	    &bob_pair.tx.k, &bob_pair.tx.seq, ctype, msgid, cbody, clen) == 1);
	vo_u64(&o, "agree.confirm_period", bob_pair.tx.period);
	vo_hex(&o, "agree.confirm_frame", frame, VECTORS_FRAME);
	d = veil_rxchain_find(&alice_pair.rx, bob_pair.tx.period);
	STEP("confirm open", d != NULL && veil_frame_open(frame, VECTORS_FRAME, &d->k, 0,
	    &h2, pbody) >= 0 && h2.type == VEIL_T_CONFIRM);
	STEP("on_confirm", veil_agree_on_confirm(&aa, pbody, h2.len) == 0 &&
	    aa.state == VEIL_AG_ESTABLISHED);

	/* The chains: anchored at t_B's periods, where they stand now. */
	STEP("i2r chain", bob_pair.tx.plen == 3600 && bob_pair.tx.period ==
	    VECTORS_NOW / 3600 && sodium_memcmp(bob_pair.tx.bind, alice_pair.rx.bind,
	    VEIL_KEY_BYTES) == 0);
	vo_u64(&o, "agree.i2r.period", bob_pair.tx.period);
	vo_hex(&o, "agree.i2r.root", bob_pair.tx.k.root, VEIL_KEY_BYTES);
	vo_hex(&o, "agree.i2r.key", bob_pair.tx.k.key, VEIL_KEY_BYTES);
	vo_hex(&o, "agree.i2r.bind", bob_pair.tx.bind, VEIL_KEY_BYTES);
	d = veil_rxchain_find(&bob_pair.rx, alice_pair.tx.period);
	STEP("r2i chain", alice_pair.tx.plen == 600 && alice_pair.tx.period ==
	    VECTORS_NOW / 600 + 1 && d != NULL && sodium_memcmp(d->k.root,
	    alice_pair.tx.k.root, VEIL_KEY_BYTES) == 0 &&
	    veil_rxchain_find(&bob_pair.rx, VECTORS_NOW / 600) == NULL);
	vo_u64(&o, "agree.r2i.period", alice_pair.tx.period);
	vo_hex(&o, "agree.r2i.root", alice_pair.tx.k.root, VEIL_KEY_BYTES);
	vo_hex(&o, "agree.r2i.key", alice_pair.tx.k.key, VEIL_KEY_BYTES);
	vo_hex(&o, "agree.r2i.bind", alice_pair.tx.bind, VEIL_KEY_BYTES);
	vo_hex(&o, "agree.d0_r2i.key", r2i.key, VEIL_KEY_BYTES);
	vo_hex(&o, "agree.d0_i2r.key", i2r.key, VEIL_KEY_BYTES);
	STEP("secrets agree", sodium_memcmp(alice_pair.secret_hash, bob_pair.secret_hash,
	    VEIL_KEY_BYTES) == 0);
	vo_hex(&o, "agree.sh", alice_pair.secret_hash, VEIL_KEY_BYTES);
	STEP("fingerprint", veil_fingerprint(alice.pk, bob.pk, fp) == 0 &&
	    veil_fingerprint(bob.pk, alice.pk, fp2) == 0 && strcmp(fp, fp2) == 0);
	vo_text(&o, "agree.fingerprint", fp, strlen(fp));

	/* 8. Alice moves to a new seed, epoch length and key period (with a
	 * new secret); Bob re-keys his transmit direction at + 1000 s and
	 * answers; Alice confirms. */
	veil_seed_new(alice_new.seed);
	alice_new.epoch = 1800;
	alice_new.period = 900;
	STEP("update build", veil_update_build(&alice_pair, alice.pk, "Alice", &alice_new,
	    1, &ubody, &ulen) == 0 && ubody != NULL);
	vo_inbox(&o, "update.new_inbox", &alice_new);
	vo_hex(&o, "update.eph_sk", alice_pair.upd_eph_sk, VEIL_KEY_BYTES);
	vo_hex(&o, "update.eph_pk", alice_pair.upd_eph_pk, VEIL_KEY_BYTES);
	vo_text(&o, "update.body", ubody, ulen);
	clk.now = VECTORS_NOW + 1000;
	STEP("on_update", veil_update_on_update(&bob_pair, "Alice", clk.now, ubody, ulen,
	    &ccm, &ack, &acklen) == 0 && ack != NULL && ccm.seq == 1 &&
	    sodium_memcmp(ccm.new_inbox.seed, alice_new.seed, VEIL_SEED_BYTES) == 0);
	vo_u64(&o, "update.time", clk.now);
	vo_text(&o, "update.ack", ack, acklen);
	STEP("on_ack", veil_update_on_ack(&alice_pair, &clk, ack, acklen) == 0);
	d = veil_rxchain_find(&alice_pair.rx, bob_pair.tx_next.period);
	STEP("rekeyed chains agree", bob_pair.tx_next.live && d != NULL &&
	    bob_pair.tx_next.period == (VECTORS_NOW + 1000) / 900 &&
	    bob_pair.tx_next.plen == 900 &&
	    sodium_memcmp(bob_pair.tx_next.k.root, d->k.root, VEIL_KEY_BYTES) == 0 &&
	    sodium_memcmp(alice_pair.rx_prev.bind, bob_pair.tx.bind, VEIL_KEY_BYTES) == 0 &&
	    sodium_memcmp(alice_pair.secret_hash, bob_pair.secret_hash, VEIL_KEY_BYTES) == 0);
	/* Step 3 draws no randomness and its body is fixed by the seq. */
	STEP("done build", veil_update_done_build(&alice_pair, &done, &donelen) == 0 &&
	    donelen == sizeof(done_want) - 1 && memcmp(done, done_want, donelen) == 0);
	STEP("on_done", veil_update_on_done(&bob_pair, done, donelen) == 0 &&
	    !bob_pair.tx_next.live && bob_pair.tx.seq == 0);
	vo_u64(&o, "update.period", bob_pair.tx.period);
	vo_hex(&o, "update.root", bob_pair.tx.k.root, VEIL_KEY_BYTES);
	vo_hex(&o, "update.key", bob_pair.tx.k.key, VEIL_KEY_BYTES);
	vo_hex(&o, "update.bind", bob_pair.tx.bind, VEIL_KEY_BYTES);
	vo_hex(&o, "update.s", bob_pair.secret, VEIL_KEY_BYTES);
	vo_hex(&o, "update.sh", bob_pair.secret_hash, VEIL_KEY_BYTES);
	/* Alice's own transmit chain is untouched by her UPDATE. */
	vo_hex(&o, "update.alice_tx_root", alice_pair.tx.k.root, VEIL_KEY_BYTES);
	STEP("output", !o.err);
	ret = (int)o.len;
out:
	free(ubody);
	free(ack);
	free(done);
	veil_identity_wipe(&alice);
	veil_identity_wipe(&bob);
	veil_agree_wipe(&ab);
	veil_agree_wipe(&aa);
	veil_pair_wipe(&bob_pair);
	veil_pair_wipe(&alice_pair);
	veil_dirkey_wipe(&dk);
	veil_dirkey_wipe(&r2i);
	veil_dirkey_wipe(&i2r);
	veil_dirkey_wipe(&r2i_b);
	veil_dirkey_wipe(&i2r_b);
	sodium_memzero(bsk, sizeof(bsk));
	if (ret < 0)
		out[0] = '\0';
	return ret;
}
