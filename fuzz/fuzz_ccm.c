/* libFuzzer harness: CCM parsing, UPDATE, UPDATE-ACK and UPDATE-DONE against an established pair. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "veil.h"
#include "world.h"

/*
 * Byte 0 selects the entry point (mod 4); the rest is the body, given as
 * an exact-size heap copy without a NUL so that ASan sees any over-read.
 *   0: veil_ccm_parse
 *   1: veil_update_on_update on a copy of Bob's pair; an ACK it returns
 *      is fed to a copy of Alice's pair (pending UPDATE) as well; a
 *      refused UPDATE leaves the pair exactly as it was
 *   2: veil_update_on_ack on a copy of Alice's pair (same), with a clock
 *      at most ACK_MAX_STEPS periods after the ACK's Period: an ACK far
 *      older makes the receiver ratchet the full bound (2^20 steps, a
 *      third of a second, which test_update covers) and would starve the
 *      run
 *   3: veil_update_on_done on a copy of Bob's pair after Alice's UPDATE
 *      (its new transmit key waiting in tx_next)
 */
#define ACK_MAX_STEPS 4096

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct world w;
static struct veil_pair bob_updated;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct veil_ccm ccm;
	char *ack = NULL;
	size_t acklen = 0;

	(void)argc;
	(void)argv;
	if (world_build(&w) != 0)
		abort();
	/*
	 * Made here rather than in the world: it draws randomness (Bob's
	 * ephemeral key) after world_build, so the world, and the seeds
	 * fuzz/mkseeds.c derives from it, stay as they are.  The DONE body
	 * holds no key, only the seq, which is 1 either way.
	 */
	bob_updated = w.bob_pair;
	if (veil_update_on_update(&bob_updated, "Alice", WORLD_NOW, w.update_body,
	    w.update_len, &ccm, &ack, &acklen) != 0 || !bob_updated.tx_next.live)
		abort();
	free(ack);
	return 0;
}

/* The world's clock, or an earlier one within ACK_MAX_STEPS periods of
 * the body's Period (if it has one). */
static struct veil_clock
ack_clock(const char *body, size_t len)
{
	struct veil_clock clk = w.clk;
	uint32_t plen = w.alice_pending.upd_new.period;
	json_t *o, *v;
	json_int_t p;

	if ((o = json_loadb(body, len, 0, NULL)) == NULL)
		return clk;
	v = json_object_get(o, "Period");
	if (json_is_integer(v) && (p = json_integer_value(v)) >= 0 &&
	    (uint64_t)p + ACK_MAX_STEPS < clk.now / plen)
		clk.now = ((uint64_t)p + ACK_MAX_STEPS) * plen;
	json_decref(o);
	return clk;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct veil_pair bob, alice;
	struct veil_clock clk;
	struct veil_ccm ccm;
	char *body, *ack = NULL;
	size_t acklen = 0;
	int rc;

	if (size < 1)
		return 0;
	world_reseed();
	if ((body = malloc(size - 1 > 0 ? size - 1 : 1)) == NULL)
		return 0;
	memcpy(body, data + 1, size - 1);

	switch (data[0] % 4) {
	case 0:
		if (veil_ccm_parse(&ccm, body, size - 1) == 0 &&
		    (memchr(ccm.cname, '\0', sizeof(ccm.cname)) == NULL ||
		    veil_name_valid(ccm.cname) != 0 ||
		    !veil_inbox_valid(&ccm.new_inbox) ||
		    !veil_seed_valid(ccm.ocid) || ccm.seq < 1))
			abort();
		break;
	case 1:
		bob = w.bob_pair;
		rc = veil_update_on_update(&bob, "Alice", WORLD_NOW, body, size - 1,
		    &ccm, &ack, &acklen);
		if (rc == 0 || rc == 1) {
			if (ack == NULL || acklen == 0)
				abort();
			/* Accepted: tx untouched, the new chain waits. */
			if (!bob.tx_next.live || sodium_memcmp(&bob.tx, &w.bob_pair.tx,
			    sizeof(bob.tx)) != 0)
				abort();
			alice = w.alice_pending;
			(void)veil_update_on_ack(&alice, &w.clk, ack, acklen);
			veil_pair_wipe(&alice);
		} else if (ack != NULL || sodium_memcmp(&bob, &w.bob_pair,
		    sizeof(bob)) != 0)
			abort();
		free(ack);
		veil_pair_wipe(&bob);
		break;
	case 2:
		alice = w.alice_pending;
		clk = ack_clock(body, size - 1);
		if (veil_update_on_ack(&alice, &clk, body, size - 1) != 0 &&
		    sodium_memcmp(&alice, &w.alice_pending, sizeof(alice)) != 0)
			abort();
		veil_pair_wipe(&alice);
		break;
	default:
		bob = bob_updated;
		rc = veil_update_on_done(&bob, body, size - 1);
		/* tx_next is live, so no copy (1); a switch moves tx to it, a
		 * refusal moves nothing. */
		if (rc == 1)
			abort();
		if (rc == 0 && (bob.tx_next.live || sodium_memcmp(bob.tx.k.root,
		    bob_updated.tx_next.k.root, VEIL_KEY_BYTES) != 0))
			abort();
		if (rc < 0 && (!bob.tx_next.live || sodium_memcmp(bob.tx.k.root,
		    bob_updated.tx.k.root, VEIL_KEY_BYTES) != 0))
			abort();
		veil_pair_wipe(&bob);
		break;
	}
	free(body);
	return 0;
}
