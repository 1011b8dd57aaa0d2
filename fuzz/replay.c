/* Replays a harness's checked-in corpus and past crash inputs through LLVMFuzzerTestOneInput, as TAP, without libFuzzer. */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Built once per harness by make check with the ordinary compiler (and in
 * quickstart's ASan/UBSan build), FUZZ_NAME naming it: every file in
 * fuzz/corpus/FUZZ_NAME/ and every fuzz/crashes/FUZZ_NAME-* goes through
 * the harness once, in this process, the way `fuzz_NAME FILE...` replays
 * them; FUZZ_SEEDS, if defined, names more directories (space-separated,
 * relative to the source tree) whose *FUZZ_SEED_SUFFIX files are seeds too:
 * the config harness's seeds are the golden test configs and the shipped
 * example, as in fuzz/run.sh.  The harness's own checks abort(); a crash ends the run early, so
 * the TAP plan (printed first) is not met and the driver reports ERROR;
 * "# input: FILE" before each names the one that did it.
 */
#ifndef FUZZ_NAME
#error "FUZZ_NAME must name the harness"
#endif

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define INPUTS_MAX	4096
#define INPUT_MAX	(1 << 20)

static char	*inputs[INPUTS_MAX];
static size_t	 ninputs;

static int
by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Adds the regular files of dir whose names start with prefix and end with suffix. */
static int
collect(const char *dir, const char *prefix, const char *suffix)
{
	DIR		*d;
	struct dirent	*e;
	struct stat	 st;
	char		 path[4096];

	if ((d = opendir(dir)) == NULL)
		return errno == ENOENT ? 0 : -1;
	while ((e = readdir(d)) != NULL) {
		size_t	 n = strlen(e->d_name), sn = strlen(suffix);

		if (e->d_name[0] == '.' ||
		    strncmp(e->d_name, prefix, strlen(prefix)) != 0 ||
		    n < sn || strcmp(e->d_name + n - sn, suffix) != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
			continue;
		if (ninputs == INPUTS_MAX || (inputs[ninputs] = strdup(path)) == NULL) {
			closedir(d);
			return -1;
		}
		ninputs++;
	}
	closedir(d);
	return 0;
}

static uint8_t *
slurp(const char *path, size_t *len)
{
	FILE	*fp;
	uint8_t	*buf;
	size_t	 n;

	if ((fp = fopen(path, "rb")) == NULL)
		return NULL;
	/* An exact-size heap copy: ASan sees a read past the input's end. */
	buf = malloc(INPUT_MAX + 1);
	n = buf != NULL ? fread(buf, 1, INPUT_MAX + 1, fp) : 0;
	fclose(fp);
	if (buf == NULL || n > INPUT_MAX) {
		free(buf);
		return NULL;
	}
	*len = n;
	return realloc(buf, n > 0 ? n : 1);
}

int
main(int argc, char *argv[])
{
	const char	*src = getenv("VEIL_TOP_SRCDIR");
	char		 corpus[4096], crashes[4096];
	size_t		 i, ncorpus;
	int		 failed = 0;

	if (src == NULL || *src == '\0') {
		printf("Bail out! VEIL_TOP_SRCDIR is not set (run through make check)\n");
		return 99;
	}
	snprintf(corpus, sizeof(corpus), "%s/fuzz/corpus/%s", src, FUZZ_NAME);
	snprintf(crashes, sizeof(crashes), "%s/fuzz/crashes", src);
	if (collect(corpus, "", "") != 0) {
		printf("Bail out! %s: %s\n", corpus, strerror(errno));
		return 99;
	}
#ifdef FUZZ_SEEDS
	{
		char	 dirs[] = FUZZ_SEEDS, *dir, *save = NULL;

		for (dir = strtok_r(dirs, " ", &save); dir != NULL;
		    dir = strtok_r(NULL, " ", &save)) {
			snprintf(corpus, sizeof(corpus), "%s/%s", src, dir);
			if (collect(corpus, "", FUZZ_SEED_SUFFIX) != 0) {
				printf("Bail out! %s: %s\n", corpus, strerror(errno));
				return 99;
			}
		}
		snprintf(corpus, sizeof(corpus), "%s/fuzz/corpus/%s and %s", src,
		    FUZZ_NAME, FUZZ_SEEDS);
	}
#endif
	ncorpus = ninputs;
	if (collect(crashes, FUZZ_NAME "-", "") != 0) {
		printf("Bail out! %s: %s\n", crashes, strerror(errno));
		return 99;
	}
	/* An empty corpus would make this test pass without testing. */
	if (ncorpus == 0) {
		printf("Bail out! no inputs in %s\n", corpus);
		return 99;
	}
	qsort(inputs, ncorpus, sizeof(inputs[0]), by_name);
	qsort(inputs + ncorpus, ninputs - ncorpus, sizeof(inputs[0]), by_name);
	printf("1..%zu\n", ninputs);
	printf("# fuzz_%s: %zu corpus files, %zu past crash inputs\n", FUZZ_NAME,
	    ncorpus, ninputs - ncorpus);
	fflush(stdout);
	LLVMFuzzerInitialize(&argc, &argv);
	for (i = 0; i < ninputs; i++) {
		const char	*rel = inputs[i] + strlen(src) + 1;
		uint8_t		*data;
		size_t		 len = 0;

		printf("# input: %s\n", rel);
		fflush(stdout);
		if ((data = slurp(inputs[i], &len)) == NULL) {
			printf("not ok %zu - %s: cannot read it\n", i + 1, rel);
			failed++;
			continue;
		}
		LLVMFuzzerTestOneInput(data, len);
		free(data);
		printf("ok %zu - %s (%zu bytes)\n", i + 1, rel, len);
		fflush(stdout);
	}
	for (i = 0; i < ninputs; i++)
		free(inputs[i]);
	return failed ? 1 : 0;
}
