/* libFuzzer harness: agreement steps (REQUEST, ACCEPT, CONFIRM, FAIL) and stored-state unpacking. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "veil.h"
#include "world.h"

/*
 * Byte 0 selects the entry point (mod 7); the rest is the body, an
 * exact-size heap copy so that ASan sees any over-read.
 *   0: on_request  on a fresh agreement (Alice, her card's CID)
 *   1: on_accept   on Bob's agreement that awaits ACCEPT
 *   2: on_confirm  on Alice's agreement that awaits CONFIRM
 *   3: on_fail     on either (bit 7 of byte 0 picks; only Alice's state
 *                  takes a FAIL)
 *   4: veil_agree_unpack, then pack/unpack/pack must be stable
 *   5: veil_pair_unpack, same
 *   6: 8 bytes of clock offset, 2 + 2 of grace and lead, then a stored
 *      pair: unpack, veil_pair_advance to WORLD_NOW + offset (with a tag
 *      table), which must leave a pair that packs and unpacks stably and
 *      a table holding exactly its live keys
 */
#define ADVANCE_MAX_STEPS 4096	/* keeps an input well under the timeout */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct world w;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (world_build(&w) != 0)
		abort();
	return 0;
}

static void
agree_roundtrip(const uint8_t *in, size_t len)
{
	static uint8_t p1[VEIL_AGREE_PACKED_MAX], p2[VEIL_AGREE_PACKED_MAX];
	struct veil_agree a;
	int n1, n2;

	if (veil_agree_unpack(&a, in, len) != 0)
		return;
	if ((n1 = veil_agree_pack(&a, p1, sizeof(p1))) <= 0)
		abort();
	if (veil_agree_unpack(&a, p1, (size_t)n1) != 0)
		abort();
	if ((n2 = veil_agree_pack(&a, p2, sizeof(p2))) != n1 ||
	    memcmp(p1, p2, (size_t)n1) != 0)
		abort();
	veil_agree_wipe(&a);
}

static void
pair_roundtrip(const uint8_t *in, size_t len)
{
	static uint8_t p1[VEIL_PAIR_PACKED_MAX], p2[VEIL_PAIR_PACKED_MAX];
	struct veil_pair p;
	int n1, n2;

	if (veil_pair_unpack(&p, in, len) != 0)
		return;
	if ((n1 = veil_pair_pack(&p, p1, sizeof(p1))) <= 0)
		abort();
	if (veil_pair_unpack(&p, p1, (size_t)n1) != 0)
		abort();
	if ((n2 = veil_pair_pack(&p, p2, sizeof(p2))) != n1 ||
	    memcmp(p1, p2, (size_t)n1) != 0)
		abort();
	veil_pair_wipe(&p);
}

/* Periods a chain would ratchet to reach now (0 if it stays). */
static uint64_t
steps_to(uint64_t now, uint32_t plen, uint64_t period)
{
	uint64_t t = plen ? now / plen : 0;

	return t > period ? t - period : 0;
}

static void
pair_advance(const uint8_t *in, size_t len)
{
	static uint8_t p1[VEIL_PAIR_PACKED_MAX];
	struct veil_tagtab *t;
	struct veil_clock clk;
	struct veil_pair p;
	uint64_t off = 0;
	size_t i, armed = 0;
	int n;

	if (len < 12)
		return;
	for (i = 0; i < 8; i++)
		off = off << 8 | in[i];
	clk.now = WORLD_NOW + (off % (UINT64_C(1) << 40));
	clk.grace = (uint32_t)(in[8] << 8 | in[9]);
	clk.lead = (uint32_t)(in[10] << 8 | in[11]);
	if (veil_pair_unpack(&p, in + 12, len - 12) != 0)
		return;
	if (steps_to(clk.now, p.tx.plen, p.tx.period) > ADVANCE_MAX_STEPS ||
	    steps_to(clk.now, p.tx_next.plen, p.tx_next.period) > ADVANCE_MAX_STEPS ||
	    steps_to(clk.now, p.rx.plen, p.rx.period) > ADVANCE_MAX_STEPS ||
	    steps_to(clk.now, p.rx_prev.plen, p.rx_prev.period) > ADVANCE_MAX_STEPS) {
		veil_pair_wipe(&p);
		return;
	}
	if ((t = veil_tagtab_new(0)) == NULL)
		abort();
	if (veil_pair_arm(t, &p, 0, VEIL_LOOKAHEAD) == VEIL_ERR_NOMEM ||
	    veil_pair_advance(&p, &clk, t, 0, VEIL_LOOKAHEAD) < 0)
		abort();
	/* Every live key is armed, and nothing else (a collision would
	 * make this smaller: not with 64-bit tags and this few). */
	for (i = 0; i < VEIL_PAIR_OWNERS; i++)
		if (veil_pair_rxslot(&p, (unsigned)i) != NULL)
			armed++;
	veil_pair_disarm(t, &p, VEIL_LOOKAHEAD);
	if (veil_tagtab_count(t) != 0 || armed < 1)
		abort();
	veil_tagtab_free(t);
	if ((n = veil_pair_pack(&p, p1, sizeof(p1))) <= 0)
		abort();
	pair_roundtrip(p1, (size_t)n);
	veil_pair_wipe(&p);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t out[VEIL_AGREE_BODY_MAX], type = 0;
	struct veil_agree a;
	struct veil_pair pair;
	uint8_t *body;
	size_t len, outlen;
	int rc;

	if (size < 1)
		return 0;
	world_reseed();
	len = size - 1;
	if ((body = malloc(len > 0 ? len : 1)) == NULL)
		return 0;
	memcpy(body, data + 1, len);
	memset(&pair, 0, sizeof(pair));

	switch (data[0] % 7) {
	case 0:
		memset(&a, 0, sizeof(a));
		rc = veil_agree_on_request(&a, &w.card.cid, w.alice.pk, WORLD_NOW,
		    WORLD_MAX_AGE, body, len);
		if (rc == 0 && (a.state != VEIL_AG_PENDING ||
		    memchr(a.peer_name, '\0', sizeof(a.peer_name)) == NULL ||
		    !veil_inbox_valid(&a.peer_inbox) ||
		    a.req_time + WORLD_MAX_AGE < WORLD_NOW ||
		    a.req_time > WORLD_NOW + VEIL_AGREE_AHEAD_MAX))
			abort();
		if (rc != 0 && !sodium_is_zero((const uint8_t *)&a, sizeof(a)))
			abort();
		break;
	case 1:
		a = w.bob_requested;
		outlen = sizeof(out);
		rc = veil_agree_on_accept(&a, w.bob.sk, &w.clk, body, len, &pair, out,
		    &outlen, &type);
		if (rc == 0 && (a.state != VEIL_AG_ESTABLISHED ||
		    type != VEIL_T_CONFIRM || outlen > sizeof(out)))
			abort();
		if (rc == VEIL_ERR_SECRET && (a.state != VEIL_AG_FAILED ||
		    type != VEIL_T_FAIL || outlen > sizeof(out)))
			abort();
		break;
	case 2:
		a = w.alice_accepted;
		rc = veil_agree_on_confirm(&a, body, len);
		if (rc == 0 && a.state != VEIL_AG_ESTABLISHED)
			abort();
		break;
	case 3:
		a = (data[0] & 0x80) ? w.alice_accepted : w.bob_requested;
		rc = veil_agree_on_fail(&a, body, len);
		if (rc == 0 && a.state != VEIL_AG_FAILED)
			abort();
		break;
	case 4:
		memset(&a, 0, sizeof(a));
		agree_roundtrip(body, len);
		break;
	case 5:
		memset(&a, 0, sizeof(a));
		pair_roundtrip(body, len);
		break;
	default:
		memset(&a, 0, sizeof(a));
		pair_advance(body, len);
		break;
	}
	veil_agree_wipe(&a);
	veil_pair_wipe(&pair);
	free(body);
	return 0;
}
