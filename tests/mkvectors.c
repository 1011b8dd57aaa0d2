/* mkvectors: prints the known-answer vectors (tests/vectors/v2.txt) to stdout. */
#include <stdio.h>
#include <stdlib.h>

#include "veil.h"
#include "testutil.h"
#include "vectors.h"

int
main(void)
{
	static char buf[VECTORS_BUF_MAX];
	const char *why = NULL;
	int n;

	/* The stream must be in place before libsodium initialises. */
	tu_deterministic_rng(VECTORS_SEED);
	if (veil_init() != 0) {
		fprintf(stderr, "mkvectors: veil_init failed\n");
		return 1;
	}
	if ((n = vectors_generate(VECTORS_SEED, buf, sizeof(buf), &why)) < 0) {
		fprintf(stderr, "mkvectors: step failed: %s\n", why ? why : "?");
		return 1;
	}
	printf("# veil protocol v2 known-answer vectors; see README.md. Seed \"%s\".\n",
	    VECTORS_SEED);
	if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n || fflush(stdout) != 0) {
		perror("mkvectors: stdout");
		return 1;
	}
	return 0;
}
