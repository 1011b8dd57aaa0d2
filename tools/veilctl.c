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

#include "card.h"

#define DEFAULT_SOCKET	"/run/veil/veild.sock"
#define REPLY_MAX	(64 * 1024 * 1024)	/* one line from veild */
#define TEXT_MAX	(1024 * 1024)		/* a message read from stdin */
#define WAIT_MAX	86400
#define SEEN_MAX	256

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
static int	cmd_contact_accept(int, char **);
static int	cmd_contact_rename(int, char **);

static const struct subcommand cmds[] = {
	{ "status",	cmd_status,	"status [--verbose]",
	    "show the daemon's state" },
	{ "card",	cmd_card,	"card [--qr] [--one-time]",
	    "print your contact card (a veil: URI)" },
	{ "contact",	cmd_contact,	"contact COMMAND ...",
	    "manage contacts (see below)" },
	{ "send",	cmd_send,	"send NAME [TEXT ...]",
	    "send a message (standard input if no TEXT)" },
	{ "recv",	cmd_recv,	"recv [--follow] [--wait SECONDS]",
	    "print and take the messages received" },
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
	{ "accept",	cmd_contact_accept,	"contact accept NAME [--as LOCAL]",
	    "accept a contact request (and call it LOCAL)" },
	{ "rename",	cmd_contact_rename,	"contact rename NAME NEW",
	    "give a contact another local name" },
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

/* --- talking to veild -------------------------------------------------- */

static void
sock_open(void)
{
	struct sockaddr_un	sun;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(sock_path) >= sizeof(sun.sun_path))
		die("socket path too long: %s", sock_path);
	memcpy(sun.sun_path, sock_path, strlen(sock_path) + 1);
	if ((sock_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		die("socket: %s", strerror(errno));
	if (connect(sock_fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		int	e = errno;

		die("cannot connect to %s: %s%s", sock_path, strerror(e),
		    e == ENOENT || e == ECONNREFUSED ?
		    " (is veild running?)" : "");
	}
}

static void
sock_write(const char *buf, size_t len)
{
	ssize_t	n;

	while (len > 0) {
		n = send(sock_fd, buf, len, MSG_NOSIGNAL);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			die("write to %s: %s", sock_path, strerror(errno));
		}
		buf += n;
		len -= n;
	}
}

/* Next message from veild (a new reference), or NULL at EOF. */
static json_t *
sock_read(void)
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
		if (n == -1)
			die("read from %s: %s", sock_path, strerror(errno));
		if (n == 0)
			return NULL;
		rlen += n;
	}
	len = nl - rbuf;
	msg = json_loadb(rbuf, len, 0, &err);
	rlen -= len + 1;
	memmove(rbuf, nl + 1, rlen);
	if (!json_is_object(msg))
		die("invalid reply from veild: %s", msg ? "not an object" :
		    err.text);
	return msg;
}

/*
 * Sends one request, waits for its answer and returns the result (a new
 * reference).  A JSON-RPC error ends veilctl with status 1; notifications
 * that come first go to on_notify.  params is stolen.
 */
static json_t *
rpc(const char *method, json_t *params)
{
	json_t		*req, *msg, *err, *result, *id;
	const char	*text;
	char		*s;
	json_int_t	 myid = next_id++;

	if (sock_fd == -1)
		sock_open();
	req = json_pack("{s:s, s:s, s:o*, s:I}", "jsonrpc", "2.0",
	    "method", method, "params", params, "id", myid);
	if (req == NULL || (s = json_dumps(req, JSON_COMPACT)) == NULL)
		die("cannot encode the request (text must be UTF-8)");
	json_decref(req);
	sock_write(s, strlen(s));
	sock_write("\n", 1);
	free(s);

	for (;;) {
		if ((msg = sock_read()) == NULL)
			die("veild closed the connection");
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
	if ((text = json_string_value(json_object_get(m, "text"))) == NULL)
		text = "";
	put_safe(stdout, text, "\n    ");
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

/* reject, remove: contact.<verb> {name}. */
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
	result = rpc(method, params);
	print_result(result);
	json_decref(result);
	return 0;
}

static int
cmd_contact_accept(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "as", required_argument, NULL, 'a' }, COMMON_LONGOPTS,
		{ NULL, 0, NULL, 0 }
	};
	json_t		*params, *result;
	const char	*as = NULL;
	int		 c;

	while ((c = next_opt(argc, argv, "h", longopts)) != -1)
		if (c == 'a')
			as = optarg;
	if (argc - optind != 1)
		usage();
	params = json_pack("{s:s, s:s*}", "name", argv[optind], "as", as);
	if (params == NULL)
		die("the names must be UTF-8 text");
	result = rpc("contact.accept", params);
	print_result(result);
	json_decref(result);
	return 0;
}

/* Local only: veild sends nothing, the peer keeps its own name for us. */
static int
cmd_contact_rename(int argc, char **argv)
{
	static const struct option longopts[] = {
		COMMON_LONGOPTS, { NULL, 0, NULL, 0 }
	};
	json_t	*params, *result;

	while (next_opt(argc, argv, "h", longopts) != -1)
		;
	if (argc - optind != 2)
		usage();
	params = json_pack("{s:s, s:s}", "name", argv[optind], "new_name",
	    argv[optind + 1]);
	if (params == NULL)
		die("the names must be UTF-8 text");
	result = rpc("contact.rename", params);
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

static int
cmd_send(int argc, char **argv)
{
	json_t		*params, *result, *text;
	const char	*id;
	char		*buf;
	size_t		 len = 0;
	int		 i, first = 2;

	/* No options: the text is taken literally, "-5 degrees" included. */
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
	params = json_pack("{s:s, s:o}", "to", argv[1], "text", text);
	if (params == NULL)
		die("the name must be UTF-8 text");
	result = rpc("message.send", params);
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

/* Message ids already printed by recv --follow: the notification and the
 * message.receive that takes the message may both carry it. */
static char	*seen[SEEN_MAX];
static size_t	 seen_next;
static int	 receive_needed;

static int
seen_before(json_t *m)
{
	json_t	*idv = json_object_get(m, "id");
	char	*id;
	size_t	 i;

	if (idv == NULL || (id = json_dumps(idv, JSON_ENCODE_ANY)) == NULL)
		return 0;
	for (i = 0; i < SEEN_MAX; i++) {
		if (seen[i] != NULL && strcmp(seen[i], id) == 0) {
			free(id);
			return 1;
		}
	}
	free(seen[seen_next]);
	seen[seen_next] = id;
	seen_next = (seen_next + 1) % SEEN_MAX;
	return 0;
}

static void
print_messages(json_t *result, int dedupe)
{
	json_t	*msgs, *m;
	size_t	 i;

	msgs = json_object_get(result, "messages");
	if (!json_is_array(msgs))
		die("invalid reply from veild: no messages");
	json_array_foreach(msgs, i, m) {
		if (!dedupe || !seen_before(m))
			print_message(m);
	}
}

static void
follow_notify(json_t *msg)
{
	json_t	*params = json_object_get(msg, "params");

	if (strcmp(json_string_value(json_object_get(msg, "method")),
	    "message") != 0)
		return;
	if (json_is_object(params) && json_object_get(params, "text") &&
	    !seen_before(params))
		print_message(params);
	/* Take it too, or the next recv would show it again. */
	receive_needed = 1;
}

static int
cmd_recv(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "follow", no_argument, NULL, 'f' },
		{ "wait", required_argument, NULL, 'w' }, COMMON_LONGOPTS,
		{ NULL, 0, NULL, 0 }
	};
	json_t	*params = NULL, *result, *msg;
	char	*end;
	long	 wait = -1;
	int	 c, follow = 0;

	while ((c = next_opt(argc, argv, "+fw:h", longopts)) != -1) {
		if (c == 'f')
			follow = 1;
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
	if (optind != argc || (follow && wait >= 0))
		usage();

	if (!follow) {
		if (wait >= 0)
			params = json_pack("{s:i}", "wait", (int)wait);
		result = rpc("message.receive", params);
		if (json_out)
			print_json(result);
		else
			print_messages(result, 0);
		json_decref(result);
		return 0;
	}

	/* Subscribe first so nothing arrives unseen between the calls. */
	on_notify = follow_notify;
	json_decref(rpc("subscribe", json_pack("{s:[s]}", "events",
	    "message")));
	receive_needed = 1;
	for (;;) {
		while (receive_needed) {
			receive_needed = 0;
			result = rpc("message.receive", NULL);
			print_messages(result, 1);
			json_decref(result);
		}
		if ((msg = sock_read()) == NULL)
			die("veild closed the connection");
		if (json_object_get(msg, "id") == NULL &&
		    json_is_string(json_object_get(msg, "method")))
			follow_notify(msg);
		json_decref(msg);
	}
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
