/* Fuzz harness support: builds the deterministic world with real libveil calls. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "testutil.h"
#include "world.h"

#define STEP(name, cond) do {						\
	if (!(cond)) {							\
		fprintf(stderr, "world: step failed: %s\n", (name));	\
		goto out;						\
	}								\
} while (0)

void
world_reseed(void)
{
	tu_rng_reseed(WORLD_SEED "-input");
}

int
world_build(struct world *w)
{
	uint8_t root[VEIL_KEY_BYTES], seed[crypto_box_SEEDBYTES];
	struct veil_agree aa, ab;
	struct veil_pair alice_pair;
	struct veil_ccm ccm;
	struct veil_pair bob_copy;
	char *ubody = NULL, *ack = NULL;
	size_t ulen = 0, acklen = 0;
	uint8_t ctype = 0;
	int n, ret = -1;

	memset(w, 0, sizeof(*w));
	memset(&aa, 0, sizeof(aa));
	memset(&ab, 0, sizeof(ab));
	memset(&alice_pair, 0, sizeof(alice_pair));
	memset(&bob_copy, 0, sizeof(bob_copy));
	tu_deterministic_rng(WORLD_SEED);
	STEP("veil_init", veil_init() == 0);

	for (size_t i = 0; i < sizeof(root); i++)
		root[i] = (uint8_t)(0x40 + i);
	STEP("dirkey", veil_dirkey_from_root(&w->dk, root, VEIL_DIR_I2R) == 0);
	for (size_t i = 0; i < sizeof(seed); i++)
		seed[i] = (uint8_t)(0x60 + i);
	STEP("box keypair", crypto_box_seed_keypair(w->box_pk, w->box_sk, seed) == 0);

	STEP("identities", veil_identity_new(&w->alice) == 0 &&
	    veil_identity_new(&w->bob) == 0);
	STEP("card cid", veil_id_new(&w->card.cid, 0) == 0);
	memcpy(w->card.pk, w->alice.pk, sizeof(w->card.pk));
	snprintf(w->card.name, sizeof(w->card.name), "Alice");
	snprintf(w->card.hints, sizeof(w->card.hints), "mqtt 127.0.0.1:1883");
	w->card.expires = 1893456000ULL;
	STEP("card encode", veil_card_encode(&w->card, w->card_uri,
	    sizeof(w->card_uri)) > 0);

	veil_seed_new(w->bob_inbox.seed);
	w->bob_inbox.epoch = 3600;
	w->bob_inbox.period = 600;
	veil_seed_new(w->alice_inbox.seed);
	w->alice_inbox.epoch = 3600;
	w->alice_inbox.period = 3600;
	veil_seed_new(w->alice_new.seed);
	w->alice_new.epoch = 1800;
	w->alice_new.period = 900;
	w->clk.now = WORLD_NOW;
	w->clk.grace = w->clk.lead = 120;
	w->request_len = sizeof(w->request_body);
	STEP("request", veil_agree_request(&ab, &w->card, w->bob.pk, "Bob",
	    &w->bob_inbox, WORLD_NOW, w->request_body, &w->request_len) == 0);
	w->bob_requested = ab;
	STEP("on_request", veil_agree_on_request(&aa, &w->card.cid, w->alice.pk,
	    WORLD_NOW, WORLD_MAX_AGE, w->request_body, w->request_len) == 0);
	w->accept_len = sizeof(w->accept_body);
	STEP("accept", veil_agree_accept(&aa, w->alice.sk, &w->alice_inbox, &w->clk,
	    w->accept_body, &w->accept_len, &alice_pair) == 0);
	w->alice_accepted = aa;
	w->confirm_len = sizeof(w->confirm_body);
	STEP("on_accept", veil_agree_on_accept(&ab, w->bob.sk, &w->clk,
	    w->accept_body, w->accept_len, &w->bob_pair, w->confirm_body,
	    &w->confirm_len, &ctype) == 0 && ctype == VEIL_T_CONFIRM);
	STEP("on_confirm", veil_agree_on_confirm(&aa, w->confirm_body,
	    w->confirm_len) == 0);

	STEP("update build", veil_update_build(&alice_pair, w->alice.pk, "Alice",
	    &w->alice_new, 1, &ubody, &ulen) == 0 && ulen < sizeof(w->update_body));
	memcpy(w->update_body, ubody, ulen);
	w->update_len = ulen;
	w->alice_pending = alice_pair;
	/* The ACK comes from a copy: the stored Bob has not seen the UPDATE
	 * yet, so a fuzzed UPDATE meets the state a real one would. */
	bob_copy = w->bob_pair;
	STEP("on_update", veil_update_on_update(&bob_copy, "Alice", WORLD_NOW, ubody,
	    ulen, &ccm, &ack, &acklen) == 0 && acklen < sizeof(w->ack_body));
	memcpy(w->ack_body, ack, acklen);
	w->ack_len = acklen;

	STEP("pair pack", (n = veil_pair_pack(&w->bob_pair, w->pair_packed,
	    sizeof(w->pair_packed))) > 0);
	w->pair_packed_len = (size_t)n;
	STEP("agree pack", (n = veil_agree_pack(&w->bob_requested, w->agree_packed,
	    sizeof(w->agree_packed))) > 0);
	w->agree_packed_len = (size_t)n;
	ret = 0;
out:
	free(ubody);
	free(ack);
	veil_agree_wipe(&aa);
	veil_agree_wipe(&ab);
	veil_pair_wipe(&bob_copy);
	veil_pair_wipe(&alice_pair);
	sodium_memzero(root, sizeof(root));
	sodium_memzero(seed, sizeof(seed));
	return ret;
}
