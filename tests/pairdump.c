/* pairdump: the key material in a stored pair (hex on stdin), one line each, for tests that search a state directory for keys that should be gone. */
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "veil.h"

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

int
main(void)
{
	static char hex[2 * VEIL_PAIR_PACKED_MAX + 2];
	uint8_t blob[VEIL_PAIR_PACKED_MAX];
	struct veil_pair p;
	size_t len = 0;

	if (veil_init() != 0 || fgets(hex, sizeof hex, stdin) == NULL)
		return 2;
	hex[strcspn(hex, "\r\n")] = '\0';
	if (sodium_hex2bin(blob, sizeof blob, hex, strlen(hex), NULL, &len, NULL) != 0 ||
	    veil_pair_unpack(&p, blob, len) != 0) {
		fprintf(stderr, "pairdump: not a stored pair\n");
		return 1;
	}
	if (p.tx.live)
		dirkey("tx", p.tx.period, &p.tx.k);
	if (p.tx_next.live)
		dirkey("tx_next", p.tx_next.period, &p.tx_next.k);
	for (int i = 0; i < VEIL_RX_SLOTS; i++) {
		if (p.rx.slot[i].live)
			dirkey("rx", p.rx.slot[i].period, &p.rx.slot[i].k);
		if (p.rx_prev.slot[i].live)
			dirkey("rx_prev", p.rx_prev.slot[i].period, &p.rx_prev.slot[i].k);
	}
	veil_pair_wipe(&p);
	return 0;
}
