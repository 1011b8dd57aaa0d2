/* libFuzzer harness: agreement steps (REQUEST, ACCEPT, CONFIRM, FAIL) and stored-state unpacking. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "veil.h"
#include "world.h"

/*
 * Byte 0 selects the entry point (mod 6); the rest is the body, an
 * exact-size heap copy so that ASan sees any over-read.
 *   0: on_request  on a fresh agreement (Alice, her card's CID)
 *   1: on_accept   on Bob's agreement that awaits ACCEPT
 *   2: on_confirm  on Alice's agreement that awaits CONFIRM
 *   3: on_fail     on either (bit 7 of byte 0 picks)
 *   4: veil_agree_unpack, then pack/unpack/pack must be stable
 *   5: veil_pair_unpack, same
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

	switch (data[0] % 6) {
	case 0:
		memset(&a, 0, sizeof(a));
		rc = veil_agree_on_request(&a, &w.card.cid, w.alice.pk, body, len);
		if (rc == 0 && (a.state != VEIL_AG_PENDING ||
		    memchr(a.peer_name, '\0', sizeof(a.peer_name)) == NULL))
			abort();
		break;
	case 1:
		a = w.bob_requested;
		outlen = sizeof(out);
		rc = veil_agree_on_accept(&a, body, len, &pair, out, &outlen, &type);
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
	default:
		memset(&a, 0, sizeof(a));
		pair_roundtrip(body, len);
		break;
	}
	veil_agree_wipe(&a);
	veil_pair_wipe(&pair);
	free(body);
	return 0;
}
