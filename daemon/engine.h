/* engine.h: the daemon's operations in C types, for methods.c; no JSON and no RPC codes cross it. */
#ifndef VEILD_ENGINE_H
#define VEILD_ENGINE_H

#include <sys/types.h>

#include <stddef.h>
#include <stdint.h>

#include "veil.h"

struct event_base;
struct store;
struct veild_config;

/* Contact states as stored; the values are libveil's agreement states. */
enum contact_state {
	CONTACT_REQUESTED = VEIL_AG_REQUESTED,	/* we sent a REQUEST, awaiting ACCEPT */
	CONTACT_PENDING = VEIL_AG_PENDING,	/* they asked, awaiting our owner's consent */
	CONTACT_ACCEPTED = VEIL_AG_ACCEPTED,	/* we accepted, awaiting CONFIRM */
	CONTACT_ESTABLISHED = VEIL_AG_ESTABLISHED,
	CONTACT_FAILED = VEIL_AG_FAILED		/* hash mismatch: add the card again */
};

/* Why an operation failed; methods.c maps each to a JSON-RPC code. */
enum engine_err {
	ENGINE_OK = 0,
	ENGINE_EINVAL = -1,	/* bad argument */
	ENGINE_ENOENT = -2,	/* no such contact */
	ENGINE_EEXIST = -3,	/* name or contact already there */
	ENGINE_ESTATE = -4,	/* not possible in the contact's state */
	ENGINE_ETOOBIG = -5,	/* message too large */
	ENGINE_EINTERNAL = -6,	/* store, memory, crypto */
	ENGINE_EQUOTA = -7,	/* a quota is reached: later */
	ENGINE_ESTORAGE = -8	/* the disk: full, read-only, failing, damaged */
};

#define ENGINE_ID_TEXT	(2 * VEIL_MSGID_BYTES + 1)	/* message ID, hex */
#define ENGINE_XFER_TEXT (2 * VEIL_FILE_ID_BYTES + 1)	/* transfer ID, hex */
#define ENGINE_PATH_MAX	4096
#define ENGINE_TEXT_MAX	64				/* identifiers and words */

struct engine_contact {
	char		 name[VEIL_NAME_MAX + 1];
	char		 peer_name[VEIL_NAME_MAX + 1];
	const char	*state;				/* static string */
	int		 key_proven;			/* established: the agreement proved it */
	int		 resetting;			/* restored: keys being renewed */
	int		 verified;
	char		 fingerprint[VEIL_FP_TEXT];
	int64_t		 queued;			/* outbox rows */
};

struct engine_status {
	const char	*transport;			/* static string */
	const char	*name;				/* our display name */
	int		 connected;
	int		 obscurity;
	size_t		 frame_size;
	int64_t		 established, pending, requested, accepted, failed;
	int64_t		 outbox, unread;
	uint64_t	 frames_in, frames_out, dropped;
	int		 wire;				/* protocol version */
	const char	*store;				/* "ok", "full", "read-only",
							   "io error", "damaged" */
	/* Filled only when asked (identifiers, for audits; see also
	 * engine_foreach_id). */
	char		 card[ENGINE_TEXT_MAX];		/* the card handed out */
	int64_t		 epoch;				/* our current epoch */
	int64_t		 next_rotation;			/* its end, Unix seconds */
};

struct engine_card {
	char		 uri[VEIL_CARD_URI_MAX];
	char		 name[VEIL_NAME_MAX + 1];
	int		 one_time;
};

/* A file a contact sent, stored in files.dir. */
struct engine_file {
	char		 name[VEIL_FILE_NAME_MAX + 1];	/* the name it got here */
	char		 path[ENGINE_PATH_MAX];
	uint64_t	 size;
	char		 hash[2 * VEIL_FILE_HASH_BYTES + 1];	/* BLAKE2b-256, hex */
};

/* One received message, valid during the callback only. */
struct engine_rx {
	char		 id[ENGINE_ID_TEXT];
	const char	*from;				/* local contact name */
	int		 type;				/* VEIL_T_TEXT, VEIL_T_FILE */
	const uint8_t	*body;				/* TEXT: the text */
	size_t		 len;
	const struct engine_file *file;			/* FILE: the file that came */
	int64_t		 received;			/* Unix seconds */
};

/* A file transfer, either way. */
struct engine_transfer {
	char		 id[ENGINE_XFER_TEXT];
	int		 outgoing;
	char		 contact[VEIL_NAME_MAX + 1];	/* local name */
	char		 name[VEIL_FILE_NAME_MAX + 1];
	uint64_t	 size, bytes;			/* bytes: acknowledged / received */
	const char	*state;		/* "sending", "sent", "receiving",
					 * "verifying", "done", "failed" */
	const char	*status;	/* why it failed, or NULL */
	char		 path[ENGINE_PATH_MAX];	/* in: where it is; out: sent from */
	int64_t		 created;			/* Unix seconds */
};

/* What happened, for subscribers; delivered once it is durable. */
enum engine_event_type {
	ENGINE_EV_MESSAGE,		/* name = from, msgid, received */
	ENGINE_EV_CONTACT_REQUEST,	/* name, peer_name, fingerprint */
	ENGINE_EV_CONTACT_STATE,	/* name, state, warning (may be NULL) */
	ENGINE_EV_DELIVERY,		/* name = to, msgid */
	ENGINE_EV_TRANSFER		/* transfer */
};
struct engine_event {
	enum engine_event_type	 type;
	const char		*name;
	const char		*peer_name;
	const char		*state;
	const char		*warning;
	const char		*fingerprint;
	char			 msgid[ENGINE_ID_TEXT];
	int64_t			 received;
	int			 msgtype;	/* MESSAGE: VEIL_T_TEXT or VEIL_T_FILE */
	const struct engine_transfer *transfer;
};
typedef void (*engine_event_cb)(const struct engine_event *, void *arg);

/* Loads identity and contacts from st (open and keyed: vault.c owns it),
 * creates the transports.  cfg and st must outlive the engine.  Returns 0
 * or -1 with err filled; engine_shutdown() undoes what was done. */
int	engine_init(struct event_base *base, const struct veild_config *cfg,
	    struct store *st, char *err, size_t errlen);
/* Starts connecting and the timers. */
int	engine_start(void);
/* Takes over what can change without a restart (accept policy, rotation
 * timing, retransmission, cover traffic) from next; the rest of next is
 * ignored.  Logs what it applied. */
void	engine_reload(const struct veild_config *next);
/* Saves state, stops the transports (the store stays open). */
void	engine_shutdown(void);

/* Events go to one callback (methods.c), after commit. */
void	engine_set_event_cb(engine_event_cb cb, void *arg);
/* Runs fn(arg, committed) once everything written so far is durable
 * (group commit): replies to the socket wait for it. */
void	engine_after_commit(void (*fn)(void *, int), void *arg);

/* Why the state database takes no changes now, as a sentence for the
 * user, or NULL when it does. */
const char *engine_store_problem(void);

/* A line for sd_notify STATUS=. */
void	engine_status_line(char *buf, size_t len);

/* Operations.  Each returns ENGINE_OK or an enum engine_err, with a
 * sentence for the user in err. */
void	engine_status(struct engine_status *out, int verbose);
/* Every client ID the daemon holds a connection under, and every topic
 * those connections subscribe (as the server sees them). */
void	engine_foreach_id(void (*client)(const char *, void *),
	    void (*topic)(const char *, void *), void *arg);
int	engine_card(int one_time, struct engine_card *out, char *err,
	    size_t errlen);
int	engine_contact_add(const char *uri, const char *name,
	    struct engine_contact *out, char *err, size_t errlen);
/* Calls cb for every contact, in id order; stops when cb returns non-zero. */
int	engine_contact_foreach(int (*cb)(const struct engine_contact *, void *),
	    void *arg);
int	engine_contact_accept(const char *name, char *err, size_t errlen);
/* accept, then rename to as (checked first: a bad or taken name refuses
 * the accept too). */
int	engine_contact_accept_as(const char *name, const char *as, char *err,
	    size_t errlen);
/* A new local name; local only: nothing is sent. */
int	engine_contact_rename(const char *name, const char *to,
	    struct engine_contact *out, char *err, size_t errlen);
int	engine_contact_reject(const char *name, char *err, size_t errlen);
int	engine_contact_remove(const char *name, char *err, size_t errlen);
int	engine_contact_verify(const char *name, int mark,
	    struct engine_contact *out, char *err, size_t errlen);
/* id receives the message ID (hex). */
int	engine_send(const char *to, const void *text, size_t len,
	    char id[ENGINE_ID_TEXT], char *err, size_t errlen);
/*
 * engine_send with the caller's name for the message (1 to
 * ENGINE_SENDKEY_MAX bytes; NULL: none).  A key seen in the last
 * ENGINE_SENDKEY_DAYS days returns that message's ID and sends nothing:
 * a retry after a lost reply.  The same key with another contact or
 * text is EEXIST.
 */
#define ENGINE_SENDKEY_MAX	128
#define ENGINE_SENDKEY_DAYS	7
int	engine_send_keyed(const char *to, const void *text, size_t len,
	    const char *key, size_t keylen, char id[ENGINE_ID_TEXT], char *err,
	    size_t errlen);
/*
 * Hands up to limit received messages no app has acknowledged to cb,
 * oldest first, until cb returns non-zero (that one is not handed out).
 * Nothing is taken: a message stays, and is handed out again by the next
 * call, until engine_ack names it.  Returns the number handed out, or -1
 * on a store error.
 */
int	engine_receive(int limit, int (*cb)(const struct engine_rx *, void *),
	    void *arg);
/*
 * Takes the messages with these IDs (hex, as engine_rx.id): an app has
 * them.  IDs of messages already taken or unknown are no error.  *taken:
 * how many were pending.  EINVAL (nothing taken) if an ID is malformed.
 */
int	engine_ack(const char *const *ids, size_t n, int *taken, char *err,
	    size_t errlen);
/* Any message not yet acknowledged: 1, 0, -1. */
int	engine_pending_any(void);
/* The byte budget of one message.receive reply (limits.receive_reply). */
size_t	engine_receive_budget(void);
/*
 * Sends a file: fd (a regular file open for reading, the caller's to
 * close; then path is only shown), or else path, which veild opens itself
 * only for a peer whose uid is 0 or veild's own (any other could make veild
 * read what it may not).  name: what the receiver sees (NULL: path's last
 * component).  The file is copied into the state directory first, step by
 * step: done(arg, rv, t, err) runs once that copy and the transfer are
 * durable (or failed), after this returned ENGINE_OK with *handle set;
 * engine_file_send_abort(handle) before then gives it up (done never runs).
 */
typedef void (*engine_send_done)(void *arg, int rv, const struct engine_transfer *t,
	    const char *err);
int	engine_file_send(const char *to, int fd, const char *path, uid_t peer,
	    const char *name, engine_send_done done, void *arg, void **handle,
	    char *err, size_t errlen);
void	engine_file_send_abort(void *handle);
/* Every transfer, outgoing first; stops when cb returns non-zero. */
int	engine_transfer_foreach(int (*cb)(const struct engine_transfer *, void *),
	    void *arg);
/* Gives up a transfer that has not ended (id: hex, as listed); the peer is
 * told. */
int	engine_transfer_cancel(const char *id, char *err, size_t errlen);

/* announced: contacts told; epoch: the new epoch. */
int	engine_rotate(int *announced, int64_t *epoch, char *err,
	    size_t errlen);

#endif
