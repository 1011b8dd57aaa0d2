/* veilctl: the command-line client of veild's JSON-RPC control socket. */
#define _GNU_SOURCE

#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "card.h"

#define DEFAULT_SOCKET	"/run/veil/veild.sock"
#define REPLY_MAX	(64 * 1024 * 1024)	/* one line from veild */
#define TEXT_MAX	(1024 * 1024)		/* a message read from stdin */
#define WAIT_MAX	3600		/* veild's longest message.receive wait */
#define FOLLOW_WAIT	3600
#define SEND_RETRY_S	30		/* message.send retried this long */
#define KEY_BYTES	16		/* a generated send key, random */

struct subcommand {
	const char	*name;
	int		(*fn)(int argc, char **argv);
	const char	*usage;
	const char	*help;
};

static const char		*sock_path;
static int			 json_out;
static int			 sock_fd = -1;
static json_int_t		 next_id = 1;
static const struct subcommand	*current;	/* for usage() */

static char	*rbuf;		/* bytes read from veild, not yet a line */
static size_t	 rlen, rcap;

/* Called for each notification that arrives while veilctl waits. */
static void	(*on_notify)(json_t *msg);

static int	cmd_status(int, char **);
static int	cmd_card(int, char **);
static int	cmd_contact(int, char **);
static int	cmd_send(int, char **);
static int	cmd_recv(int, char **);
static int	cmd_rotate(int, char **);
static int	cmd_help(int, char **);
static int	cmd_contact_add(int, char **);
static int	cmd_contact_list(int, char **);
static int	cmd_contact_name(int, char **);
static int	cmd_contact_verify(int, char **);

static const struct subcommand cmds[] = {
	{ "status",	cmd_status,	"status [--verbose]",
	    "show the daemon's state" },
	{ "card",	cmd_card,	"card [--qr] [--one-time]",
	    "print your contact card (a veil: URI)" },
	{ "contact",	cmd_contact,	"contact COMMAND ...",
	    "manage contacts (see below)" },
	{ "send",	cmd_send,	"send [--key KEY] NAME [TEXT ...]",
	    "send a message (standard input if no TEXT)" },
	{ "recv",	cmd_recv,	"recv [--follow | --wait SECONDS] [--peek]",
	    "print the messages received, then acknowledge them" },
	{ "rotate",	cmd_rotate,	"rotate",
	    "move to new addresses now" },
	{ "help",	cmd_help,	"help [COMMAND]",
	    "show the commands" },
	{ NULL, NULL, NULL, NULL }
};

static const struct subcommand contact_cmds[] = {
	{ "add",	cmd_contact_add,	"contact add URI [--name NAME]",
	    "ask a card's owner to become a contact" },
	{ "list",	cmd_contact_list,	"contact list",
	    "list contacts and pending requests" },
	{ "accept",	cmd_contact_name,	"contact accept NAME",
	    "accept a contact request" },
	{ "reject",	cmd_contact_name,	"contact reject NAME",
	    "reject a contact request" },
	{ "remove",	cmd_contact_name,	"contact remove NAME",
	    "forget a contact" },
	{ "verify",	cmd_contact_verify,	"contact verify NAME [--mark]",
	    "show the fingerprint; --mark: it matched" },
	{ NULL, NULL, NULL, NULL }
};

static void __attribute__((noreturn, format(printf, 1, 2)))
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

static void __attribute__((noreturn))
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
static void
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
static size_t
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

/* --- names that look alike --------------------------------------------- */

/*
 * A name's skeleton: what it looks like rather than what it is, so that
 * "bob", "Bob", "bоb" (Cyrillic o), "ｂｏｂ" (fullwidth) and "b0b" compare
 * equal.  Deliberately simple, not Unicode's full confusables table: case
 * folded; fullwidth forms to ASCII; Latin-1 letters without their accents;
 * combining marks dropped; the Cyrillic and Greek letters that look like
 * Latin ones mapped to them; 0 to o; i, I, 1 and | to l; "rn" to m;
 * spaces, '-', '_' and '.' dropped.  veilctl warns when a new name's
 * skeleton is another contact's: a request can pose as someone you know.
 */
static const struct {
	unsigned	cp;
	char		to;
} lookalike[] = {
	/* Greek capitals, then small */
	{ 0x391, 'a' }, { 0x392, 'b' }, { 0x395, 'e' }, { 0x396, 'z' },
	{ 0x397, 'h' }, { 0x399, 'l' }, { 0x39a, 'k' }, { 0x39c, 'm' },
	{ 0x39d, 'n' }, { 0x39f, 'o' }, { 0x3a1, 'p' }, { 0x3a4, 't' },
	{ 0x3a5, 'y' }, { 0x3a7, 'x' }, { 0x3b1, 'a' }, { 0x3b5, 'e' },
	{ 0x3b9, 'i' }, { 0x3ba, 'k' }, { 0x3bd, 'v' }, { 0x3bf, 'o' },
	{ 0x3c1, 'p' }, { 0x3c4, 't' }, { 0x3c5, 'u' }, { 0x3c7, 'x' },
	/* Cyrillic */
	{ 0x405, 's' }, { 0x406, 'l' }, { 0x408, 'j' }, { 0x410, 'a' },
	{ 0x412, 'b' }, { 0x415, 'e' }, { 0x41a, 'k' }, { 0x41c, 'm' },
	{ 0x41d, 'h' }, { 0x41e, 'o' }, { 0x420, 'p' }, { 0x421, 'c' },
	{ 0x422, 't' }, { 0x423, 'y' }, { 0x425, 'x' }, { 0x430, 'a' },
	{ 0x435, 'e' }, { 0x43a, 'k' }, { 0x43e, 'o' }, { 0x440, 'p' },
	{ 0x441, 'c' }, { 0x443, 'y' }, { 0x445, 'x' }, { 0x450, 'e' },
	{ 0x451, 'e' }, { 0x455, 's' }, { 0x456, 'i' }, { 0x457, 'i' },
	{ 0x458, 'j' }, { 0x4bb, 'h' }, { 0x501, 'd' }, { 0x51b, 'q' },
	{ 0x51d, 'w' },
	/* Latin */
	{ 0x131, 'i' }, { 0x237, 'j' }, { 0x2113, 'l' },
};

/* Latin-1 letters U+00C0..U+00FF without their accents ('*': not a letter). */
static const char latin1_base[] =
    "aaaaaaaceeeeiiii" "dnooooo*ouuuuyts"
    "aaaaaaaceeeeiiii" "dnooooo*ouuuuyty";

static void
skeleton(const char *name, char *out, size_t outlen)
{
	const unsigned char	*p = (const unsigned char *)name;
	size_t			 o = 0, k, n;
	unsigned		 cp;
	char			 ch;

	while (*p != '\0' && o + 1 < outlen) {
		n = *p < 0x80 ? 1 : *p < 0xe0 ? 2 : *p < 0xf0 ? 3 : 4;
		cp = n == 1 ? *p : n == 2 ? (*p & 0x1fu) : n == 3 ? (*p & 0x0fu) :
		    (*p & 0x07u);
		for (k = 1; k < n && p[k] != '\0'; k++)
			cp = (cp << 6) | (p[k] & 0x3fu);
		n = k;		/* bytes it took */
		p += n;
		if (cp >= 0xff01 && cp <= 0xff5e)	/* fullwidth */
			cp -= 0xfee0;
		ch = 0;
		if (cp == 'I' || cp == '|' || cp == '1')
			ch = 'l';
		else if (cp == '0')
			ch = 'o';
		else if (cp == ' ' || cp == '-' || cp == '_' || cp == '.' ||
		    cp == 0xa0 || (cp >= 0x300 && cp <= 0x36f))
			continue;
		else if (cp < 0x80)
			ch = (char)(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp);
		else if (cp >= 0xc0 && cp <= 0xff && latin1_base[cp - 0xc0] != '*')
			ch = latin1_base[cp - 0xc0];
		else
			for (k = 0; k < sizeof(lookalike) / sizeof(lookalike[0]); k++)
				if (lookalike[k].cp == cp)
					ch = lookalike[k].to;
		if (ch == 0) {	/* anything else stands for itself */
			if (o + n >= outlen)
				break;
			memcpy(out + o, p - n, n);
			o += n;
			continue;
		}
		if (ch == 'i')
			ch = 'l';	/* i, I, l, 1 and | are one stroke */
		out[o++] = ch;
		if (o >= 2 && out[o - 2] == 'r' && out[o - 1] == 'n') {
			out[o - 2] = 'm';	/* "rn" reads as "m" */
			o--;
		}
	}
	out[o] = '\0';
}

/*
 * Warns on standard error when contact `name` (peer name peer) looks like
 * another contact's name or peer name.  Best effort: it never fails the
 * command it follows.
 */
static json_t	*rpc(const char *method, json_t *params);

static void
warn_lookalike(const char *name, const char *peer)
{
	json_t		*result, *rows, *row;
	const char	*mine[2] = { name, peer }, *theirs[2];
	char		 a[4 * 64 + 1], b[4 * 64 + 1];
	size_t		 i;
	int		 j, k;

	result = rpc("contact.list", NULL);
	rows = json_object_get(result, "contacts");
	json_array_foreach(rows, i, row) {
		theirs[0] = json_string_value(json_object_get(row, "name"));
		theirs[1] = json_string_value(json_object_get(row, "peer_name"));
		if (theirs[0] == NULL || strcmp(theirs[0], name) == 0)
			continue;
		for (j = 0; j < 2; j++)
			for (k = 0; k < 2; k++) {
				if (mine[j] == NULL || theirs[k] == NULL ||
				    *mine[j] == '\0' || *theirs[k] == '\0')
					continue;
				skeleton(mine[j], a, sizeof(a));
				skeleton(theirs[k], b, sizeof(b));
				if (strcmp(a, b) != 0)
					continue;
				fputs("veilctl: warning: \"", stderr);
				put_safe(stderr, mine[j], NULL);
				fputs("\" looks like \"", stderr);
				put_safe(stderr, theirs[k], NULL);
				fputs("\" of another contact, \"", stderr);
				put_safe(stderr, theirs[0], NULL);
				fputs("\": compare fingerprints (veilctl contact "
				    "verify) before you trust it\n", stderr);
				json_decref(result);
				return;
			}
	}
	json_decref(result);
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
static void
sock_close(void)
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
	msg = json_loadb(rbuf, len, 0, &err);
	rlen -= len + 1;
	memmove(rbuf, nl + 1, rlen);
	if (!json_is_object(msg))
		die("invalid reply from veild: %s", msg ? "not an object" :
		    err.text);
	*out = msg;
	return 1;
}

/*
 * Sends one request and waits for its answer: the result (a new
 * reference), or NULL when the connection could not be made or broke
 * before the answer came (io_err says how; the connection is then
 * closed).  A JSON-RPC error ends veilctl with status 1; notifications
 * that come first go to on_notify.  params is borrowed.
 */
static json_t *
rpc_try(const char *method, json_t *params)
{
	json_t		*req, *msg, *err, *result, *id;
	const char	*text;
	char		*s;
	json_int_t	 myid = next_id++;

	if (sock_fd == -1 && sock_open_try() != 0)
		return NULL;
	req = json_pack("{s:s, s:s, s:O*, s:I}", "jsonrpc", "2.0",
	    "method", method, "params", params, "id", myid);
	if (req == NULL || (s = json_dumps(req, JSON_COMPACT)) == NULL)
		die("cannot encode the request (text must be UTF-8)");
	json_decref(req);
	if (sock_write_try(s, strlen(s)) != 0 || sock_write_try("\n", 1) != 0) {
		free(s);
		sock_close();
		return NULL;
	}
	free(s);

	for (;;) {
		if (sock_read_try(&msg) != 1) {
			sock_close();
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
		text = json_string_value(json_object_get(err, "message"));
		fputs("veilctl: ", stderr);
		put_safe(stderr, text ? text : "unknown error", NULL);
		fputc('\n', stderr);
		exit(1);
	}
	if ((result = json_object_get(msg, "result")) == NULL)
		die("invalid reply from veild: no result");
	json_incref(result);
	json_decref(msg);
	return result;
}

/* rpc_try that ends veilctl when the connection fails; params is stolen. */
static json_t *
rpc(const char *method, json_t *params)
{
	json_t	*result = rpc_try(method, params);

	json_decref(params);
	if (result == NULL)
		die("%s", io_err);
	return result;
}

/* --- output ------------------------------------------------------------ */

static void
print_json(json_t *j)
{
	char	*s;

	if ((s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY)) == NULL)
		die("out of memory");
	puts(s);
	free(s);
}

/* A scalar as a human reads it; arrays and objects as compact JSON. */
static void
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
static void
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

static void
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

static void
print_message(json_t *m)
{
	const char	*text;

	if (json_out) {
		print_json(m);
		fflush(stdout);
		return;
	}
	fputc('[', stdout);
	print_time(json_object_get(m, "received"));
	fputs("] ", stdout);
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

/* getopt_long over a subcommand's argv (argv[0] is its name).  --json is
 * accepted everywhere, also after the command. */
#define COMMON_LONGOPTS	{ "json", no_argument, &json_out, 1 }, \
			{ "help", no_argument, NULL, 'h' }

static int
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

static int
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
cmd_contact(int argc, char **argv)
{
	const struct subcommand	*sc;

	if (argc < 2) {
		for (sc = contact_cmds; sc->name != NULL; sc++)
			fprintf(stderr, "%s veilctl [-s socket] [--json] %s\n",
			    sc == contact_cmds ? "usage:" : "      ", sc->usage);
		exit(2);
	}
	return run_table(contact_cmds, argc - 1, argv + 1);
}

static int
cmd_contact_add(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "name", required_argument, NULL, 'n' }, COMMON_LONGOPTS,
		{ NULL, 0, NULL, 0 }
	};
	json_t		*params, *result;
	const char	*name = NULL;
	int		 c;

	while ((c = next_opt(argc, argv, "n:h", longopts)) != -1)
		if (c == 'n')
			name = optarg;
	if (argc - optind != 1)
		usage();
	params = json_pack("{s:s, s:s*}", "card", argv[optind], "name", name);
	if (params == NULL)
		die("the card and name must be UTF-8 text");
	result = rpc("contact.add", params);
	print_result(result);
	if (json_is_string(json_object_get(result, "name")))
		warn_lookalike(json_string_value(json_object_get(result, "name")),
		    json_string_value(json_object_get(result, "peer_name")));
	json_decref(result);
	return 0;
}

static int
cmd_contact_list(int argc, char **argv)
{
	static const struct option longopts[] = {
		COMMON_LONGOPTS, { NULL, 0, NULL, 0 }
	};
	json_t		*result, *rows, *row, *v, *cols;
	const char	*key;
	size_t		 i, j, *width, w;

	while (next_opt(argc, argv, "+h", longopts) != -1)
		;
	if (optind != argc)
		usage();
	result = rpc("contact.list", NULL);
	if (json_out) {
		print_json(result);
		json_decref(result);
		return 0;
	}
	rows = json_is_array(result) ? result :
	    json_object_get(result, "contacts");
	if (!json_is_array(rows))
		die("invalid reply from veild: no contact list");
	if (json_array_size(rows) == 0) {
		puts("no contacts");
		json_decref(result);
		return 0;
	}
	/* Columns: name first, then every scalar field in order of
	 * appearance, so new fields from veild show without a change here. */
	cols = json_array();
	json_array_append_new(cols, json_string("name"));
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
	json_decref(result);
	return 0;
}

/* accept, reject, remove: contact.<verb> {name}. */
static int
cmd_contact_name(int argc, char **argv)
{
	static const struct option longopts[] = {
		COMMON_LONGOPTS, { NULL, 0, NULL, 0 }
	};
	json_t	*params, *result;
	char	 method[32];

	while (next_opt(argc, argv, "h", longopts) != -1)
		;
	if (argc - optind != 1)
		usage();
	snprintf(method, sizeof(method), "contact.%s", current->name);
	if ((params = json_pack("{s:s}", "name", argv[optind])) == NULL)
		die("the name must be UTF-8 text");
	/* Before accepting a request, the one moment it matters. */
	if (strcmp(current->name, "accept") == 0) {
		json_t	*list = rpc("contact.list", NULL), *row;
		size_t	 i;

		json_array_foreach(json_object_get(list, "contacts"), i, row)
			if (json_is_string(json_object_get(row, "name")) &&
			    strcmp(json_string_value(json_object_get(row,
			    "name")), argv[optind]) == 0)
				warn_lookalike(argv[optind], json_string_value(
				    json_object_get(row, "peer_name")));
		json_decref(list);
	}
	result = rpc(method, params);
	print_result(result);
	json_decref(result);
	return 0;
}

static int
cmd_contact_verify(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "mark", no_argument, NULL, 'm' }, COMMON_LONGOPTS,
		{ NULL, 0, NULL, 0 }
	};
	json_t	*params, *result;
	int	 c, mark = 0;

	while ((c = next_opt(argc, argv, "h", longopts)) != -1)
		if (c == 'm')
			mark = 1;
	if (argc - optind != 1)
		usage();
	if ((params = json_pack("{s:s}", "name", argv[optind])) == NULL)
		die("the name must be UTF-8 text");
	if (mark)
		json_object_set_new(params, "mark", json_true());
	result = rpc("contact.verify", params);
	print_result(result);
	json_decref(result);
	return 0;
}

static char *
read_stdin(size_t *lenp)
{
	char	*buf;
	size_t	 len = 0;
	ssize_t	 n;

	if ((buf = malloc(TEXT_MAX + 1)) == NULL)
		die("out of memory");
	for (;;) {
		n = read(STDIN_FILENO, buf + len, TEXT_MAX + 1 - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			die("standard input: %s", strerror(errno));
		if (n == 0)
			break;
		len += n;
		if (len > TEXT_MAX)
			die("message too large (more than %d bytes)", TEXT_MAX);
	}
	/* `echo hi | veilctl send bob` means "hi". */
	if (len > 0 && buf[len - 1] == '\n')
		len--;
	buf[len] = '\0';
	*lenp = len;
	return buf;
}

/*
 * A key for message.send: the caller's, else a random one.  With it a
 * send whose answer was lost (veild killed after storing it, the socket
 * broken) can be repeated without sending the message twice: veild
 * answers a repeated key with the first message's ID.
 */
static char *
send_key(const char *given)
{
	unsigned char	 raw[KEY_BYTES];
	char		*hex;

	if (given != NULL) {
		if (*given == '\0')
			die("--key: an empty key");
		if ((hex = strdup(given)) == NULL)
			die("out of memory");
		return hex;
	}
	if (sodium_init() < 0)
		die("libsodium failed to initialise");
	randombytes_buf(raw, sizeof(raw));
	if ((hex = malloc(2 * sizeof(raw) + 1)) == NULL)
		die("out of memory");
	sodium_bin2hex(hex, 2 * sizeof(raw) + 1, raw, sizeof(raw));
	return hex;
}

static int
cmd_send(int argc, char **argv)
{
	json_t		*params, *result, *text;
	const char	*id, *given = NULL;
	char		*buf, *key;
	size_t		 len = 0;
	int		 i, first = 2, told = 0;
	unsigned	 pause_ms = 100;
	time_t		 deadline;

	/* One option, before the name; the text is taken literally, "-5
	 * degrees" included. */
	if (argc > 2 && strcmp(argv[1], "--key") == 0) {
		given = argv[2];
		argc -= 2;
		argv += 2;
	} else if (argc > 1 && strncmp(argv[1], "--key=", 6) == 0) {
		given = argv[1] + 6;
		argc--;
		argv++;
	}
	if (argc < 2 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "--help") == 0)
		usage();
	if (argc > 2 && strcmp(argv[2], "--") == 0)
		first = 3;
	if (argc > first) {
		size_t	n, off = 0;

		for (i = first; i < argc; i++)
			len += strlen(argv[i]) + 1;
		if ((buf = malloc(len + 1)) == NULL)
			die("out of memory");
		for (i = first; i < argc; i++) {
			if (i > first)
				buf[off++] = ' ';
			n = strlen(argv[i]);
			memcpy(buf + off, argv[i], n);
			off += n;
		}
		buf[off] = '\0';
		len = off;
	} else
		buf = read_stdin(&len);
	if ((text = json_stringn(buf, len)) == NULL)
		die("the message must be UTF-8 text");
	free(buf);
	key = send_key(given);
	params = json_pack("{s:s, s:o, s:s}", "to", argv[1], "text", text,
	    "key", key);
	if (params == NULL)
		die("the name and the key must be UTF-8 text");
	/* Until veild answers: a lost answer is asked for again under the
	 * same key, which cannot queue the message twice. */
	deadline = time(NULL) + SEND_RETRY_S;
	while ((result = rpc_try("message.send", params)) == NULL) {
		/* No veild to talk to at all: nothing was sent. */
		if (!told && strncmp(io_err, "cannot connect", 14) == 0)
			die("%s", io_err);
		if (time(NULL) >= deadline)
			die("%s; gave up after %d s: the message may or may not "
			    "be queued; `veilctl send --key %s ...` with the same "
			    "name and text finds out without sending it twice",
			    io_err, SEND_RETRY_S, key);
		if (!told++)
			fprintf(stderr, "veilctl: %s; trying again for %d s\n",
			    io_err, SEND_RETRY_S);
		usleep(pause_ms * 1000);
		if (pause_ms < 2000)
			pause_ms *= 2;
	}
	json_decref(params);
	free(key);
	if (json_out)
		print_json(result);
	else if ((id = json_string_value(json_object_get(result, "id")))) {
		fputs("queued, id ", stdout);
		put_safe(stdout, id, NULL);
		fputc('\n', stdout);
	} else
		print_result(result);
	json_decref(result);
	return 0;
}

/*
 * message.receive hands out the messages no app has acknowledged, and
 * they stay until message.ack names them: recv prints a batch, makes sure
 * it reached standard output, and only then acknowledges it.  If veilctl
 * dies or its output cannot be written first, the next recv shows the
 * same messages again; nothing is lost.
 */
static int
receive_batch(long wait, int peek, int follow, int quiet_empty)
{
	json_t	*params = NULL, *result, *msgs, *m, *ids;
	size_t	 i, n;

	if (wait > 0)
		params = json_pack("{s:i}", "wait", (int)wait);
	result = rpc("message.receive", params);
	msgs = json_object_get(result, "messages");
	if (!json_is_array(msgs))
		die("invalid reply from veild: no messages");
	/* --json: the reply as it is (an empty one only when it is the
	 * first), or with --follow one message a line. */
	if (json_out && !follow) {
		if (json_array_size(msgs) > 0 || !quiet_empty)
			print_json(result);
	} else
		json_array_foreach(msgs, i, m)
			print_message(m);
	if (fflush(stdout) == EOF || ferror(stdout))
		die("standard output: %s: the messages stay for the next recv",
		    strerror(errno));
	n = json_array_size(msgs);
	if (n > 0 && !peek) {
		if ((ids = json_array()) == NULL)
			die("out of memory");
		json_array_foreach(msgs, i, m)
			if (json_is_string(json_object_get(m, "id")))
				json_array_append(ids, json_object_get(m, "id"));
		json_decref(rpc("message.ack", json_pack("{s:o}", "ids", ids)));
	}
	json_decref(result);
	return (int)n;
}

static int
cmd_recv(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "follow", no_argument, NULL, 'f' },
		{ "peek", no_argument, NULL, 'p' },
		{ "wait", required_argument, NULL, 'w' }, COMMON_LONGOPTS,
		{ NULL, 0, NULL, 0 }
	};
	char	*end;
	long	 wait = -1;
	int	 c, follow = 0, peek = 0;

	while ((c = next_opt(argc, argv, "+fpw:h", longopts)) != -1) {
		if (c == 'f')
			follow = 1;
		else if (c == 'p')
			peek = 1;
		else if (c == 'w') {
			errno = 0;
			wait = strtol(optarg, &end, 10);
			if (errno || *optarg == '\0' || *end != '\0' ||
			    wait < 0 || wait > WAIT_MAX) {
				fprintf(stderr, "veilctl: --wait: not a number "
				    "of seconds from 0 to %d\n", WAIT_MAX);
				usage();
			}
		}
	}
	if (optind != argc || (follow && wait >= 0) || (follow && peek))
		usage();

	/* Batch after batch until none is left (a reply holds what fits
	 * veild's byte budget); --peek leaves them, so it shows one. */
	if (!follow) {
		if (receive_batch(wait, peek, 0, 0) > 0 && !peek)
			while (receive_batch(0, 0, 0, 1) > 0)
				;
		return 0;
	}
	/* An empty reply means the long poll ran out with nothing new, so it
	 * starts again. */
	for (;;)
		receive_batch(FOLLOW_WAIT, 0, 1, 1);
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
			else
				printf("  %s  %s\n", sc->usage, sc->help);
			return 0;
		}
		usage();
	}
	w = usage_width(cmds);
	if (usage_width(contact_cmds) > w)
		w = usage_width(contact_cmds);
	printf("usage: veilctl [-s socket] [--json] command [args ...]\n\n"
	    "commands:\n");
	list_commands(stdout, cmds, w);
	printf("\ncontact commands:\n");
	list_commands(stdout, contact_cmds, w);
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
