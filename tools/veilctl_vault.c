/* veilctl_vault.c: unlock, passphrase and backup — the commands that read secrets from the terminal and hand files to veild. */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "bkkey.h"
#include "veilctl.h"

#define SECRET_MAX	1024	/* a passphrase or recovery code, bytes */

static int	cmd_backup_create(int, char **);
static int	cmd_backup_restore(int, char **);
static int	cmd_backup_keygen(int, char **);
static int	cmd_backup_now(int, char **);

const struct subcommand backup_cmds[] = {
	{ "create",	cmd_backup_create,
	    "backup create FILE [--recovery-key | --public-key KEY]",
	    "write an encrypted backup (a passphrase unless told otherwise)" },
	{ "restore",	cmd_backup_restore,	"backup restore FILE [--recovery-key]",
	    "restore a backup into an empty state directory" },
	{ "keygen",	cmd_backup_keygen,	"backup keygen",
	    "make a key pair for scheduled backups (backup.public_key)" },
	{ "now",	cmd_backup_now,		"backup now",
	    "write a scheduled backup now (backup.dir)" },
	{ NULL, NULL, NULL, NULL }
};

/*
 * A secret from the terminal without echo, or, when standard input is not
 * a terminal (a script), the next line of standard input.  The buffer is
 * the caller's to wipe and free (secret_free).
 */
static char *
read_secret(const char *prompt)
{
	struct termios old, quiet;
	char *buf;
	int tty = isatty(STDIN_FILENO), c;
	size_t n = 0;

	if ((buf = malloc(SECRET_MAX + 1)) == NULL)
		die("out of memory");
	if (tty) {
		fprintf(stderr, "%s: ", prompt);
		fflush(stderr);
		if (tcgetattr(STDIN_FILENO, &old) != 0)
			die("terminal: %s", strerror(errno));
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		quiet.c_lflag |= ECHONL;
		if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) != 0)
			die("terminal: %s", strerror(errno));
	}
	while ((c = getchar()) != EOF && c != '\n') {
		if (n == SECRET_MAX) {
			if (tty)
				tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
			die("%s: longer than %d bytes", prompt, SECRET_MAX);
		}
		buf[n++] = (char)c;
	}
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	buf[n] = '\0';
	if (tty)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
	else if (c == EOF && n == 0)
		die("%s: nothing on standard input", prompt);
	return buf;
}

static void
secret_free(char *s)
{
	if (s != NULL) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

/* A new secret: asked twice on a terminal, once from a script. */
static char *
read_new_secret(const char *prompt)
{
	char again[128], *a, *b;

	a = read_secret(prompt);
	if (*a == '\0') {
		secret_free(a);
		die("an empty passphrase is not accepted");
	}
	if (!isatty(STDIN_FILENO))
		return a;
	snprintf(again, sizeof again, "%s (again)", prompt);
	b = read_secret(again);
	if (strcmp(a, b) != 0) {
		secret_free(a);
		secret_free(b);
		die("the two do not match; nothing changed");
	}
	secret_free(b);
	return a;
}

/* A JSON string that holds a secret: its text is wiped where we can. */
static json_t *
secret_json(const char *s)
{
	json_t *v = json_string(s);

	if (v == NULL)
		die("the passphrase must be UTF-8 text");
	return v;
}

static json_t *
daemon_status(void)
{
	json_t *st = rpc("status", NULL);

	/* A prompt may follow, and veild closes a connection idle for a
	 * minute: the next request connects afresh. */
	rpc_close();
	return st;
}

/* A backup file made and not finished: removed however veilctl ends. */
static const char *unfinished;

static void
remove_unfinished(void)
{
	if (unfinished != NULL)
		unlink(unfinished);
}

static int
status_bool(json_t *st, const char *group, const char *key)
{
	json_t *g = group != NULL ? json_object_get(st, group) : st;

	return json_is_true(json_object_get(g, key));
}

int
cmd_unlock(int argc, char **argv)
{
	static const struct option longopts[] = {
		COMMON_LONGOPTS, { NULL, 0, NULL, 0 }
	};
	json_t *st, *result;
	const char *state;
	char *pass;
	int fresh;

	while (next_opt(argc, argv, "+h", longopts) != -1)
		;
	if (optind != argc)
		usage();
	st = daemon_status();
	if (!status_bool(st, NULL, "locked")) {
		json_decref(st);
		die("veild is unlocked already");
	}
	state = json_string_value(json_object_get(st, "state"));
	fresh = state != NULL && (strcmp(state, "new") == 0 ||
	    strcmp(state, "plaintext") == 0);
	json_decref(st);
	if (fresh) {
		fprintf(stderr, "veilctl: this state directory has no passphrase "
		    "yet: the one you give now will unlock it from now on\n");
		pass = read_new_secret("New passphrase");
	} else
		pass = read_secret("Passphrase");
	result = rpc("unlock", json_pack("{s:o}", "passphrase",
	    secret_json(pass)));
	secret_free(pass);
	if (json_out)
		print_json(result);
	else
		puts("unlocked");
	json_decref(result);
	return 0;
}

int
cmd_passphrase(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "forget-keys", no_argument, NULL, 'f' }, COMMON_LONGOPTS,
		{ NULL, 0, NULL, 0 }
	};
	json_t *st, *params, *result;
	char *old = NULL, *new;
	int c, forget = 0;

	while ((c = next_opt(argc, argv, "+h", longopts)) != -1)
		if (c == 'f')
			forget = 1;
	if (optind != argc)
		usage();
	st = daemon_status();
	if (status_bool(st, NULL, "locked")) {
		json_decref(st);
		die("veild is locked: unlock it first (veilctl unlock)");
	}
	if (status_bool(st, "unlock", "passphrase"))
		old = read_secret("Current passphrase");
	json_decref(st);
	new = read_new_secret("New passphrase");
	params = json_pack("{s:o}", "new", secret_json(new));
	if (old != NULL)
		json_object_set_new(params, "old", secret_json(old));
	if (forget)
		json_object_set_new(params, "forget_keys", json_true());
	secret_free(old);
	secret_free(new);
	result = rpc("passphrase", params);
	if (json_out)
		print_json(result);
	else
		puts("passphrase changed");
	json_decref(result);
	return 0;
}

static void
print_counts(json_t *r, const char *verb)
{
	if (json_out) {
		print_json(r);
		return;
	}
	printf("%s: %lld contacts, %lld queued, %lld unread messages, "
	    "%lld bytes\n", verb,
	    (long long)json_integer_value(json_object_get(r, "contacts")),
	    (long long)json_integer_value(json_object_get(r, "outbox")),
	    (long long)json_integer_value(json_object_get(r, "unread")),
	    (long long)json_integer_value(json_object_get(r, "bytes")));
}

static int
cmd_backup_create(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "recovery-key", no_argument, NULL, 'r' },
		{ "public-key", required_argument, NULL, 'p' }, COMMON_LONGOPTS,
		{ NULL, 0, NULL, 0 }
	};
	uint8_t pk[BKKEY_BYTES], sk[BKKEY_BYTES];
	char pktext[BKKEY_PK_TEXT], code[BKKEY_CODE_TEXT];
	const char *path, *pubkey = NULL;
	json_t *params, *result;
	char *pass = NULL;
	int c, fd, err = 0, recovery = 0;

	while ((c = next_opt(argc, argv, "h", longopts)) != -1) {
		if (c == 'r')
			recovery = 1;
		else if (c == 'p')
			pubkey = optarg;
	}
	if (argc - optind != 1 || (recovery && pubkey != NULL))
		usage();
	path = argv[optind];
	if (pubkey != NULL && bkkey_pk_decode(pubkey, pk) != 0)
		die("--public-key: not a backup public key (veilbk:...)");
	if (sodium_init() < 0)
		die("libsodium failed to initialise");
	/* veild must be there before a file is made for it. */
	json_decref(daemon_status());
	/* Never over an existing file: it may be the only good backup. */
	if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) == -1)
		die("%s: %s%s", path, strerror(errno), errno == EEXIST ?
		    " (not overwritten: choose another name)" : "");
	unfinished = path;
	atexit(remove_unfinished);
	if (recovery) {
		crypto_box_keypair(pk, sk);
		bkkey_pk_encode(pk, pktext);
		params = json_pack("{s:s}", "public_key", pktext);
	} else if (pubkey != NULL)
		params = json_pack("{s:s}", "public_key", pubkey);
	else {
		pass = read_new_secret("Backup passphrase");
		params = json_pack("{s:o}", "passphrase", secret_json(pass));
		secret_free(pass);
	}
	result = rpc_fd("backup.create", params, fd, &err);
	if (result == NULL || fsync(fd) != 0 || close(fd) != 0) {
		if (result != NULL)
			fprintf(stderr, "veilctl: %s: %s\n", path, strerror(errno));
		unlink(path);
		sodium_memzero(sk, sizeof sk);
		exit(1);
	}
	unfinished = NULL;	/* written and synced: it stays */
	if (recovery) {
		bkkey_code_encode(sk, code);
		sodium_memzero(sk, sizeof sk);
		if (json_out)
			json_object_set_new(result, "recovery_key",
			    json_string(code));
		else
			printf("recovery code (shown only now; write it down, "
			    "it is the only way to open this backup):\n  %s\n",
			    code);
		sodium_memzero(code, sizeof code);
	}
	print_counts(result, path);
	json_decref(result);
	return 0;
}

static int
cmd_backup_restore(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "recovery-key", no_argument, NULL, 'r' }, COMMON_LONGOPTS,
		{ NULL, 0, NULL, 0 }
	};
	json_t *st, *params, *result;
	char *secret, *newpass = NULL;
	const char *path;
	int c, fd, recovery = 0, err = 0, keyed;

	while ((c = next_opt(argc, argv, "h", longopts)) != -1)
		if (c == 'r')
			recovery = 1;
	if (argc - optind != 1)
		usage();
	path = argv[optind];
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		die("%s: %s", path, strerror(errno));
	st = daemon_status();
	keyed = status_bool(st, "unlock", "credential") ||
	    status_bool(st, "unlock", "key_file");
	json_decref(st);
	secret = read_secret(recovery ? "Recovery code" : "Backup passphrase");
	params = json_pack("{s:o}", recovery ? "recovery_key" : "passphrase",
	    secret_json(secret));
	secret_free(secret);
	/* With no credential or key file, the restored state is unlocked by
	 * a passphrase of its own (it may be the backup's). */
	if (!keyed) {
		newpass = read_new_secret("New passphrase for this state directory");
		json_object_set_new(params, "new_passphrase", secret_json(newpass));
		secret_free(newpass);
	}
	result = rpc_fd("backup.restore", params, fd, &err);
	close(fd);
	if (result == NULL)
		exit(1);
	print_counts(result, "restored");
	json_decref(result);
	return 0;
}

static int
cmd_backup_keygen(int argc, char **argv)
{
	static const struct option longopts[] = {
		COMMON_LONGOPTS, { NULL, 0, NULL, 0 }
	};
	uint8_t pk[BKKEY_BYTES], sk[BKKEY_BYTES];
	char pktext[BKKEY_PK_TEXT], code[BKKEY_CODE_TEXT];
	json_t *o;

	while (next_opt(argc, argv, "+h", longopts) != -1)
		;
	if (optind != argc)
		usage();
	if (sodium_init() < 0)
		die("libsodium failed to initialise");
	crypto_box_keypair(pk, sk);
	bkkey_pk_encode(pk, pktext);
	bkkey_code_encode(sk, code);
	sodium_memzero(sk, sizeof sk);
	if (json_out) {
		o = json_pack("{s:s, s:s}", "public_key", pktext, "recovery_key",
		    code);
		print_json(o);
		json_decref(o);
	} else
		printf("public key (for veild.conf, backup.public_key):\n  %s\n"
		    "recovery code (keep it offline; it opens every backup sealed "
		    "to this key,\nand it is shown only now):\n  %s\n", pktext,
		    code);
	sodium_memzero(code, sizeof code);
	return 0;
}

static int
cmd_backup_now(int argc, char **argv)
{
	static const struct option longopts[] = {
		COMMON_LONGOPTS, { NULL, 0, NULL, 0 }
	};
	json_t *result;

	while (next_opt(argc, argv, "+h", longopts) != -1)
		;
	if (optind != argc)
		usage();
	result = rpc("backup.now", NULL);
	if (json_out)
		print_json(result);
	else {
		put_safe(stdout, json_string_value(json_object_get(result, "path")) ?
		    json_string_value(json_object_get(result, "path")) : "?", NULL);
		putchar('\n');
	}
	json_decref(result);
	return 0;
}
