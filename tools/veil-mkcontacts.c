/* veil-mkcontacts: the benchmark's bulk path — N contacts agreed through the real protocol, stored as veild stores them. */
#include <sys/stat.h>

#include <err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "veil.h"

#include "core.h"
#include "vault_key.h"

/*
 * Each synthetic peer runs the initiator's side of the agreement in memory
 * against the owner's identity (REQUEST sealed and opened, ACCEPT, CONFIRM,
 * all through real frames), so every stored row is exactly what veild
 * writes after a real agreement: an established contact, its packed keys,
 * its pairwise inbox subscribed.  Only the peers' daemons do not exist.
 */

static void __attribute__((noreturn))
usage(void)
{
	fprintf(stderr, "usage: veil-mkcontacts [-f frame_size] [-o obscurity] "
	    "[-e epoch_s] [-p key_period_s] -k KEY_FILE STATE_DIR N\n"
	    "  Adds N established contacts to the veild state in STATE_DIR\n"
	    "  (veild must have run there once and be stopped now), whose\n"
	    "  data key KEY_FILE (unlock.key_file) unwraps.\n");
	exit(2);
}

static void
agree_one(const struct veil_identity *owner, const struct veil_id *owner_cid,
    const struct veil_inbox *owner_inbox, size_t fs, long i,
    struct store_contact *row)
{
	struct veil_identity peer;
	struct veil_card card;
	struct veil_agree ai, ar;
	struct veil_pair pi, pr;
	struct veil_inbox ibox_i, ibox_r;
	struct veil_dirkey r2i, i2r;
	struct veil_frame_hdr h;
	struct veil_clock clk;
	struct veil_rxdir *d;
	uint8_t body[VEIL_AGREE_BODY_MAX], out[VEIL_AGREE_BODY_MAX], msgid[VEIL_MSGID_BYTES];
	uint8_t *frame, *pbody;
	size_t blen = 0, olen = 0;
	uint64_t seq = 0, now = now_s();
	uint8_t type = 0;
	char name[VEIL_NAME_MAX + 1];
	int n;

	memset(&ai, 0, sizeof ai);
	memset(&ar, 0, sizeof ar);
	memset(&pi, 0, sizeof pi);
	memset(&pr, 0, sizeof pr);
	memset(&clk, 0, sizeof clk);
	clk.now = now;
	if ((frame = malloc(4 * fs)) == NULL || (pbody = malloc(fs)) == NULL)
		errx(1, "out of memory");
	veil_identity_new(&peer);
	memset(&card, 0, sizeof card);
	card.cid = *owner_cid;
	memcpy(card.pk, owner->pk, sizeof card.pk);
	snprintf(card.name, sizeof card.name, "owner");
	snprintf(name, sizeof name, "peer-%06ld", i);
	veil_seed_new(ibox_i.seed);
	ibox_i.epoch = owner_inbox->epoch;
	ibox_i.period = owner_inbox->period;
	ibox_r = *owner_inbox;
	if (!veil_seed_valid(ibox_r.seed))
		veil_seed_new(ibox_r.seed);	/* level 2: one seed per contact */

	/* 1. REQUEST: sealed to the owner and opened with the owner's key. */
	if (veil_agree_request(&ai, &card, peer.pk, name, &ibox_i, now, body, &blen) != 0)
		errx(1, "request");
	veil_msgid_new(msgid);
	if ((n = veil_message_seal_box(frame, 4 * fs, fs, owner->pk, VEIL_T_REQUEST,
	    msgid, body, blen)) != 1)
		errx(1, "the REQUEST does not fit one frame of %zu bytes", fs);
	if (veil_frame_open_box(frame, fs, owner->pk, owner->sk, &h, pbody) != 0 ||
	    veil_agree_on_request(&ar, owner_cid, owner->pk, now, 86400, pbody,
	    h.len) != 0)
		errx(1, "on_request");
	/* 2. ACCEPT under the epoch-0 key. */
	if (veil_agree_accept(&ar, owner->sk, &ibox_r, &clk, body, &blen, &pr) != 0)
		errx(1, "accept");
	veil_agree_epoch0(&ar, &r2i, &i2r);
	seq = 0;
	if (veil_message_seal(frame, 4 * fs, fs, &r2i, &seq, VEIL_T_ACCEPT, msgid, body, blen) != 1 ||
	    veil_frame_open(frame, fs, &r2i, 0, &h, pbody) != 0 ||
	    veil_agree_on_accept(&ai, peer.sk, &clk, pbody, h.len, &pi, out, &olen,
	    &type) != 0)
		errx(1, "on_accept");
	/* 3. CONFIRM under the pair's chain, opened by the owner. */
	if (veil_message_seal(frame, 4 * fs, fs, &pi.tx.k, &pi.tx.seq, type, msgid,
	    out, olen) != 1 ||
	    (d = veil_rxchain_find(&pr.rx, pi.tx.period)) == NULL ||
	    veil_frame_open(frame, fs, &d->k, 0, &h, pbody) != 0 ||
	    veil_agree_on_confirm(&ar, pbody, h.len) != 0)
		errx(1, "on_confirm");
	veil_window_mark(&d->w, 0);

	memset(row, 0, sizeof *row);
	snprintf(row->name, sizeof row->name, "%s", name);
	row->state = CONTACT_ESTABLISHED;
	snprintf(row->peer_name, sizeof row->peer_name, "%s", name);
	memcpy(row->peer_pk, peer.pk, sizeof row->peer_pk);
	if ((n = veil_pair_pack(&pr, row->pair, sizeof row->pair)) < 0)
		errx(1, "pair_pack");
	row->pair_len = (size_t)n;
	row->created = row->updated = now_ms();

	veil_agree_wipe(&ai);
	veil_agree_wipe(&ar);
	veil_pair_wipe(&pi);
	veil_pair_wipe(&pr);
	veil_dirkey_wipe(&r2i);
	veil_dirkey_wipe(&i2r);
	veil_identity_wipe(&peer);
	sodium_memzero(&ibox_r, sizeof ibox_r);
	free(frame);
	free(pbody);
}

int
main(int argc, char *argv[])
{
	struct veil_identity owner;
	struct veil_id cid;
	struct store *st;
	struct store_contact *row;
	struct store_meta meta;
	struct veil_inbox inbox;
	uint32_t epoch_len = 3600, key_period = 3600;
	char path[4096], errbuf[512];
	const char *key_file = NULL;
	size_t fs = VEIL_FRAME_DEFAULT;
	long count, i;
	int ch, obscurity = 2;

	while ((ch = getopt(argc, argv, "e:f:k:o:p:")) != -1) {
		switch (ch) {
		case 'k': key_file = optarg; break;
		case 'e': epoch_len = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'f': fs = strtoul(optarg, NULL, 10); break;
		case 'o': obscurity = atoi(optarg); break;
		case 'p': key_period = (uint32_t)strtoul(optarg, NULL, 10); break;
		default: usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc != 2 || (count = strtol(argv[1], NULL, 10)) <= 0 ||
	    !veil_frame_size_valid(fs) || key_file == NULL)
		usage();
	if (veil_init() != 0)
		errx(1, "libsodium failed to initialise");
	snprintf(path, sizeof path, "%s/veil.db", argv[0]);
	if ((st = store_open(path, errbuf, sizeof errbuf)) == NULL ||
	    vk_unlock_with_file(st, key_file, errbuf, sizeof errbuf) != 0)
		errx(1, "%s: %s", path, errbuf);
	if (store_identity_get(st, owner.pk, owner.sk) != 1 ||
	    store_meta_get(st, &meta) != 1 || meta.card_cid[0] == '\0')
		errx(1, "%s: no identity yet: start veild there once first "
		    "(at level 1 or 2: a level 3 card has no fixed ID)", path);
	if (veil_id_from_text(&cid, meta.card_cid) != 0)
		errx(1, "damaged card ID");
	if (obscurity != 2 && !meta.has_shared_seed)
		errx(1, "no shared seed in the store");
	/* What veild gives a new contact: its own seed at level 2, else the
	 * shared one; the epoch length and key period as veild's defaults
	 * (-e, -p to match a config that sets others). */
	memset(&inbox, 0, sizeof inbox);
	if (obscurity != 2)
		memcpy(inbox.seed, meta.shared_seed, sizeof inbox.seed);
	inbox.epoch = obscurity == 1 ? 0 : epoch_len;
	inbox.period = key_period;
	if ((row = malloc(sizeof *row)) == NULL)
		errx(1, "out of memory");
	for (i = 0; i < count; i++) {
		int64_t id;

		if (i % 1000 == 0 && store_begin(st) != 0)
			errx(1, "store: %s", store_errmsg(st));
		agree_one(&owner, &cid, &inbox, fs, i, row);
		if ((id = store_contact_add(st, row)) < 0)
			errx(1, "store: %s", store_errmsg(st));
		if (i % 1000 == 999 || i == count - 1) {
			if (store_commit(st) != 0)
				errx(1, "store: %s", store_errmsg(st));
		}
	}
	sodium_memzero(row, sizeof *row);
	free(row);
	veil_identity_wipe(&owner);
	store_close(st);
	printf("%ld contacts added\n", count);
	return 0;
}
