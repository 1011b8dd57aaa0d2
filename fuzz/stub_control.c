/* Fuzz stub of daemon/control.c: swallows rpc.c's output after checking it is one JSON-RPC line. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "control.h"

/*
 * Every line rpc.c sends must be what a client can parse: a single line
 * (no LF inside), a JSON object with "jsonrpc": "2.0", and either a
 * result/error with an id member or a method (notification).  Anything
 * else aborts, which libFuzzer reports as a crash.
 */
static void
check_line(const char *buf, size_t len)
{
	json_error_t	 err;
	json_t		*msg, *e;
	const char	*v;

	if (buf == NULL || len == 0 || memchr(buf, '\n', len) != NULL ||
	    len > CONTROL_OUTPUT_MAX)
		abort();
	if ((msg = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &err)) == NULL)
		abort();
	if (!json_is_object(msg) ||
	    (v = json_string_value(json_object_get(msg, "jsonrpc"))) == NULL ||
	    strcmp(v, "2.0") != 0)
		abort();
	if (json_object_get(msg, "method") == NULL) {
		if (json_object_get(msg, "id") == NULL)
			abort();
		e = json_object_get(msg, "error");
		if ((e == NULL) == (json_object_get(msg, "result") == NULL))
			abort();
		if (e != NULL && (!json_is_integer(json_object_get(e, "code")) ||
		    !json_is_string(json_object_get(e, "message"))))
			abort();
	}
	json_decref(msg);
}

int
control_send(struct ctl_conn *cc, const char *buf, size_t len)
{
	(void)cc;
	check_line(buf, len);
	return 0;
}

/* A line built in pieces (rpc_reply_stream) is checked whole at its end. */
static char	*line;
static size_t	 line_len;
static int	 line_open;

int
control_line_begin(struct ctl_conn *cc)
{
	(void)cc;
	if (line_open)
		abort();
	line_open = 1;
	line_len = 0;
	return 0;
}

int
control_line_add(struct ctl_conn *cc, const char *buf, size_t len)
{
	char	*p;

	(void)cc;
	if (!line_open || line_len + len > CONTROL_OUTPUT_MAX)
		abort();
	if ((p = realloc(line, line_len + len + 1)) == NULL)
		abort();
	line = p;
	memcpy(line + line_len, buf, len);
	line_len += len;
	return 0;
}

int
control_line_end(struct ctl_conn *cc)
{
	(void)cc;
	if (!line_open)
		abort();
	line_open = 0;
	check_line(line, line_len);
	free(line);
	line = NULL;
	line_len = 0;
	return 0;
}

void
control_line_abort(struct ctl_conn *cc)
{
	(void)cc;
	if (!line_open)
		abort();
	line_open = 0;
	free(line);
	line = NULL;
	line_len = 0;
}

void
control_close_after_flush(struct ctl_conn *cc)
{
	(void)cc;
}

int
control_take_fd(struct ctl_conn *cc)
{
	(void)cc;
	return -1;
}

void
control_peer(const struct ctl_conn *cc, uid_t *uid, gid_t *gid)
{
	(void)cc;
	*uid = 0;
	*gid = 0;
}
