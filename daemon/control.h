/* veild control socket: the Unix listener, peer checks and per-client buffers. */
#ifndef VEILD_CONTROL_H
#define VEILD_CONTROL_H

#include <stddef.h>
#include <sys/types.h>

struct event_base;
struct ctl_conn;		/* one accepted client; opaque */

/* A request line, LF excluded: room for message.send with a text of
 * VEIL_MESSAGE_MAX (4 MiB) plus JSON escapes, so that an oversized text
 * gets -32004 (too large) rather than a dropped connection. */
#define CONTROL_LINE_MAX	(8 * 1024 * 1024)
#define CONTROL_OUTPUT_MAX	(8 * 1024 * 1024)	/* unread replies before a drop */
#define CONTROL_CLIENTS_MAX	64
#define CONTROL_IDLE_SECS	60	/* no complete line, not subscribed */

/*
 * Creates the socket at path (a stale socket there is removed; any other
 * kind of file is an error) and starts accepting on base: mode 0660 and
 * owned by group, or mode 0600 when group is (gid_t)-1.  Who may talk to
 * it: uid 0, the daemon's own uid, and with a group its members (primary
 * gid from SO_PEERCRED, supplementary groups from SO_PEERGROUPS, both as
 * they were at connect()).  The mode keeps everybody else from connect()
 * in the first place; this check is the second lock.
 * Returns 0, or -1 with errno set (and a log line).
 */
int	control_init(struct event_base *base, const char *path, gid_t group);
/* Drops every client (cancelling their deferred calls) but keeps listening. */
void	control_close_all(void);
/* Stops listening, drops every client, unlinks the socket. */
void	control_shutdown(void);
/* Number of connected clients. */
int	control_clients(void);
/* Idle timeout in seconds (default CONTROL_IDLE_SECS); for tests. */
void	control_set_idle(int secs);

/* --- for rpc.c ---------------------------------------------------------- */
/* Queues buf followed by a LF.  Never blocks: a client whose backlog is
 * already over CONTROL_OUTPUT_MAX is dropped instead.  Returns 0, or -1 if
 * the client is gone (being dropped). */
int	control_send(struct ctl_conn *cc, const char *buf, size_t len);
/* The same in pieces, so that a large reply is written into the client's
 * buffer as it is serialised, never held twice: begin (the backlog check),
 * any number of add, then end (the LF, and the flush) or abort (a line
 * that cannot be finished: the client is dropped).  Each returns 0, or -1
 * once the client is gone. */
int	control_line_begin(struct ctl_conn *cc);
int	control_line_add(struct ctl_conn *cc, const char *buf, size_t len);
int	control_line_end(struct ctl_conn *cc);
void	control_line_abort(struct ctl_conn *cc);
/* Stops reading, flushes what is queued (for at most a few seconds), closes. */
void	control_close_after_flush(struct ctl_conn *cc);
/* The oldest descriptor the client passed (SCM_RIGHTS) and no request took
 * yet, now the caller's; -1 if none. */
#define CONTROL_FDS_MAX	4
int	control_take_fd(struct ctl_conn *cc);
/* The client's credentials at connect (SO_PEERCRED). */
void	control_peer(const struct ctl_conn *cc, uid_t *uid, gid_t *gid);

#endif
