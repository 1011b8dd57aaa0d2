/* veilctl_file.c: veilctl send-file (the open file passed to veild, a progress bar on a terminal) and transfer list, cancel. */
#define _GNU_SOURCE

#include <sys/ioctl.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "veilctl.h"

static int	cmd_transfer_list(int, char **);
static int	cmd_transfer_cancel(int, char **);

const struct subcommand transfer_cmds[] = {
	{ "list",	cmd_transfer_list,	"transfer list",
	    "file transfers either way, with their state" },
	{ "cancel",	cmd_transfer_cancel,	"transfer cancel ID",
	    "give a transfer up (the other side is told)" },
	{ NULL, NULL, NULL, NULL }
};

int
cmd_transfer(int argc, char **argv)
{
	if (argc < 2)
		table_usage(transfer_cmds);
	return run_table(transfer_cmds, argc - 1, argv + 1);
}

static int
cmd_transfer_list(int argc, char **argv)
{
	static const struct option longopts[] = {
		COMMON_LONGOPTS, { NULL, 0, NULL, 0 }
	};
	json_t	*result, *rows;

	while (next_opt(argc, argv, "+h", longopts) != -1)
		;
	if (optind != argc)
		usage();
	result = rpc("transfer.list", NULL);
	rows = json_object_get(result, "transfers");
	if (json_out)
		print_json(result);
	else if (!json_is_array(rows))
		die("invalid reply from veild: no transfers");
	else if (json_array_size(rows) == 0)
		puts("no transfers");
	else
		print_rows(rows, "id");
	json_decref(result);
	return 0;
}

static int
cmd_transfer_cancel(int argc, char **argv)
{
	static const struct option longopts[] = {
		COMMON_LONGOPTS, { NULL, 0, NULL, 0 }
	};
	json_t	*result;

	while (next_opt(argc, argv, "h", longopts) != -1)
		;
	if (argc - optind != 1)
		usage();
	result = rpc("transfer.cancel", json_pack("{s:s}", "id", argv[optind]));
	print_result(result);
	json_decref(result);
	return 0;
}

/* --- send-file ------------------------------------------------------------ */

static json_t	*early;		/* notifications before file.send answered */

static void
stash(json_t *msg)
{
	json_array_append(early, msg);
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
human_size(char *buf, size_t len, double n)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	int i = 0;

	while (n >= 1024 && i < 4) {
		n /= 1024;
		i++;
	}
	snprintf(buf, len, i == 0 ? "%.0f %s" : "%.1f %s", n, unit[i]);
}

/*
 * One line, redrawn in place: the bar, the share acknowledged by the
 * receiver, the bytes and the rate since the start.  On standard error,
 * and only on a terminal.
 */
struct bar {
	int	 on;
	double	 t0;
	int	 drawn;
};

static void
bar_draw(struct bar *b, json_t *t)
{
	const char	*state = json_string_value(json_object_get(t, "state"));
	double		 size = (double)json_integer_value(json_object_get(t, "size"));
	double		 bytes = (double)json_integer_value(json_object_get(t, "bytes"));
	double		 el = now_s() - b->t0, frac = size > 0 ? bytes / size : 1;
	char		 a[32], z[32], r[32], line[256];
	struct winsize	 ws;
	int		 cols = 80, width, fill, n;

	if (!b->on)
		return;
	if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
		cols = ws.ws_col;
	human_size(a, sizeof a, bytes);
	human_size(z, sizeof z, size);
	human_size(r, sizeof r, el > 0.2 ? bytes / el : 0);
	n = snprintf(line, sizeof line, " %3d%%  %s / %s  %s/s  %s",
	    (int)(frac * 100), a, z, r, state != NULL ? state : "");
	width = cols - n - 3;
	if (width > 40)
		width = 40;
	if (width < 10)
		width = 10;
	fill = (int)(frac * width);
	fputc('\r', stderr);
	fputc('[', stderr);
	for (int i = 0; i < width; i++)
		fputc(i < fill ? '#' : '-', stderr);
	fputc(']', stderr);
	fputs(line, stderr);
	fputs("\033[K", stderr);	/* the rest of a longer line before */
	fflush(stderr);
	b->drawn = 1;
}

static void
bar_end(struct bar *b)
{
	if (b->on && b->drawn) {
		fputc('\n', stderr);
		fflush(stderr);
	}
}

/* A transfer notification for id: 1 when the transfer ended. */
static int
progress(struct bar *b, json_t *msg, const char *id, json_t **last)
{
	json_t		*p = json_object_get(msg, "params");
	const char	*tid, *state;

	if (strcmp(json_string_value(json_object_get(msg, "method")), "transfer") != 0 ||
	    (tid = json_string_value(json_object_get(p, "id"))) == NULL ||
	    strcmp(tid, id) != 0 ||
	    json_string_value(json_object_get(p, "direction")) == NULL ||
	    strcmp(json_string_value(json_object_get(p, "direction")), "out") != 0)
		return 0;
	json_decref(*last);
	*last = json_incref(p);
	bar_draw(b, p);
	state = json_string_value(json_object_get(p, "state"));
	return state != NULL && (strcmp(state, "done") == 0 ||
	    strcmp(state, "failed") == 0);
}

/*
 * veilctl opens the file itself and passes the open descriptor with the
 * request (SCM_RIGHTS): veild reads what veilctl's user may read, and
 * nothing else, whoever veild runs as.  It then follows the transfer's
 * notifications until the receiver's verdict (--no-wait: only until veild
 * holds its copy).
 */
int
cmd_send_file(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "as", required_argument, NULL, 'a' },
		{ "no-wait", no_argument, NULL, 'n' }, COMMON_LONGOPTS,
		{ NULL, 0, NULL, 0 }
	};
	json_t		*params, *result, *msg, *last = NULL, *err;
	const char	*as = NULL, *id, *state;
	char		 real[PATH_MAX];
	struct bar	 b = { 0, 0, 0 };
	struct stat	 st;
	int		 c, fd, code, nowait = 0, ended = 0;
	size_t		 i;

	while ((c = next_opt(argc, argv, "h", longopts)) != -1) {
		if (c == 'a')
			as = optarg;
		else if (c == 'n')
			nowait = 1;
	}
	if (argc - optind != 2)
		usage();
	if ((fd = open(argv[optind + 1], O_RDONLY | O_NOCTTY | O_CLOEXEC)) == -1)
		die("%s: %s", argv[optind + 1], strerror(errno));
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode))
		die("%s: not a regular file", argv[optind + 1]);
	if (realpath(argv[optind + 1], real) == NULL)
		snprintf(real, sizeof real, "%s", argv[optind + 1]);
	params = json_pack("{s:s, s:b, s:s, s:s*}", "to", argv[optind], "fd", 1,
	    "path", real, "name", as);
	if (params == NULL)
		die("the names must be UTF-8 text");
	if (!nowait) {
		/* Before the send, so that no notification is missed. */
		json_decref(rpc("subscribe", json_pack("{s:[s]}", "events",
		    "transfer")));
		early = json_array();
		on_notify = stash;
	}
	result = rpc_try("file.send", params, fd, &code, &err);
	close(fd);
	on_notify = NULL;
	if (result == NULL) {
		fputs("veilctl: ", stderr);
		put_safe(stderr, json_string_value(err) ? json_string_value(err) :
		    "unknown error", NULL);
		fputc('\n', stderr);
		exit(1);
	}
	if ((id = json_string_value(json_object_get(result, "id"))) == NULL)
		die("invalid reply from veild: no transfer id");
	if (nowait) {
		if (json_out)
			print_json(result);
		else {
			fputs("queued, transfer ", stdout);
			put_safe(stdout, id, NULL);
			fputc('\n', stdout);
		}
		json_decref(result);
		return 0;
	}
	b.on = isatty(STDERR_FILENO);
	b.t0 = now_s();
	json_array_foreach(early, i, msg)
		if (!ended)
			ended = progress(&b, msg, id, &last);
	json_decref(early);
	while (!ended) {
		if ((msg = sock_read()) == NULL)
			die("veild closed the connection; the transfer goes on "
			    "(veilctl transfer list)");
		if (json_object_get(msg, "id") == NULL &&
		    json_is_string(json_object_get(msg, "method")))
			ended = progress(&b, msg, id, &last);
		json_decref(msg);
	}
	bar_end(&b);
	state = json_string_value(json_object_get(last, "state"));
	if (json_out)
		print_json(last);
	else if (strcmp(state, "done") == 0) {
		fputs("sent ", stdout);
		put_safe(stdout, json_string_value(json_object_get(last, "name")), NULL);
		fputs(" to ", stdout);
		put_safe(stdout, json_string_value(json_object_get(last, "contact")), NULL);
		printf(": %lld bytes, arrived intact\n",
		    (long long)json_integer_value(json_object_get(last, "size")));
	}
	c = strcmp(state, "done") == 0 ? 0 : 1;
	if (c != 0) {
		fputs("veilctl: the file was not delivered: ", stderr);
		put_safe(stderr, json_string_value(json_object_get(last, "reason")) ?
		    json_string_value(json_object_get(last, "reason")) : "failed", NULL);
		fputc('\n', stderr);
	}
	json_decref(last);
	json_decref(result);
	return c;
}
