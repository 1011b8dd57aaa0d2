/* Garbage in: every libveil decoder fed random and mutated inputs must fail cleanly or return a well-formed result. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "veil.h"
#include "testutil.h"

#define FS VEIL_FRAME_MIN		/* smallest frames: cheapest to open */
#define BIGBODY VEIL_FRAME_MAX		/* reasm bodies: never overread, whatever len says */
#define B64U sodium_base64_VARIANT_URLSAFE_NO_PADDING
#define NOW 1767225600ULL
#define MAX_AGE (3 * 86400)

static const char b64chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Valid inputs every mutation starts from, made by the real protocol. */
static struct {
	struct veil_identity alice, bob;
	struct veil_card card;
	char uri[VEIL_CARD_URI_MAX];
	uint8_t cardbin[VEIL_CARD_URI_MAX];	/* decoded URI, checksum included */
	size_t cardbinlen;
	struct veil_inbox alice_inbox, bob_inbox, alice_new;
	struct veil_clock clk;
	struct veil_agree bob_req;	/* REQUESTED: feeds on_accept */
	struct veil_agree alice_acc;	/* ACCEPTED: feeds on_confirm */
	uint8_t req[VEIL_AGREE_BODY_MAX], acc[VEIL_AGREE_BODY_MAX], conf[VEIL_AGREE_BODY_MAX];
	size_t reqlen, acclen, conflen;
	struct veil_pair alice_pair, bob_pair;	/* established */
	struct veil_pair alice_upd;		/* UPDATE pending: feeds on_ack */
	struct veil_pair bob_upd;		/* UPDATE accepted, tx_next waits: feeds on_done */
	char *upd, *ack, *done;
	size_t updlen, acklen, donelen;
	uint8_t pair_packed[VEIL_PAIR_PACKED_MAX], agree_packed[VEIL_AGREE_PACKED_MAX];
	size_t pair_packedlen, agree_packedlen;
	struct veil_dirkey dk;
	uint8_t aead[FS], box[FS];
	uint64_t aead_seq;
} fx;

static unsigned long base;

static unsigned long
scaled(unsigned long num, unsigned long den)
{
	unsigned long n = base * num / den;

	return n ? n : 1;
}

static void
report(const char *what, unsigned long n, unsigned long ok)
{
	printf("# %s: %lu inputs, %lu accepted\n", what, n, ok);
}

/* A heap copy of exactly len bytes, so a sanitizer sees any overread. */
static uint8_t *
exact(const void *src, size_t len)
{
	uint8_t *p = malloc(len ? len : 1);

	assert_non_null(p);
	if (len)
		memcpy(p, src, len);
	return p;
}

/* Mutates a copy of orig into buf; returns 1 if the bytes changed. */
static int
mutate(struct tu_prng *r, uint8_t *buf, size_t *len, size_t cap, const uint8_t *orig,
    size_t origlen)
{
	memcpy(buf, orig, origlen);
	*len = origlen;
	tu_mutate(r, buf, len, cap);
	return *len != origlen || memcmp(buf, orig, origlen) != 0;
}

static size_t
rnd(struct tu_prng *r, size_t n)
{
	return n ? (size_t)(tu_prng_next(r) % n) : 0;
}

/* Fills buf with random bytes, fewer than max of them; returns how many. */
static size_t
random_bytes(struct tu_prng *r, uint8_t *buf, size_t max)
{
	size_t len = rnd(r, max);

	tu_prng_fill(r, buf, len);
	return len;
}

static int
group_setup(void **state)
{
	struct veil_card scanned;
	struct veil_agree alice;
	struct veil_dirkey r2i, i2r;
	struct veil_frame_hdr h;
	struct veil_ccm ccm;
	struct veil_pair alice_acked;
	uint8_t body[128], type = 0;
	const char *end;
	int rc;

	(void)state;
	base = tu_iters(20000);
	tu_deterministic_rng("veil-garbage-v1");
	if (veil_init() != 0)
		return -1;
	memset(&fx, 0, sizeof(fx));
	memset(&alice, 0, sizeof(alice));
	if (veil_identity_new(&fx.alice) != 0 || veil_identity_new(&fx.bob) != 0 ||
	    veil_id_new(&fx.card.cid, 0) != 0)
		return -1;
	veil_seed_new(fx.alice_inbox.seed);
	fx.alice_inbox.epoch = 3600;
	fx.alice_inbox.period = 3600;
	veil_seed_new(fx.bob_inbox.seed);
	fx.bob_inbox.epoch = 3600;
	fx.bob_inbox.period = 600;
	veil_seed_new(fx.alice_new.seed);
	fx.alice_new.epoch = 3600;
	fx.alice_new.period = 900;
	fx.clk.now = NOW;
	fx.clk.grace = fx.clk.lead = 120;
	memcpy(fx.card.pk, fx.alice.pk, VEIL_KEY_BYTES);
	strcpy(fx.card.name, "Alice");
	strcpy(fx.card.hints, "mqtt 127.0.0.1:1883");
	fx.card.expires = NOW + 86400;
	if (veil_card_encode(&fx.card, fx.uri, sizeof(fx.uri)) <= 0 ||
	    sodium_base642bin(fx.cardbin, sizeof(fx.cardbin), fx.uri + 5, strlen(fx.uri + 5),
	    NULL, &fx.cardbinlen, &end, B64U) != 0 ||
	    veil_card_decode(&scanned, fx.uri, NOW) != 0)
		return -1;

	fx.reqlen = sizeof(fx.req);
	if (veil_agree_request(&fx.bob_req, &scanned, fx.bob.pk, "Bob", &fx.bob_inbox,
	    NOW, fx.req, &fx.reqlen) != 0 ||
	    veil_agree_on_request(&alice, &fx.card.cid, fx.alice.pk, NOW, MAX_AGE,
	    fx.req, fx.reqlen) != 0)
		return -1;
	fx.acclen = sizeof(fx.acc);
	if (veil_agree_accept(&alice, fx.alice.sk, &fx.alice_inbox, &fx.clk, fx.acc,
	    &fx.acclen, &fx.alice_pair) != 0)
		return -1;
	fx.alice_acc = alice;
	{
		struct veil_agree bob = fx.bob_req;

		fx.conflen = sizeof(fx.conf);
		if (veil_agree_on_accept(&bob, fx.bob.sk, &fx.clk, fx.acc, fx.acclen,
		    &fx.bob_pair, fx.conf, &fx.conflen, &type) != 0 ||
		    type != VEIL_T_CONFIRM)
			return -1;
		veil_agree_wipe(&bob);
	}
	if (veil_agree_on_confirm(&alice, fx.conf, fx.conflen) != 0)
		return -1;
	veil_agree_wipe(&alice);

	fx.alice_upd = fx.alice_pair;
	if (veil_update_build(&fx.alice_upd, fx.alice.pk, "Alice", &fx.alice_new, 1,
	    &fx.upd, &fx.updlen) != 0)
		return -1;
	fx.bob_upd = fx.bob_pair;
	if (veil_update_on_update(&fx.bob_upd, "Alice", NOW, fx.upd, fx.updlen, &ccm,
	    &fx.ack, &fx.acklen) != 0)
		return -1;
	/* Neither on_ack nor the DONE draws randomness. */
	alice_acked = fx.alice_upd;
	if (veil_update_on_ack(&alice_acked, &fx.clk, fx.ack, fx.acklen) != 0 ||
	    veil_update_done_build(&alice_acked, &fx.done, &fx.donelen) != 0)
		return -1;
	veil_pair_wipe(&alice_acked);

	if ((rc = veil_pair_pack(&fx.alice_upd, fx.pair_packed, sizeof(fx.pair_packed))) <= 0)
		return -1;
	fx.pair_packedlen = (size_t)rc;
	if ((rc = veil_agree_pack(&fx.alice_acc, fx.agree_packed, sizeof(fx.agree_packed))) <= 0)
		return -1;
	fx.agree_packedlen = (size_t)rc;

	veil_agree_epoch0(&fx.bob_req, &r2i, &i2r);
	fx.dk = r2i;
	memset(&h, 0, sizeof(h));
	h.type = VEIL_T_TEXT;
	h.len = 40;
	h.seq = fx.aead_seq = 7;
	h.frag_cnt = 1;
	veil_msgid_new(h.msgid);
	randombytes_buf(body, sizeof(body));
	if (veil_frame_seal(fx.aead, FS, &fx.dk, &h, body) < 0)
		return -1;
	h.seq = 0;
	h.type = VEIL_T_REQUEST;
	if (veil_frame_seal_box(fx.box, FS, fx.alice.pk, &h, body) < 0)
		return -1;
	return 0;
}

static int
group_teardown(void **state)
{
	(void)state;
	free(fx.upd);
	free(fx.ack);
	free(fx.done);
	veil_identity_wipe(&fx.alice);
	veil_identity_wipe(&fx.bob);
	veil_agree_wipe(&fx.bob_req);
	veil_agree_wipe(&fx.alice_acc);
	veil_pair_wipe(&fx.alice_pair);
	veil_pair_wipe(&fx.bob_pair);
	veil_pair_wipe(&fx.alice_upd);
	veil_pair_wipe(&fx.bob_upd);
	return 0;
}

/* ---- cards and IDs ------------------------------------------------------- */

/* A decoded card must be one the encoder accepts and that decodes again alike. */
static void
check_card(const struct veil_card *c)
{
	char uri[VEIL_CARD_URI_MAX];
	struct veil_card again;

	assert_true(c->cid.len >= 10 && c->cid.len <= 32);
	assert_int_equal(veil_name_valid(c->name), 0);
	assert_true(strnlen(c->hints, sizeof(c->hints)) <= VEIL_HINTS_MAX);
	assert_int_equal(c->flags & ~VEIL_CARD_ONE_TIME, 0);
	assert_true(veil_card_encode(c, uri, sizeof(uri)) > 5);
	assert_int_equal(strncmp(uri, "veil:", 5), 0);
	assert_int_equal(veil_card_decode(&again, uri, 0), 0);
	assert_true(veil_id_equal(&again.cid, &c->cid));
	assert_memory_equal(again.pk, c->pk, VEIL_KEY_BYTES);
	assert_string_equal(again.name, c->name);
	assert_string_equal(again.hints, c->hints);
	assert_true(again.expires == c->expires);
	assert_int_equal(again.flags, c->flags);
}

/* A binary card with a correct checksum, so decoding gets past it. */
static void
card_uri_of(char *uri, size_t urilen, uint8_t *bin, size_t len)
{
	uint8_t h[32];

	crypto_generichash(h, sizeof(h), bin, len, NULL, 0);
	memcpy(bin + len, h, 4);
	memcpy(uri, "veil:", 5);
	sodium_bin2base64(uri + 5, urilen - 5, bin, len + 4, B64U);
}

static void
test_card_random(void **state)
{
	unsigned long n = scaled(2, 1), ok = 0;
	struct tu_prng r;
	struct veil_card c;
	char s[2 * VEIL_CARD_URI_MAX];
	uint8_t bin[VEIL_CARD_URI_MAX];

	(void)state;
	tu_prng_seed(&r, 1);
	for (unsigned long i = 0; i < n; i++) {
		size_t len;

		switch (i % 4) {
		case 0:	/* any bytes */
			len = rnd(&r, 300);
			tu_prng_fill(&r, (uint8_t *)s, len);
			for (size_t k = 0; k < len; k++)
				if (s[k] == 0)
					s[k] = 'v';
			s[len] = '\0';
			break;
		case 1:	/* the right alphabet, any length */
			len = rnd(&r, 900);
			memcpy(s, "veil:", 5);
			for (size_t k = 0; k < len; k++)
				s[5 + k] = b64chars[tu_prng_next(&r) & 63];
			s[5 + len] = '\0';
			break;
		case 2:	/* random bytes behind a correct checksum */
			len = random_bytes(&r, bin, 660);
			if (len > 0)
				bin[0] = VEIL_CARD_VERSION;
			card_uri_of(s, sizeof(s), bin, len);
			break;
		default: /* the valid card with its inside mutated, checksum fixed */
			len = fx.cardbinlen - 4;
			memcpy(bin, fx.cardbin, len);
			tu_mutate(&r, bin, &len, sizeof(bin) - 4);
			card_uri_of(s, sizeof(s), bin, len);
			break;
		}
		if (veil_card_decode(&c, s, (i & 1) ? NOW : 0) == 0) {
			check_card(&c);
			ok++;
		}
	}
	report("veil_card_decode random", n, ok);
	/* The checksum-fixed mutations keep some cards valid: proof the
	 * check_card path ran at all. */
	assert_true(ok > 0);
}

static void
test_card_mutated(void **state)
{
	unsigned long n = scaled(2, 1), ok = 0;
	struct tu_prng r;
	struct veil_card c;
	uint8_t s[VEIL_CARD_URI_MAX + 8];
	size_t len;

	(void)state;
	tu_prng_seed(&r, 2);
	assert_int_equal(veil_card_decode(&c, fx.uri, NOW), 0);
	check_card(&c);
	for (unsigned long i = 0; i < n; i++) {
		mutate(&r, s, &len, VEIL_CARD_URI_MAX - 1, (const uint8_t *)fx.uri, strlen(fx.uri));
		s[len] = '\0';
		if (veil_card_decode(&c, (const char *)s, NOW) == 0) {
			check_card(&c);
			ok++;
		}
	}
	report("veil_card_decode mutated", n, ok);
}

static void
test_id_random(void **state)
{
	unsigned long n = scaled(2, 1), ok = 0;
	struct tu_prng r;
	struct veil_id id;
	char s[96], text[VEIL_ID_TEXT_MAX + 1];

	(void)state;
	tu_prng_seed(&r, 3);
	for (unsigned long i = 0; i < n; i++) {
		size_t len = rnd(&r, 60);

		for (size_t k = 0; k < len; k++) {
			if (i % 3 == 0) {
				s[k] = (char)(1 + rnd(&r, 255));
			} else
				s[k] = b64chars[tu_prng_next(&r) & 63];
		}
		s[len] = '\0';
		if (veil_id_from_text(&id, s) != 0)
			continue;
		ok++;
		/* One text form per ID: it must print back as it was read. */
		assert_true(id.len >= 10 && id.len <= 32);
		assert_true(veil_id_to_text(&id, text, sizeof(text)) >= 0);
		assert_string_equal(text, s);
	}
	report("veil_id_from_text", n, ok);
	assert_true(ok > 0);
}

/* ---- frames -------------------------------------------------------------- */

static void
test_frame_random(void **state)
{
	unsigned long n = scaled(2, 1), nbox = scaled(1, 10);
	struct tu_prng r;
	struct veil_frame_hdr h;
	uint8_t body[FS], *in;
	uint8_t buf[FS];

	(void)state;
	tu_prng_seed(&r, 4);
	for (unsigned long i = 0; i < n; i++) {
		tu_prng_fill(&r, buf, sizeof(buf));
		if (i & 1)	/* the right tag: only Poly1305 can stop it */
			veil_dirkey_tag(&fx.dk, fx.aead_seq, buf);
		in = exact(buf, FS);
		assert_true(veil_frame_open(in, FS, &fx.dk, fx.aead_seq, &h, body) < 0);
		/* A size the protocol does not allow must be refused, not read. */
		assert_true(veil_frame_open(in, rnd(&r, FS), &fx.dk, fx.aead_seq, &h, body) < 0);
		free(in);
	}
	for (unsigned long i = 0; i < nbox; i++) {
		tu_prng_fill(&r, buf, sizeof(buf));
		in = exact(buf, FS);
		assert_true(veil_frame_open_box(in, FS, fx.alice.pk, fx.alice.sk, &h, body) < 0);
		free(in);
	}
	report("veil_frame_open random", n, 0);
	report("veil_frame_open_box random", nbox, 0);
}

static void
test_frame_mutated(void **state)
{
	unsigned long n = scaled(2, 1), nbox = scaled(1, 10), same = 0;
	struct tu_prng r;
	struct veil_frame_hdr h;
	uint8_t body[FS], buf[FS + 8], *in;
	size_t len;
	int changed;

	(void)state;
	tu_prng_seed(&r, 5);
	assert_true(veil_frame_open(fx.aead, FS, &fx.dk, fx.aead_seq, &h, body) >= 0);
	assert_true(veil_frame_open(fx.aead, FS, &fx.dk, fx.aead_seq + 1, &h, body) < 0);
	assert_true(veil_frame_open_box(fx.box, FS, fx.alice.pk, fx.alice.sk, &h, body) >= 0);
	assert_true(veil_frame_open_box(fx.box, FS, fx.bob.pk, fx.bob.sk, &h, body) < 0);
	for (unsigned long i = 0; i < n + nbox; i++) {
		const uint8_t *orig = i < n ? fx.aead : fx.box;
		int rc;

		changed = mutate(&r, buf, &len, sizeof(buf), orig, FS);
		/* Frames have one size: pad a truncated one back to it. */
		if (len < FS)
			tu_prng_fill(&r, buf + len, FS - len);
		changed = changed && memcmp(buf, orig, FS) != 0;
		in = exact(buf, FS);
		if (i < n)
			rc = veil_frame_open(in, FS, &fx.dk, fx.aead_seq, &h, body);
		else
			rc = veil_frame_open_box(in, FS, fx.alice.pk, fx.alice.sk, &h, body);
		if (changed)
			assert_true(rc < 0);
		else {
			assert_true(rc >= 0);
			same++;
		}
		free(in);
	}
	report("veil_frame_open(_box) mutated", n + nbox, same);
}

/* With per_peer, every sender gets a budget of its own as well (the
 * daemon's use): the totals and each sender's budget hold throughout. */
static void
reasm_random(int per_peer)
{
	unsigned long n = scaled(2, 1), done = 0;
	const size_t maxb = 16 * 1024, maxm = 8, cap = veil_frame_capacity(FS, 0);
	const size_t peerb = 7 * 1024, peerm = 3;
	struct tu_prng r;
	struct veil_reasm *ra;
	struct veil_frame_hdr h;
	uint8_t *body, *out;
	size_t outlen;
	uint64_t now = 1000;

	tu_prng_seed(&r, per_peer ? 7 : 6);
	assert_non_null(ra = veil_reasm_new(maxb, maxm));
	if (per_peer)
		assert_int_equal(veil_reasm_limit_peer(ra, peerb, peerm), 0);
	assert_non_null(body = malloc(BIGBODY));
	tu_prng_fill(&r, body, BIGBODY);
	for (unsigned long i = 0; i < n; i++) {
		uint64_t x = tu_prng_next(&r);
		int rc;

		memset(&h, 0, sizeof(h));
		/* Mostly plausible fragments of few senders and IDs, so messages
		 * do complete; one field in four is garbage. */
		h.type = (x & 3) ? VEIL_T_TEXT : (uint8_t)(x >> 8);
		h.flags = (x & 0x3c) == 0x3c ? (uint8_t)(x >> 16) : 0;
		h.frag_cnt = (x & 0xc0) ? (uint16_t)(1 + rnd(&r, 4)) : (uint16_t)(x >> 32);
		h.frag_idx = (x & 0x300) ? (uint16_t)rnd(&r, h.frag_cnt + 1u) : (uint16_t)(x >> 48);
		if (!(x & 0xc00))
			h.len = (uint16_t)(x >> 40);
		else if (h.frag_idx + 1 < h.frag_cnt || !(x & 0x3000))
			h.len = (uint16_t)cap;
		else
			h.len = (uint16_t)rnd(&r, cap + 1);
		h.seq = tu_prng_next(&r);
		h.msgid[0] = (uint8_t)rnd(&r, 3);
		now += rnd(&r, 3);
		out = NULL;
		outlen = 0;
		rc = veil_reasm_add(ra, rnd(&r, per_peer ? 4 : 2), &h, body, cap, now,
		    &out, &outlen);
		if (h.len > cap || h.frag_cnt == 0 || h.frag_idx >= h.frag_cnt)
			assert_true(rc < 0);
		if (rc == 1) {
			assert_non_null(out);
			assert_true(outlen <= (size_t)h.frag_cnt * cap);
			assert_true(outlen <= VEIL_MESSAGE_MAX);
			free(out);
			done++;
		} else
			assert_null(out);
		assert_true(veil_reasm_bytes(ra) <= maxb);
		assert_true(veil_reasm_pending(ra) <= maxm);
		for (uint64_t p = 0; per_peer && p < 4; p++)
			assert_true(veil_reasm_peer_bytes(ra, p) <= peerb);
		if (i % 997 == 0)
			veil_reasm_expire(ra, now, 20);
		if (i % 4999 == 0)
			veil_reasm_forget(ra, rnd(&r, 3));
	}
	veil_reasm_free(ra);
	free(body);
	report(per_peer ? "veil_reasm_add (per-sender budgets)" : "veil_reasm_add",
	    n, done);
	assert_true(done > 0);
}

static void
test_reasm_random(void **state)
{
	(void)state;
	reasm_random(0);
}

static void
test_reasm_random_peer(void **state)
{
	(void)state;
	reasm_random(1);
}

/* ---- agreement ------------------------------------------------------------- */

static void
check_pending(const struct veil_agree *a)
{
	assert_int_equal(a->state, VEIL_AG_PENDING);
	assert_int_equal(veil_name_valid(a->peer_name), 0);
	assert_true(veil_inbox_valid(&a->peer_inbox));
	assert_true(a->req_time + MAX_AGE >= NOW && a->req_time <= NOW + 86400);
}

static void
test_agree_request(void **state)
{
	unsigned long n = scaled(1, 1), ok = 0;
	struct tu_prng r;
	struct veil_agree a;
	uint8_t buf[VEIL_AGREE_BODY_MAX + 8], *in;
	size_t len, at;

	(void)state;
	tu_prng_seed(&r, 7);
	for (unsigned long i = 0; i < 2 * n; i++) {
		if (i >= n) {
			mutate(&r, buf, &len, sizeof(buf), fx.req, fx.reqlen);
		} else if (i & 1) {
			len = random_bytes(&r, buf, 300);
		} else {
			/* Right shape, time and CID, random parameters, seed
			 * and name bytes. */
			uint64_t t = NOW - MAX_AGE + rnd(&r, MAX_AGE + 86400 + 2);
			uint32_t l = (uint32_t)rnd(&r, 2592002), pd = (uint32_t)rnd(&r, 2592002);

			buf[0] = 2;
			tu_prng_fill(&r, buf + 1, 128);
			at = 129;
			for (int k = 7; k >= 0; k--, t >>= 8)
				buf[at + (size_t)k] = (uint8_t)t;
			at += 8;
			for (int k = 3; k >= 0; k--, l >>= 8, pd >>= 8) {
				buf[at + (size_t)k] = (uint8_t)l;
				buf[at + 4 + (size_t)k] = (uint8_t)pd;
			}
			at += 8;
			buf[at++] = fx.card.cid.len;
			memcpy(buf + at, fx.card.cid.b, fx.card.cid.len);
			at += fx.card.cid.len;
			tu_prng_fill(&r, buf + at, 32);
			if (rnd(&r, 16) == 0)
				memset(buf + at, 0, 32);
			at += 32;
			buf[at] = (uint8_t)rnd(&r, 70);
			tu_prng_fill(&r, buf + at + 1, buf[at]);
			for (size_t k = 0; k < buf[at]; k++)
				buf[at + 1 + k] = (uint8_t)(0x20 + (buf[at + 1 + k] % 0x70));
			len = at + 1 + buf[at] + (rnd(&r, 8) == 0);
		}
		memset(&a, 0, sizeof(a));
		in = exact(buf, len);
		if (veil_agree_on_request(&a, &fx.card.cid, fx.alice.pk, NOW, MAX_AGE, in,
		    len) == 0) {
			check_pending(&a);
			ok++;
		} else
			assert_int_not_equal(a.state, VEIL_AG_PENDING);
		free(in);
		veil_agree_wipe(&a);
	}
	report("veil_agree_on_request", 2 * n, ok);
	assert_true(ok > 0);
}

static void
test_agree_accept(void **state)
{
	unsigned long n = scaled(1, 4), ok = 0;
	struct tu_prng r;
	struct veil_agree a;
	struct veil_pair p;
	uint8_t buf[VEIL_AGREE_BODY_MAX + 8], out[VEIL_AGREE_BODY_MAX], *in, type;
	size_t len, outlen;
	int changed;

	(void)state;
	tu_prng_seed(&r, 8);
	for (unsigned long i = 0; i < 2 * n + 1; i++) {
		if (i == 0) {	/* the original is accepted: the loop can tell */
			memcpy(buf, fx.acc, fx.acclen);
			len = fx.acclen;
			changed = 0;
		} else if (i & 1) {
			len = (i & 2) ? fx.acclen : rnd(&r, 200);
			tu_prng_fill(&r, buf, len);
			if (len == fx.acclen && (i & 4))	/* valid L and P */
				memcpy(buf + 64, fx.acc + 64, 8);
			changed = 1;
		} else
			changed = mutate(&r, buf, &len, sizeof(buf), fx.acc, fx.acclen);
		a = fx.bob_req;
		memset(&p, 0, sizeof(p));
		outlen = sizeof(out);
		type = 0;
		in = exact(buf, len);
		if (veil_agree_on_accept(&a, fx.bob.sk, &fx.clk, in, len, &p, out, &outlen,
		    &type) == 0) {
			assert_false(changed);
			assert_int_equal(a.state, VEIL_AG_ESTABLISHED);
			assert_int_equal(type, VEIL_T_CONFIRM);
			ok++;
		} else {
			assert_true(changed);
			assert_int_not_equal(a.state, VEIL_AG_ESTABLISHED);
			assert_true(outlen <= sizeof(out));
		}
		free(in);
		veil_agree_wipe(&a);
		veil_pair_wipe(&p);
	}
	report("veil_agree_on_accept", 2 * n + 1, ok);
}

static void
test_agree_confirm(void **state)
{
	unsigned long n = scaled(1, 2), ok = 0;
	struct tu_prng r;
	struct veil_agree a;
	uint8_t buf[VEIL_AGREE_BODY_MAX + 8], *in;
	size_t len;
	int changed, rc;

	(void)state;
	tu_prng_seed(&r, 9);
	for (unsigned long i = 0; i < 2 * n + 1; i++) {
		if (i == 0) {
			memcpy(buf, fx.conf, fx.conflen);
			len = fx.conflen;
			changed = 0;
		} else if (i & 1) {
			len = (i & 2) ? fx.conflen : rnd(&r, 100);
			tu_prng_fill(&r, buf, len);
			changed = 1;
		} else
			changed = mutate(&r, buf, &len, sizeof(buf), fx.conf, fx.conflen);
		a = fx.alice_acc;
		in = exact(buf, len);
		rc = veil_agree_on_confirm(&a, in, len);
		if (changed) {
			assert_true(rc < 0);
			assert_int_not_equal(a.state, VEIL_AG_ESTABLISHED);
		} else {
			assert_int_equal(rc, 0);
			assert_int_equal(a.state, VEIL_AG_ESTABLISHED);
			ok++;
		}
		free(in);
		veil_agree_wipe(&a);
	}
	report("veil_agree_on_confirm", 2 * n + 1, ok);
}

/* ---- update ---------------------------------------------------------------- */

static void
check_ccm(const struct veil_ccm *c)
{
	assert_true(veil_seed_valid(c->ocid));
	assert_true(veil_inbox_valid(&c->new_inbox));
	assert_true(strnlen(c->cname, sizeof(c->cname)) < sizeof(c->cname));
	assert_true(strnlen(c->steg_key, sizeof(c->steg_key)) < sizeof(c->steg_key));
	assert_true(strnlen(c->alg, sizeof(c->alg)) < sizeof(c->alg));
	assert_true(c->has_new_secret <= 1);
}

/* A JSON object of 1 .. maxkeys + 1 pairs, each a random key of keys and
 * a random value of vals (duplicates and wrong types included). */
static size_t
random_object(struct tu_prng *r, const char *const *keys, size_t nkeys,
    const char *const *vals, size_t nvals, size_t maxkeys, char *out,
    size_t cap)
{
	size_t len = 0, nk = 1 + rnd(r, maxkeys);

	len += (size_t)snprintf(out + len, cap - len, "{");
	for (size_t k = 0; k < nk && len < cap - 128; k++)
		len += (size_t)snprintf(out + len, cap - len, "%s\"%s\":%s", k ? "," : "",
		    keys[rnd(r, nkeys)], vals[rnd(r, nvals)]);
	len += (size_t)snprintf(out + len, cap - len, "}");
	return len;
}

/* A JSON object with the CCM's keys and random values of random types. */
static size_t
random_ccm(struct tu_prng *r, char *out, size_t cap)
{
	static const char *keys[] = { "Data", "OCID", "PubKey", "CName", "NewCID",
	    "Secret", "NewSecret", "StegKey", "Alg", "Seq", "Eph", "Epoch", "Rekey",
	    "x" };
	static const char *vals[] = { "\"UpdateContact\"", "\"UpdateAck\"", "1", "-1",
	    "18446744073709551616", "1.5", "null", "true", "[]", "{}", "\"\"",
	    "\"AAAAAAAAAAAAAAAAAAAAAA\"", "\"0000\"", "9007199254740993",
	    "\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"", "\"\\u0000\"",
	    "\"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA\"", "3600", "2592001", "0" };

	return random_object(r, keys, sizeof(keys) / sizeof(keys[0]), vals,
	    sizeof(vals) / sizeof(vals[0]), 16, out, cap);
}

static void
test_ccm_parse(void **state)
{
	unsigned long n = scaled(1, 1), ok = 0;
	struct tu_prng r;
	struct veil_ccm c;
	uint8_t buf[VEIL_UPDATE_BODY_MAX + 64], *in;
	size_t len;

	(void)state;
	tu_prng_seed(&r, 10);
	assert_int_equal(veil_ccm_parse(&c, fx.upd, fx.updlen), 0);
	check_ccm(&c);
	for (unsigned long i = 0; i < 2 * n; i++) {
		switch (i % 4) {
		case 0:
			len = random_bytes(&r, buf, 600);
			break;
		case 1:
			len = random_ccm(&r, (char *)buf, sizeof(buf));
			break;
		default:
			mutate(&r, buf, &len, sizeof(buf), (const uint8_t *)fx.upd, fx.updlen);
			break;
		}
		in = exact(buf, len);
		if (veil_ccm_parse(&c, (const char *)in, len) == 0) {
			check_ccm(&c);
			ok++;
		}
		free(in);
	}
	report("veil_ccm_parse", 2 * n, ok);
	assert_true(ok > 0);
}

static void
test_update_on_update(void **state)
{
	unsigned long n = scaled(1, 2), ok = 0;
	struct tu_prng r;
	struct veil_pair p;
	struct veil_ccm c;
	uint8_t buf[VEIL_UPDATE_BODY_MAX + 64], *in;
	char *ack;
	size_t len, acklen;
	int rc;

	(void)state;
	tu_prng_seed(&r, 11);
	for (unsigned long i = 0; i < 2 * n; i++) {
		if (i % 3 == 0)
			len = (i & 1) ? random_ccm(&r, (char *)buf, sizeof(buf)) :
			    random_bytes(&r, buf, 400);
		else
			mutate(&r, buf, &len, sizeof(buf), (const uint8_t *)fx.upd, fx.updlen);
		p = fx.bob_pair;
		ack = NULL;
		acklen = 0;
		in = exact(buf, len);
		rc = veil_update_on_update(&p, "Alice", NOW, (const char *)in, len, &c,
		    &ack, &acklen);
		if (rc == 0 || rc == 1) {
			check_ccm(&c);
			assert_non_null(ack);
			assert_true(acklen > 0 && acklen <= VEIL_UPDATE_BODY_MAX);
			/* Only the holder of SH can get this far. */
			assert_memory_equal(c.secret, fx.bob_pair.secret_hash, VEIL_KEY_BYTES);
			/* The new key waits; Alice cannot read it yet. */
			assert_true(p.tx_next.live);
			assert_memory_equal(p.tx.k.root, fx.bob_pair.tx.k.root, VEIL_KEY_BYTES);
			ok++;
		} else {
			assert_true(rc < 0);
			assert_null(ack);
			/* A refused UPDATE leaves both transmit slots alone. */
			assert_memory_equal(p.tx.k.root, fx.bob_pair.tx.k.root, VEIL_KEY_BYTES);
			assert_false(p.tx_next.live);
		}
		free(ack);
		free(in);
		veil_pair_wipe(&p);
	}
	report("veil_update_on_update", 2 * n, ok);
}

static void
test_update_on_ack(void **state)
{
	unsigned long n = scaled(1, 2), ok = 0;
	struct tu_prng r;
	struct veil_pair p;
	uint8_t buf[VEIL_UPDATE_BODY_MAX + 64], *in;
	size_t len;
	int rc;

	(void)state;
	tu_prng_seed(&r, 12);
	p = fx.alice_upd;
	assert_int_equal(veil_update_on_ack(&p, &fx.clk, fx.ack, fx.acklen), 0);
	veil_pair_wipe(&p);
	for (unsigned long i = 0; i < 2 * n; i++) {
		if (i % 3 == 0)
			len = (i & 1) ? random_ccm(&r, (char *)buf, sizeof(buf)) :
			    random_bytes(&r, buf, 300);
		else
			mutate(&r, buf, &len, sizeof(buf), (const uint8_t *)fx.ack, fx.acklen);
		p = fx.alice_upd;
		in = exact(buf, len);
		rc = veil_update_on_ack(&p, &fx.clk, (const char *)in, len);
		ok += rc == 0;
		if (rc != 0) {
			assert_true(rc < 0);
			assert_memory_equal(&p, &fx.alice_upd, sizeof(p));
		}
		free(in);
		veil_pair_wipe(&p);
	}
	report("veil_update_on_ack", 2 * n, ok);
}

/* A JSON object with the DONE's keys and random values of random types. */
static size_t
random_done(struct tu_prng *r, char *out, size_t cap)
{
	static const char *keys[] = { "Data", "Seq", "Eph", "x" };
	static const char *vals[] = { "\"UpdateDone\"", "\"UpdateAck\"", "1", "2",
	    "0", "-1", "18446744073709551616", "1.5", "null", "true", "[]", "{}",
	    "\"\"", "\"1\"", "\"\\u0000\"" };

	return random_object(r, keys, sizeof(keys) / sizeof(keys[0]), vals,
	    sizeof(vals) / sizeof(vals[0]), 4, out, cap);
}

static void
test_update_on_done(void **state)
{
	unsigned long n = scaled(1, 2), ok = 0;
	struct tu_prng r;
	struct veil_pair p;
	uint8_t buf[VEIL_UPDATE_BODY_MAX + 64], *in;
	size_t len;
	int rc;

	(void)state;
	tu_prng_seed(&r, 15);
	assert_true(fx.bob_upd.tx_next.live);
	p = fx.bob_upd;
	assert_int_equal(veil_update_on_done(&p, fx.done, fx.donelen), 0);
	veil_pair_wipe(&p);
	for (unsigned long i = 0; i < 2 * n; i++) {
		switch (i % 4) {
		case 0:
			len = random_bytes(&r, buf, 100);
			break;
		case 1:
			len = random_done(&r, (char *)buf, sizeof(buf));
			break;
		default:
			mutate(&r, buf, &len, sizeof(buf), (const uint8_t *)fx.done,
			    fx.donelen);
			break;
		}
		p = fx.bob_upd;
		in = exact(buf, len);
		rc = veil_update_on_done(&p, (const char *)in, len);
		/* tx_next is live here, so a copy (1) cannot happen. */
		assert_true(rc == 0 || rc < 0);
		if (rc == 0) {
			assert_memory_equal(p.tx.k.root, fx.bob_upd.tx_next.k.root,
			    VEIL_KEY_BYTES);
			assert_false(p.tx_next.live);
			ok++;
		} else {
			assert_memory_equal(p.tx.k.root, fx.bob_upd.tx.k.root, VEIL_KEY_BYTES);
			assert_int_equal(p.tx.seq, fx.bob_upd.tx.seq);
			assert_true(p.tx_next.live);
			assert_memory_equal(p.tx_next.k.root, fx.bob_upd.tx_next.k.root,
			    VEIL_KEY_BYTES);
		}
		free(in);
		veil_pair_wipe(&p);
	}
	report("veil_update_on_done", 2 * n, ok);
}

/* ---- stored state ---------------------------------------------------------- */

static void
test_pair_unpack(void **state)
{
	unsigned long n = scaled(1, 1), ok = 0;
	struct tu_prng r;
	struct veil_pair p, q;
	uint8_t buf[VEIL_PAIR_PACKED_MAX + 8], again[VEIL_PAIR_PACKED_MAX];
	uint8_t again2[VEIL_PAIR_PACKED_MAX], *in;
	size_t len;
	int rc, rc2;

	(void)state;
	tu_prng_seed(&r, 13);
	for (unsigned long i = 0; i < 2 * n; i++) {
		if (i & 1)
			len = random_bytes(&r, buf, sizeof(buf));
		else
			mutate(&r, buf, &len, sizeof(buf), fx.pair_packed, fx.pair_packedlen);
		in = exact(buf, len);
		if (veil_pair_unpack(&p, in, len) == 0) {
			/* Whatever was accepted packs, and packs stably. */
			assert_true((rc = veil_pair_pack(&p, again, sizeof(again))) > 0);
			assert_int_equal(veil_pair_unpack(&q, again, (size_t)rc), 0);
			assert_true((rc2 = veil_pair_pack(&q, again2, sizeof(again2))) > 0);
			assert_int_equal(rc, rc2);
			assert_memory_equal(again, again2, (size_t)rc);
			veil_pair_wipe(&q);
			ok++;
		}
		free(in);
		veil_pair_wipe(&p);
	}
	report("veil_pair_unpack", 2 * n, ok);
	assert_true(ok > 0);
}

static void
test_agree_unpack(void **state)
{
	unsigned long n = scaled(1, 1), ok = 0;
	struct tu_prng r;
	struct veil_agree a, b;
	uint8_t buf[VEIL_AGREE_PACKED_MAX + 8], again[VEIL_AGREE_PACKED_MAX];
	uint8_t again2[VEIL_AGREE_PACKED_MAX], *in;
	size_t len;
	int rc, rc2;

	(void)state;
	tu_prng_seed(&r, 14);
	for (unsigned long i = 0; i < 2 * n; i++) {
		if (i & 1)
			len = random_bytes(&r, buf, sizeof(buf));
		else
			mutate(&r, buf, &len, sizeof(buf), fx.agree_packed, fx.agree_packedlen);
		in = exact(buf, len);
		if (veil_agree_unpack(&a, in, len) == 0) {
			assert_true(a.state <= VEIL_AG_REJECTED);
			assert_true(strnlen(a.peer_name, sizeof(a.peer_name)) < sizeof(a.peer_name));
			assert_true((rc = veil_agree_pack(&a, again, sizeof(again))) > 0);
			assert_int_equal(veil_agree_unpack(&b, again, (size_t)rc), 0);
			assert_true((rc2 = veil_agree_pack(&b, again2, sizeof(again2))) > 0);
			assert_int_equal(rc, rc2);
			assert_memory_equal(again, again2, (size_t)rc);
			veil_agree_wipe(&b);
			ok++;
		}
		free(in);
		veil_agree_wipe(&a);
	}
	report("veil_agree_unpack", 2 * n, ok);
	assert_true(ok > 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_card_random),
		cmocka_unit_test(test_card_mutated),
		cmocka_unit_test(test_id_random),
		cmocka_unit_test(test_frame_random),
		cmocka_unit_test(test_frame_mutated),
		cmocka_unit_test(test_reasm_random),
		cmocka_unit_test(test_reasm_random_peer),
		cmocka_unit_test(test_agree_request),
		cmocka_unit_test(test_agree_accept),
		cmocka_unit_test(test_agree_confirm),
		cmocka_unit_test(test_ccm_parse),
		cmocka_unit_test(test_update_on_update),
		cmocka_unit_test(test_update_on_ack),
		cmocka_unit_test(test_update_on_done),
		cmocka_unit_test(test_pair_unpack),
		cmocka_unit_test(test_agree_unpack),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
