/* pairdump: the secrets of a state directory's database, opened with its key file, one line each — for tests that search the files on disk for keys that must not be there (in the clear, or at all). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "veil.h"

#include "store.h"
#include "vault_key.h"

/*
 * Usage: pairdump DB KEYFILE [CONTACT]
 *        pairdump --blob < HEX   (a pair blob in the clear, from a
 *        database of before encryption at rest)
 * Lines "what period hex".  With CONTACT: every root and derived key of
 * that contact's pair.  Without: those of every contact, with its shared
 * secret and the inbox seeds, the identity secret key and the shared
 * seed.  The test searches the files for each value: found means it is
 * stored in the clear.
 *        pairdump DB KEYFILE --pair CONTACT
 * The contact's packed pair, hex (for tests that forge its frames).
 *        pairdump DB KEYFILE --rx CONTACT < LINES
 * Each line "MSGID-HEX BODY-HEX RECEIVED-AT-MS" stored as an unread text
 * message of the contact, sealed as veild seals it, in one transaction
 * (for tests that need a large backlog without sending it).
 */

static void
put(const char *what, uint64_t period, const uint8_t *b, size_t n)
{
	char hex[2 * 64 + 1];

	if (sodium_is_zero(b, n))
		return;
	sodium_bin2hex(hex, sizeof hex, b, n);
	printf("%s %llu %s\n", what, (unsigned long long)period, hex);
}

/* Every root and every key derived from one: what must die with a period. */
static void
dirkey(const char *what, uint64_t period, const struct veil_dirkey *k)
{
	char name[64];

	snprintf(name, sizeof name, "%s.root", what);
	put(name, period, k->root, sizeof k->root);
	snprintf(name, sizeof name, "%s.key", what);
	put(name, period, k->key, sizeof k->key);
	snprintf(name, sizeof name, "%s.nkey", what);
	put(name, period, k->nkey, sizeof k->nkey);
}

static void
pair_keys(const struct veil_pair *p)
{
	if (p->tx.live)
		dirkey("tx", p->tx.period, &p->tx.k);
	if (p->tx_next.live)
		dirkey("tx_next", p->tx_next.period, &p->tx_next.k);
	for (int i = 0; i < VEIL_RX_SLOTS; i++) {
		if (p->rx.slot[i].live)
			dirkey("rx", p->rx.slot[i].period, &p->rx.slot[i].k);
		if (p->rx_prev.slot[i].live)
			dirkey("rx_prev", p->rx_prev.slot[i].period, &p->rx_prev.slot[i].k);
	}
}

struct ctx {
	const char	*only;
	int		 found;
};

static int
contact_cb(const struct store_contact *c, void *arg)
{
	struct ctx *x = arg;
	struct veil_pair p;

	if (x->only != NULL && strcmp(c->name, x->only) != 0)
		return 0;
	x->found++;
	if (c->pair_len == 0 || veil_pair_unpack(&p, c->pair, c->pair_len) != 0)
		return 0;
	pair_keys(&p);
	if (x->only == NULL) {
		put("secret", 0, p.secret, sizeof p.secret);
		put("my_inbox.seed", 0, p.my_inbox.seed, sizeof p.my_inbox.seed);
		put("peer_inbox.seed", 0, p.peer_inbox.seed, sizeof p.peer_inbox.seed);
	}
	veil_pair_wipe(&p);
	return 0;
}

static int
blob_mode(void)
{
	static char hex[2 * VEIL_PAIR_PACKED_MAX + 2];
	uint8_t blob[VEIL_PAIR_PACKED_MAX];
	struct veil_pair p;
	size_t len = 0;

	if (fgets(hex, sizeof hex, stdin) == NULL)
		return 2;
	hex[strcspn(hex, "\r\n")] = '\0';
	if (sodium_hex2bin(blob, sizeof blob, hex, strlen(hex), NULL, &len,
	    NULL) != 0 || veil_pair_unpack(&p, blob, len) != 0) {
		fprintf(stderr, "pairdump: not a stored pair\n");
		return 1;
	}
	pair_keys(&p);
	put("secret", 0, p.secret, sizeof p.secret);
	put("my_inbox.seed", 0, p.my_inbox.seed, sizeof p.my_inbox.seed);
	put("peer_inbox.seed", 0, p.peer_inbox.seed, sizeof p.peer_inbox.seed);
	veil_pair_wipe(&p);
	return 0;
}

static int
find_cb(const struct store_contact *c, void *arg)
{
	struct store_contact *out = arg;

	if (strcmp(c->name, out->name) != 0)
		return 0;
	*out = *c;
	return 1;
}

static int
contact_mode(struct store *st, const char *mode, const char *name)
{
	struct store_contact c;
	char *line = NULL, *sp, *sp2, *hex;
	uint8_t msgid[STORE_MSGID_BYTES], *body;
	size_t cap = 0, len, blen, hexlen;
	long long at;
	int rc = 0;

	memset(&c, 0, sizeof c);
	snprintf(c.name, sizeof c.name, "%s", name);
	if (store_contact_list(st, find_cb, &c) < 0 || c.id == 0) {
		fprintf(stderr, "pairdump: no contact %s\n", name);
		return 1;
	}
	if (strcmp(mode, "--pair") == 0) {
		if ((hex = malloc(2 * c.pair_len + 1)) == NULL)
			return 1;
		sodium_bin2hex(hex, 2 * c.pair_len + 1, c.pair, c.pair_len);
		printf("%s\n", hex);
		free(hex);
		return 0;
	}
	if (store_begin(st) != 0)
		return 1;
	while (rc == 0 && getline(&line, &cap, stdin) > 0) {
		line[strcspn(line, "\r\n")] = '\0';
		if ((sp = strchr(line, ' ')) == NULL ||
		    (sp2 = strchr(sp + 1, ' ')) == NULL) {
			rc = 1;
			break;
		}
		*sp = *sp2 = '\0';
		hexlen = strlen(sp + 1);
		at = atoll(sp2 + 1);
		if ((body = malloc(hexlen / 2 + 1)) == NULL ||
		    sodium_hex2bin(msgid, sizeof msgid, line, strlen(line), NULL,
		    &len, NULL) != 0 || len != sizeof msgid ||
		    sodium_hex2bin(body, hexlen / 2 + 1, sp + 1, hexlen, NULL,
		    &blen, NULL) != 0 ||
		    store_rx_add(st, c.id, msgid, 1, body, blen, at, NULL) != 1)
			rc = 1;
		free(body);
	}
	free(line);
	if (rc != 0 || store_commit(st) != 0) {
		fprintf(stderr, "pairdump: %s\n", store_errmsg(st));
		return 1;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	uint8_t pk[STORE_PK_BYTES], sk[STORE_PK_BYTES];
	struct store_meta m;
	struct store *st;
	struct ctx x;
	char err[512];

	if (veil_init() != 0)
		return 2;
	if (argc == 2 && strcmp(argv[1], "--blob") == 0)
		return blob_mode();
	if (argc < 3 || argc > 5 || (argc == 5 && strcmp(argv[3], "--pair") != 0 &&
	    strcmp(argv[3], "--rx") != 0)) {
		fprintf(stderr, "usage: pairdump DB KEYFILE [CONTACT | --pair CONTACT | "
		    "--rx CONTACT] | --blob\n");
		return 2;
	}
	if ((st = store_open(argv[1], err, sizeof err)) == NULL ||
	    vk_unlock_with_file(st, argv[2], err, sizeof err) != 0) {
		fprintf(stderr, "pairdump: %s\n", err);
		store_close(st);
		return 1;
	}
	if (argc == 5) {
		int rc = contact_mode(st, argv[3], argv[4]);

		store_close(st);
		return rc;
	}
	memset(&x, 0, sizeof x);
	x.only = argc == 4 ? argv[3] : NULL;
	if (x.only == NULL) {
		if (store_identity_get(st, pk, sk) == 1)
			put("identity.sk", 0, sk, sizeof sk);
		if (store_meta_get(st, &m) == 1 && m.has_shared_seed)
			put("shared_seed", 0, m.shared_seed, sizeof m.shared_seed);
		sodium_memzero(sk, sizeof sk);
		sodium_memzero(&m, sizeof m);
	}
	if (store_contact_list(st, contact_cb, &x) < 0) {
		fprintf(stderr, "pairdump: %s\n", store_errmsg(st));
		store_close(st);
		return 1;
	}
	store_close(st);
	if (x.only != NULL && x.found == 0) {
		fprintf(stderr, "pairdump: no contact %s\n", x.only);
		return 1;
	}
	return 0;
}
