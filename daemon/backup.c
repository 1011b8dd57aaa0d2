/* backup.c: encrypted backups — the state written as records into a backup file (on request or on a schedule), and restored into an empty state directory without touching it until the whole file checked out. */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <sodium.h>
#include <systemd/sd-daemon.h>

#include "backup.h"
#include "backup_rec.h"
#include "bkfile.h"
#include "bkkey.h"
#include "core.h"
#include "log.h"
#include "vault.h"

#define READ_CHUNK	65536
#define ACCEPT_MAX	BREC_ACCEPT_MAX
#define SCHED_PREFIX	"veil-"
#define SCHED_SUFFIX	".vbk"
#define SCHED_FIRST_S	5	/* the first scheduled one after a start */

static const char *config_path;	/* veild.conf, its text goes along */

/*
 * A backup or a restore of many contacts runs in one pass of the loop
 * (seconds at 10,000 contacts): the service manager's watchdog
 * hears from us meanwhile.
 */
static void
keepalive(void)
{
	static struct timespec last;
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (now.tv_sec - last.tv_sec >= 5) {
		sd_notify(0, "WATCHDOG=1");
		last = now;
	}
}

static struct {
	struct event	*timer;
} B;

void
backup_set_config_path(const char *path)
{
	config_path = path;
}

/* ---- writing --------------------------------------------------------------- */

static int
out_fd(void *arg, const uint8_t *b, size_t n)
{
	int fd = *(int *)arg;
	ssize_t w;

	while (n > 0) {
		if ((w = write(fd, b, n)) == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

struct dump {
	struct bk_writer	 w;
	struct backup_result	*r;
	uint8_t			*af;	/* ACCEPT frames scratch */
	int64_t			 records;
	int			 failed;
	char			 why[128];
};

static int
emit(struct dump *d, struct brec *rec)
{
	char *s;
	size_t len = 0;
	int rc;

	if (d->failed)
		return 1;
	if (d->records % 1024 == 0)
		keepalive();
	if ((s = brec_encode(rec, &len)) == NULL) {
		snprintf(d->why, sizeof d->why, "out of memory");
		d->failed = 1;
		return 1;
	}
	rc = bk_writer_record(&d->w, (const uint8_t *)s, len);
	sodium_memzero(s, len);
	free(s);
	if (rc != BK_OK) {
		snprintf(d->why, sizeof d->why, "%s: %s", bk_strerror(rc),
		    strerror(errno));
		d->failed = 1;
		return 1;
	}
	d->records++;
	return 0;
}

static int
dump_contact(const struct store_contact *c, void *arg)
{
	struct dump *d = arg;
	struct store *st = eng_store();
	struct brec *rec;
	int rc;

	if ((rec = calloc(1, sizeof *rec)) == NULL) {
		d->failed = 1;
		return 1;
	}
	rec->type = BREC_CONTACT;
	rec->u.contact.c = *c;
	if (store_contact_accept_frames_get(st, c->id, d->af, ACCEPT_MAX,
	    &rec->u.contact.aflen) == 1)
		rec->u.contact.af = d->af;
	/* The peer's side of a reset goes along (its replay protection);
	 * our own reset in progress does not: a restore starts afresh. */
	if (store_contact_reset_get(st, c->id, &rec->u.contact.reset) == 1) {
		rec->u.contact.reset.due = 0;
		rec->u.contact.reset.mine_len = 0;
	}
	d->r->contacts++;
	rc = emit(d, rec);
	sodium_memzero(rec, sizeof *rec);
	free(rec);
	return rc;
}

static int
dump_card(const struct store_inbox *in, void *arg)
{
	struct brec rec;

	if (in->kind != STORE_INBOX_CARD)
		return 0;
	memset(&rec, 0, sizeof rec);
	rec.type = BREC_CARD;
	rec.u.card = *in;
	return emit(arg, &rec);
}

static int
dump_outbox(const struct store_outbox *o, void *arg)
{
	struct dump *d = arg;
	struct brec rec;

	memset(&rec, 0, sizeof rec);
	rec.type = BREC_OUTBOX;
	rec.u.outbox.o = *o;
	d->r->outbox++;
	return emit(d, &rec);
}

static int
dump_rx(const struct store_rx_row *x, void *arg)
{
	struct dump *d = arg;
	struct brec rec;

	memset(&rec, 0, sizeof rec);
	rec.type = BREC_RX;
	rec.u.rx.r = *x;
	if (!x->taken)
		d->r->unread++;
	return emit(d, &rec);
}

static int
dump_seen(const uint8_t t1[STORE_PK_BYTES], int64_t contact_id, int64_t seen_at,
    void *arg)
{
	struct brec rec;

	memset(&rec, 0, sizeof rec);
	rec.type = BREC_SEEN;
	memcpy(rec.u.seen.t1, t1, sizeof rec.u.seen.t1);
	rec.u.seen.contact_id = contact_id;
	rec.u.seen.seen_at = seen_at;
	return emit(arg, &rec);
}

/* The configuration file's text, if it can be read (it may hold the
 * broker password: it travels encrypted like everything else). */
static char *
read_config(void)
{
	char *buf;
	size_t n;
	FILE *f;

	if (config_path == NULL || (f = fopen(config_path, "re")) == NULL)
		return NULL;
	if ((buf = malloc(BREC_CONFIG_MAX + 1)) == NULL) {
		fclose(f);
		return NULL;
	}
	n = fread(buf, 1, BREC_CONFIG_MAX + 1, f);
	fclose(f);
	if (n > BREC_CONFIG_MAX || memchr(buf, '\0', n) != NULL) {
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	return buf;
}

static int
write_backup(int fd, const struct bk_secret *sec, struct backup_result *r,
    char *err, size_t errlen)
{
	struct store *st = eng_store();
	struct dump d;
	struct brec rec;
	int rc;

	memset(&d, 0, sizeof d);
	d.r = r;
	if ((d.af = malloc(ACCEPT_MAX)) == NULL) {
		seterr(err, errlen, "out of memory");
		return BACKUP_EINTERNAL;
	}
	/* What is written reflects everything acknowledged so far. */
	txn_flush();
	if ((rc = bk_writer_start(&d.w, sec, out_fd, &fd)) != BK_OK) {
		seterr(err, errlen, "%s", bk_strerror(rc));
		free(d.af);
		return rc == BK_ENOMEM ? BACKUP_EINTERNAL : BACKUP_EINVAL;
	}
	memset(&rec, 0, sizeof rec);
	rec.type = BREC_HEADER;
	rec.u.header.format = BREC_FORMAT;
	rec.u.header.wire = VEIL_PROTOCOL_VERSION;
	rec.u.header.created = now_ms();
	emit(&d, &rec);
	memset(&rec, 0, sizeof rec);
	rec.type = BREC_CONFIG;
	if ((rec.u.config.text = read_config()) != NULL) {
		emit(&d, &rec);
		brec_free(&rec);
	}
	memset(&rec, 0, sizeof rec);
	rec.type = BREC_IDENTITY;
	if (store_identity_get(st, rec.u.identity.pk, rec.u.identity.sk) != 1)
		goto dberr;
	emit(&d, &rec);
	memset(&rec, 0, sizeof rec);
	rec.type = BREC_META;
	if (store_meta_get(st, &rec.u.meta) != 1)
		goto dberr;
	emit(&d, &rec);
	sodium_memzero(&rec, sizeof rec);
	if (store_contact_list(st, dump_contact, &d) < 0 ||
	    store_inbox_list_all(st, dump_card, &d) < 0 ||
	    store_outbox_all(st, dump_outbox, &d) < 0 ||
	    store_rx_all(st, dump_rx, &d) < 0 ||
	    store_request_seen_all(st, dump_seen, &d) < 0)
		goto dberr;
	rec.type = BREC_END;
	rec.u.end.records = d.records;
	emit(&d, &rec);
	if (d.failed)
		goto fail;
	if ((rc = bk_writer_finish(&d.w)) != BK_OK) {
		snprintf(d.why, sizeof d.why, "%s", bk_strerror(rc));
		goto fail;
	}
	if (fsync(fd) != 0) {
		snprintf(d.why, sizeof d.why, "fsync: %s", strerror(errno));
		goto fail;
	}
	r->bytes = d.w.bytes;
	bk_writer_free(&d.w);
	sodium_memzero(d.af, ACCEPT_MAX);
	free(d.af);
	return BACKUP_OK;
dberr:
	if (!d.failed)
		snprintf(d.why, sizeof d.why, "store: %s", store_errmsg(st));
fail:
	sodium_memzero(&rec, sizeof rec);
	bk_writer_free(&d.w);
	sodium_memzero(d.af, ACCEPT_MAX);
	free(d.af);
	seterr(err, errlen, "%s", d.why[0] != '\0' ? d.why : "cannot write");
	return BACKUP_EINTERNAL;
}

static int
regular_file(int fd, char *err, size_t errlen)
{
	struct stat st;

	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		seterr(err, errlen, "the backup must be a regular file");
		return -1;
	}
	return 0;
}

int
backup_create(int fd, const struct backup_key *k, struct backup_result *r,
    char *err, size_t errlen)
{
	struct bk_secret sec;
	int rc;

	if (!vault_is_open()) {
		seterr(err, errlen, "veild is locked: unlock it first");
		return BACKUP_ESTATE;
	}
	if (regular_file(fd, err, errlen) != 0)
		return BACKUP_EINVAL;
	memset(&sec, 0, sizeof sec);
	if (k->passphrase != NULL) {
		sec.pass = k->passphrase;
		sec.passlen = k->passlen;
		vault_kdf_limits(&sec.opslimit, &sec.memlimit);
	} else if (k->public_key != NULL)
		sec.pk = k->public_key;
	else {
		seterr(err, errlen, "no passphrase and no public key");
		return BACKUP_EINVAL;
	}
	rc = write_backup(fd, &sec, r, err, errlen);
	if (rc == BACKUP_OK)
		log_info("backup written: %" PRId64 " contacts, %" PRId64
		    " queued, %" PRId64 " unread, %" PRIu64 " bytes", r->contacts,
		    r->outbox, r->unread, r->bytes);
	return rc;
}

/* ---- restoring ------------------------------------------------------------- */

struct load {
	struct store		*st;
	struct backup_result	*r;
	int			 seen_header, seen_identity, seen_end;
	int64_t			 records;
	char			*config;	/* the configuration's text */
	char			 why[256];
};

static int
load_record(void *arg, const uint8_t *json, size_t len)
{
	struct load *l = arg;
	struct brec rec;
	struct store_reset rs;
	int64_t id;
	int rc = -1;

	if (l->records % 1024 == 0)
		keepalive();
	if (brec_decode(json, len, &rec, l->why, sizeof l->why) != 0)
		return -1;
	if (l->seen_end) {
		snprintf(l->why, sizeof l->why, "a record after the end record");
		goto out;
	}
	if (!l->seen_header && rec.type != BREC_HEADER) {
		snprintf(l->why, sizeof l->why, "the first record is not the "
		    "header");
		goto out;
	}
	switch (rec.type) {
	case BREC_HEADER:
		if (l->seen_header) {
			snprintf(l->why, sizeof l->why, "a second header");
			goto out;
		}
		if (rec.u.header.format > BREC_FORMAT) {
			snprintf(l->why, sizeof l->why, "written by a newer veil "
			    "(record format %d; this veild reads %d): upgrade veil "
			    "to restore it", rec.u.header.format, BREC_FORMAT);
			goto out;
		}
		if (rec.u.header.wire != VEIL_PROTOCOL_VERSION) {
			snprintf(l->why, sizeof l->why, "a backup of wire protocol "
			    "%d contacts; this veild speaks %d", rec.u.header.wire,
			    VEIL_PROTOCOL_VERSION);
			goto out;
		}
		l->seen_header = 1;
		break;
	case BREC_CONFIG:
		/* Written beside the state once all went well. */
		free(l->config);
		l->config = rec.u.config.text;
		rec.u.config.text = NULL;
		break;
	case BREC_IDENTITY:
		if (store_identity_set(l->st, rec.u.identity.pk,
		    rec.u.identity.sk) != 0)
			goto dberr;
		l->seen_identity = 1;
		break;
	case BREC_META:
		/* The card stays (requests may be on their way to it); the
		 * shared seed and the client IDs are drawn anew: the restored
		 * daemon must not reuse what the lost one may have used
		 * after the backup. */
		if (store_meta_set_text(l->st, STORE_META_CARD_CID,
		    rec.u.meta.card_cid) != 0 ||
		    store_meta_set_int(l->st, STORE_META_CARD_SHOWN,
		    rec.u.meta.card_shown) != 0 ||
		    store_meta_set_int(l->st, STORE_META_WIRE, rec.u.meta.wire) != 0)
			goto dberr;
		break;
	case BREC_CONTACT:
		if (store_load_contact(l->st, &rec.u.contact.c) != 0 ||
		    (rec.u.contact.aflen > 0 &&
		    store_contact_accept_frames_set(l->st, rec.u.contact.c.id,
		    rec.u.contact.af, rec.u.contact.aflen) != 1))
			goto dberr;
		rs = rec.u.contact.reset;
		rs.mine_len = 0;
		/* Every established contact is re-keyed once the engine
		 * runs: the backup's chains are stale by definition. */
		rs.due = rec.u.contact.c.state == CONTACT_ESTABLISHED;
		if (store_contact_reset_set(l->st, rec.u.contact.c.id, &rs) != 1)
			goto dberr;
		sodium_memzero(&rs, sizeof rs);
		l->r->contacts++;
		break;
	case BREC_CARD:
		if ((id = store_inbox_add(l->st, rec.u.card.topic, 0,
		    STORE_INBOX_CARD, rec.u.card.one_time, rec.u.card.created)) <= 0 ||
		    (rec.u.card.retire_at > 0 && store_inbox_retire(l->st, id,
		    rec.u.card.retire_at) != 1))
			goto dberr;
		break;
	case BREC_OUTBOX:
		if (store_load_outbox(l->st, &rec.u.outbox.o) != 0)
			goto dberr;
		l->r->outbox++;
		break;
	case BREC_RX:
		if (store_load_rx(l->st, &rec.u.rx.r) != 0)
			goto dberr;
		if (!rec.u.rx.r.taken)
			l->r->unread++;
		break;
	case BREC_SEEN:
		if (store_request_seen_add(l->st, rec.u.seen.t1,
		    rec.u.seen.contact_id, rec.u.seen.seen_at) != 0)
			goto dberr;
		break;
	case BREC_END:
		if (rec.u.end.records != l->records) {
			snprintf(l->why, sizeof l->why, "the end record counts %"
			    PRId64 " records, the backup holds %" PRId64,
			    rec.u.end.records, l->records);
			goto out;
		}
		l->seen_end = 1;
		break;
	default:
		goto out;
	}
	l->records++;
	rc = 0;
	goto out;
dberr:
	snprintf(l->why, sizeof l->why, "%s record: store: %s",
	    rec.type == BREC_CONTACT ? "contact" : rec.type == BREC_OUTBOX ?
	    "outbox" : rec.type == BREC_RX ? "rx" : "a", store_errmsg(l->st));
out:
	brec_free(&rec);
	return rc;
}

/* A closed database's -wal and -shm files. */
static void
unlink_db_side(const char *path)
{
	char p[4200];

	snprintf(p, sizeof p, "%s-wal", path);
	unlink(p);
	snprintf(p, sizeof p, "%s-shm", path);
	unlink(p);
}

static void
unlink_db(const char *path)
{
	char p[4200];

	unlink(path);
	snprintf(p, sizeof p, "%s-wal", path);
	unlink(p);
	snprintf(p, sizeof p, "%s-shm", path);
	unlink(p);
}

static int
fsync_dir(const char *dir)
{
	int fd, rc;

	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

/* Reads the header from fd: 0 and h filled, or an error. */
static int
read_header(int fd, struct bk_header *h, uint8_t *buf, size_t *have, char *err,
    size_t errlen)
{
	ssize_t n;
	int rc;

	*have = 0;
	for (;;) {
		rc = bk_header_parse(buf, *have, h);
		if (rc > 0)
			return rc;
		if (rc != BK_EMORE || *have == BK_HEADER_MAX) {
			seterr(err, errlen, "%s", bk_strerror(rc == BK_EMORE ?
			    BK_ETRUNC : rc));
			return -1;
		}
		n = read(fd, buf + *have, BK_HEADER_MAX - *have);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			seterr(err, errlen, "read: %s", strerror(errno));
			return -1;
		}
		if (n == 0) {
			seterr(err, errlen, "%s", *have == 0 ? "the file is empty: "
			    "not a veil backup" : bk_strerror(rc == BK_EMORE ?
			    BK_ETRUNC : rc));
			return -1;
		}
		*have += (size_t)n;
	}
}

/* The rest of fd through the reader: BK_OK or the reader's error. */
static int
read_stream(int fd, struct bk_reader *rd, const uint8_t *pre, size_t prelen)
{
	uint8_t *buf;
	ssize_t n;
	int rc;

	if (prelen > 0 && (rc = bk_reader_feed(rd, pre, prelen)) != BK_OK)
		return rc;
	if ((buf = malloc(READ_CHUNK)) == NULL)
		return BK_ENOMEM;
	for (;;) {
		n = read(fd, buf, READ_CHUNK);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if ((rc = bk_reader_feed(rd, buf, (size_t)n)) != BK_OK) {
			free(buf);
			return rc;
		}
	}
	free(buf);
	if (n < 0)
		return BK_EIO;
	return bk_reader_finish(rd);
}

/*
 * The backed up veild.conf, for reference: the configuration in force
 * is the administrator's (/etc/veil), never overwritten by a restore.
 * It may hold the broker password: mode 0600, like the state.
 */
static void
write_restored_config(const char *text, struct backup_result *r)
{
	char path[sizeof r->path];
	size_t n = strlen(text);
	int fd;

	snprintf(path, sizeof path, "%s/veild.conf.restored", vault_state_dir());
	unlink(path);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC |
	    O_NOFOLLOW, 0600)) == -1 || out_fd(&fd, (const uint8_t *)text, n) != 0) {
		log_warn("restore: %s", path);
		if (fd != -1)
			close(fd);
		return;
	}
	close(fd);
	snprintf(r->path, sizeof r->path, "%s", path);
}

int
backup_restore(int fd, const struct backup_key *k, const char *new_pass,
    size_t new_passlen, struct backup_result *r, char *err, size_t errlen)
{
	uint8_t hbuf[BK_HEADER_MAX], fkey[BK_KEY_BYTES], *key = NULL;
	char tmp[4096], db[4096];
	struct bk_header h;
	struct bk_secret sec;
	struct bk_reader rd;
	struct load l;
	size_t have = 0;
	int hlen, rc, reader = 0, ret = BACKUP_EINTERNAL;

	memset(&l, 0, sizeof l);
	memset(&rd, 0, sizeof rd);
	if ((rc = vault_replaceable(err, errlen)) != 1)
		return rc == 0 ? BACKUP_ESTATE : BACKUP_EINTERNAL;
	if (regular_file(fd, err, errlen) != 0)
		return BACKUP_EINVAL;
	if (k->passphrase != NULL &&
	    vault_attempt_allowed(err, errlen) != VAULT_OK)
		return BACKUP_EBUSY;
	if ((hlen = read_header(fd, &h, hbuf, &have, err, errlen)) < 0)
		return BACKUP_EFORMAT;
	memset(&sec, 0, sizeof sec);
	sec.pass = k->passphrase;
	sec.passlen = k->passlen;
	sec.sk = k->secret_key;
	if (h.kind == BK_PASSPHRASE && sec.pass == NULL) {
		seterr(err, errlen, "this backup is opened by a passphrase, not a "
		    "recovery key");
		return BACKUP_EINVAL;
	}
	if (h.kind == BK_SEALED && sec.sk == NULL) {
		seterr(err, errlen, "this backup is opened by a recovery key "
		    "(veilctl backup restore --recovery-key), not a passphrase");
		return BACKUP_EINVAL;
	}
	if ((rc = bk_header_key(&h, &sec, fkey)) != BK_OK) {
		if (rc == BK_EKEY && h.kind == BK_PASSPHRASE) {
			log_warnx("restore: wrong backup passphrase");
			vault_attempt_failed();
			seterr(err, errlen, "wrong passphrase for this backup");
		} else
			seterr(err, errlen, "%s", bk_strerror(rc));
		return rc == BK_ENOMEM ? BACKUP_EINTERNAL : BACKUP_EWRONG;
	}

	/* A database of its own beside the live one, renamed over it only
	 * once the whole file decrypted and loaded. */
	snprintf(db, sizeof db, "%s/veil.db", vault_state_dir());
	snprintf(tmp, sizeof tmp, "%s/veil.db.restore", vault_state_dir());
	unlink_db(tmp);
	if ((l.st = store_open(tmp, err, errlen)) == NULL)
		goto out;
	if ((key = sodium_malloc(STORE_KEY_BYTES)) == NULL) {
		seterr(err, errlen, "out of memory");
		goto out;
	}
	randombytes_buf(key, STORE_KEY_BYTES);
	l.r = r;
	if (store_set_key(l.st, key) != 0 || store_begin(l.st) != 0 ||
	    store_seal_all(l.st) < 0) {
		seterr(err, errlen, "store: %s", store_errmsg(l.st));
		goto out;
	}
	if (vault_wrap_new(l.st, key, new_pass, new_passlen, err, errlen) != 0) {
		ret = BACKUP_EINVAL;
		goto out;
	}
	if ((rc = bk_reader_init(&rd, &h, fkey, load_record, &l)) != BK_OK) {
		seterr(err, errlen, "%s", bk_strerror(rc));
		goto out;
	}
	reader = 1;
	rc = read_stream(fd, &rd, hbuf + hlen, have - (size_t)hlen);
	if (rc == BK_OK && (!l.seen_end || !l.seen_identity)) {
		rc = BK_ERECORD;
		snprintf(l.why, sizeof l.why, "%s", !l.seen_identity ?
		    "no identity in it" : "no end record");
	}
	if (rc != BK_OK) {
		if (rc == BK_ERECORD && l.why[0] != '\0')
			seterr(err, errlen, "%s: %s", bk_strerror(rc), l.why);
		else if (rc == BK_ETAMPER)
			seterr(err, errlen, "%s (the chunk at byte %" PRIu64 ")",
			    bk_strerror(rc), rd.offset);
		else
			seterr(err, errlen, "%s", bk_strerror(rc));
		ret = rc == BK_ENOMEM || rc == BK_EIO ? BACKUP_EINTERNAL :
		    BACKUP_EFORMAT;
		goto out;
	}
	if (store_commit(l.st) != 0) {
		seterr(err, errlen, "store: %s", store_errmsg(l.st));
		goto out;
	}
	store_close(l.st);
	l.st = NULL;
	r->bytes = rd.offset;	/* the whole file: the FINAL chunk was read */

	/* Everything checked out: the restored database takes the place of
	 * the unused one. */
	/* The unused database was closed cleanly (checkpointed): its -wal and
	 * -shm go first, so that none is taken for the new file's; then one
	 * rename replaces it.  If the rename fails, the old file is still
	 * there, whole. */
	vault_close_for_restore();
	unlink_db_side(db);
	if (rename(tmp, db) != 0) {
		seterr(err, errlen, "rename: %s", strerror(errno));
		goto reopen;
	}
	if (fsync_dir(vault_state_dir()) != 0)
		log_warn("restore: fsync %s", vault_state_dir());
	log_info("restore: %" PRId64 " contacts, %" PRId64 " queued, %" PRId64
	    " unread messages restored", r->contacts, r->outbox, r->unread);
	if (l.config != NULL)
		write_restored_config(l.config, r);
	ret = BACKUP_OK;
reopen:
	if (vault_reopen(key, err, errlen) != 0) {
		log_warnx("restore: %s", err);
		ret = BACKUP_EINTERNAL;
	}
	goto done;
out:
	if (l.st != NULL) {
		store_rollback(l.st);
		store_close(l.st);
	}
	unlink_db(tmp);
done:
	if (l.config != NULL) {
		sodium_memzero(l.config, strlen(l.config));
		free(l.config);
	}
	if (reader)
		bk_reader_free(&rd);
	sodium_memzero(fkey, sizeof fkey);
	if (key != NULL)
		sodium_free(key);
	return ret;
}

/* ---- the schedule ---------------------------------------------------------- */

static int
sched_name(const char *n)
{
	size_t len = strlen(n);

	return strncmp(n, SCHED_PREFIX, sizeof(SCHED_PREFIX) - 1) == 0 &&
	    len > sizeof(SCHED_SUFFIX) - 1 &&
	    strcmp(n + len - (sizeof(SCHED_SUFFIX) - 1), SCHED_SUFFIX) == 0;
}

static int
cmpstr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Deletes all but the newest keep backups (names sort by time); returns
 * the time of the newest (Unix s), 0 when none. */
static int64_t
sched_prune(const char *dir, unsigned keep)
{
	char **names = NULL, **p, path[4200];
	size_t n = 0, cap = 0;
	struct dirent *e;
	struct stat st;
	int64_t newest = 0;
	DIR *d;

	if ((d = opendir(dir)) == NULL)
		return 0;
	while ((e = readdir(d)) != NULL) {
		if (!sched_name(e->d_name))
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 16;
			if ((p = reallocarray(names, cap, sizeof *p)) == NULL)
				break;
			names = p;
		}
		if ((names[n] = strdup(e->d_name)) == NULL)
			break;
		n++;
	}
	closedir(d);
	if (n > 0)
		qsort(names, n, sizeof *names, cmpstr);
	for (size_t i = 0; i < n; i++) {
		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		if (i + keep < n) {
			if (unlink(path) != 0)
				log_warn("backup: remove %s", path);
		} else if (stat(path, &st) == 0 && st.st_mtime > newest)
			newest = st.st_mtime;
		free(names[i]);
	}
	free(names);
	return newest;
}

int
backup_now(struct backup_result *r, char *err, size_t errlen)
{
	const struct veild_config *cfg = eng_cfg();
	uint8_t pk[BKKEY_BYTES];
	char tmp[4096], name[64];
	struct bk_secret sec;
	struct tm tm;
	time_t t = time(NULL);
	int fd, rc;

	if (!vault_is_open()) {
		seterr(err, errlen, "veild is locked: unlock it first");
		return BACKUP_ESTATE;
	}
	if (cfg->backup.dir == NULL || cfg->backup.public_key == NULL ||
	    bkkey_pk_decode(cfg->backup.public_key, pk) != 0) {
		seterr(err, errlen, "no scheduled backups: set backup.dir and "
		    "backup.public_key");
		return BACKUP_ESTATE;
	}
	gmtime_r(&t, &tm);
	strftime(name, sizeof name, SCHED_PREFIX "%Y%m%dT%H%M%SZ" SCHED_SUFFIX, &tm);
	snprintf(r->path, sizeof r->path, "%s/%s", cfg->backup.dir, name);
	snprintf(tmp, sizeof tmp, "%s/.%s.tmp", cfg->backup.dir, name);
	if (mkdir(cfg->backup.dir, 0700) != 0 && errno != EEXIST) {
		seterr(err, errlen, "%s: %s", cfg->backup.dir, strerror(errno));
		return BACKUP_EINTERNAL;
	}
	unlink(tmp);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
	    0600)) == -1) {
		seterr(err, errlen, "%s: %s", tmp, strerror(errno));
		return BACKUP_EINTERNAL;
	}
	memset(&sec, 0, sizeof sec);
	sec.pk = pk;
	rc = write_backup(fd, &sec, r, err, errlen);
	if (close(fd) != 0 && rc == BACKUP_OK) {
		seterr(err, errlen, "%s: %s", tmp, strerror(errno));
		rc = BACKUP_EINTERNAL;
	}
	/* Two in the same second: the later one wins the name. */
	if (rc == BACKUP_OK && rename(tmp, r->path) != 0) {
		seterr(err, errlen, "%s: %s", r->path, strerror(errno));
		rc = BACKUP_EINTERNAL;
	}
	if (rc != BACKUP_OK) {
		unlink(tmp);
		r->path[0] = '\0';
		return rc;
	}
	if (fsync_dir(cfg->backup.dir) != 0)
		log_warn("backup: fsync %s", cfg->backup.dir);
	sched_prune(cfg->backup.dir, cfg->backup.keep);
	log_info("backup: scheduled backup written (%" PRIu64 " bytes)", r->bytes);
	return BACKUP_OK;
}

static void
sched_fire(evutil_socket_t fd, short ev, void *arg)
{
	struct backup_result r;
	char err[256];

	(void)fd;
	(void)ev;
	(void)arg;
	memset(&r, 0, sizeof r);
	if (backup_now(&r, err, sizeof err) != BACKUP_OK)
		log_warnx("backup: %s", err);
	timer_add_ms(B.timer, (int64_t)eng_cfg()->backup.interval_ms);
}

int
backup_init(void)
{
	const struct veild_config *cfg = eng_cfg();
	int64_t newest, wait_ms;

	memset(&B, 0, sizeof B);
	if (cfg->backup.dir == NULL)
		return 0;
	if ((B.timer = evtimer_new(eng_base(), sched_fire, NULL)) == NULL)
		return -1;
	/* The next one is due an interval after the newest there is. */
	newest = sched_prune(cfg->backup.dir, cfg->backup.keep);
	wait_ms = newest * 1000 + (int64_t)cfg->backup.interval_ms - now_ms();
	if (wait_ms < SCHED_FIRST_S * 1000)
		wait_ms = SCHED_FIRST_S * 1000;
	return timer_add_ms(B.timer, wait_ms);
}

void
backup_shutdown(void)
{
	if (B.timer != NULL)
		event_free(B.timer);
	memset(&B, 0, sizeof B);
}
