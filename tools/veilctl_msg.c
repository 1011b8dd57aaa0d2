/* veilctl_msg.c: veilctl send and recv. */
#define _GNU_SOURCE

#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "veilctl.h"

#define TEXT_MAX	(1024 * 1024)		/* a message read from stdin */
#define SEND_RETRY_S	30		/* message.send retried this long */
#define KEY_BYTES	16		/* a generated send key, random */
#define WAIT_MAX	3600		/* veild's longest message.receive wait */

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

int
cmd_send(int argc, char **argv)
{
	json_t		*params, *result, *text;
	const char	*id, *given = NULL, *why = NULL;
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
	while ((result = rpc_conn("message.send", params, &why)) == NULL) {
		/* No veild to talk to at all: nothing was sent. */
		if (!told && strncmp(why, "cannot connect", 14) == 0)
			die("%s", why);
		if (time(NULL) >= deadline)
			die("%s; gave up after %d s: the message may or may not "
			    "be queued; `veilctl send --key %s ...` with the same "
			    "name and text finds out without sending it twice",
			    why, SEND_RETRY_S, key);
		if (!told++)
			fprintf(stderr, "veilctl: %s; trying again for %d s\n",
			    why, SEND_RETRY_S);
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
 * recv takes messages in two steps: message.receive hands them out,
 * message.ack takes them once they are printed (and their --exec command
 * ran), so a veilctl that dies first leaves them for the next recv.  A
 * veild without message.ack (-32601) takes them as it hands them out.
 */
static int	 ack_unknown;

static void
ack(json_t *msgs)
{
	json_t	*ids, *m, *msg;
	size_t	 i;
	int	 code;

	if (ack_unknown || json_array_size(msgs) == 0)
		return;
	if ((ids = json_array()) == NULL)
		die("out of memory");
	json_array_foreach(msgs, i, m)
		if (json_is_string(json_object_get(m, "id")))
			json_array_append(ids, json_object_get(m, "id"));
	m = rpc_try("message.ack", json_pack("{s:o}", "ids", ids), -1, &code, &msg);
	if (m == NULL && code == -32601)
		ack_unknown = 1;
	else if (m == NULL)
		die("message.ack: %s", json_string_value(msg) ?
		    json_string_value(msg) : "failed");
	json_decref(m);
	json_decref(msg);
}

/* --exec: the program and its arguments, never a shell. */
static char	**exec_argv;

static void
setenv_json(const char *name, json_t *v)
{
	char	buf[64];

	if (json_is_string(v))
		setenv(name, json_string_value(v), 1);
	else if (json_is_integer(v)) {
		snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
		setenv(name, buf, 1);
	} else
		unsetenv(name);
}

/*
 * Runs the --exec program for message m: the sender and the text (or the
 * file) in its environment, the whole text on its standard input, and it
 * runs to its end before the next message.  Environment strings are at
 * most 128 KiB each (Linux), so VEIL_TEXT holds at most TEXT_ENV_MAX
 * bytes, VEIL_TEXT_TRUNCATED=1 saying it is cut.
 */
#define TEXT_ENV_MAX	(64 * 1024)

static void
run_exec(json_t *m)
{
	json_t		*file = json_object_get(m, "file");
	const char	*text = json_string_value(json_object_get(m, "text"));
	size_t		 len = text != NULL ? strlen(text) : 0;
	int		 in[2], rep[2], status, e;
	ssize_t		 n;
	pid_t		 pid;

	if (pipe2(in, O_CLOEXEC) == -1 || pipe2(rep, O_CLOEXEC) == -1)
		die("pipe: %s", strerror(errno));
	fflush(stdout);
	if ((pid = fork()) == -1)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		setenv_json("VEIL_FROM", json_object_get(m, "from"));
		setenv_json("VEIL_ID", json_object_get(m, "id"));
		setenv_json("VEIL_RECEIVED", json_object_get(m, "received"));
		setenv("VEIL_TYPE", file != NULL ? "file" : "text", 1);
		unsetenv("VEIL_TEXT_TRUNCATED");
		if (text != NULL && len > TEXT_ENV_MAX) {
			char	*cut = strndup(text, TEXT_ENV_MAX);

			/* At a character boundary. */
			for (size_t k = TEXT_ENV_MAX; cut != NULL && k > 0 &&
			    ((unsigned char)cut[k] & 0xc0) == 0x80; k--)
				cut[k] = '\0';
			if (cut != NULL)
				setenv("VEIL_TEXT", cut, 1);
			setenv("VEIL_TEXT_TRUNCATED", "1", 1);
		} else
			setenv_json("VEIL_TEXT", json_object_get(m, "text"));
		setenv_json("VEIL_FILE", json_object_get(file, "path"));
		setenv_json("VEIL_FILE_NAME", json_object_get(file, "name"));
		setenv_json("VEIL_FILE_SIZE", json_object_get(file, "size"));
		if (dup2(in[0], STDIN_FILENO) == -1)
			_exit(127);
		execvp(exec_argv[0], exec_argv);
		e = errno;
		(void)!write(rep[1], &e, sizeof e);
		_exit(127);
	}
	close(in[0]);
	close(rep[1]);
	/* The text on its standard input; a program that does not read it
	 * closes the pipe, which is no error. */
	for (size_t off = 0; off < len; off += (size_t)n)
		if ((n = write(in[1], text + off, len - off)) <= 0) {
			if (n == -1 && errno == EINTR) {
				n = 0;
				continue;
			}
			break;
		}
	close(in[1]);
	n = read(rep[0], &e, sizeof e);
	close(rep[0]);
	while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
		;
	if (n == (ssize_t)sizeof e)
		die("--exec %s: %s (the messages stay for the next recv)",
		    exec_argv[0], strerror(e));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fprintf(stderr, "veilctl: --exec %s: %s %d\n", exec_argv[0],
		    WIFEXITED(status) ? "exit status" : "killed by signal",
		    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
}

/* One message.receive: printed (--json: the reply as it is, or with
 * --follow one message a line), run through --exec, then acknowledged.
 * Returns how many came. */
static size_t
receive_batch(long wait, int follow, int peek, int quiet_empty)
{
	json_t	*params = NULL, *result, *msgs, *m;
	size_t	 i, n;

	if (wait > 0)
		params = json_pack("{s:i}", "wait", (int)wait);
	result = rpc("message.receive", params);
	msgs = json_object_get(result, "messages");
	if (!json_is_array(msgs))
		die("invalid reply from veild: no messages");
	n = json_array_size(msgs);
	if (json_out && !follow) {
		if (n > 0 || !quiet_empty)
			print_json(result);
	} else
		json_array_foreach(msgs, i, m)
			print_message(m);
	if (fflush(stdout) == EOF || ferror(stdout))
		die("standard output: %s: the messages stay for the next recv",
		    strerror(errno));
	if (exec_argv != NULL)
		json_array_foreach(msgs, i, m)
			run_exec(m);
	if (!peek)
		ack(msgs);
	json_decref(result);
	return n;
}

int
cmd_recv(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "follow", no_argument, NULL, 'f' },
		{ "wait", required_argument, NULL, 'w' },
		{ "exec", required_argument, NULL, 'x' },
		{ "peek", no_argument, NULL, 'p' }, COMMON_LONGOPTS,
		{ NULL, 0, NULL, 0 }
	};
	const char	*prog = NULL;
	char		*end;
	long		 wait = -1;
	int		 c, follow = 0, peek = 0;

	while ((c = next_opt(argc, argv, "+fpw:x:h", longopts)) != -1) {
		if (c == 'f')
			follow = 1;
		else if (c == 'p')
			peek = 1;
		else if (c == 'x')
			prog = optarg;
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
	/* --exec PROG [-- ARG ...]: what follows "--" is PROG's. */
	if (optind < argc && prog != NULL && strcmp(argv[optind - 1], "--") == 0) {
		exec_argv = calloc((size_t)(argc - optind) + 2, sizeof *exec_argv);
		if (exec_argv == NULL)
			die("out of memory");
		for (int i = optind; i < argc; i++)
			exec_argv[i - optind + 1] = argv[i];
		optind = argc;
	} else if (prog != NULL && (exec_argv = calloc(2, sizeof *exec_argv)) == NULL)
		die("out of memory");
	if (exec_argv != NULL)
		exec_argv[0] = (char *)prog;
	if (optind != argc || (follow && wait >= 0) || (follow && peek))
		usage();
	signal(SIGPIPE, SIG_IGN);	/* an --exec program that does not read */

	if (!follow) {
		/* Batch after batch until none is left (a reply holds what
		 * fits veild's byte budget); --peek leaves them, so it shows
		 * one. */
		if (receive_batch(wait, 0, peek, 0) > 0 && !peek)
			while (receive_batch(0, 0, 0, 1) > 0)
				;
		return 0;
	}
	/* A long poll that ran out with nothing new starts again. */
	for (;;)
		receive_batch(WAIT_MAX, 1, 0, 1);
}
