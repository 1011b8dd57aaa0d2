/* Unit tests of the control socket and JSON-RPC framing (daemon/control.c, daemon/rpc.c). */
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <jansson.h>

#include "control.h"
#include "log.h"
#include "rpc.h"
#include "testutil.h"

static struct event_base *base;
static char tmpdir[64];
static char sockpath[96];	/* fits sun_path */

/* --- a small method table standing in for the engine's ------------------ */

static struct rpc_call	*pending;	/* the "wait" call being held */
static int		 cancelled;

static int
m_echo(struct rpc_call *call)
{
	return rpc_reply(call, json_incref(rpc_call_params(call)));
}

static int
m_fail(struct rpc_call *call)
{
	return rpc_error(call, RPC_ERR_NOT_FOUND, "no contact named %s", "bob");
}

static int
m_add(struct rpc_call *call)
{
	json_int_t	a, b = 0;

	if (rpc_param_int(call, "a", 1, &a) == -1 ||
	    rpc_param_int(call, "b", 0, &b) == -1)
		return -1;
	return rpc_reply(call, json_pack("{s:I}", "sum", a + b));
}

static int
m_greet(struct rpc_call *call)
{
	const char	*name;
	int		 loud = 0;

	if (rpc_param_string(call, "name", 1, &name) == -1 ||
	    rpc_param_bool(call, "loud", 0, &loud) == -1)
		return -1;
	return rpc_reply(call, json_pack("{s:s, s:b}", "name", name,
	    "loud", loud));
}

static int
m_noanswer(struct rpc_call *call)
{
	return 0;
}

static void
wait_cancel(struct rpc_call *call, void *arg)
{
	assert_ptr_equal(call, pending);
	assert_ptr_equal(arg, &pending);
	pending = NULL;
	cancelled++;
}

static int
m_wait(struct rpc_call *call)
{
	pending = call;
	rpc_defer(call, wait_cancel, &pending);
	return 0;
}

static int
m_notify(struct rpc_call *call)
{
	rpc_notify("message", json_pack("{s:s}", "from", "handler"));
	return rpc_reply(call, NULL);
}

static int
m_none(struct rpc_call *call)
{
	return rpc_reply(call, json_true());
}

static const struct rpc_method test_methods[] = {
	{ "echo",	m_echo,		"k,s" },
	{ "fail",	m_fail,		"" },
	{ "add",	m_add,		"a,b" },
	{ "greet",	m_greet,	"name,loud" },
	{ "noanswer",	m_noanswer,	"" },
	{ "wait",	m_wait,		"" },
	{ "notify",	m_notify,	"" },
	{ "none",	m_none,		"" },
	{ NULL,		NULL,		NULL }
};

/* --- a client that drives the daemon's loop while it waits ------------- */

struct client {
	int	fd;
	int	eof;
	size_t	len;
	char	buf[1 << 16];
};

static void
pump(void)
{
	/* ONCE: return even if an fd stays ready (a spinning listener). */
	event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

static long
now_ms(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static int
sock_connect(const char *path)
{
	struct sockaddr_un	sun;
	int			fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
	assert_true(fd >= 0);
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		close(fd);
		return -1;
	}
	return fd;
}

static struct client *
client_new(void)
{
	struct client	*cl;

	cl = calloc(1, sizeof(*cl));
	assert_non_null(cl);
	cl->fd = sock_connect(sockpath);
	assert_true(cl->fd >= 0);
	pump();		/* accept */
	return cl;
}

static void
client_free(struct client *cl)
{
	if (cl->fd != -1)
		close(cl->fd);
	free(cl);
}

/* Writes all of buf, running the loop whenever the socket is full.
 * Returns 0, or -1 once the daemon has closed the connection. */
static int
client_write(struct client *cl, const void *buf, size_t len)
{
	const char	*p = buf;
	ssize_t		 n;
	long		 deadline = now_ms() + 5000;

	while (len > 0) {
		n = send(cl->fd, p, len, MSG_NOSIGNAL);
		if (n == -1) {
			if (errno != EAGAIN)
				return -1;
			assert_true(now_ms() < deadline);
			pump();
			continue;
		}
		p += n;
		len -= n;
	}
	pump();
	return 0;
}

static void
client_send(struct client *cl, const char *line)
{
	assert_int_equal(client_write(cl, line, strlen(line)), 0);
	assert_int_equal(client_write(cl, "\n", 1), 0);
}

/* Next line from the daemon: 1, 0 on timeout, -1 at EOF. */
static int
client_line(struct client *cl, char *out, size_t outlen, int timeout_ms)
{
	struct pollfd	 pfd;
	char		*nl;
	ssize_t		 n;
	long		 deadline = now_ms() + timeout_ms;

	for (;;) {
		if ((nl = memchr(cl->buf, '\n', cl->len)) != NULL) {
			size_t	l = nl - cl->buf;

			assert_true(l < outlen);
			memcpy(out, cl->buf, l);
			out[l] = '\0';
			cl->len -= l + 1;
			memmove(cl->buf, nl + 1, cl->len);
			return 1;
		}
		if (cl->eof)
			return -1;
		if (now_ms() >= deadline)
			return 0;
		pump();
		pfd.fd = cl->fd;
		pfd.events = POLLIN;
		if (poll(&pfd, 1, 5) <= 0)
			continue;
		assert_true(cl->len < sizeof(cl->buf));
		n = recv(cl->fd, cl->buf + cl->len, sizeof(cl->buf) - cl->len,
		    0);
		if (n == 0 || (n == -1 && errno == ECONNRESET))
			cl->eof = 1;
		else if (n > 0)
			cl->len += n;
	}
}

static json_t *
client_json(struct client *cl)
{
	char	 line[1 << 16];
	json_t	*j;

	assert_int_equal(client_line(cl, line, sizeof(line), 2000), 1);
	j = json_loads(line, 0, NULL);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "jsonrpc")),
	    "2.0");
	return j;
}

static json_t *
call(struct client *cl, const char *req)
{
	client_send(cl, req);
	return client_json(cl);
}

/* Asserts an error reply with this code whose id serialises to id. */
static void
assert_error(json_t *r, int code, const char *id)
{
	json_t	*err = json_object_get(r, "error");
	char	*s;

	assert_non_null(err);
	assert_null(json_object_get(r, "result"));
	assert_int_equal(json_integer_value(json_object_get(err, "code")),
	    code);
	assert_true(json_is_string(json_object_get(err, "message")));
	s = json_dumps(json_object_get(r, "id"), JSON_ENCODE_ANY);
	assert_string_equal(s, id);
	free(s);
	json_decref(r);
}

static void
expect_error(struct client *cl, const char *req, int code, const char *id)
{
	assert_error(call(cl, req), code, id);
}

/* The connection still serves: a good request gets its own answer. */
static void
assert_serving(struct client *cl)
{
	json_t	*r;

	r = call(cl, "{\"jsonrpc\":\"2.0\",\"method\":\"add\","
	    "\"params\":{\"a\":40,\"b\":2},\"id\":99}");
	assert_int_equal(json_integer_value(json_object_get(r, "id")), 99);
	assert_int_equal(json_integer_value(json_object_get(
	    json_object_get(r, "result"), "sum")), 42);
	json_decref(r);
}

static void
assert_closed(struct client *cl)
{
	char	line[256];
	int	r;

	/* Whatever error line comes first, then EOF. */
	while ((r = client_line(cl, line, sizeof(line), 3000)) == 1)
		;
	assert_int_equal(r, -1);
}

/* --- fixture ----------------------------------------------------------- */

static int
setup(void **state)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/veil-test-rpc-XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	snprintf(sockpath, sizeof(sockpath), "%s/veild.sock", tmpdir);
	if ((base = event_base_new()) == NULL)
		return -1;
	rpc_init(test_methods);
	control_set_idle(0);
	pending = NULL;
	cancelled = 0;
	return control_init(base, sockpath, (gid_t)-1);
}

static int
teardown(void **state)
{
	control_shutdown();
	rpc_shutdown();
	event_base_free(base);
	base = NULL;
	rmdir(tmpdir);
	return 0;
}

/* --- tests ------------------------------------------------------------- */

static void
test_socket_mode(void **state)
{
	struct stat	st;

	assert_int_equal(lstat(sockpath, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	/* No socket_group: the daemon's user only. */
	assert_int_equal(st.st_mode & 07777, 0600);
}

static void
test_replies(void **state)
{
	struct client	*cl = client_new();
	json_t		*r;

	r = call(cl, "{\"jsonrpc\":\"2.0\",\"method\":\"greet\","
	    "\"params\":{\"name\":\"Zo\u00eb\",\"loud\":true},\"id\":\"a1\"}");
	assert_string_equal(json_string_value(json_object_get(r, "id")), "a1");
	assert_string_equal(json_string_value(json_object_get(
	    json_object_get(r, "result"), "name")), "Zo\u00eb");
	assert_true(json_is_true(json_object_get(json_object_get(r, "result"),
	    "loud")));
	assert_null(json_object_get(r, "error"));
	json_decref(r);

	/* Ids come back as they were; params may be absent; {} for NULL. */
	r = call(cl, "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":null}");
	assert_true(json_is_null(json_object_get(r, "id")));
	assert_true(json_is_object(json_object_get(r, "result")));
	assert_int_equal(json_object_size(json_object_get(r, "result")), 0);
	json_decref(r);
	r = call(cl, "{\"id\":1.5,\"method\":\"echo\",\"jsonrpc\":\"2.0\"}");
	assert_true(json_is_real(json_object_get(r, "id")));
	json_decref(r);
	r = call(cl, "  {\"jsonrpc\":\"2.0\",\"method\":\"none\",\"id\":7}\r");
	assert_int_equal(json_integer_value(json_object_get(r, "id")), 7);
	assert_true(json_is_true(json_object_get(r, "result")));
	json_decref(r);

	expect_error(cl, "{\"jsonrpc\":\"2.0\",\"method\":\"fail\",\"id\":3}",
	    RPC_ERR_NOT_FOUND, "3");
	/* A handler that forgets to answer still produces one answer. */
	expect_error(cl, "{\"jsonrpc\":\"2.0\",\"method\":\"noanswer\","
	    "\"id\":4}", RPC_INTERNAL_ERROR, "4");
	assert_serving(cl);
	client_free(cl);
}

static void
test_notification_no_reply(void **state)
{
	struct client	*cl = client_new();
	char		 line[256];

	client_send(cl, "{\"jsonrpc\":\"2.0\",\"method\":\"echo\"}");
	client_send(cl, "{\"jsonrpc\":\"2.0\",\"method\":\"fail\"}");
	client_send(cl, "{\"jsonrpc\":\"2.0\",\"method\":\"nosuch\"}");
	client_send(cl, "{\"jsonrpc\":\"2.0\",\"method\":\"add\","
	    "\"params\":{\"a\":\"x\"}}");
	client_send(cl, "");	/* blank lines are ignored */
	assert_int_equal(client_line(cl, line, sizeof(line), 100), 0);
	assert_serving(cl);
	client_free(cl);
}

static void
test_parse_errors(void **state)
{
	static const char junk[] = "{\"jsonrpc\":\"2.0\",\0\"method\":\"x\"}\n";
	static const char badutf8[] = "{\"jsonrpc\":\"2.0\",\"method\":"
	    "\"\xff\xfe\",\"id\":1}\n";
	struct client	*cl = client_new();

	expect_error(cl, "{\"jsonrpc\":", RPC_PARSE_ERROR, "null");
	expect_error(cl, "hello", RPC_PARSE_ERROR, "null");
	expect_error(cl, "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":1}x",
	    RPC_PARSE_ERROR, "null");
	expect_error(cl, "{\"jsonrpc\":\"2.0\",\"jsonrpc\":\"2.0\","
	    "\"method\":\"echo\",\"id\":1}", RPC_PARSE_ERROR, "null");
	expect_error(cl, "{\"jsonrpc\":\"2.0\",\"method\":\"echo\","
	    "\"params\":{\"s\":\"a\\u0000b\"},\"id\":1}", RPC_PARSE_ERROR,
	    "null");
	assert_int_equal(client_write(cl, junk, sizeof(junk) - 1), 0);
	assert_error(client_json(cl), RPC_PARSE_ERROR, "null");
	assert_int_equal(client_write(cl, badutf8, sizeof(badutf8) - 1), 0);
	assert_error(client_json(cl), RPC_PARSE_ERROR, "null");
	assert_serving(cl);
	client_free(cl);
}

static void
test_invalid_requests(void **state)
{
	struct client	*cl = client_new();

	expect_error(cl, "42", RPC_INVALID_REQUEST, "null");
	expect_error(cl, "[{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":1}]",
	    RPC_INVALID_REQUEST, "null");
	expect_error(cl, "{\"jsonrpc\":\"1.0\",\"method\":\"echo\",\"id\":5}",
	    RPC_INVALID_REQUEST, "5");
	expect_error(cl, "{\"method\":\"echo\",\"id\":5}",
	    RPC_INVALID_REQUEST, "5");
	expect_error(cl, "{\"jsonrpc\":\"2.0\",\"id\":\"m\"}",
	    RPC_INVALID_REQUEST, "\"m\"");
	/* Invalid even without an id: answered with id null. */
	expect_error(cl, "{\"jsonrpc\":\"2.0\",\"method\":7}",
	    RPC_INVALID_REQUEST, "null");
	expect_error(cl, "{\"jsonrpc\":\"2.0\",\"method\":\"echo\","
	    "\"id\":{\"a\":1}}", RPC_INVALID_REQUEST, "null");
	expect_error(cl, "{\"jsonrpc\":\"2.0\",\"method\":\"echo\","
	    "\"params\":\"x\",\"id\":6}", RPC_INVALID_REQUEST, "6");
	expect_error(cl, "{\"jsonrpc\":\"2.0\",\"method\":\"echo\","
	    "\"param\":{},\"id\":6}", RPC_INVALID_REQUEST, "6");
	expect_error(cl, "{\"jsonrpc\":\"2.0\",\"method\":\"nosuch\",\"id\":8}",
	    RPC_METHOD_NOT_FOUND, "8");
	assert_serving(cl);
	client_free(cl);
}

static void
test_params(void **state)
{
	struct client	*cl = client_new();

	expect_error(cl, "{\"jsonrpc\":\"2.0\",\"method\":\"add\",\"id\":1}",
	    RPC_INVALID_PARAMS, "1");
	expect_error(cl, "{\"jsonrpc\":\"2.0\",\"method\":\"add\","
	    "\"params\":{\"a\":1.5},\"id\":2}", RPC_INVALID_PARAMS, "2");
	expect_error(cl, "{\"jsonrpc\":\"2.0\",\"method\":\"add\","
	    "\"params\":{\"a\":1,\"b\":\"2\"},\"id\":3}", RPC_INVALID_PARAMS,
	    "3");
	expect_error(cl, "{\"jsonrpc\":\"2.0\",\"method\":\"add\","
	    "\"params\":[1,2],\"id\":4}", RPC_INVALID_PARAMS, "4");
	expect_error(cl, "{\"jsonrpc\":\"2.0\",\"method\":\"greet\","
	    "\"params\":{\"name\":1},\"id\":5}", RPC_INVALID_PARAMS, "5");
	expect_error(cl, "{\"jsonrpc\":\"2.0\",\"method\":\"greet\","
	    "\"params\":{\"name\":\"x\",\"loud\":1},\"id\":6}",
	    RPC_INVALID_PARAMS, "6");
	expect_error(cl, "{\"jsonrpc\":\"2.0\",\"method\":\"none\","
	    "\"params\":{\"x\":1},\"id\":7}", RPC_INVALID_PARAMS, "7");
	/* A param the method does not declare: a typo is an error, not an
	 * absent param (m_add would otherwise answer with b = 0), and a
	 * declared name's prefix or extension does not pass either. */
	expect_error(cl, "{\"jsonrpc\":\"2.0\",\"method\":\"add\","
	    "\"params\":{\"a\":1,\"bb\":2},\"id\":10}", RPC_INVALID_PARAMS, "10");
	expect_error(cl, "{\"jsonrpc\":\"2.0\",\"method\":\"greet\","
	    "\"params\":{\"name\":\"x\",\"lou\":true},\"id\":11}",
	    RPC_INVALID_PARAMS, "11");
	expect_error(cl, "{\"jsonrpc\":\"2.0\",\"method\":\"subscribe\","
	    "\"params\":{\"event\":[\"message\"]},\"id\":12}",
	    RPC_INVALID_PARAMS, "12");
	/* null counts as absent: optional b is fine, required a is not. */
	expect_error(cl, "{\"jsonrpc\":\"2.0\",\"method\":\"add\","
	    "\"params\":{\"a\":null},\"id\":8}", RPC_INVALID_PARAMS, "8");
	client_send(cl, "{\"jsonrpc\":\"2.0\",\"method\":\"add\","
	    "\"params\":{\"a\":1,\"b\":null},\"id\":9}");
	json_decref(client_json(cl));
	assert_serving(cl);
	client_free(cl);
}

static void
test_deferred(void **state)
{
	struct client	*cl = client_new();
	char		 line[256];
	json_t		*r;

	client_send(cl, "{\"jsonrpc\":\"2.0\",\"method\":\"wait\",\"id\":1}");
	assert_non_null(pending);
	assert_int_equal(client_line(cl, line, sizeof(line), 50), 0);
	/* Other requests are served while the call waits. */
	assert_serving(cl);
	assert_int_equal(rpc_reply(pending, json_pack("{s:i}", "n", 3)), 0);
	r = client_json(cl);
	assert_int_equal(json_integer_value(json_object_get(r, "id")), 1);
	assert_int_equal(json_integer_value(json_object_get(
	    json_object_get(r, "result"), "n")), 3);
	json_decref(r);
	assert_int_equal(cancelled, 0);

	/* The client leaves first: the call is cancelled, not answered. */
	client_send(cl, "{\"jsonrpc\":\"2.0\",\"method\":\"wait\",\"id\":2}");
	assert_non_null(pending);
	close(cl->fd);
	cl->fd = -1;
	for (int i = 0; i < 100 && pending != NULL; i++) {
		pump();
		usleep(1000);
	}
	assert_null(pending);
	assert_int_equal(cancelled, 1);
	assert_int_equal(control_clients(), 0);
	client_free(cl);
}

static void
test_deferred_shutdown(void **state)
{
	struct client	*cl = client_new();

	client_send(cl, "{\"jsonrpc\":\"2.0\",\"method\":\"wait\",\"id\":1}");
	assert_non_null(pending);
	control_close_all();
	assert_null(pending);
	assert_int_equal(cancelled, 1);
	assert_closed(cl);
	client_free(cl);
}

static void
test_subscribe(void **state)
{
	struct client	*a = client_new(), *b = client_new(), *c = client_new();
	char		 line[256];
	json_t		*r;

	r = call(a, "{\"jsonrpc\":\"2.0\",\"method\":\"subscribe\","
	    "\"params\":{\"events\":[\"message\"]},\"id\":1}");
	assert_string_equal(json_string_value(json_array_get(json_object_get(
	    json_object_get(r, "result"), "events"), 0)), "message");
	json_decref(r);
	json_decref(call(b, "{\"jsonrpc\":\"2.0\",\"method\":\"subscribe\","
	    "\"params\":{\"events\":[\"delivery\"]},\"id\":1}"));
	expect_error(c, "{\"jsonrpc\":\"2.0\",\"method\":\"subscribe\","
	    "\"params\":{\"events\":[\"mesage\"]},\"id\":1}",
	    RPC_INVALID_PARAMS, "1");
	expect_error(c, "{\"jsonrpc\":\"2.0\",\"method\":\"subscribe\","
	    "\"params\":{\"events\":\"message\"},\"id\":1}",
	    RPC_INVALID_PARAMS, "1");

	assert_int_equal(rpc_notify("message", json_pack("{s:i}", "n", 1)), 1);
	r = client_json(a);
	assert_string_equal(json_string_value(json_object_get(r, "method")),
	    "message");
	assert_int_equal(json_integer_value(json_object_get(
	    json_object_get(r, "params"), "n")), 1);
	assert_null(json_object_get(r, "id"));
	json_decref(r);
	assert_int_equal(client_line(b, line, sizeof(line), 50), 0);
	assert_int_equal(client_line(c, line, sizeof(line), 50), 0);

	/* All events when no list is given; a handler may notify too. */
	json_decref(call(c, "{\"jsonrpc\":\"2.0\",\"method\":\"subscribe\","
	    "\"id\":2}"));
	assert_int_equal(rpc_notify("delivery", NULL), 2);
	json_decref(client_json(b));
	json_decref(client_json(c));
	client_send(b, "{\"jsonrpc\":\"2.0\",\"method\":\"notify\",\"id\":3}");
	r = client_json(a);
	assert_string_equal(json_string_value(json_object_get(
	    json_object_get(r, "params"), "from")), "handler");
	json_decref(r);
	json_decref(client_json(c));
	r = client_json(b);
	assert_int_equal(json_integer_value(json_object_get(r, "id")), 3);
	json_decref(r);

	json_decref(call(a, "{\"jsonrpc\":\"2.0\",\"method\":\"unsubscribe\","
	    "\"id\":4}"));
	assert_int_equal(rpc_notify("message", NULL), 1);
	json_decref(client_json(c));
	assert_int_equal(client_line(a, line, sizeof(line), 50), 0);
	client_free(a);
	client_free(b);
	client_free(c);
}

static void
test_too_large(void **state)
{
	struct client	*big = client_new(), *other = client_new();
	size_t		 n = CONTROL_LINE_MAX + 4096;
	char		*buf, line[256];
	json_t		*r;

	buf = malloc(n);
	assert_non_null(buf);
	memset(buf, ' ', n);
	buf[0] = '{';
	/* The daemon stops reading mid-way, so the write may fail. */
	(void)client_write(big, buf, n);
	free(buf);
	assert_int_equal(client_line(big, line, sizeof(line), 3000), 1);
	r = json_loads(line, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(json_object_get(r,
	    "error"), "message")), "request too large");
	assert_error(r, RPC_INVALID_REQUEST, "null");
	assert_closed(big);
	assert_serving(other);
	assert_int_equal(control_clients(), 1);
	client_free(big);
	client_free(other);
}

static void
test_slow_reader_dropped(void **state)
{
	struct client	*slow = client_new(), *other = client_new();
	char		*text;
	int		 i, sent = 0;

	json_decref(call(slow, "{\"jsonrpc\":\"2.0\",\"method\":\"subscribe\","
	    "\"id\":1}"));
	text = malloc(256 * 1024 + 1);
	assert_non_null(text);
	memset(text, 'x', 256 * 1024);
	text[256 * 1024] = '\0';
	/* slow never reads: the backlog grows until it is dropped, and
	 * rpc_notify never blocks on the way. */
	for (i = 0; i < 100 && control_clients() == 2; i++) {
		sent += rpc_notify("message", json_pack("{s:s}", "t", text));
		pump();
	}
	free(text);
	assert_int_equal(control_clients(), 1);
	assert_true(sent * 256 * 1024 >= CONTROL_OUTPUT_MAX);
	assert_serving(other);
	client_free(slow);
	client_free(other);
}

static void
test_stalled_half_line(void **state)
{
	struct client	*stalled, *sub, *other;
	char		 line[256];

	control_set_idle(1);
	stalled = client_new();
	sub = client_new();
	other = client_new();
	json_decref(call(sub, "{\"jsonrpc\":\"2.0\",\"method\":\"subscribe\","
	    "\"id\":1}"));
	assert_int_equal(client_write(stalled, "{\"jsonrpc\":\"2.0\",", 17), 0);
	assert_serving(other);
	/* Only the stalled client pays: closed after the idle time. */
	assert_int_equal(client_line(stalled, line, sizeof(line), 3000), -1);
	assert_int_equal(client_line(sub, line, sizeof(line), 100), 0);
	assert_int_equal(rpc_notify("message", NULL), 1);
	json_decref(client_json(sub));
	client_free(stalled);
	client_free(sub);
	client_free(other);
}

static void
test_eof_last_line(void **state)
{
	/* `printf '...' | socat - UNIX:...`: no LF, then a half-close. */
	static const char req[] = "{\"jsonrpc\":\"2.0\",\"method\":"
	    "\"echo\",\"params\":{\"k\":1},\"id\":1}";
	struct client	*cl = client_new();
	json_t		*r;

	assert_int_equal(client_write(cl, req, sizeof(req) - 1), 0);
	shutdown(cl->fd, SHUT_WR);
	r = client_json(cl);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(r,
	    "result"), "k")), 1);
	json_decref(r);
	assert_closed(cl);
	client_free(cl);
}

static void
test_too_many_clients(void **state)
{
	struct client	*cl[CONTROL_CLIENTS_MAX];
	char		 line[256];
	int		 i, fd;

	for (i = 0; i < CONTROL_CLIENTS_MAX; i++)
		cl[i] = client_new();
	assert_int_equal(control_clients(), CONTROL_CLIENTS_MAX);
	fd = sock_connect(sockpath);
	assert_true(fd >= 0);
	{
		struct client	extra = { .fd = fd };

		assert_int_equal(client_line(&extra, line, sizeof(line), 2000),
		    1);
		assert_non_null(strstr(line, "-32005"));
		assert_int_equal(client_line(&extra, line, sizeof(line), 2000),
		    -1);
	}
	close(fd);
	assert_serving(cl[0]);
	for (i = 0; i < CONTROL_CLIENTS_MAX; i++)
		client_free(cl[i]);
}

static void
test_garbage(void **state)
{
	struct client	*cl = client_new();
	uint64_t	 s = 0x9e3779b97f4a7c15ULL;
	char		 buf[200], line[1 << 12];
	size_t		 len, i;
	int		 k;

	/* Random lines (no LF inside) each get exactly one error line. */
	for (k = 0; k < 300; k++) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		len = 1 + s % (sizeof(buf) - 1);
		for (i = 0; i < len; i++) {
			s ^= s << 13;
			s ^= s >> 7;
			s ^= s << 17;
			/* Half the time JSON-ish bytes, to get past the lexer. */
			buf[i] = (k & 1) ? "{}[]\":,0a-e. \\u"[s % 16] : (char)s;
			if (buf[i] == '\n' || buf[i] == '\r' || buf[i] == ' ' ||
			    buf[i] == '\t')
				buf[i] = '{';
		}
		assert_int_equal(client_write(cl, buf, len), 0);
		assert_int_equal(client_write(cl, "\n", 1), 0);
		assert_int_equal(client_line(cl, line, sizeof(line), 2000), 1);
		assert_non_null(strstr(line, "\"error\""));
	}
	assert_serving(cl);
	client_free(cl);
}

static void
test_accept_emfile(void **state)
{
	struct client	*cl;
	struct rlimit	 old, low;
	long		 deadline;
	int		 fd;

	cl = calloc(1, sizeof(*cl));
	assert_non_null(cl);
	/* Descriptors run out: the lowest free one becomes the limit. */
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	cl->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
	assert_true(cl->fd >= 0);
	fd = dup(0);
	assert_true(fd >= 0);
	close(fd);
	low = old;
	low.rlim_cur = fd;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	{
		struct sockaddr_un	sun;

		memset(&sun, 0, sizeof(sun));
		sun.sun_family = AF_UNIX;
		memcpy(sun.sun_path, sockpath, strlen(sockpath) + 1);
		assert_int_equal(connect(cl->fd, (struct sockaddr *)&sun,
		    sizeof(sun)), 0);
	}
	pump();
	pump();
	assert_int_equal(control_clients(), 0);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
	/* The listener was paused (not spinning on the pending connection)
	 * and comes back by itself a second later. */
	pump();
	assert_int_equal(control_clients(), 0);
	deadline = now_ms() + 3000;
	while (control_clients() == 0 && now_ms() < deadline) {
		pump();
		usleep(5000);
	}
	assert_int_equal(control_clients(), 1);
	assert_serving(cl);
	client_free(cl);
}

/*
 * Peers with another uid come from tests/peer_probe: uid 65534 when we are
 * root, else our first subordinate uid in a user namespace (uidmap).  It
 * prints one line: "connect EACCES", "closed ...", "reply {...}", ...
 * Where neither works the tests below are listed as skipped (main()).
 */
static char probe_path[256];

static void
probe_find(void)
{
	const char *top = getenv("VEIL_TOP_BUILDDIR");

	snprintf(probe_path, sizeof(probe_path), "%s/tests/peer_probe",
	    top != NULL ? top : ".");
}

/* Runs peer_probe with args while the loop turns; its line in out. */
static int
probe_run(char *out, size_t outlen, const char *g, const char *G)
{
	char	*argv[8];
	int	 fds[2], argc = 0, status = -1, i;
	size_t	 len = 0;
	pid_t	 pid;
	ssize_t	 n;

	argv[argc++] = probe_path;
	if (g != NULL) {
		argv[argc++] = "-g";
		argv[argc++] = (char *)g;
	}
	if (G != NULL) {
		argv[argc++] = "-G";
		argv[argc++] = (char *)G;
	}
	argv[argc++] = sockpath;
	argv[argc] = NULL;
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(fds[1], STDOUT_FILENO);
		close(fds[0]);
		execv(probe_path, argv);
		_exit(127);
	}
	close(fds[1]);
	fcntl(fds[0], F_SETFL, O_NONBLOCK);
	for (i = 0; i < 10000; i++) {
		pump();
		while (len < outlen - 1 &&
		    (n = read(fds[0], out + len, outlen - 1 - len)) > 0)
			len += (size_t)n;
		if (waitpid(pid, &status, WNOHANG) == pid)
			break;
		usleep(1000);
	}
	while (len < outlen - 1 && (n = read(fds[0], out + len, outlen - 1 - len)) > 0)
		len += (size_t)n;
	close(fds[0]);
	out[len] = '\0';
	if (len > 0 && out[len - 1] == '\n')
		out[len - 1] = '\0';
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

static int
is_closed(const char *line)
{
	return strcmp(line, "closed EOF") == 0 ||
	    strcmp(line, "closed ECONNRESET") == 0 ||
	    strcmp(line, "closed EPIPE") == 0;
}

/* Another uid, not in the socket's group: the file mode stops it, and
 * with the mode opened up, SO_PEERCRED does. */
static void
test_peer_refused(void **state)
{
	char	line[512];

	/* The directory lets it through: the socket's own mode is tested. */
	assert_int_equal(chmod(tmpdir, 0711), 0);
	assert_int_equal(probe_run(line, sizeof(line), NULL, NULL), 0);
	print_message("# as installed (0600): %s\n", line);
	assert_string_equal(line, "connect EACCES");
	/* Let the file mode through so that SO_PEERCRED is what refuses. */
	assert_int_equal(chmod(sockpath, 0666), 0);
	assert_int_equal(probe_run(line, sizeof(line), NULL, NULL), 0);
	print_message("# mode 0666: %s\n", line);
	assert_true(is_closed(line));
	assert_int_equal(control_clients(), 0);
}

/* Without socket_group the daemon's own primary group is not let in (it
 * may be a shared one); with one, the socket is 0660 of that group and its
 * members, by primary group and by a supplementary one (`usermod -aG`),
 * are served (the table here has no "status", so the answer is -32601,
 * but an answer), others refused. */
static int
answered(const char *line)
{
	return strncmp(line, "reply {", 7) == 0 &&
	    strstr(line, "\"jsonrpc\":\"2.0\"") != NULL && strstr(line, "\"id\":1") != NULL;
}

static void
test_socket_group(void **state)
{
	struct stat	st;
	char		line[512], gid[32];

	snprintf(gid, sizeof(gid), "%u", (unsigned)getegid());
	assert_int_equal(chmod(tmpdir, 0711), 0);
	assert_int_equal(lstat(sockpath, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	/* made 0666, so that only veild's own check decides */
	assert_int_equal(chmod(sockpath, 0666), 0);
	assert_int_equal(probe_run(line, sizeof(line), gid, NULL), 0);
	print_message("# no socket_group, primary group %s: %s\n", gid, line);
	assert_true(is_closed(line));
	control_shutdown();
	assert_int_equal(control_init(base, sockpath, getegid()), 0);
	assert_int_equal(lstat(sockpath, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0660);
	assert_int_equal(st.st_gid, getegid());
	assert_int_equal(probe_run(line, sizeof(line), gid, NULL), 0);
	print_message("# socket_group, primary group %s: %s\n", gid, line);
	assert_true(answered(line));
	assert_int_equal(probe_run(line, sizeof(line), NULL, gid), 0);
	print_message("# socket_group, supplementary group %s: %s\n", gid, line);
	assert_true(answered(line));
	assert_int_equal(chmod(sockpath, 0666), 0);
	assert_int_equal(probe_run(line, sizeof(line), NULL, NULL), 0);
	print_message("# socket_group, not in it: %s\n", line);
	assert_true(is_closed(line));
}

/* Whether peer_probe can be another uid here; why not in why. */
static int
probe_available(char *why, size_t whylen)
{
	int	 fds[2], status = -1;
	ssize_t	 n;
	pid_t	 pid;

	probe_find();
	if (access(probe_path, X_OK) != 0) {
		snprintf(why, whylen, "%s not built", probe_path);
		return 0;
	}
	if (pipe(fds) == -1 || (pid = fork()) == -1) {
		snprintf(why, whylen, "fork");
		return 0;
	}
	if (pid == 0) {
		dup2(fds[1], STDERR_FILENO);
		dup2(open("/dev/null", O_WRONLY), STDOUT_FILENO);
		close(fds[0]);
		execl(probe_path, probe_path, "-n", (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	n = read(fds[0], why, whylen - 1);
	close(fds[0]);
	why[n > 0 ? n : 0] = '\0';
	why[strcspn(why, "\n")] = '\0';
	waitpid(pid, &status, 0);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 1;
	if (why[0] == '\0')
		snprintf(why, whylen, "peer_probe -n failed");
	return 0;
}

static void
test_init_paths(void **state)
{
	char			 path[160];
	struct sockaddr_un	 sun;
	int			 fd, lfd;

	/* The fixture's daemon is running: a second one must not steal it. */
	control_shutdown();
	assert_int_equal(access(sockpath, F_OK), -1);

	/* A live listener at the path. */
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, sockpath, strlen(sockpath) + 1);
	lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(listen(lfd, 1), 0);
	assert_int_equal(control_init(base, sockpath, (gid_t)-1), -1);
	assert_int_equal(errno, EADDRINUSE);
	/* Its listener gone, the same file is stale and is replaced. */
	close(lfd);
	assert_int_equal(control_init(base, sockpath, (gid_t)-1), 0);
	test_socket_mode(state);
	control_shutdown();

	/* Anything but a socket is left alone. */
	snprintf(path, sizeof(path), "%s/regular", tmpdir);
	fd = open(path, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(control_init(base, path, (gid_t)-1), -1);
	assert_int_equal(access(path, F_OK), 0);
	unlink(path);

	/* Too long for sun_path. */
	memset(path, 'a', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	assert_int_equal(control_init(base, path, (gid_t)-1), -1);

	/* Leave it running for the teardown. */
	assert_int_equal(control_init(base, sockpath, (gid_t)-1), 0);
}

int
main(void)
{
	static char why[512];
	const int other_uid = probe_available(why, sizeof(why));
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_socket_mode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replies, setup, teardown),
		cmocka_unit_test_setup_teardown(test_notification_no_reply,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_parse_errors, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_invalid_requests, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_params, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deferred, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deferred_shutdown, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_subscribe, setup, teardown),
		cmocka_unit_test_setup_teardown(test_too_large, setup, teardown),
		cmocka_unit_test_setup_teardown(test_slow_reader_dropped, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_stalled_half_line, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_eof_last_line, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_too_many_clients, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_garbage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_accept_emfile, setup,
		    teardown),
		other_uid ? (struct CMUnitTest)cmocka_unit_test_setup_teardown(
		    test_peer_refused, setup, teardown) :
		    TU_SKIPPED("test_peer_refused", why),
		other_uid ? (struct CMUnitTest)cmocka_unit_test_setup_teardown(
		    test_socket_group, setup, teardown) :
		    TU_SKIPPED("test_socket_group", why),
		cmocka_unit_test_setup_teardown(test_init_paths, setup,
		    teardown),
	};

	log_init(1, 0, "test_rpc");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
