/* veild control socket: the Unix listener, peer checks and per-client buffers. */
#define _GNU_SOURCE		/* struct ucred, accept4 */

#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "control.h"
#include "log.h"
#include "rpc.h"

#define CONTROL_READ_CHUNK	65536
#define CONTROL_FLUSH_SECS	5	/* grace for a closing client to read */
#define CONTROL_BACKOFF_SECS	1	/* accept paused after EMFILE/ENFILE */
#define CONTROL_CMSG_FDS	16	/* room for descriptors in one read */

struct ctl_conn {
	TAILQ_ENTRY(ctl_conn)	 entry;
	int			 fd;
	uid_t			 uid;
	gid_t			 gid;
	pid_t			 pid;
	struct event		*ev_read;
	struct event		*ev_write;
	struct event		*ev_timer;
	struct evbuffer		*in;
	struct evbuffer		*out;
	struct rpc_conn		*rpc;
	int			 fds[CONTROL_FDS_MAX];	/* passed, not taken yet */
	int			 nfds;
	int			 closing;	/* flush, then close */
	int			 dead;		/* waiting for the reaper */
};
TAILQ_HEAD(ctl_conns, ctl_conn);

static struct {
	struct event_base	*base;
	int			 fd;
	char			*path;
	gid_t			 gid;		/* the socket_group, or (gid_t)-1 */
	struct event		*ev_accept;
	struct event		*ev_resume;
	struct event		*ev_reap;
	struct ctl_conns	 conns;
	struct ctl_conns	 dead;
	int			 nconns;
	int			 idle_secs;
} ctl = {
	.fd = -1,
	.conns = TAILQ_HEAD_INITIALIZER(ctl.conns),
	.dead = TAILQ_HEAD_INITIALIZER(ctl.dead),
	.idle_secs = CONTROL_IDLE_SECS,
};

static void	conn_kill(struct ctl_conn *);

static void
timer_set(struct event *ev, int secs)
{
	struct timeval	tv = { secs, 0 };

	evtimer_add(ev, &tv);
}

/* Frees dropped clients outside of any callback that may still use them
 * (rpc_notify walks the list, a handler runs on its own connection). */
static void
control_reap(evutil_socket_t fd, short events, void *arg)
{
	struct ctl_conn	*c;

	while ((c = TAILQ_FIRST(&ctl.dead)) != NULL) {
		TAILQ_REMOVE(&ctl.dead, c, entry);
		/* May run cancel callbacks that notify others, which may drop
		 * more clients onto ctl.dead: the loop picks them up. */
		rpc_conn_free(c->rpc);
		event_free(c->ev_read);
		event_free(c->ev_write);
		event_free(c->ev_timer);
		evbuffer_free(c->in);
		evbuffer_free(c->out);
		free(c);
	}
}

static void
conn_kill(struct ctl_conn *c)
{
	if (c->dead)
		return;
	c->dead = 1;
	log_debug("control: client pid %ld disconnected", (long)c->pid);
	event_del(c->ev_read);
	event_del(c->ev_write);
	event_del(c->ev_timer);
	close(c->fd);
	c->fd = -1;
	while (c->nfds > 0)
		close(c->fds[--c->nfds]);
	TAILQ_REMOVE(&ctl.conns, c, entry);
	TAILQ_INSERT_TAIL(&ctl.dead, c, entry);
	ctl.nconns--;
	event_active(ctl.ev_reap, EV_TIMEOUT, 0);
}

/* Closes a client that has nothing more to say or hear. */
static void
conn_check_done(struct ctl_conn *c)
{
	if (c->dead || evbuffer_get_length(c->out) != 0)
		return;
	if (c->closing)
		conn_kill(c);
}

/* Writes what the socket takes now; the rest waits for EV_WRITE. */
static int
conn_flush(struct ctl_conn *c)
{
	unsigned char	*p;
	size_t		 chunk;
	ssize_t		 n;

	while ((chunk = evbuffer_get_contiguous_space(c->out)) > 0) {
		p = evbuffer_pullup(c->out, chunk);
		/* MSG_NOSIGNAL: a vanished client must not SIGPIPE us. */
		n = send(c->fd, p, chunk, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			log_debug("control: client pid %ld: send: %s",
			    (long)c->pid, strerror(errno));
			conn_kill(c);
			return -1;
		}
		evbuffer_drain(c->out, n);
	}
	if (evbuffer_get_length(c->out) > 0)
		event_add(c->ev_write, NULL);
	else
		event_del(c->ev_write);
	return 0;
}

int
control_line_begin(struct ctl_conn *c)
{
	if (c->dead || c->closing)
		return -1;
	if (evbuffer_get_length(c->out) > CONTROL_OUTPUT_MAX) {
		log_warnx("control: client uid %u pid %ld does not read its "
		    "replies, dropped", (unsigned)c->uid, (long)c->pid);
		conn_kill(c);
		return -1;
	}
	return 0;
}

int
control_line_add(struct ctl_conn *c, const char *buf, size_t len)
{
	if (c->dead)
		return -1;
	if (evbuffer_add(c->out, buf, len) == -1) {
		log_warnx("control: out of memory, client dropped");
		conn_kill(c);
		return -1;
	}
	return 0;
}

int
control_line_end(struct ctl_conn *c)
{
	if (control_line_add(c, "\n", 1) == -1)
		return -1;
	if (conn_flush(c) == -1)
		return -1;
	conn_check_done(c);
	return 0;
}

void
control_line_abort(struct ctl_conn *c)
{
	/* A line cut short cannot be taken back from the stream. */
	if (c->dead)
		return;
	log_warnx("control: a reply to client pid %ld could not be written, "
	    "dropped", (long)c->pid);
	conn_kill(c);
}

int
control_send(struct ctl_conn *c, const char *buf, size_t len)
{
	if (control_line_begin(c) == -1 || control_line_add(c, buf, len) == -1)
		return -1;
	return control_line_end(c);
}

void
control_close_after_flush(struct ctl_conn *c)
{
	if (c->dead || c->closing)
		return;
	c->closing = 1;
	event_del(c->ev_read);
	timer_set(c->ev_timer, CONTROL_FLUSH_SECS);
	conn_check_done(c);
}

static void
conn_too_large(struct ctl_conn *c)
{
	log_warnx("control: client uid %u pid %ld sent a request over %d "
	    "bytes, closing", (unsigned)c->uid, (long)c->pid,
	    CONTROL_LINE_MAX);
	rpc_conn_error(c, RPC_INVALID_REQUEST, "request too large");
	control_close_after_flush(c);
}

static void
conn_lines(struct ctl_conn *c)
{
	char	*line;
	size_t	 len;

	while (!c->dead && !c->closing) {
		line = evbuffer_readln(c->in, &len, EVBUFFER_EOL_LF);
		if (line == NULL)
			break;
		if (len > CONTROL_LINE_MAX) {
			free(line);
			conn_too_large(c);
			return;
		}
		timer_set(c->ev_timer, ctl.idle_secs);
		rpc_conn_input(c->rpc, line, len);
		free(line);
	}
	if (!c->dead && !c->closing &&
	    evbuffer_get_length(c->in) > CONTROL_LINE_MAX)
		conn_too_large(c);
}

/*
 * Reads like evbuffer_read, and also takes the descriptors a client
 * passes (SCM_RIGHTS): the kernel hands them over with the first bytes of
 * the write they came with, so they are here before the request line that
 * names them is complete.  Up to CONTROL_FDS_MAX wait for a request to
 * take them (control_take_fd); more are closed at once, the rest when the
 * client goes.
 */
static int
conn_recv(struct ctl_conn *c, int fd)
{
	static char	 buf[CONTROL_READ_CHUNK];
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(CONTROL_CMSG_FDS * sizeof(int))];
	} cm;
	struct iovec	 iov = { buf, sizeof(buf) };
	struct msghdr	 msg;
	struct cmsghdr	*h;
	ssize_t		 n;

	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cm.buf;
	msg.msg_controllen = sizeof(cm.buf);
	if ((n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT)) == -1)
		return -1;
	for (h = CMSG_FIRSTHDR(&msg); h != NULL; h = CMSG_NXTHDR(&msg, h)) {
		size_t	 k, nf;
		int	 pfd;

		if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
			continue;
		nf = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (k = 0; k < nf; k++) {
			memcpy(&pfd, CMSG_DATA(h) + k * sizeof(int), sizeof(int));
			if (c->nfds < CONTROL_FDS_MAX)
				c->fds[c->nfds++] = pfd;
			else
				close(pfd);
		}
	}
	if (n > 0 && evbuffer_add(c->in, buf, (size_t)n) == -1) {
		errno = ENOMEM;
		return -1;
	}
	return (int)n;
}

int
control_take_fd(struct ctl_conn *c)
{
	int	fd;

	if (c == NULL || c->nfds == 0)
		return -1;
	fd = c->fds[0];
	memmove(c->fds, c->fds + 1, (size_t)(c->nfds - 1) * sizeof(int));
	c->nfds--;
	return fd;
}

void
control_peer(const struct ctl_conn *c, uid_t *uid, gid_t *gid)
{
	*uid = c->uid;
	*gid = c->gid;
}

static void
conn_read(evutil_socket_t fd, short events, void *arg)
{
	struct ctl_conn	*c = arg;
	char		*line;
	size_t		 len;
	int		 n;

	n = conn_recv(c, fd);
	if (n == -1) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		log_debug("control: client pid %ld: read: %s", (long)c->pid,
		    strerror(errno));
		conn_kill(c);
		return;
	}
	if (n > 0) {
		conn_lines(c);
		return;
	}

	/* EOF: `printf '{...}' | socat - UNIX:...` ends without a LF and
	 * half-closes; its last line is still a request to answer.  A full
	 * close looks the same from here, so EOF ends the session: answers
	 * already made are flushed, deferred calls and the subscription are
	 * cancelled.  Otherwise a subscriber that went away would hold its
	 * slot until the next notification failed. */
	event_del(c->ev_read);
	len = evbuffer_get_length(c->in);
	if (len > 0 && len <= CONTROL_LINE_MAX) {
		if ((line = malloc(len)) != NULL) {
			evbuffer_remove(c->in, line, len);
			rpc_conn_input(c->rpc, line, len);
			free(line);
		}
	}
	evbuffer_drain(c->in, evbuffer_get_length(c->in));
	control_close_after_flush(c);
}

static void
conn_write(evutil_socket_t fd, short events, void *arg)
{
	struct ctl_conn	*c = arg;

	if (conn_flush(c) == 0)
		conn_check_done(c);
}

static void
conn_timeout(evutil_socket_t fd, short events, void *arg)
{
	struct ctl_conn	*c = arg;

	if (c->closing) {
		conn_kill(c);
		return;
	}
	if (rpc_conn_busy(c->rpc)) {
		timer_set(c->ev_timer, ctl.idle_secs);
		return;
	}
	log_debug("control: client pid %ld idle for %d s, closing",
	    (long)c->pid, ctl.idle_secs);
	conn_kill(c);
}

static int
peer_allowed(int fd, const struct ucred *cr)
{
	gid_t groups[256];
	socklen_t len = sizeof(groups);

	if (cr->uid == 0 || cr->uid == geteuid())
		return 1;
	/* Without a socket_group nobody else: not even members of the
	 * daemon's primary group (often a shared one such as "users"). */
	if (ctl.gid == (gid_t)-1)
		return 0;
	if (cr->gid == ctl.gid)
		return 1;
	/* Members of the socket's group by supplementary membership (the
	 * usual `usermod -aG veil alice`): SO_PEERGROUPS gives the peer's
	 * groups as they were at connect(), without a lookup. */
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == -1)
		return 0;
	for (size_t i = 0; i < len / sizeof(groups[0]); i++)
		if (groups[i] == ctl.gid)
			return 1;
	return 0;
}

static void
refuse(int fd, const char *line)
{
	/* Best effort, never waits: the client learns why it was closed. */
	(void)send(fd, line, strlen(line), MSG_NOSIGNAL | MSG_DONTWAIT);
	close(fd);
}

static void
control_accept(evutil_socket_t lfd, short events, void *arg)
{
	struct ctl_conn	*c;
	struct ucred	 cr;
	socklen_t	 crlen = sizeof(cr);
	int		 fd;

	fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd == -1) {
		if (errno == EMFILE || errno == ENFILE) {
			/* Out of descriptors: the pending connection would
			 * wake us in a busy loop.  Pause instead. */
			log_warn("control: accept");
			event_del(ctl.ev_accept);
			timer_set(ctl.ev_resume, CONTROL_BACKOFF_SECS);
		} else if (errno != EAGAIN && errno != EWOULDBLOCK &&
		    errno != EINTR && errno != ECONNABORTED)
			log_warn("control: accept");
		return;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) == -1) {
		log_warn("control: SO_PEERCRED");
		close(fd);
		return;
	}
	if (!peer_allowed(fd, &cr)) {
		log_warnx("control: refused uid %u gid %u pid %ld",
		    (unsigned)cr.uid, (unsigned)cr.gid, (long)cr.pid);
		close(fd);
		return;
	}
	if (ctl.nconns >= CONTROL_CLIENTS_MAX) {
		log_warnx("control: too many clients, refused pid %ld",
		    (long)cr.pid);
		refuse(fd, "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32005,"
		    "\"message\":\"too many clients\"},\"id\":null}\n");
		return;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL)
		goto fail;
	c->fd = fd;
	c->uid = cr.uid;
	c->gid = cr.gid;
	c->pid = cr.pid;
	c->in = evbuffer_new();
	c->out = evbuffer_new();
	c->ev_read = event_new(ctl.base, fd, EV_READ | EV_PERSIST, conn_read, c);
	c->ev_write = event_new(ctl.base, fd, EV_WRITE | EV_PERSIST,
	    conn_write, c);
	c->ev_timer = evtimer_new(ctl.base, conn_timeout, c);
	if (c->in == NULL || c->out == NULL || c->ev_read == NULL ||
	    c->ev_write == NULL || c->ev_timer == NULL ||
	    (c->rpc = rpc_conn_new(c)) == NULL)
		goto fail;
	if (event_add(c->ev_read, NULL) == -1)
		goto fail;
	timer_set(c->ev_timer, ctl.idle_secs);
	TAILQ_INSERT_TAIL(&ctl.conns, c, entry);
	ctl.nconns++;
	log_debug("control: client uid %u pid %ld connected",
	    (unsigned)cr.uid, (long)cr.pid);
	return;
fail:
	log_warnx("control: out of memory, client refused");
	if (c != NULL) {
		rpc_conn_free(c->rpc);
		if (c->ev_read)
			event_free(c->ev_read);
		if (c->ev_write)
			event_free(c->ev_write);
		if (c->ev_timer)
			event_free(c->ev_timer);
		if (c->in)
			evbuffer_free(c->in);
		if (c->out)
			evbuffer_free(c->out);
		free(c);
	}
	close(fd);
}

static void
control_resume(evutil_socket_t fd, short events, void *arg)
{
	event_add(ctl.ev_accept, NULL);
}

/* Refuses to steal the socket of a daemon that is still running. */
static int
remove_stale(const char *path, const struct sockaddr_un *sun)
{
	struct stat	st;
	int		fd, r;

	if (lstat(path, &st) == -1)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISSOCK(st.st_mode)) {
		log_warnx("control: %s exists and is not a socket", path);
		errno = EEXIST;
		return -1;
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) == -1)
		return -1;
	/* Refused: stale.  Accepted, or a full backlog (EAGAIN): alive. */
	r = connect(fd, (const struct sockaddr *)sun, sizeof(*sun));
	if (r == -1 && errno == EAGAIN)
		r = 0;
	close(fd);
	if (r == 0) {
		log_warnx("control: %s is in use by a running daemon", path);
		errno = EADDRINUSE;
		return -1;
	}
	if (unlink(path) == -1 && errno != ENOENT)
		return -1;
	return 0;
}

int
control_init(struct event_base *base, const char *path, gid_t group)
{
	struct sockaddr_un	 sun;
	struct stat		 st;
	mode_t			 old;
	int			 fd = -1, saved;

	if (ctl.fd != -1) {
		errno = EBUSY;
		return -1;
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		log_warnx("control: socket path too long: %s", path);
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);

	if (remove_stale(path, &sun) == -1) {
		saved = errno;
		if (saved != EEXIST && saved != EADDRINUSE)
			log_warn("control: %s", path);
		errno = saved;
		return -1;
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) == -1) {
		log_warn("control: socket");
		return -1;
	}
	/* The socket is born 0600: no window where others could connect.
	 * Only once it belongs to socket_group does the group get in. */
	old = umask(S_IXUSR | S_IRWXG | S_IRWXO);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		saved = errno;
		umask(old);
		log_warn("control: bind %s", path);
		goto fail;
	}
	umask(old);
	/* No chown when the socket already has the group (veild's own, as
	 * under the shipped systemd unit, whose filter forbids chown). */
	if (group != (gid_t)-1 && (stat(path, &st) == -1 || st.st_gid != group) &&
	    chown(path, (uid_t)-1, group) == -1) {
		saved = errno;
		log_warn("control: chown %s to group %u", path, (unsigned)group);
		goto fail_unlink;
	}
	if (chmod(path, group != (gid_t)-1 ? 0660 : 0600) == -1 ||
	    stat(path, &st) == -1) {
		saved = errno;
		log_warn("control: chmod %s", path);
		goto fail_unlink;
	}
	ctl.gid = group != (gid_t)-1 ? st.st_gid : (gid_t)-1;
	if (listen(fd, CONTROL_CLIENTS_MAX) == -1) {
		saved = errno;
		log_warn("control: listen %s", path);
		goto fail_unlink;
	}
	ctl.base = base;
	ctl.ev_accept = event_new(base, fd, EV_READ | EV_PERSIST,
	    control_accept, NULL);
	ctl.ev_resume = evtimer_new(base, control_resume, NULL);
	ctl.ev_reap = event_new(base, -1, 0, control_reap, NULL);
	ctl.path = strdup(path);
	if (ctl.ev_accept == NULL || ctl.ev_resume == NULL ||
	    ctl.ev_reap == NULL || ctl.path == NULL ||
	    event_add(ctl.ev_accept, NULL) == -1) {
		saved = ENOMEM;
		log_warnx("control: out of memory");
		if (ctl.ev_accept)
			event_free(ctl.ev_accept);
		if (ctl.ev_resume)
			event_free(ctl.ev_resume);
		if (ctl.ev_reap)
			event_free(ctl.ev_reap);
		free(ctl.path);
		ctl.ev_accept = ctl.ev_resume = ctl.ev_reap = NULL;
		ctl.path = NULL;
		goto fail_unlink;
	}
	ctl.fd = fd;
	log_debug("control: listening on %s", path);
	return 0;

fail_unlink:
	unlink(path);
fail:
	close(fd);
	errno = saved;
	return -1;
}

void
control_close_all(void)
{
	while (!TAILQ_EMPTY(&ctl.conns))
		conn_kill(TAILQ_FIRST(&ctl.conns));
	control_reap(-1, 0, NULL);
}

void
control_shutdown(void)
{
	if (ctl.fd == -1)
		return;
	event_free(ctl.ev_accept);
	event_free(ctl.ev_resume);
	close(ctl.fd);
	ctl.fd = -1;
	control_close_all();
	event_free(ctl.ev_reap);
	ctl.ev_accept = ctl.ev_resume = ctl.ev_reap = NULL;
	if (unlink(ctl.path) == -1 && errno != ENOENT)
		log_warn("control: unlink %s", ctl.path);
	free(ctl.path);
	ctl.path = NULL;
}

int
control_clients(void)
{
	return ctl.nconns;
}

void
control_set_idle(int secs)
{
	ctl.idle_secs = secs > 0 ? secs : CONTROL_IDLE_SECS;
}
