/* libFuzzer harness: CCM parsing, UPDATE and UPDATE-ACK against an established pair. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "veil.h"
#include "world.h"

/*
 * Byte 0 selects the entry point (mod 3); the rest is the body, given as
 * an exact-size heap copy without a NUL so that ASan sees any over-read.
 *   0: veil_ccm_parse
 *   1: veil_update_on_update on a copy of Bob's pair; an ACK it returns
 *      is fed to a copy of Alice's pair (pending UPDATE) as well
 *   2: veil_update_on_ack on a copy of Alice's pair
 */
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

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct veil_pair bob, alice;
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

	switch (data[0] % 3) {
	case 0:
		if (veil_ccm_parse(&ccm, body, size - 1) == 0 &&
		    (memchr(ccm.cname, '\0', sizeof(ccm.cname)) == NULL ||
		    veil_name_valid(ccm.cname) != 0 ||
		    !veil_id_is_set(&ccm.new_cid) || ccm.seq < 1))
			abort();
		break;
	case 1:
		bob = w.bob_pair;
		rc = veil_update_on_update(&bob, &w.alice_inbox, body, size - 1,
		    &ccm, &ack, &acklen);
		if (rc == 0 || rc == 1) {
			if (ack == NULL || acklen == 0)
				abort();
			alice = w.alice_pending;
			(void)veil_update_on_ack(&alice, ack, acklen);
			veil_pair_wipe(&alice);
		} else if (ack != NULL)
			abort();
		free(ack);
		veil_pair_wipe(&bob);
		break;
	default:
		alice = w.alice_pending;
		(void)veil_update_on_ack(&alice, body, size - 1);
		veil_pair_wipe(&alice);
		break;
	}
	free(body);
	return 0;
}
