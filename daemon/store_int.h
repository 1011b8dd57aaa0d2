/* store_int.h: the store's private parts, shared by store.c, store_schema.c, store_contact.c and store_queue.c. */
#ifndef VEILD_STORE_INT_H
#define VEILD_STORE_INT_H

#include <sqlite3.h>

#include "store.h"

enum st {
	ST_BEGIN, ST_COMMIT, ST_ROLLBACK,
	ST_SAVEPOINT, ST_RELEASE, ST_ROLLBACK_TO,
	ST_USP, ST_URELEASE, ST_UROLLBACK_TO,
	ST_META_GET, ST_ID_GET, ST_ID_SET, ST_KEYCHECK_GET, ST_UNUSED,
	ST_W_LIST, ST_W_PUT, ST_W_DEL,
	ST_C_NEXT_ID, ST_C_RESET_GET, ST_C_RESET_SET, ST_C_RESETS,
	ST_O_ALL, ST_O_LOAD, ST_R_ALL, ST_R_LOAD, ST_SEEN_ALL,
	ST_C_ADD, ST_C_BY_ID, ST_C_BY_NAME, ST_C_BY_PK, ST_C_ID_BY_NAME,
	ST_C_ID_BY_PK, ST_C_UPDATE, ST_C_DEL, ST_C_RETIRE_INBOXES, ST_C_LIST,
	ST_C_AF_GET, ST_C_AF_SET, ST_SEEN_ADD, ST_SEEN_GET, ST_SEEN_PRUNE,
	ST_I_ADD, ST_I_GET, ST_I_LIST, ST_I_LIST_ALL, ST_I_RETIRE, ST_I_EXPIRED,
	ST_I_DEL,
	ST_O_ADD, ST_O_DUE, ST_O_RESCHED, ST_O_HURRY, ST_O_FIND, ST_O_DEL, ST_O_COUNT,
	ST_O_COUNT_ALL, ST_O_USAGE,
	ST_R_ADD, ST_R_PENDING, ST_R_PENDING_COUNT, ST_R_TAKE, ST_R_PRUNE,
	ST_R_PENDING_ANY, ST_R_USAGE, ST_R_TAKE_MSGID,
	ST_K_GET, ST_K_ADD, ST_K_PRUNE,
	ST_COUNT
};

#define STORE_FILE_STMTS	24	/* store_file.c's own statements */
/* Scratch buffers for opened bodies handed out by pointer. */
enum st_buf { SB_OUTBOX, SB_RX, SB_COUNT };

struct store {
	sqlite3		*db;
	sqlite3_stmt	*st[ST_COUNT];
	sqlite3_stmt	*fst[STORE_FILE_STMTS];
	sqlite3_stmt	*meta[STORE_META_COUNT];
	int		 checkpointed;	/* sqlite3_total_changes at the last one */
	int		 errcode;	/* sqlite's extended code of err, 0: ours */
	int		 syserr;	/* the errno behind it, 0: none */
	uint8_t		*key;		/* the data key (sodium_malloc), or NULL */
	uint8_t		*buf[SB_COUNT];	/* opened bodies */
	size_t		 bufcap[SB_COUNT];
	char		 err[256];
};

/*
 * The sealed columns (store_seal.c).  Each value's associated data names
 * its column and its row: the row key is the contact or meta row's id
 * (8 bytes, big endian), or a queued or received message's contact id
 * and msgid.
 */
enum st_secret {
	SEC_IDENTITY_SK, SEC_SHARED_SEED, SEC_KEY_CHECK,
	SEC_PAIR, SEC_AGREE, SEC_SEED_PREV, SEC_ACCEPT_FRAMES, SEC_RESET,
	SEC_RESET_ACK,
	SEC_OUTBOX_BODY, SEC_RX_BODY, SEC_COUNT
};
#define ST_ROWKEY_MAX	(8 + STORE_MSGID_BYTES)
#define ST_SEAL_OVERHEAD (1 + 24 + 16)	/* version, nonce, tag */
struct st_rowkey {
	uint8_t	 b[ST_ROWKEY_MAX];
	size_t	 len;
};
void	st_rowkey_id(struct st_rowkey *rk, int64_t id);
void	st_rowkey_msg(struct st_rowkey *rk, int64_t contact_id,
	    const uint8_t msgid[STORE_MSGID_BYTES]);
/* Binds v sealed as parameter i (len 0 and !always: NULL). */
int	st_bind_sealed(struct store *s, sqlite3_stmt *q, int i,
	    enum st_secret col, const struct st_rowkey *rk, const void *v,
	    size_t len, int always);
/* Opens column i into out (at most outcap bytes; exact: exactly);
 * NULL gives *len 0. */
int	st_col_sealed(struct store *s, sqlite3_stmt *q, int i,
	    enum st_secret col, const struct st_rowkey *rk, uint8_t *out,
	    size_t outcap, size_t *len, int exact);
/* Opens column i into scratch buffer b: *out valid until the next use of
 * b; NULL gives *out NULL, *len 0. */
int	st_col_sealed_ref(struct store *s, sqlite3_stmt *q, int i,
	    enum st_secret col, const struct st_rowkey *rk, enum st_buf b,
	    const uint8_t **out, size_t *len);
void	st_seal_free(struct store *s);

/* Shared by the store's files, nothing else: the statements and the helpers around sqlite. */
void	st_seterr(struct store *, const char *, ...)
	    __attribute__((format(printf, 2, 3)));
int	st_dberr(struct store *s);
sqlite3_stmt *st_stmt(struct store *s, enum st i);
void	st_done(sqlite3_stmt *q);
int	st_run(struct store *s, sqlite3_stmt *q);
int	st_change(struct store *s, sqlite3_stmt *q);
int	st_simple(struct store *s, enum st i);
int	st_sp_begin(struct store *s);
int	st_sp_end(struct store *s, int ok);
int64_t	st_count(struct store *s, sqlite3_stmt *q);
int	st_bind_text(sqlite3_stmt *q, int i, const char *str);
int	st_bind_blob(sqlite3_stmt *q, int i, const void *b, size_t len);
int	st_bind_body(sqlite3_stmt *q, int i, const void *b, size_t len);
int	st_bind_msg(struct store *s, sqlite3_stmt *q, enum st_secret col,
	    int64_t contact_id, const uint8_t msgid[STORE_MSGID_BYTES], int type,
	    const void *body, size_t len);
int	st_bind_fail(struct store *s, sqlite3_stmt *q);
int	st_change_i64(struct store *s, enum st i, int64_t v);
int	st_one_row(struct store *s, sqlite3_stmt *q);
int	st_rows_end(struct store *s, sqlite3_stmt *q, int rc, int n);
int	st_col_text(struct store *s, sqlite3_stmt *q, int i, char *out,
	    size_t outlen);
int	st_col_blob(struct store *s, sqlite3_stmt *q, int i, uint8_t *out,
	    size_t outlen, size_t *len, int exact);
int	st_col_ref(struct store *s, sqlite3_stmt *q, int i, const uint8_t **out,
	    size_t *len);
int	st_col_int(sqlite3_stmt *q, int i);
int	st_exec(struct store *s, const char *sql);

/* store_file.c: prepares its statements (store_open; store_close
 * finalizes fst[]). */
int	store_file_prepare(struct store *s);

/* store_schema.c: the migrations, append only. */
struct store_migration {
	const char	*sql;
	int		(*fn)(struct store *);	/* after sql, same transaction */
};
extern const struct store_migration store_migrations[];
extern const int store_nmigrations;

#endif
