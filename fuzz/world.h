/* Fuzz harness support: one deterministic veil world (keys, card, agreement states, pairs, bodies). */
#ifndef VEIL_FUZZ_WORLD_H
#define VEIL_FUZZ_WORLD_H

#include <stddef.h>
#include <stdint.h>

#include "veil.h"

#define WORLD_SEED "veil-fuzz-v2"
#define WORLD_NOW 1767225600ULL		/* 2026-01-01, before the card expires */
#define WORLD_MAX_AGE (3 * 86400ULL)	/* REQUEST lifetime */

/*
 * Every value comes from the seeded RNG of tests/testutil.c, so a harness
 * and fuzz/mkseeds.c build byte-identical worlds: seeds made by mkseeds
 * reach past the authentication checks of the harnesses.
 */
struct world {
	struct veil_identity alice, bob;
	struct veil_card card;
	char card_uri[VEIL_CARD_URI_MAX];
	struct veil_inbox bob_inbox, alice_inbox, alice_new;
	struct veil_clock clk;		/* WORLD_NOW, grace and lead 120 s */

	/* Fixed AEAD direction key (direction 1) and sealed-box key pair
	 * for frames. */
	struct veil_dirkey dk;
	uint8_t box_pk[VEIL_KEY_BYTES], box_sk[VEIL_KEY_BYTES];

	/* Agreement snapshots, one per state an incoming body can hit. */
	struct veil_agree bob_requested;	/* awaits ACCEPT */
	struct veil_agree alice_accepted;	/* awaits CONFIRM */
	uint8_t request_body[VEIL_AGREE_BODY_MAX];
	size_t request_len;
	uint8_t accept_body[VEIL_AGREE_BODY_MAX];
	size_t accept_len;
	uint8_t confirm_body[VEIL_AGREE_BODY_MAX];
	size_t confirm_len;

	/* Established pairs: Bob receives Alice's UPDATE; Alice, with it
	 * pending, receives Bob's UPDATE-ACK. */
	struct veil_pair bob_pair;
	struct veil_pair alice_pending;
	char update_body[VEIL_UPDATE_BODY_MAX + 1];
	size_t update_len;
	char ack_body[VEIL_UPDATE_BODY_MAX + 1];
	size_t ack_len;
	uint8_t pair_packed[VEIL_PAIR_PACKED_MAX];
	size_t pair_packed_len;
	uint8_t agree_packed[VEIL_AGREE_PACKED_MAX];
	size_t agree_packed_len;
};

/* Installs the deterministic RNG, calls veil_init() and fills *w.
 * Returns 0, or -1 after printing which step failed. */
int world_build(struct world *w);

/* Restarts the RNG stream so every input sees the same "random" values. */
void world_reseed(void);

#endif
