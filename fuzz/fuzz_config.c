/* libFuzzer harness: daemon/config.c's config_load, and config_print's output loading back the same. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../daemon/config.h"	/* not autoconf's config.h */

/*
 * config.c reads only from a path (there is no string entry point), so
 * each input is written to a file in a private directory under /dev/shm,
 * which also becomes the working directory: @include paths are relative
 * to it.  Inputs that could @include something outside it (a '/' or an
 * escape anywhere) are skipped, so the fuzzer cannot read /dev/zero or a
 * terminal.  Invariant checked on success: config_print's output loads,
 * and prints again byte for byte the same (config.h promises it loads).
 */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[] = "/dev/shm/veil-fuzz-config-XXXXXX";

static void
cleanup(void)
{
	if (chdir("/") == 0) {
		char	path[sizeof(dir) + 32];
		const char *const names[] = { "in.conf", "p1.conf", "p2.conf",
		    "include-secret.inc", "include-bad.inc", NULL };

		for (int i = 0; names[i] != NULL; i++) {
			snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
			unlink(path);
		}
		rmdir(dir);
	}
}

static int
write_file(const char *name, const void *buf, size_t len)
{
	FILE	*fp;
	int	 rc = 0;

	if ((fp = fopen(name, "w")) == NULL)
		return -1;
	if (len > 0 && fwrite(buf, 1, len, fp) != len)
		rc = -1;
	if (fclose(fp) != 0)
		rc = -1;
	return rc;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char secret[] =
	    "mqtt = { username = \"u\"; password = \"from-include\"; };\n";
	static const char bad[] = "mqtt = {\n  inflight = 0;\n};\n";

	(void)argc;
	(void)argv;
	if (mkdtemp(dir) == NULL || chdir(dir) != 0) {
		perror("fuzz_config: temp dir");
		abort();
	}
	atexit(cleanup);
	/* The includes tests/conf/include*.conf name (seeds use them). */
	if (write_file("include-secret.inc", secret, sizeof(secret) - 1) != 0 ||
	    write_file("include-bad.inc", bad, sizeof(bad) - 1) != 0)
		abort();
	return 0;
}

static char *
slurp(const char *name, size_t *len)
{
	FILE	*fp;
	char	*buf;
	long	 n;

	if ((fp = fopen(name, "r")) == NULL)
		return NULL;
	if (fseek(fp, 0, SEEK_END) != 0 || (n = ftell(fp)) < 0 ||
	    fseek(fp, 0, SEEK_SET) != 0 || (buf = malloc((size_t)n + 1)) == NULL) {
		fclose(fp);
		return NULL;
	}
	if (fread(buf, 1, (size_t)n, fp) != (size_t)n) {
		free(buf);
		fclose(fp);
		return NULL;
	}
	fclose(fp);
	buf[n] = '\0';
	*len = (size_t)n;
	return buf;
}

static int
print_to(const char *name, const struct veild_config *cfg)
{
	FILE	*fp;
	int	 rc;

	if ((fp = fopen(name, "w")) == NULL)
		abort();
	rc = config_print(fp, cfg);
	if (fclose(fp) != 0)
		rc = -1;
	return rc;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct veild_config cfg, cfg2;
	char err[CONFIG_ERR_MAX], err2[CONFIG_ERR_MAX];
	char *p1, *p2;
	size_t l1 = 0, l2 = 0;

	if (memchr(data, '/', size) != NULL || memchr(data, '\\', size) != NULL) {
		/* Only a risk with an @include; other inputs go through. */
		char *s = malloc(size + 1);

		if (s == NULL)
			return 0;
		memcpy(s, data, size);
		s[size] = '\0';
		for (char *q = s; q < s + size; q++)
			if (*q == '\0')
				*q = ' ';
		if (strcasestr(s, "include") != NULL) {
			free(s);
			return 0;
		}
		free(s);
	}
	if (write_file("in.conf", data, size) != 0)
		abort();
	if (config_load("in.conf", &cfg, err, sizeof(err)) != 0) {
		if (memchr(err, '\0', sizeof(err)) == NULL || err[0] == '\0')
			abort();
		return 0;
	}
	if (print_to("p1.conf", &cfg) != 0)
		abort();
	config_free(&cfg);
	if (config_load("p1.conf", &cfg2, err2, sizeof(err2)) != 0) {
		fprintf(stderr, "fuzz_config: printed config does not load: %s\n",
		    err2);
		abort();
	}
	if (print_to("p2.conf", &cfg2) != 0)
		abort();
	config_free(&cfg2);
	if ((p1 = slurp("p1.conf", &l1)) == NULL ||
	    (p2 = slurp("p2.conf", &l2)) == NULL)
		abort();
	if (l1 != l2 || memcmp(p1, p2, l1) != 0) {
		fprintf(stderr, "fuzz_config: print/load/print differs\n");
		abort();
	}
	free(p1);
	free(p2);
	return 0;
}
