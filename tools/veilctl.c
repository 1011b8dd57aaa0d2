/* veilctl: the command-line client of veild's JSON-RPC control socket. */
#define _GNU_SOURCE

#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "card.h"
#include "veilctl.h"

#define DEFAULT_SOCKET	"/run/veil/veild.sock"
#define REPLY_MAX	(64 * 1024 * 1024)	/* one line from veild */

static const char		*sock_path;
int				 json_out;
static int			 sock_fd = -1;
static json_int_t		 next_id = 1;
const struct subcommand		*current;	/* for usage() */

static char	*rbuf;		/* bytes read from veild, not yet a line */
static size_t	 rlen, rcap;

void	(*on_notify)(json_t *msg);

static int	cmd_status(int, char **);
static int	cmd_card(int, char **);
static int	cmd_rotate(int, char **);
static int	cmd_help(int, char **);
static int	cmd_backup(int, char **);

static const struct subcommand cmds[] = {
	{ "status",	cmd_status,	"status [--verbose]",
	    "show the daemon's state" },
	{ "card",	cmd_card,	"card [--qr] [--one-time]",
	    "print your contact card (a veil: URI)" },
	{ "contact",	cmd_contact,	"contact COMMAND ...",
	    "manage contacts (see below)" },
	{ "send",	cmd_send,	"send [--key KEY] NAME [TEXT ...]",
	    "send a message (standard input if no TEXT)" },
	{ "recv",	cmd_recv,	"recv [--follow | --wait SECONDS] [--peek] [--exec PROG [-- ARG ...]]",
	    "print the messages received, then acknowledge them (--exec: run PROG for each)" },
	{ "send-file",	cmd_send_file,	"send-file NAME PATH [--as FILENAME] [--no-wait]",
	    "send a file (a progress bar on a terminal)" },
	{ "transfer",	cmd_transfer,	"transfer COMMAND ...",
	    "list or cancel file transfers (see below)" },
	{ "rotate",	cmd_rotate,	"rotate",
	    "move to new addresses now" },
	{ "unlock",	cmd_unlock,	"unlock",
	    "give the passphrase (a new one for a new state directory)" },
	{ "passphrase",	cmd_passphrase,	"passphrase [--forget-keys]",
	    "set or change the passphrase" },
	{ "backup",	cmd_backup,	"backup COMMAND ...",
	    "encrypted backups (see below)" },
	{ "help",	cmd_help,	"help [COMMAND]",
	    "show the commands" },
	{ NULL, NULL, NULL, NULL }
};

void __attribute__((noreturn, format(printf, 1, 2)))
die(const char *fmt, ...)
{
	va_list	ap;

	fputs("veilctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

void __attribute__((noreturn))
usage(void)
{
	if (current != NULL)
		fprintf(stderr, "usage: veilctl [-s socket] [--json] %s\n",
		    current->usage);
	else
		fprintf(stderr, "usage: veilctl [-s socket] [--json] command "
		    "[args ...]\n       veilctl help\n");
	exit(2);
}

/*
 * Writes s so that a peer-chosen name or text cannot drive the terminal:
 * C0 controls, DEL and the C1 controls (UTF-8 C2 80..C2 9F, e.g. CSI)
 * become \xNN.  With nl != NULL, newlines are written as nl (a newline
 * and an indent, so that a message cannot pose as another sender's line)
 * and tabs are kept.
 */
void
put_safe(FILE *f, const char *s, const char *nl)
{
	const unsigned char	*p = (const unsigned char *)s;

	for (; *p != '\0'; p++) {
		if (*p == '\n' && nl != NULL)
			fputs(nl, f);
		else if (*p == '\t' && nl != NULL)
			fputc(*p, f);
		else if (*p < 0x20 || *p == 0x7f)
			fprintf(f, "\\x%02x", *p);
		else if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
			fprintf(f, "\\xc2\\x%02x", p[1]);
			p++;
		} else
			fputc(*p, f);
	}
}

/* Columns put_safe(f, s, NULL) takes, roughly: one per code point. */
static size_t
text_width(const char *s)
{
	const unsigned char	*p = (const unsigned char *)s;
	size_t			 n = 0;

	for (; *p != '\0'; p++) {
		if (*p < 0x20 || *p == 0x7f)
			n += 4;
		else if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
			n += 8;
			p++;
		} else if ((*p & 0xc0) != 0x80)
			n++;
	}
	return n;
}

/* Columns print_value(v) takes. */
size_t
cell_width(json_t *v)
{
	char	*s;
	size_t	 w;

	if (json_is_string(v))
		return text_width(json_string_value(v));
	if (json_is_true(v))
		return 3;
	if (json_is_false(v))
		return 2;
	if (v == NULL || json_is_null(v))
		return 1;
	if ((s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY)) == NULL)
		return 1;
	w = text_width(s);
	free(s);
	return w;
}

/* --- talking to veild -------------------------------------------------- */

/* Why the connection to veild failed, for sock_*_try's callers. */
static char	io_err[256];

static int
sock_open_try(void)
{
	struct sockaddr_un	sun;
	int			e;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(sock_path) >= sizeof(sun.sun_path))
		die("socket path too long: %s", sock_path);
	memcpy(sun.sun_path, sock_path, strlen(sock_path) + 1);
	if ((sock_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		die("socket: %s", strerror(errno));
	if (connect(sock_fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		e = errno;
		snprintf(io_err, sizeof(io_err), "cannot connect to %s: %s%s",
		    sock_path, strerror(e), e == ENOENT || e == ECONNREFUSED ?
		    " (is veild running?)" : "");
		close(sock_fd);
		sock_fd = -1;
		return -1;
	}
	return 0;
}

/* Forgets the connection and whatever was read from it. */
void
rpc_close(void)
{
	if (sock_fd != -1)
		close(sock_fd);
	sock_fd = -1;
	rlen = 0;
}

static int
sock_write_try(const char *buf, size_t len)
{
	ssize_t	n;

	while (len > 0) {
		n = send(sock_fd, buf, len, MSG_NOSIGNAL);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			snprintf(io_err, sizeof(io_err), "write to %s: %s",
			    sock_path, strerror(errno));
			return -1;
		}
		buf += n;
		len -= n;
	}
	return 0;
}

/* Next message from veild (a new reference) in *out: 1, or 0 when the
 * connection ended or broke (io_err says how).  Garbage ends veilctl. */
static int
sock_read_try(json_t **out)
{
	json_error_t	 err;
	json_t		*msg;
	char		*nl = NULL, *p;
	size_t		 len;
	ssize_t		 n;

	while (rlen == 0 || (nl = memchr(rbuf, '\n', rlen)) == NULL) {
		if (rlen == rcap) {
			if (rcap >= REPLY_MAX)
				die("reply from veild too large");
			rcap = rcap ? rcap * 2 : 65536;
			if ((p = realloc(rbuf, rcap)) == NULL)
				die("out of memory");
			rbuf = p;
		}
		n = recv(sock_fd, rbuf + rlen, rcap - rlen, 0);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			snprintf(io_err, sizeof(io_err), "read from %s: %s",
			    sock_path, strerror(errno));
			return 0;
		}
		if (n == 0) {
			snprintf(io_err, sizeof(io_err), "veild closed the "
			    "connection");
			return 0;
		}
		rlen += n;
	}
	len = nl - rbuf;
	msg = json_loadb(rbuf, len, JSON_ALLOW_NUL, &err);
	rlen -= len + 1;
	memmove(rbuf, nl + 1, rlen);
	if (!json_is_object(msg))
		die("invalid reply from veild: %s", msg ? "not an object" :
		    err.text);
	*out = msg;
	return 1;
}

/* Next message from veild (a new reference), or NULL at EOF or when the
 * connection broke. */
json_t *
sock_read(void)
{
	json_t	*msg;

	return sock_read_try(&msg) == 1 ? msg : NULL;
}

/* Writes buf, passing fd with its first byte when fd >= 0 (SCM_RIGHTS):
 * veild takes the descriptor that comes with a request's bytes. */
static int
sock_write_fd(const char *buf, size_t len, int fd)
{
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int))];
	} cm;
	struct iovec	 iov = { (void *)buf, len };
	struct msghdr	 msg;
	struct cmsghdr	*h;
	ssize_t		 n;

	if (fd < 0)
		return sock_write_try(buf, len);
	memset(&msg, 0, sizeof(msg));
	memset(&cm, 0, sizeof(cm));
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cm.buf;
	msg.msg_controllen = sizeof(cm.buf);
	h = CMSG_FIRSTHDR(&msg);
	h->cmsg_level = SOL_SOCKET;
	h->cmsg_type = SCM_RIGHTS;
	h->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(h), &fd, sizeof(int));
	while ((n = sendmsg(sock_fd, &msg, MSG_NOSIGNAL)) == -1 && errno == EINTR)
		;
	if (n == -1) {
		snprintf(io_err, sizeof(io_err), "write to %s: %s", sock_path,
		    strerror(errno));
		return -1;
	}
	return sock_write_try(buf + n, len - (size_t)n);
}

/*
 * One request and its answer: the result (a new reference); else NULL
 * with *code 0 when the connection could not be made or broke before the
 * answer came (io_err says how; the connection is closed), or the
 * JSON-RPC error's code and message (a new reference).  params is
 * borrowed.
 */
static json_t *
rpc_io(const char *method, json_t *params, int fd, int *code, json_t **errmsg)
{
	json_t		*req, *msg, *err, *result, *id;
	char		*s;
	size_t		 slen;
	json_int_t	 myid = next_id++;

	*code = 0;
	*errmsg = NULL;
	if (sock_fd == -1 && sock_open_try() != 0)
		return NULL;
	req = json_pack("{s:s, s:s, s:O*, s:I}", "jsonrpc", "2.0",
	    "method", method, "params", params, "id", myid);
	if (req == NULL || (s = json_dumps(req, JSON_COMPACT)) == NULL)
		die("cannot encode the request (text must be UTF-8)");
	json_decref(req);
	slen = strlen(s);
	if (sock_write_fd(s, slen, fd) != 0 ||
	    sock_write_try("\n", 1) != 0) {
		explicit_bzero(s, slen);
		free(s);
		rpc_close();
		return NULL;
	}
	/* It may hold a passphrase. */
	explicit_bzero(s, slen);
	free(s);

	for (;;) {
		if (sock_read_try(&msg) != 1) {
			rpc_close();
			return NULL;
		}
		id = json_object_get(msg, "id");
		if (id == NULL && json_is_string(json_object_get(msg,
		    "method"))) {
			if (on_notify != NULL)
				on_notify(msg);
			json_decref(msg);
			continue;
		}
		if (json_is_null(id) || (json_is_integer(id) &&
		    json_integer_value(id) == myid))
			break;
		json_decref(msg);	/* not ours: ignore */
	}
	if ((err = json_object_get(msg, "error")) != NULL) {
		*code = (int)json_integer_value(json_object_get(err, "code"));
		if (*code == 0)
			*code = -32603;
		*errmsg = json_incref(json_object_get(err, "message"));
		json_decref(msg);
		return NULL;
	}
	if ((result = json_object_get(msg, "result")) == NULL)
		die("invalid reply from veild: no result");
	json_incref(result);
	json_decref(msg);
	return result;
}

/* Dies with veild's error message. */
static void __attribute__((noreturn))
die_rpc(json_t *msg)
{
	const char	*text = json_string_value(msg);

	fputs("veilctl: ", stderr);
	put_safe(stderr, text ? text : "unknown error", NULL);
	fputc('\n', stderr);
	exit(1);
}

json_t *
rpc_try(const char *method, json_t *params, int fd, int *code, json_t **errmsg)
{
	json_t	*result = rpc_io(method, params, fd, code, errmsg);

	json_decref(params);
	if (result == NULL && *code == 0)
		die("%s", io_err);
	return result;
}

json_t *
rpc_conn(const char *method, json_t *params, const char **why)
{
	json_t	*result, *msg;
	int	 code;

	if ((result = rpc_io(method, params, -1, &code, &msg)) != NULL)
		return result;
	if (code != 0)
		die_rpc(msg);
	*why = io_err;
	return NULL;
}

json_t *
rpc_fd(const char *method, json_t *params, int fd, int *code)
{
	json_t	*result, *msg;
	int	 c;

	result = rpc_io(method, params, fd, &c, &msg);
	json_decref(params);
	if (result != NULL)
		return result;
	if (c == 0)
		die("%s", io_err);
	if (code == NULL)
		die_rpc(msg);
	/* The caller decides (it may say more first). */
	fputs("veilctl: ", stderr);
	put_safe(stderr, json_string_value(msg) ? json_string_value(msg) :
	    "unknown error", NULL);
	fputc('\n', stderr);
	json_decref(msg);
	*code = c;
	return NULL;
}

json_t *
rpc(const char *method, json_t *params)
{
	json_t		*result, *msg;
	int		 code;

	if ((result = rpc_try(method, params, -1, &code, &msg)) != NULL)
		return result;
	die_rpc(msg);
}

/* --- output ------------------------------------------------------------ */

void
print_json(json_t *j)
{
	char	*s;

	if ((s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY)) == NULL)
		die("out of memory");
	puts(s);
	free(s);
}

/* A scalar as a human reads it; arrays and objects as compact JSON. */
void
print_value(json_t *v)
{
	char	*s;

	if (json_is_string(v))
		put_safe(stdout, json_string_value(v), NULL);
	else if (json_is_true(v))
		fputs("yes", stdout);
	else if (json_is_false(v))
		fputs("no", stdout);
	else if (json_is_null(v))
		fputs("-", stdout);
	else if ((s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY)) != NULL) {
		put_safe(stdout, s, NULL);
		free(s);
	}
}

/* "key: value" lines, nested objects as "outer.inner: value". */
static void
print_object(json_t *obj, const char *prefix)
{
	const char	*key;
	json_t		*v;
	char		 sub[256];

	json_object_foreach(obj, key, v) {
		snprintf(sub, sizeof(sub), "%s%s%s", prefix, *prefix ? "." : "",
		    key);
		if (json_is_object(v) && json_object_size(v) > 0) {
			print_object(v, sub);
			continue;
		}
		put_safe(stdout, sub, NULL);
		fputs(": ", stdout);
		print_value(v);
		fputc('\n', stdout);
	}
}

/* Human by default, the raw result with --json. */
void
print_result(json_t *result)
{
	if (json_out)
		print_json(result);
	else if (json_is_object(result))
		print_object(result, "");
	else if (!json_is_null(result) && !json_is_true(result)) {
		print_value(result);
		fputc('\n', stdout);
	}
}

void
print_time(json_t *v)
{
	char		buf[64];
	struct tm	tm;
	time_t		t;

	if (json_is_integer(v) || json_is_real(v)) {
		t = (time_t)json_number_value(v);
		if (localtime_r(&t, &tm) != NULL &&
		    strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm) > 0) {
			fputs(buf, stdout);
			return;
		}
	}
	print_value(v);
}

void
print_message(json_t *m)
{
	const char	*text;
	json_t		*file;

	if (json_out) {
		print_json(m);
		fflush(stdout);
		return;
	}
	fputc('[', stdout);
	print_time(json_object_get(m, "received"));
	fputs("] ", stdout);
	/* A file: "file from NAME", which no text can make its own line
	 * start with (a text follows "NAME: "). */
	if ((file = json_object_get(m, "file")) != NULL) {
		fputs("file from ", stdout);
		print_value(json_object_get(m, "from"));
		fputs(": ", stdout);
		print_value(json_object_get(file, "name"));
		printf(" (%lld bytes), saved as ",
		    (long long)json_integer_value(json_object_get(file, "size")));
		print_value(json_object_get(file, "path"));
		fputc('\n', stdout);
		fflush(stdout);
		return;
	}
	print_value(json_object_get(m, "from"));
	fputs(": ", stdout);
	if ((text = json_string_value(json_object_get(m, "text"))) != NULL)
		put_safe(stdout, text, "\n    ");
	else if ((text = json_string_value(json_object_get(m, "data"))) != NULL)
		printf("[data, %zu bytes: veilctl --json recv shows it in base64]",
		    strlen(text) / 4 * 3 - (strlen(text) > 0 && text[strlen(text) - 1] ==
		    '=') - (strlen(text) > 1 && text[strlen(text) - 2] == '='));
	fputc('\n', stdout);
	fflush(stdout);
}

/* --- commands ---------------------------------------------------------- */

/*
 * A table of rows (objects): column first, then every scalar field in
 * order of appearance, so that new fields from veild show without a
 * change here.
 */
void
print_rows(json_t *rows, const char *first)
{
	json_t		*row, *v, *cols;
	const char	*key;
	size_t		 i, j, *width, w;

	cols = json_array();
	json_array_append_new(cols, json_string(first));
	json_array_foreach(rows, i, row) {
		json_object_foreach(row, key, v) {
			int	seen = 0;

			if (json_is_object(v) || json_is_array(v))
				continue;
			for (j = 0; j < json_array_size(cols); j++)
				if (strcmp(json_string_value(
				    json_array_get(cols, j)), key) == 0)
					seen = 1;
			if (!seen)
				json_array_append_new(cols, json_string(key));
		}
	}
	if ((width = calloc(json_array_size(cols), sizeof(*width))) == NULL)
		die("out of memory");
	for (j = 0; j < json_array_size(cols); j++) {
		key = json_string_value(json_array_get(cols, j));
		width[j] = strlen(key);
		json_array_foreach(rows, i, row) {
			w = cell_width(json_object_get(row, key));
			if (w > width[j])
				width[j] = w;
		}
	}
	for (j = 0; j < json_array_size(cols); j++) {
		for (key = json_string_value(json_array_get(cols, j)); *key;
		    key++)
			fputc(*key >= 'a' && *key <= 'z' ? *key - 32 :
			    *key == '_' ? '-' : *key, stdout);
		if (j + 1 < json_array_size(cols))
			printf("%*s", (int)(width[j] + 2 - strlen(
			    json_string_value(json_array_get(cols, j)))), "");
	}
	fputc('\n', stdout);
	json_array_foreach(rows, i, row) {
		for (j = 0; j < json_array_size(cols); j++) {
			key = json_string_value(json_array_get(cols, j));
			v = json_object_get(row, key);
			print_value(v ? v : json_null());
			if (j + 1 == json_array_size(cols))
				break;
			w = cell_width(v);
			printf("%*s", (int)(width[j] + 2 - w), "");
		}
		fputc('\n', stdout);
	}
	free(width);
	json_decref(cols);
}

/* getopt_long over a subcommand's argv (argv[0] is its name).  --json is
 * accepted everywhere, also after the command. */
int
next_opt(int argc, char **argv, const char *shortopts,
    const struct option *longopts)
{
	int	c;

	for (;;) {
		c = getopt_long(argc, argv, shortopts, longopts, NULL);
		if (c == 0)
			continue;	/* a flag such as --json */
		if (c == 'h' || c == '?' || c == ':')
			usage();
		return c;
	}
}

static int
cmd_status(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "verbose", no_argument, NULL, 'v' }, COMMON_LONGOPTS,
		{ NULL, 0, NULL, 0 }
	};
	json_t	*params = NULL, *result;
	int	 c;

	while ((c = next_opt(argc, argv, "+vh", longopts)) != -1)
		if (c == 'v')
			params = json_pack("{s:b}", "verbose", 1);
	if (optind != argc)
		usage();
	result = rpc("status", params);
	print_result(result);
	json_decref(result);
	return 0;
}

static int
cmd_card(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "qr", no_argument, NULL, 'q' },
		{ "one-time", no_argument, NULL, '1' }, COMMON_LONGOPTS,
		{ NULL, 0, NULL, 0 }
	};
	json_t		*params = NULL, *result;
	const char	*uri;
	char		*qr;
	int		 c, want_qr = 0;

	while ((c = next_opt(argc, argv, "+h", longopts)) != -1) {
		if (c == 'q')
			want_qr = 1;
		else if (c == '1')
			params = json_pack("{s:b}", "one_time", 1);
	}
	if (optind != argc)
		usage();
	result = rpc("card.get", params);
	if (json_out) {
		print_json(result);
		json_decref(result);
		return 0;
	}
	if ((uri = json_string_value(json_object_get(result, "uri"))) == NULL)
		die("invalid reply from veild: no uri");
	if (want_qr) {
		if (veil_qr_utf8(uri, &qr) < 0)
			die("cannot draw the QR code");
		fputs(qr, stdout);
		free(qr);
	}
	put_safe(stdout, uri, NULL);
	fputc('\n', stdout);
	json_decref(result);
	return 0;
}

void
table_usage(const struct subcommand *table)
{
	const struct subcommand	*sc;

	for (sc = table; sc->name != NULL; sc++)
		fprintf(stderr, "%s veilctl [-s socket] [--json] %s\n",
		    sc == table ? "usage:" : "      ", sc->usage);
	exit(2);
}

int
run_table(const struct subcommand *table, int argc, char **argv)
{
	const struct subcommand	*sc;

	for (sc = table; sc->name != NULL; sc++) {
		if (strcmp(sc->name, argv[0]) == 0) {
			current = sc;
			optind = 0;	/* glibc: restart getopt */
			return sc->fn(argc, argv);
		}
	}
	fprintf(stderr, "veilctl: unknown command: ");
	put_safe(stderr, argv[0], NULL);
	fputc('\n', stderr);
	usage();
}

static int
cmd_backup(int argc, char **argv)
{
	if (argc < 2)
		table_usage(backup_cmds);
	return run_table(backup_cmds, argc - 1, argv + 1);
}

static int
cmd_rotate(int argc, char **argv)
{
	static const struct option longopts[] = {
		COMMON_LONGOPTS, { NULL, 0, NULL, 0 }
	};
	json_t	*result;

	while (next_opt(argc, argv, "+h", longopts) != -1)
		;
	if (optind != argc)
		usage();
	result = rpc("rotate", NULL);
	print_result(result);
	json_decref(result);
	return 0;
}

static void
list_commands(FILE *f, const struct subcommand *table, int width)
{
	const struct subcommand	*sc;

	for (sc = table; sc->name != NULL; sc++)
		fprintf(f, "  %-*s  %s\n", width, sc->usage, sc->help);
}

static int
usage_width(const struct subcommand *table)
{
	const struct subcommand	*sc;
	int			 w = 0;

	for (sc = table; sc->name != NULL; sc++)
		if ((int)strlen(sc->usage) > w)
			w = strlen(sc->usage);
	return w;
}

static int
cmd_help(int argc, char **argv)
{
	const struct subcommand	*sc;
	int			 w;

	if (argc > 2)
		usage();
	if (argc == 2) {
		for (sc = cmds; sc->name != NULL; sc++) {
			if (strcmp(sc->name, argv[1]) != 0)
				continue;
			if (sc->fn == cmd_contact)
				list_commands(stdout, contact_cmds,
				    usage_width(contact_cmds));
			else if (sc->fn == cmd_transfer)
				list_commands(stdout, transfer_cmds,
				    usage_width(transfer_cmds));
			else if (sc->fn == cmd_backup)
				list_commands(stdout, backup_cmds,
				    usage_width(backup_cmds));
			else
				printf("  %s  %s\n", sc->usage, sc->help);
			return 0;
		}
		usage();
	}
	w = usage_width(cmds);
	if (usage_width(contact_cmds) > w)
		w = usage_width(contact_cmds);
	if (usage_width(transfer_cmds) > w)
		w = usage_width(transfer_cmds);
	if (usage_width(backup_cmds) > w)
		w = usage_width(backup_cmds);
	printf("usage: veilctl [-s socket] [--json] command [args ...]\n\n"
	    "commands:\n");
	list_commands(stdout, cmds, w);
	printf("\ncontact commands:\n");
	list_commands(stdout, contact_cmds, w);
	printf("\ntransfer commands:\n");
	list_commands(stdout, transfer_cmds, w);
	printf("\nbackup commands:\n");
	list_commands(stdout, backup_cmds, w);
	printf("\nsocket: -s, else $VEIL_SOCKET, else %s\n", DEFAULT_SOCKET);
	return 0;
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	int	c;

	sock_path = getenv("VEIL_SOCKET");
	if (sock_path == NULL || *sock_path == '\0')
		sock_path = DEFAULT_SOCKET;
	/* "+": options after the command belong to the command. */
	while ((c = getopt_long(argc, argv, "+s:jh", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			sock_path = optarg;
			break;
		case 'j':
			json_out = 1;
			break;
		case 'h':
			return cmd_help(1, argv);
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1)
		usage();
	return run_table(cmds, argc, argv);
}
