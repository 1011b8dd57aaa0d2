/* veild store: all persistent state in one sqlite3 database (the only module that speaks SQL). */
#ifndef VEILD_STORE_H
#define VEILD_STORE_H

#include <stddef.h>
#include <stdint.h>

/*
 * Conventions
 *
 * - Times are int64 milliseconds since the Unix epoch, always supplied by
 *   the caller (the store never reads a clock), so tests can drive them.
 * - Functions return -1 on failure and store_errmsg() says why.  The text
 *   comes from sqlite or from the store itself and never holds a message
 *   body, a key or a name.  STORE_EXISTS (-2) is returned where a UNIQUE
 *   key (contact name, inbox topic, outbox msgid) already exists.
 * - Lookups return 1 when found, 0 when not found.
 * - Row ids are > 0.
 * - Callbacks get const pointers valid only during the call; a callback
 *   returning non-zero stops the iteration.  A callback may update or
 *   delete the row it was given (take, ack, reschedule to a later time)
 *   and call other store functions, but must not call the function that
 *   is iterating (returns -1, "reentrant call") nor begin/commit/rollback.
 * - Outside store_begin()/store_commit() every writing call is its own
 *   transaction, durable when it returns (synchronous=FULL, see store.c).
 */

#define STORE_EXISTS		(-2)
#define STORE_SCHEMA_VERSION	7
#define STORE_NAME_MAX		64	/* = VEIL_NAME_MAX */
#define STORE_TOPIC_MAX		63	/* inbox / topic text, bytes */
#define STORE_BLOB_MAX		1024	/* packed pair / agreement */
#define STORE_PK_BYTES		32
#define STORE_SEED_BYTES	32
#define STORE_MSGID_BYTES	16
#define STORE_KEY_BYTES		32	/* the data key */
#define STORE_KEY_ID_BYTES	16	/* names a wrapping key */
#define STORE_SALT_BYTES	16	/* = crypto_pwhash_SALTBYTES */
#define STORE_WRAP_BYTES	72	/* nonce 24 || data key 32 || tag 16 */
#define STORE_RESET_MAX		512	/* a packed reset in progress, a RESET-ACK */
#define STORE_SENDKEY_MAX	128	/* an app's key for message.send, bytes */
#define STORE_DIGEST_BYTES	32

struct store;

/*
 * Opens (creating with mode 0600 and migrating) the database at path.  A
 * new database is made under path.new and renamed into place once it is
 * complete, so an existing file that is empty was truncated: refused, as
 * is a file that is not a database or fails sqlite's quick_check.  On
 * failure returns NULL with a reason in err (saying what to do when the
 * file is damaged).
 */
struct store	*store_open(const char *path, char *err, size_t errlen);
void		 store_close(struct store *);
/* Why the last failing call failed ("" when none). */
const char	*store_errmsg(struct store *);
/*
 * What kind of trouble the last failing call met: the disk or the file,
 * not a bug or bad input.  A full disk and a read-only file system go
 * away when their cause does; a damaged file does not.
 */
enum store_trouble {
	STORE_OK = 0,		/* none, or not the disk's */
	STORE_FULL,		/* no space left */
	STORE_READONLY,		/* read-only file system, permissions */
	STORE_IOERR,		/* the disk failed a read or write */
	STORE_DAMAGED		/* the file is not a sound database */
};
enum store_trouble store_trouble(struct store *);
/* A small write in its own transaction (the meta row rewritten as it
 * is): whether the disk takes changes now.  0, or -1 (store_trouble
 * says why); -1 too inside an open transaction. */
int	store_probe(struct store *);
/* Rows changed by this connection since it opened (sqlite's
 * total_changes): did a transaction write anything? */
int	store_changes(struct store *);

/*
 * Encryption at rest (store_seal.c, docs/protocol.md 11).  Every secret
 * column (the identity secret key, the shared seed, a contact's packed
 * pair, agreement, previous seed, ACCEPT frames and reset state) and every
 * outbox and unread body is sealed with XChaCha20-Poly1305 under the data
 * key, with associated data naming the table, the column and the row, so
 * a value cannot be moved to another row or column.  The store holds the
 * key in guarded memory (sodium_malloc) from store_set_key to
 * store_close; without it, every call that reads or writes a secret fails
 * ("the store is locked").
 *
 * A database is sealed once store_seal_all() ran in it (a key check value
 * in the meta row says so and tells a wrong key from a damaged value).
 * store_sealed: 1 sealed, 0 not yet (a new database, or one from before
 * encryption at rest), -1.
 */
int	store_sealed(struct store *);
/* Takes a copy of key.  When the database is sealed, the key must open
 * its key check value: -1 ("wrong data key") otherwise. */
int	store_set_key(struct store *, const uint8_t key[STORE_KEY_BYTES]);
int	store_has_key(struct store *);
/* Seals every secret value still in the clear, in place, and writes the
 * key check value: the migration of a plaintext database.  Needs the key
 * and an open transaction (the caller's, so that the vault's first rows
 * commit with it).  Returns the number of values sealed, or -1. */
int64_t	store_seal_all(struct store *);
/* Rewrites the database file (VACUUM) and empties the WAL: after a
 * migration, no page of the plaintext era is left in veil.db, its free
 * list or veil.db-wal.  No transaction may be open.  0 or -1. */
int	store_vacuum(struct store *);

/*
 * The vault: the data key wrapped for each way of unlocking (daemon/
 * vault.c does the cryptography; the store keeps the rows).  kind
 * STORE_WRAP_PASSPHRASE: at most one, key_id all zero, salt and limits of
 * its Argon2id; STORE_WRAP_KEY: one per wrapping key (a systemd
 * credential, a key file), key_id names it.
 */
enum store_wrap_kind { STORE_WRAP_PASSPHRASE = 1, STORE_WRAP_KEY = 2 };
struct store_wrap {
	int	 kind;
	uint8_t	 key_id[STORE_KEY_ID_BYTES];
	uint8_t	 salt[STORE_SALT_BYTES];
	uint64_t opslimit, memlimit;
	uint8_t	 wrapped[STORE_WRAP_BYTES];
	int64_t	 created;
};
typedef int (*store_wrap_cb)(const struct store_wrap *, void *);
/* Rows given to cb (kind, then key_id order), or -1. */
int	store_wrap_list(struct store *, store_wrap_cb cb, void *arg);
/* Inserts, or replaces the row of the same kind and key_id: 0 or -1. */
int	store_wrap_put(struct store *, const struct store_wrap *);
/* Deletes every row for which keep returns 0: the number deleted, or -1. */
int	store_wrap_prune(struct store *, int (*keep)(const struct store_wrap *,
	    void *), void *arg);

/* Explicit transaction grouping several writes (BEGIN IMMEDIATE).  Not
 * nestable: store_begin inside a transaction fails.  After any failure
 * inside, call store_rollback.  store_rollback with no open transaction
 * (sqlite may have rolled back by itself) returns 0. */
int	store_begin(struct store *);
int	store_commit(struct store *);
int	store_rollback(struct store *);
int	store_in_transaction(struct store *);
/* Copies the WAL into the database and empties it, if anything was
 * written since the last time and no transaction is open: 1 done, 0
 * nothing to do, -1. */
int	store_checkpoint(struct store *);
/* Nested groups inside an open transaction (SQL savepoints): the caller
 * can undo its own part without undoing the whole transaction.
 * store_rollback_to undoes and closes the innermost one. */
int	store_savepoint(struct store *);
int	store_release(struct store *);
int	store_rollback_to(struct store *);

/*
 * The daemon's own state: one typed row.  Text fields are "" and numbers 0
 * until set.  store_meta_get: 1, or -1 (the row is created by the schema).
 * The setters write one field: 0 or -1.
 */
struct store_meta {
	char	 card_cid[STORE_TOPIC_MAX + 1];		/* the card's contact ID */
	char	 client_id[STORE_TOPIC_MAX + 1];	/* the chat connection's */
	int64_t	 client_epoch;				/* the epoch it belongs to */
	char	 card_client_id[STORE_TOPIC_MAX + 1];	/* level 2 card connection */
	uint8_t	 shared_seed[STORE_SEED_BYTES];		/* levels 1 and 3 */
	int	 has_shared_seed;
	int	 wire;					/* protocol of the contacts */
	int	 card_shown;				/* a card was handed out */
};
enum store_meta_field {
	STORE_META_CARD_CID, STORE_META_CLIENT_ID, STORE_META_CARD_CLIENT_ID,
	STORE_META_CLIENT_EPOCH, STORE_META_SHARED_SEED, STORE_META_WIRE,
	STORE_META_CARD_SHOWN, STORE_META_COUNT
};
int	store_meta_get(struct store *, struct store_meta *);
int	store_meta_set_text(struct store *, enum store_meta_field, const char *);
int	store_meta_set_int(struct store *, enum store_meta_field, int64_t);
int	store_meta_set_blob(struct store *, enum store_meta_field,
	    const uint8_t *, size_t);
/* The identity key pair: 1 found, 0 none yet, -1. */
int	store_identity_get(struct store *, uint8_t pk[STORE_PK_BYTES],
	    uint8_t sk[STORE_PK_BYTES]);
int	store_identity_set(struct store *, const uint8_t pk[STORE_PK_BYTES],
	    const uint8_t sk[STORE_PK_BYTES]);

/*
 * The transcripts (T1) of the REQUESTs processed, and the contact each
 * made (0 once it is gone): a replay is dropped, a copy recognised.  get:
 * 1 found (*contact_id set), 0, -1.  prune: those seen before older_than.
 */
int	store_request_seen_add(struct store *, const uint8_t t1[STORE_PK_BYTES],
	    int64_t contact_id, int64_t now);
int	store_request_seen_get(struct store *, const uint8_t t1[STORE_PK_BYTES],
	    int64_t *contact_id);
int64_t	store_request_seen_prune(struct store *, int64_t older_than);

/* Contacts. */
struct store_contact {
	int64_t	 id;
	char	 name[STORE_NAME_MAX + 1];	/* local, unique, 1..64 bytes */
	int	 state;				/* engine-defined */
	char	 peer_name[STORE_NAME_MAX + 1];	/* as announced by the peer */
	uint8_t	 peer_pk[STORE_PK_BYTES];
	char	 peer_inbox[STORE_TOPIC_MAX + 1];	/* requested: the card */
	uint8_t	 pair[STORE_BLOB_MAX];		/* packed struct veil_pair */
	size_t	 pair_len;			/* 0: none */
	uint8_t	 agree[STORE_BLOB_MAX];		/* packed struct veil_agree */
	size_t	 agree_len;			/* 0: none */
	int	 verified;
	int64_t	 created, updated;
	/* The update and agreement bookkeeping of this contact. */
	uint8_t	 upd_msgid[STORE_MSGID_BYTES];		/* our UPDATE's outbox row */
	int	 has_upd_msgid;
	int64_t	 upd_prev_until;			/* keep rx_prev until (ms) */
	uint8_t	 req_msgid[STORE_MSGID_BYTES];		/* our REQUEST's outbox row */
	int	 has_req_msgid;
	int64_t	 req_deadline;				/* give the REQUEST up (ms) */
	uint8_t	 seed_prev[STORE_SEED_BYTES];		/* our old inbox seed ... */
	int	 has_seed_prev;
	uint32_t seed_prev_epoch;			/* ... its epoch length */
	int64_t	 seed_prev_until;			/* ... received on until (ms) */
	int64_t	 heal_at;				/* next re-key (ms) */
};
typedef int (*store_contact_cb)(const struct store_contact *, void *);

/* Returns the new id, STORE_EXISTS if the name is taken, or -1.  c->id is
 * ignored; created/updated are taken from c. */
int64_t	store_contact_add(struct store *, const struct store_contact *c);
int	store_contact_get_by_id(struct store *, int64_t id,
	    struct store_contact *out);
int	store_contact_get_by_name(struct store *, const char *name,
	    struct store_contact *out);
/* Lowest id with that peer public key (detects a card added twice). */
int	store_contact_get_by_peer_pk(struct store *,
	    const uint8_t pk[STORE_PK_BYTES], struct store_contact *out);
/* The same lookups when only the id is wanted (no key blobs copied). */
int	store_contact_id_by_name(struct store *, const char *name, int64_t *id);
int	store_contact_id_by_peer_pk(struct store *,
	    const uint8_t pk[STORE_PK_BYTES], int64_t *id);
/* Rewrites every column of row c->id except created.  1 updated, 0 no
 * such id, STORE_EXISTS if renamed onto a taken name, -1. */
int	store_contact_update(struct store *, const struct store_contact *c);
/* In one transaction: deletes the contact, its outbox and its rx rows
 * (pending and dedupe), and detaches its inboxes, retiring them at now
 * (store_inbox_expire then reports them for unsubscription).
 * 1 deleted, 0 no such id, -1. */
int	store_contact_delete(struct store *, int64_t id, int64_t now);
/* Ordered by id (the table's order: no sort, one row in memory at a
 * time; ordering by name made SQLite sort every row, sealed keys and all,
 * in memory: massif saw 14 MB in SQLite during that listing at 10,000
 * contacts).  Returns the
 * number of rows given to cb, or -1. */
int	store_contact_list(struct store *, store_contact_cb cb, void *arg);
/* The sealed ACCEPT frames of a responder, kept until the agreement ends
 * (len 0 clears them): set 1, 0 no such id, -1; get 1 (*len set), 0 none,
 * -1 (also when they do not fit in buflen). */
int	store_contact_accept_frames_set(struct store *, int64_t id,
	    const void *buf, size_t len);
int	store_contact_accept_frames_get(struct store *, int64_t id, void *buf,
	    size_t buflen, size_t *len);

/*
 * The contact reset after a restore (docs/protocol.md 6.1).  Our side (the
 * restored one): due (a RESET is to be started) and the packed reset in
 * progress (len 0: none).  The peer's side: the time and transcript of the
 * last RESET accepted from it and the RESET-ACK answered, for copies.
 * set: 1, 0 no such id, -1.  get: 1, 0 no such id, -1.
 */
struct store_reset {
	int	 due;
	uint8_t	 mine[STORE_RESET_MAX];
	size_t	 mine_len;
	int64_t	 seen_t;
	uint8_t	 seen[STORE_PK_BYTES];
	int	 has_seen;
	uint8_t	 ack[STORE_RESET_MAX];
	size_t	 ack_len;
};
int	store_contact_reset_set(struct store *, int64_t id,
	    const struct store_reset *);
int	store_contact_reset_get(struct store *, int64_t id, struct store_reset *);
/* Contacts with a reset due or in progress (ids to cb), or -1. */
int	store_contact_resets(struct store *, int (*cb)(int64_t, void *),
	    void *arg);

/* Inboxes (topics) this daemon subscribes to. */
enum store_inbox_kind {
	STORE_INBOX_CARD = 1,	/* advertised on a card: first-contact requests */
	STORE_INBOX_PAIR = 2,	/* one contact's private inbox */
	STORE_INBOX_SHARED = 3	/* shared by many contacts (obscurity 1, 3) */
};
struct store_inbox {
	int64_t	 id;
	char	 topic[STORE_TOPIC_MAX + 1];
	int64_t	 contact_id;	/* 0: none */
	int	 kind;
	int64_t	 created;
	int64_t	 retire_at;	/* 0: not retired */
	int	 one_time;	/* a one-time card: consumed by its first use */
};
typedef int (*store_inbox_cb)(const struct store_inbox *, void *);

/* contact_id 0 for none.  Returns id, STORE_EXISTS (topic taken), -1. */
int64_t	store_inbox_add(struct store *, const char *topic, int64_t contact_id,
	    int kind, int one_time, int64_t created);
int	store_inbox_get(struct store *, const char *topic,
	    struct store_inbox *out);
/* Inboxes to stay subscribed to at now: not retired, or retired after
 * now (grace period).  Ordered by id.  Returns rows given to cb, or -1. */
int	store_inbox_list(struct store *, int64_t now, store_inbox_cb cb,
	    void *arg);
/* Every row, also those whose retirement time has passed but that
 * store_inbox_expire has not removed yet. */
int	store_inbox_list_all(struct store *, store_inbox_cb cb, void *arg);
/* Sets retire_at (> 0).  1 done, 0 no such id, -1. */
int	store_inbox_retire(struct store *, int64_t id, int64_t retire_at);
/* Deletes inboxes with retire_at <= now, reporting each to cb (may be
 * NULL) before it goes, so the engine can unsubscribe; cb returning
 * non-zero stops and keeps the rest.  Returns the number deleted, or -1. */
int	store_inbox_expire(struct store *, int64_t now, store_inbox_cb cb,
	    void *arg);

/* Outbox: messages accepted from local apps (and protocol messages that
 * need an end-to-end ACK), kept until that ACK arrives. */
struct store_outbox {
	int64_t		 id;
	int64_t		 contact_id;
	uint8_t		 msgid[STORE_MSGID_BYTES];
	int		 type;
	const uint8_t	*body;		/* NULL in store_outbox_ack's result */
	size_t		 body_len;
	int64_t		 created;
	int		 attempts;
	int64_t		 next_try;
};
typedef int (*store_outbox_cb)(const struct store_outbox *, void *);

/* Returns id, STORE_EXISTS (msgid already queued), or -1 (also when the
 * contact does not exist).  attempts starts at 0. */
int64_t	store_outbox_add(struct store *, int64_t contact_id,
	    const uint8_t msgid[STORE_MSGID_BYTES], int type, const void *body,
	    size_t len, int64_t created, int64_t next_try);
/* Rows with next_try <= now, by next_try then id, at most limit (> 0).
 * Returns rows given to cb, or -1. */
int	store_outbox_due(struct store *, int64_t now, int limit,
	    store_outbox_cb cb, void *arg);
int	store_outbox_reschedule(struct store *, int64_t id, int64_t next_try,
	    int attempts);				/* 1, 0 no such id, -1 */
/* Rows of contact_id already sent once and waiting for a retry: due at
 * now (the peer is back).  Returns the rows changed, or -1. */
int	store_outbox_hurry(struct store *, int64_t contact_id, int64_t now);
/* The peer acknowledged msgid: removes the row.  1 removed (and, if out
 * is not NULL, its columns copied there with body NULL, for the
 * "delivery" notification), 0 unknown (duplicate ACK), -1. */
int	store_outbox_ack(struct store *, int64_t contact_id,
	    const uint8_t msgid[STORE_MSGID_BYTES], struct store_outbox *out);
/* Rows queued for contact_id, or for everyone when contact_id is 0. */
int64_t	store_outbox_count(struct store *, int64_t contact_id);
/* The rows queued for contact_id and the bytes of their bodies: 0, -1. */
int	store_outbox_usage(struct store *, int64_t contact_id, int64_t *rows,
	    int64_t *bytes);

/* Received messages not yet taken by a local app, and the msgids of
 * taken ones for dedupe. */
struct store_rx {
	int64_t		 id;
	int64_t		 contact_id;
	uint8_t		 msgid[STORE_MSGID_BYTES];
	int		 type;
	const uint8_t	*body;
	size_t		 body_len;
	int64_t		 received_at;
};
typedef int (*store_rx_cb)(const struct store_rx *, void *);

/* 1 new (*id set if id is not NULL), 0 duplicate (contact_id, msgid) —
 * pending or already taken — the engine still re-ACKs it, -1. */
int	store_rx_add(struct store *, int64_t contact_id,
	    const uint8_t msgid[STORE_MSGID_BYTES], int type, const void *body,
	    size_t len, int64_t received_at, int64_t *id);
/* Not yet taken, oldest first (received_at, then id), at most limit. */
int	store_rx_pending(struct store *, int limit, store_rx_cb cb, void *arg);
int64_t	store_rx_pending_count(struct store *);
/* 1 if any message is pending, 0 if none, -1: cheaper than the count. */
int	store_rx_pending_any(struct store *);
/* The pending rows of contact_id and the bytes of their bodies: 0, -1. */
int	store_rx_usage(struct store *, int64_t contact_id, int64_t *rows,
	    int64_t *bytes);
/* Marks taken and drops the body; the msgid stays for dedupe.
 * 1 done, 0 no such pending id, -1. */
int	store_rx_take(struct store *, int64_t id);
/* The same for the pending rows with this message ID (an app's
 * acknowledgement): the number taken (0: none pending), or -1. */
int	store_rx_take_msgid(struct store *, const uint8_t msgid[STORE_MSGID_BYTES]);
/* Deletes taken rows received before older_than (the dedupe horizon);
 * returns the number deleted, or -1. */
int64_t	store_rx_prune(struct store *, int64_t older_than);

/*
 * Send keys (idempotent message.send): the key an app named a message
 * with, the contact and message ID it became and a digest of its text,
 * so that a retry finds the first message instead of making a second.
 * Gone with the contact.  get: 1 found, 0, -1.  add: 0, STORE_EXISTS, -1.
 * prune: those created before older_than; the number deleted, or -1.
 */
struct store_sendkey {
	int64_t	 contact_id;
	uint8_t	 msgid[STORE_MSGID_BYTES];
	uint8_t	 digest[STORE_DIGEST_BYTES];
	int64_t	 created;
};
int	store_sendkey_get(struct store *, const void *key, size_t keylen,
	    struct store_sendkey *out);
int	store_sendkey_add(struct store *, const void *key, size_t keylen,
	    const struct store_sendkey *k);
int64_t	store_sendkey_prune(struct store *, int64_t older_than);

/*
 * Backups (store_backup.c).  Every row, for a dump: outbox rows with
 * their bodies, received messages taken or not (a taken one has no body:
 * its msgid stays for dedupe), processed REQUESTs.  Loading writes rows as
 * they were (ids kept) into a store that holds none yet, inside the
 * caller's transaction.
 */
struct store_rx_row {
	int64_t		 contact_id;
	uint8_t		 msgid[STORE_MSGID_BYTES];
	int		 type;
	const uint8_t	*body;
	size_t		 body_len;
	int64_t		 received_at;
	int		 taken;
};
typedef int (*store_rx_row_cb)(const struct store_rx_row *, void *);
int	store_outbox_all(struct store *, store_outbox_cb cb, void *arg);
int	store_rx_all(struct store *, store_rx_row_cb cb, void *arg);
int	store_request_seen_all(struct store *, int (*cb)(const uint8_t t1[
	    STORE_PK_BYTES], int64_t contact_id, int64_t seen_at, void *),
	    void *arg);
/* c->id is kept: 0, STORE_EXISTS, -1. */
int	store_load_contact(struct store *, const struct store_contact *c);
int	store_load_outbox(struct store *, const struct store_outbox *o);
int	store_load_rx(struct store *, const struct store_rx_row *r);
/* Nothing of a user in it yet: no contact, no queued, received or
 * remembered message or request, and no card ever handed out.  1 unused,
 * 0 used, -1. */
int	store_unused(struct store *);

#endif
