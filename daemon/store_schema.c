/* store_schema.c: the schema as a list of migrations (append only), and the data moves that SQL alone cannot do. */
#include <stdint.h>
#include <string.h>

#include <sodium.h>

#include "store_int.h"

/*
 * Schema migrations: store_migrations[i] takes user_version i to i + 1 and
 * runs in its own transaction together with the user_version bump, so a
 * crash or an error leaves the database at a version it had.  Append
 * only: never edit a migration that has shipped.
 */
static int migrate_2_data(struct store *);

const struct store_migration store_migrations[] = {
	/* 1: initial schema */
	{
	"CREATE TABLE kv ("
	"  key TEXT PRIMARY KEY NOT NULL,"
	"  value BLOB NOT NULL"
	") WITHOUT ROWID;"
	"CREATE TABLE contact ("
	"  id INTEGER PRIMARY KEY,"
	"  name TEXT NOT NULL UNIQUE,"
	"  state INTEGER NOT NULL,"
	"  peer_name TEXT NOT NULL DEFAULT '',"
	"  peer_pk BLOB NOT NULL CHECK (length(peer_pk) = 32),"
	"  peer_inbox TEXT NOT NULL DEFAULT '',"
	"  my_inbox TEXT NOT NULL DEFAULT '',"
	"  pair BLOB,"
	"  agree BLOB,"
	"  verified INTEGER NOT NULL DEFAULT 0,"
	"  created INTEGER NOT NULL,"
	"  updated INTEGER NOT NULL"
	");"
	"CREATE INDEX contact_my_inbox ON contact(my_inbox) WHERE my_inbox <> '';"
	"CREATE INDEX contact_peer_pk ON contact(peer_pk);"
	"CREATE TABLE inbox ("
	"  id INTEGER PRIMARY KEY,"
	"  topic TEXT NOT NULL UNIQUE,"
	"  contact_id INTEGER REFERENCES contact(id) ON DELETE SET NULL,"
	"  kind INTEGER NOT NULL,"
	"  created INTEGER NOT NULL,"
	"  retire_at INTEGER"
	");"
	"CREATE INDEX inbox_contact ON inbox(contact_id);"
	"CREATE INDEX inbox_retire ON inbox(retire_at) WHERE retire_at IS NOT NULL;"
	"CREATE TABLE outbox ("
	"  id INTEGER PRIMARY KEY,"
	"  contact_id INTEGER NOT NULL REFERENCES contact(id) ON DELETE CASCADE,"
	"  msgid BLOB NOT NULL UNIQUE CHECK (length(msgid) = 16),"
	"  type INTEGER NOT NULL,"
	"  body BLOB NOT NULL,"
	"  created INTEGER NOT NULL,"
	"  attempts INTEGER NOT NULL DEFAULT 0,"
	"  next_try INTEGER NOT NULL"
	");"
	"CREATE INDEX outbox_due ON outbox(next_try, id);"
	"CREATE INDEX outbox_contact ON outbox(contact_id);"
	"CREATE TABLE rx ("
	"  id INTEGER PRIMARY KEY,"
	"  contact_id INTEGER NOT NULL REFERENCES contact(id) ON DELETE CASCADE,"
	"  msgid BLOB NOT NULL CHECK (length(msgid) = 16),"
	"  type INTEGER NOT NULL,"
	"  body BLOB,"
	"  received_at INTEGER NOT NULL,"
	"  taken INTEGER NOT NULL DEFAULT 0,"
	"  UNIQUE (contact_id, msgid)"
	");"
	"CREATE INDEX rx_pending ON rx(received_at, id) WHERE taken = 0;"
	"CREATE INDEX rx_taken ON rx(received_at) WHERE taken = 1;", NULL },
	/*
	 * 2: typed state.  The engine's key/value families become columns
	 * and tables (what belongs to a contact goes with its row), the
	 * one-time marker joins its inbox row, and kv goes.  The SQL moves
	 * what SQL can; migrate_2_data() decodes the big-endian integers and
	 * hex keys, then drops kv.
	 */
	{ "CREATE TABLE meta ("
	"  id INTEGER PRIMARY KEY CHECK (id = 1),"
	"  identity_pk BLOB CHECK (identity_pk IS NULL OR length(identity_pk) = 32),"
	"  identity_sk BLOB CHECK (identity_sk IS NULL OR length(identity_sk) = 32),"
	"  card_cid TEXT NOT NULL DEFAULT '',"
	"  shared_inbox TEXT NOT NULL DEFAULT '',"
	"  client_id TEXT NOT NULL DEFAULT '',"
	"  client_id_prev TEXT NOT NULL DEFAULT '',"
	"  card_client_id TEXT NOT NULL DEFAULT '',"
	"  epoch INTEGER NOT NULL DEFAULT 0,"
	"  rotation_next INTEGER NOT NULL DEFAULT 0"
	");"
	"INSERT INTO meta (id, identity_pk, identity_sk, card_cid, shared_inbox,"
	"  client_id, client_id_prev, card_client_id) SELECT 1,"
	"  (SELECT value FROM kv WHERE key = 'identity.pk'),"
	"  (SELECT value FROM kv WHERE key = 'identity.sk'),"
	"  coalesce((SELECT CAST(value AS TEXT) FROM kv WHERE key = 'card.cid'), ''),"
	"  coalesce((SELECT CAST(value AS TEXT) FROM kv WHERE key = 'inbox.shared'), ''),"
	"  coalesce((SELECT CAST(value AS TEXT) FROM kv WHERE key = 'client.id'), ''),"
	"  coalesce((SELECT CAST(value AS TEXT) FROM kv WHERE key = 'client.id.prev'), ''),"
	"  coalesce((SELECT CAST(value AS TEXT) FROM kv WHERE key = 'client.card_id'), '');"
	"ALTER TABLE contact ADD COLUMN upd_inbox TEXT NOT NULL DEFAULT '';"
	"ALTER TABLE contact ADD COLUMN upd_msgid BLOB"
	"  CHECK (upd_msgid IS NULL OR length(upd_msgid) = 16);"
	"ALTER TABLE contact ADD COLUMN upd_prev_until INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE contact ADD COLUMN req_msgid BLOB"
	"  CHECK (req_msgid IS NULL OR length(req_msgid) = 16);"
	"ALTER TABLE contact ADD COLUMN accept_frames BLOB;"
	"UPDATE contact SET"
	"  upd_inbox = coalesce((SELECT CAST(value AS TEXT) FROM kv"
	"    WHERE key = 'upd.inbox:' || contact.id), ''),"
	"  upd_msgid = (SELECT value FROM kv WHERE key = 'upd.msgid:' || contact.id"
	"    AND length(value) = 16),"
	"  req_msgid = (SELECT value FROM kv WHERE key = 'req.msgid:' || contact.id"
	"    AND length(value) = 16),"
	"  accept_frames = (SELECT value FROM kv"
	"    WHERE key = 'accept.frames:' || contact.id AND length(value) > 0);"
	"CREATE TABLE refused ("
	"  peer_pk BLOB PRIMARY KEY NOT NULL CHECK (length(peer_pk) = 32)"
	") WITHOUT ROWID;"
	"ALTER TABLE inbox ADD COLUMN one_time INTEGER NOT NULL DEFAULT 0;"
	"UPDATE inbox SET one_time = 1"
	"  WHERE 'card.once:' || topic IN (SELECT key FROM kv);"
	"DROP INDEX contact_my_inbox;", migrate_2_data },
	/*
	 * 3: wire protocol 2.  Inboxes are derived per epoch from seeds kept
	 * in the pair state, so rows for pair and shared inboxes go (cards
	 * stay: they are topics of their own); a claimed key cannot be
	 * refused (protocol.md 4), so processed REQUESTs are remembered by
	 * transcript instead.  A database that already holds contacts holds
	 * protocol 1 contacts: wire = 1 makes the engine refuse it.
	 */
	{ "ALTER TABLE contact DROP COLUMN upd_inbox;"
	"ALTER TABLE contact DROP COLUMN my_inbox;"
	"ALTER TABLE contact ADD COLUMN seed_prev BLOB"
	"  CHECK (seed_prev IS NULL OR length(seed_prev) = 32);"
	"ALTER TABLE contact ADD COLUMN seed_prev_epoch INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE contact ADD COLUMN seed_prev_until INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE contact ADD COLUMN req_deadline INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE contact ADD COLUMN heal_at INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE meta DROP COLUMN shared_inbox;"
	"ALTER TABLE meta DROP COLUMN client_id_prev;"
	"ALTER TABLE meta DROP COLUMN epoch;"
	"ALTER TABLE meta DROP COLUMN rotation_next;"
	"ALTER TABLE meta ADD COLUMN shared_seed BLOB"
	"  CHECK (shared_seed IS NULL OR length(shared_seed) = 32);"
	"ALTER TABLE meta ADD COLUMN client_epoch INTEGER NOT NULL DEFAULT -1;"
	"ALTER TABLE meta ADD COLUMN wire INTEGER NOT NULL DEFAULT 2;"
	"UPDATE meta SET wire = 1 WHERE EXISTS (SELECT 1 FROM contact);"
	"DELETE FROM inbox WHERE kind <> 1;"
	"DROP TABLE refused;"
	"CREATE TABLE request_seen ("
	"  t1 BLOB PRIMARY KEY NOT NULL CHECK (length(t1) = 32),"
	"  contact_id INTEGER REFERENCES contact(id) ON DELETE SET NULL,"
	"  seen_at INTEGER NOT NULL"
	") WITHOUT ROWID;"
	"CREATE INDEX request_seen_at ON request_seen(seen_at);", NULL },
	/*
	 * 4: bounded input.  A received message stays until an app
	 * acknowledges it by its message ID (message.ack), and each contact's
	 * unread messages are counted against its quota on every arrival:
	 * both need an index over the pending rows.
	 */
	{ "CREATE INDEX rx_pending_msgid ON rx(msgid) WHERE taken = 0;"
	"CREATE INDEX rx_pending_contact ON rx(contact_id) WHERE taken = 0;",
	NULL },
	/*
	 * 5: idempotent sends.  The key an app gave message.send, kept for a
	 * while with the message it made, so that a retry after a lost reply
	 * returns that message instead of sending a second one.
	 */
	{ "CREATE TABLE send_key ("
	"  key BLOB PRIMARY KEY NOT NULL CHECK (length(key) BETWEEN 1 AND 128),"
	"  contact_id INTEGER NOT NULL REFERENCES contact(id) ON DELETE CASCADE,"
	"  msgid BLOB NOT NULL CHECK (length(msgid) = 16),"
	"  digest BLOB NOT NULL CHECK (length(digest) = 32),"
	"  created INTEGER NOT NULL"
	") WITHOUT ROWID;"
	"CREATE INDEX send_key_created ON send_key(created);"
	"CREATE INDEX send_key_contact ON send_key(contact_id);", NULL },
	/*
	 * 6: file transfers (docs/protocol.md 7.1; daemon/file.c).  A row per
	 * transfer each way, the chunks received of an incoming one, and the
	 * outbox rows that carry an outgoing one (so that their ACKs count);
	 * every row goes with its contact.  The bytes live in files under
	 * state_dir (outgoing/, incoming/), not here.
	 */
	{ "CREATE TABLE file_out ("
	"  xfer BLOB PRIMARY KEY NOT NULL CHECK (length(xfer) = 16),"
	"  contact_id INTEGER NOT NULL REFERENCES contact(id) ON DELETE CASCADE,"
	"  name TEXT NOT NULL,"
	"  size INTEGER NOT NULL CHECK (size >= 0),"
	"  hash BLOB NOT NULL CHECK (length(hash) = 32),"
	"  chunk INTEGER NOT NULL CHECK (chunk > 0),"
	"  next INTEGER NOT NULL DEFAULT 0,"
	"  done INTEGER NOT NULL DEFAULT 0,"
	"  state INTEGER NOT NULL,"
	"  status INTEGER NOT NULL DEFAULT 0,"
	"  path TEXT NOT NULL DEFAULT '',"
	"  created INTEGER NOT NULL,"
	"  updated INTEGER NOT NULL"
	") WITHOUT ROWID;"
	"CREATE INDEX file_out_contact ON file_out(contact_id);"
	"CREATE TABLE file_in ("
	"  contact_id INTEGER NOT NULL REFERENCES contact(id) ON DELETE CASCADE,"
	"  xfer BLOB NOT NULL CHECK (length(xfer) = 16),"
	"  name TEXT NOT NULL,"
	"  size INTEGER NOT NULL CHECK (size >= 0),"
	"  hash BLOB NOT NULL CHECK (length(hash) = 32),"
	"  chunk INTEGER NOT NULL CHECK (chunk > 0),"
	"  next INTEGER NOT NULL DEFAULT 0,"
	"  done INTEGER NOT NULL DEFAULT 0,"
	"  state INTEGER NOT NULL,"
	"  status INTEGER NOT NULL DEFAULT 0,"
	"  path TEXT NOT NULL DEFAULT '',"
	"  created INTEGER NOT NULL,"
	"  updated INTEGER NOT NULL,"
	"  PRIMARY KEY (contact_id, xfer)"
	") WITHOUT ROWID;"
	"CREATE TABLE file_chunk ("
	"  contact_id INTEGER NOT NULL,"
	"  xfer BLOB NOT NULL,"
	"  idx INTEGER NOT NULL,"
	"  PRIMARY KEY (contact_id, xfer, idx),"
	"  FOREIGN KEY (contact_id, xfer) REFERENCES file_in(contact_id, xfer)"
	"    ON DELETE CASCADE"
	") WITHOUT ROWID;"
	"CREATE TABLE file_wire ("
	"  msgid BLOB PRIMARY KEY NOT NULL CHECK (length(msgid) = 16),"
	"  xfer BLOB NOT NULL REFERENCES file_out(xfer) ON DELETE CASCADE,"
	"  idx INTEGER NOT NULL"
	") WITHOUT ROWID;"
	"CREATE INDEX file_wire_xfer ON file_wire(xfer);", NULL },
	/*
	 * 7: encryption at rest (store_seal.c).  The vault holds the data key
	 * wrapped once per way of unlocking.  A sealed value is longer than
	 * the 32 bytes the old CHECKs allowed, so those columns are made
	 * anew without them (renamed, copied, dropped).  The values stay as
	 * they are until the first unlock seals them (store_seal_all), which
	 * writes key_check.  card_shown: an identity whose card was never
	 * handed out may be replaced by a restore; an existing one is taken
	 * as shown.  reset*: the contact reset after a restore (protocol.md
	 * 6.1).
	 */
	{ "CREATE TABLE vault ("
	"  id INTEGER PRIMARY KEY,"
	"  kind INTEGER NOT NULL,"
	"  key_id BLOB NOT NULL CHECK (length(key_id) = 16),"
	"  salt BLOB NOT NULL CHECK (length(salt) = 16),"
	"  opslimit INTEGER NOT NULL,"
	"  memlimit INTEGER NOT NULL,"
	"  wrapped BLOB NOT NULL CHECK (length(wrapped) = 72),"
	"  created INTEGER NOT NULL,"
	"  UNIQUE (kind, key_id)"
	");"
	"ALTER TABLE meta RENAME COLUMN identity_sk TO identity_sk_v3;"
	"ALTER TABLE meta ADD COLUMN identity_sk BLOB;"
	"UPDATE meta SET identity_sk = identity_sk_v3;"
	"ALTER TABLE meta DROP COLUMN identity_sk_v3;"
	"ALTER TABLE meta RENAME COLUMN shared_seed TO shared_seed_v3;"
	"ALTER TABLE meta ADD COLUMN shared_seed BLOB;"
	"UPDATE meta SET shared_seed = shared_seed_v3;"
	"ALTER TABLE meta DROP COLUMN shared_seed_v3;"
	"ALTER TABLE contact RENAME COLUMN seed_prev TO seed_prev_v3;"
	"ALTER TABLE contact ADD COLUMN seed_prev BLOB;"
	"UPDATE contact SET seed_prev = seed_prev_v3;"
	"ALTER TABLE contact DROP COLUMN seed_prev_v3;"
	"ALTER TABLE meta ADD COLUMN key_check BLOB;"
	"ALTER TABLE meta ADD COLUMN card_shown INTEGER NOT NULL DEFAULT 0;"
	"UPDATE meta SET card_shown = 1 WHERE identity_pk IS NOT NULL;"
	"ALTER TABLE contact ADD COLUMN reset_due INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE contact ADD COLUMN reset BLOB;"
	"ALTER TABLE contact ADD COLUMN reset_seen_t INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE contact ADD COLUMN reset_seen BLOB"
	"  CHECK (reset_seen IS NULL OR length(reset_seen) = 32);"
	"ALTER TABLE contact ADD COLUMN reset_ack BLOB;", NULL },
};
const int store_nmigrations = (int)(sizeof(store_migrations) / sizeof(store_migrations[0]));
_Static_assert(sizeof(store_migrations) / sizeof(store_migrations[0]) ==
    STORE_SCHEMA_VERSION, "STORE_SCHEMA_VERSION = number of migrations");

/* ---- migration 2: the data kv held ------------------------------------ */

static int64_t
be64(const uint8_t b[8])
{
	uint64_t u = 0;

	for (int i = 0; i < 8; i++)
		u = u << 8 | b[i];
	return (int64_t)u;
}

/* Runs sql with ?1 = v and, when key is not NULL, ?2 = key. */
static int
exec_i64(struct store *s, const char *sql, int64_t v, const char *key)
{
	sqlite3_stmt *q;
	int rc;

	if (sqlite3_prepare_v2(s->db, sql, -1, &q, NULL) != SQLITE_OK)
		return st_dberr(s);
	if (sqlite3_bind_int64(q, 1, v) != SQLITE_OK ||
	    (key != NULL && sqlite3_bind_text(q, 2, key, -1,
	    SQLITE_STATIC) != SQLITE_OK)) {
		st_dberr(s);
		sqlite3_finalize(q);
		return -1;
	}
	rc = sqlite3_step(q);
	sqlite3_finalize(q);
	return rc == SQLITE_DONE ? 0 : st_dberr(s);
}

/*
 * What SQL cannot convert: the 8-byte big-endian integers (epoch, next
 * rotation, a contact's previous-key deadline) and the hex keys of the
 * refused list.  A row that does not decode is dropped with the table:
 * it was damaged, and each of these has a safe default.
 */
static int
migrate_2_data(struct store *s)
{
	sqlite3_stmt *q, *ins = NULL;
	const char *key;
	const uint8_t *v;
	uint8_t pk[STORE_PK_BYTES];
	size_t blen;
	int rc, n, ok = -1;

	if (sqlite3_prepare_v2(s->db, "SELECT key, value FROM kv", -1, &q,
	    NULL) != SQLITE_OK)
		return st_dberr(s);
	if (sqlite3_prepare_v2(s->db, "INSERT INTO refused (peer_pk) "
	    "VALUES (?1) ON CONFLICT (peer_pk) DO NOTHING", -1, &ins,
	    NULL) != SQLITE_OK) {
		st_dberr(s);
		goto out;
	}
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		key = (const char *)sqlite3_column_text(q, 0);
		v = sqlite3_column_blob(q, 1);
		n = sqlite3_column_bytes(q, 1);
		if (key == NULL)
			continue;
		if (n == 8 && v != NULL && strcmp(key, "rotation.epoch") == 0)
			rc = exec_i64(s, "UPDATE meta SET epoch = ?1", be64(v),
			    NULL);
		else if (n == 8 && v != NULL &&
		    strcmp(key, "rotation.next") == 0)
			rc = exec_i64(s, "UPDATE meta SET rotation_next = ?1",
			    be64(v), NULL);
		else if (n == 8 && v != NULL &&
		    strncmp(key, "upd.prev_until:", 15) == 0)
			rc = exec_i64(s, "UPDATE contact SET upd_prev_until = ?1 "
			    "WHERE 'upd.prev_until:' || id = ?2", be64(v), key);
		else if (strncmp(key, "rejected:", 9) == 0 &&
		    strlen(key + 9) == 2 * STORE_PK_BYTES &&
		    sodium_hex2bin(pk, sizeof(pk), key + 9, 2 * STORE_PK_BYTES,
		    NULL, &blen, NULL) == 0 && blen == sizeof(pk)) {
			if (sqlite3_bind_blob(ins, 1, pk, sizeof(pk),
			    SQLITE_STATIC) != SQLITE_OK ||
			    sqlite3_step(ins) != SQLITE_DONE)
				rc = st_dberr(s);
			else
				rc = 0;
			sqlite3_reset(ins);
			sqlite3_clear_bindings(ins);
		} else
			rc = 0;
		if (rc != 0)
			goto out;
	}
	if (rc != SQLITE_DONE) {
		st_dberr(s);
		goto out;
	}
	ok = 0;
out:
	sqlite3_finalize(ins);
	sqlite3_finalize(q);
	if (ok == 0)
		ok = st_exec(s, "DROP TABLE kv");
	return ok;
}

