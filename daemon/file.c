/* file.c: file transfers — their directories, the FILE messages in, notifications, listing and cancelling, and the housekeeping of their files. */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "file_int.h"
#include "log.h"

#define NOTE_MS		250		/* progress notifications per transfer */
#define NOTES		64
#define KEEP_ENDED_MS	(7LL * 24 * 3600 * 1000)	/* ended transfers listed */
#define KEEP_FAILED_IN_MS (24LL * 3600 * 1000)		/* refused offers kept */
#define DIR_MAX		(ENGINE_PATH_MAX - VEIL_FILE_NAME_MAX - 64)

static struct {
	/* Room after each for a file name (the paths built fit 4096). */
	char	 out[DIR_MAX];		/* state_dir/outgoing */
	char	 in[DIR_MAX];		/* state_dir/incoming */
	char	 dir[DIR_MAX];		/* files.dir */
	struct note {
		int		 dir;
		int64_t		 contact;
		uint8_t		 xfer[STORE_XFER_BYTES];
		int64_t		 at;
		int		 state;
	}	 notes[NOTES];
	unsigned next_note;
} F;

/* --- small things ------------------------------------------------------ */

int
file_active(int state)
{
	return state != FS_DONE && state != FS_FAILED;
}

static const char *const state_names[] = {
	[FS_SENDING] = "sending", [FS_SENT] = "sent", [FS_RECEIVING] = "receiving",
	[FS_VERIFYING] = "verifying", [FS_PLACING] = "verifying",
	[FS_DONE] = "done", [FS_FAILED] = "failed",
};

static const char *
state_text(int state)
{
	if (state < 1 || state > FS_FAILED)
		return "failed";
	return state_names[state];
}

const char *
file_status_text(int status)
{
	switch (status) {
	case VEIL_FILE_OK:		return NULL;
	case VEIL_FILE_TOOBIG:		return "too large for the receiver";
	case VEIL_FILE_QUOTA:		return "over the receiver's quota";
	case VEIL_FILE_BADNAME:		return "a name the receiver refuses";
	case VEIL_FILE_BADHASH:		return "the bytes did not match the hash";
	case VEIL_FILE_CANCELLED:	return "cancelled";
	case VEIL_FILE_IOERR:		return "the receiver could not store it";
	case VEIL_FILE_BUSY:		return "too many transfers at once";
	default:			return "failed";
	}
}

void
file_spool_path(const uint8_t xfer[STORE_XFER_BYTES], int tmp, char *out, size_t len)
{
	char hex[2 * STORE_XFER_BYTES + 1];

	sodium_bin2hex(hex, sizeof hex, xfer, STORE_XFER_BYTES);
	snprintf(out, len, "%s/%s%s", F.out, hex, tmp ? ".tmp" : "");
}

void
file_part_path(int64_t contact_id, const uint8_t xfer[STORE_XFER_BYTES], char *out,
    size_t len)
{
	char hex[2 * STORE_XFER_BYTES + 1];

	sodium_bin2hex(hex, sizeof hex, xfer, STORE_XFER_BYTES);
	snprintf(out, len, "%s/%" PRId64 "-%s.part", F.in, contact_id, hex);
}

const char *
file_dir(void)
{
	return F.dir;
}

uint64_t
file_nchunks(const struct store_file *f)
{
	return veil_file_chunks(f->size, f->chunk);
}

int
file_save(struct store_file *f)
{
	f->updated = now_ms();
	return store_file_update(eng_store(), f) == 1 ? 0 : -1;
}

static void
transfer_info(const struct store_file *f, struct engine_transfer *t)
{
	const struct contact *c = contact_find(f->contact_id);
	uint64_t bytes = (uint64_t)f->done * f->chunk;

	memset(t, 0, sizeof *t);
	sodium_bin2hex(t->id, sizeof t->id, f->xfer, sizeof f->xfer);
	t->outgoing = f->dir == STORE_FILE_OUT;
	copystr(t->contact, c != NULL ? c->name : "", sizeof t->contact);
	copystr(t->name, f->name, sizeof t->name);
	t->size = f->size;
	t->bytes = bytes > f->size || f->state == FS_DONE ? f->size : bytes;
	t->state = state_text(f->state);
	t->status = f->state == FS_FAILED ? file_status_text(f->status) : NULL;
	if (f->state == FS_FAILED && t->status == NULL)
		t->status = "failed";
	if (t->outgoing || f->state == FS_DONE)
		copystr(t->path, f->path, sizeof t->path);
	t->created = f->created / 1000;
}

void
file_note(const struct store_file *f, int force)
{
	struct engine_transfer t;
	struct engine_event ev;
	struct note *n = NULL;
	int64_t now = now_ms();

	for (int i = 0; i < NOTES; i++)
		if (F.notes[i].dir == f->dir && F.notes[i].contact == f->contact_id &&
		    memcmp(F.notes[i].xfer, f->xfer, STORE_XFER_BYTES) == 0) {
			n = &F.notes[i];
			break;
		}
	if (n != NULL && !force && n->state == f->state && now - n->at < NOTE_MS)
		return;
	if (n == NULL) {
		n = &F.notes[F.next_note++ % NOTES];
		n->dir = f->dir;
		n->contact = f->contact_id;
		memcpy(n->xfer, f->xfer, STORE_XFER_BYTES);
	}
	n->at = now;
	n->state = f->state;
	transfer_info(f, &t);
	memset(&ev, 0, sizeof ev);
	ev.type = ENGINE_EV_TRANSFER;
	ev.name = t.contact;
	ev.transfer = &t;
	eng_event(&ev);
}

int
file_ack(struct contact *c, const uint8_t msgid[VEIL_MSGID_BYTES], int dup)
{
	uint8_t ackid[VEIL_MSGID_BYTES];

	veil_msgid_new(ackid);
	return send_to(c, VEIL_T_ACK, ackid, msgid, VEIL_MSGID_BYTES,
	    dup ? dup_attempt(c) : 0);
}

int
file_send_end(struct contact *c, const uint8_t xfer[STORE_XFER_BYTES], uint8_t status,
    int track)
{
	struct store *st = eng_store();
	uint8_t body[VEIL_FILE_END_BYTES], msgid[VEIL_MSGID_BYTES];
	int64_t now = now_ms();

	veil_file_end_encode(body, xfer, status);
	veil_msgid_new(msgid);
	if (store_outbox_add(st, c->id, msgid, VEIL_T_FILE, body, sizeof body, now,
	    now + backoff(0)) < 0)
		return -1;
	if (track && store_file_wire_add(st, msgid, xfer, FILE_WIRE_END) < 0)
		return -1;
	return send_to(c, VEIL_T_FILE, msgid, body, sizeof body, 0);
}

/*
 * The "a file came" message kept in the receive queue: u64 size || hash ||
 * u16 name length || name || path.  Local only, never on the wire.
 */
int
file_rx_body(const struct store_file *f, uint8_t **body, size_t *len)
{
	size_t nl = strlen(f->name), pl = strlen(f->path), n = 8 + 32 + 2 + nl + pl;
	uint8_t *b;

	if ((b = malloc(n)) == NULL)
		return -1;
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(f->size >> (56 - 8 * i));
	memcpy(b + 8, f->hash, 32);
	b[40] = (uint8_t)(nl >> 8);
	b[41] = (uint8_t)nl;
	memcpy(b + 42, f->name, nl);
	memcpy(b + 42 + nl, f->path, pl);
	*body = b;
	*len = n;
	return 0;
}

int
file_rx_info(const uint8_t *b, size_t len, struct engine_file *out)
{
	size_t nl, pl;

	memset(out, 0, sizeof *out);
	if (b == NULL || len < 42)
		return -1;
	nl = (size_t)b[40] << 8 | b[41];
	if (nl > VEIL_FILE_NAME_MAX || 42 + nl > len)
		return -1;
	pl = len - 42 - nl;
	if (pl >= sizeof out->path)
		return -1;
	for (int i = 0; i < 8; i++)
		out->size = out->size << 8 | b[i];
	sodium_bin2hex(out->hash, sizeof out->hash, b + 8, 32);
	memcpy(out->name, b + 42, nl);
	memcpy(out->path, b + 42 + nl, pl);
	return memchr(out->name, '\0', nl) == NULL &&
	    memchr(out->path, '\0', pl) == NULL ? 0 : -1;
}

/* --- messages in ------------------------------------------------------- */

void
file_handle(struct contact *c, const uint8_t msgid[VEIL_MSGID_BYTES],
    const uint8_t *body, size_t len)
{
	struct veil_file_msg m;
	struct store_file *f;
	int r;

	if (c->state != CONTACT_ESTABLISHED)
		return;
	if ((r = veil_file_decode(body, len, &m)) != VEIL_OK) {
		/* Never understood, so never asked for again. */
		log_debug("contact %" PRId64 ": FILE message dropped: %s", c->id,
		    veil_strerror(r));
		file_ack(c, msgid, 0);
		return;
	}
	switch (m.kind) {
	case VEIL_FILE_OFFER:
		file_in_offer(c, msgid, &m);
		return;
	case VEIL_FILE_CHUNK:
		file_in_chunk(c, msgid, &m);
		return;
	}
	/* END: the receiver's verdict on one of ours, or the sender gave up. */
	if ((f = malloc(sizeof *f)) == NULL)
		return;
	if (store_file_get(eng_store(), STORE_FILE_OUT, 0, m.id, f) == 1 &&
	    f->contact_id == c->id)
		file_out_end(c, f, m.status);
	else if (store_file_get(eng_store(), STORE_FILE_IN, c->id, m.id, f) == 1 &&
	    file_active(f->state))
		file_in_fail(f, m.status != VEIL_FILE_OK ? m.status :
		    VEIL_FILE_CANCELLED, 0);
	free(f);
	file_ack(c, msgid, 0);
}

void
file_acked(struct contact *c, const uint8_t msgid[VEIL_MSGID_BYTES])
{
	file_out_acked(c, msgid);
}

/* --- listing and cancelling -------------------------------------------- */

struct each {
	int	(*cb)(const struct engine_transfer *, void *);
	void	*arg;
	struct engine_transfer t;
};

static int
each_cb(const struct store_file *f, void *arg)
{
	struct each *e = arg;

	transfer_info(f, &e->t);
	return e->cb(&e->t, e->arg);
}

int
engine_transfer_foreach(int (*cb)(const struct engine_transfer *, void *), void *arg)
{
	struct each *e;
	int r;

	if ((e = malloc(sizeof *e)) == NULL)
		return -1;
	e->cb = cb;
	e->arg = arg;
	r = store_file_list(eng_store(), each_cb, e);
	free(e);
	return r < 0 ? -1 : 0;
}

struct find {
	uint8_t			 xfer[STORE_XFER_BYTES];
	struct store_file	*f;
	int			 found;
};

/* The first transfer with this ID that has not ended, else the first. */
static int
find_cb(const struct store_file *f, void *arg)
{
	struct find *x = arg;

	if (memcmp(f->xfer, x->xfer, STORE_XFER_BYTES) != 0)
		return 0;
	if (x->found && !file_active(f->state))
		return 0;
	*x->f = *f;
	x->found = 1;
	return file_active(f->state);
}

int
engine_transfer_cancel(const char *id, char *err, size_t errlen)
{
	struct find x;
	struct contact *c;
	size_t n = 0;
	int rv = ENGINE_OK;

	memset(&x, 0, sizeof x);
	if (strlen(id) != 2 * STORE_XFER_BYTES ||
	    sodium_hex2bin(x.xfer, sizeof x.xfer, id, strlen(id), NULL, &n, NULL) != 0 ||
	    n != sizeof x.xfer) {
		seterr(err, errlen, "not a transfer ID (32 hex digits)");
		return ENGINE_EINVAL;
	}
	if ((x.f = malloc(sizeof *x.f)) == NULL)
		return ENGINE_EINTERNAL;
	if (store_file_list(eng_store(), find_cb, &x) < 0) {
		seterr(err, errlen, "store: %s", store_errmsg(eng_store()));
		rv = ENGINE_EINTERNAL;
	} else if (!x.found) {
		seterr(err, errlen, "no transfer %s", id);
		rv = ENGINE_ENOENT;
	} else if (!file_active(x.f->state)) {
		seterr(err, errlen, "transfer %s has ended (%s)", id,
		    state_text(x.f->state));
		rv = ENGINE_ESTATE;
	} else if ((c = contact_find(x.f->contact_id)) == NULL) {
		rv = ENGINE_ENOENT;
	} else if (txn_begin() != 0) {
		rv = ENGINE_EINTERNAL;
	} else {
		int r = x.f->dir == STORE_FILE_OUT ? file_out_cancel(c, x.f) :
		    file_in_fail(x.f, VEIL_FILE_CANCELLED, 1);

		if (r != 0 || txn_commit() != 0) {
			txn_rollback();
			seterr(err, errlen, "store: %s", store_errmsg(eng_store()));
			rv = ENGINE_EINTERNAL;
		}
	}
	free(x.f);
	return rv;
}

/* --- directories, start, housekeeping ---------------------------------- */

static int
mkdir_mode(const char *path, mode_t mode, char *err, size_t errlen)
{
	struct stat st;

	if (mkdir(path, mode) == 0) {
		/* Made here: the mode asked for, whatever the umask (the
		 * unit's is 0077). */
		if (chmod(path, mode) == -1) {
			seterr(err, errlen, "%s: %s", path, strerror(errno));
			return -1;
		}
	} else if (errno != EEXIST) {
		seterr(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (lstat(path, &st) == -1 || !S_ISDIR(st.st_mode)) {
		seterr(err, errlen, "%s: not a directory", path);
		return -1;
	}
	return 0;
}

/* Is this file in outgoing/ or incoming/ one a live transfer owns? */
struct owned {
	const char	*dirpath;
	const char	*name;
	int		 yes;
};

static int
owned_cb(const struct store_file *f, void *arg)
{
	struct owned *o = arg;
	char p[ENGINE_PATH_MAX];

	if (!file_active(f->state))
		return 0;
	if (f->dir == STORE_FILE_OUT)
		file_spool_path(f->xfer, 0, p, sizeof p);
	else
		file_part_path(f->contact_id, f->xfer, p, sizeof p);
	if (strncmp(p, o->dirpath, strlen(o->dirpath)) == 0 &&
	    strcmp(p + strlen(o->dirpath) + 1, o->name) == 0) {
		o->yes = 1;
		return 1;
	}
	return 0;
}

/*
 * Deletes what no live transfer owns in outgoing/ and incoming/: files of
 * a contact that was removed, and at start the copies a crash cut short
 * (*.tmp: later, they are the copies file.send is making).
 */
static void
sweep(int at_start)
{
	const char *dirs[2] = { F.out, F.in };
	char p[ENGINE_PATH_MAX + 256];
	struct dirent *e;
	struct owned o;
	DIR *d;

	for (int i = 0; i < 2; i++) {
		if ((d = opendir(dirs[i])) == NULL)
			continue;
		while ((e = readdir(d)) != NULL) {
			size_t nl = strlen(e->d_name);

			if (e->d_name[0] == '.' || (!at_start && nl > 4 &&
			    strcmp(e->d_name + nl - 4, ".tmp") == 0))
				continue;
			memset(&o, 0, sizeof o);
			o.dirpath = dirs[i];
			o.name = e->d_name;
			if (store_file_list(eng_store(), owned_cb, &o) < 0)
				break;
			if (o.yes)
				continue;
			snprintf(p, sizeof p, "%s/%s", dirs[i], e->d_name);
			if (unlink(p) == 0)
				log_debug("file: removed %s", p);
		}
		closedir(d);
	}
}

void
file_sweep(void)
{
	sweep(0);
}

static int
resume_cb(const struct store_file *f, void *arg)
{
	(void)arg;
	if (f->dir == STORE_FILE_IN &&
	    (f->state == FS_VERIFYING || f->state == FS_PLACING))
		file_in_resume(f);
	return 0;
}

int
file_init(char *err, size_t errlen)
{
	const struct veild_config *cfg = eng_cfg();

	memset(&F, 0, sizeof F);
	if (strlen(cfg->state_dir) + 16 > sizeof F.out ||
	    (cfg->files.dir != NULL && strlen(cfg->files.dir) >= sizeof F.dir)) {
		seterr(err, errlen, "state_dir or files.dir: path too long");
		return -1;
	}
	snprintf(F.out, sizeof F.out, "%s/outgoing", cfg->state_dir);
	snprintf(F.in, sizeof F.in, "%s/incoming", cfg->state_dir);
	if (cfg->files.dir != NULL)
		copystr(F.dir, cfg->files.dir, sizeof F.dir);
	else
		snprintf(F.dir, sizeof F.dir, "%s/files", cfg->state_dir);
	if (mkdir_mode(F.out, 0700, err, errlen) != 0 ||
	    mkdir_mode(F.in, 0700, err, errlen) != 0)
		return -1;
	/* The received files are for the socket's users (group): 0750. */
	if (mkdir_mode(F.dir, 0750, err, errlen) != 0)
		return -1;
	/* A CHUNK is one message: a receiver that refuses messages that
	 * large can take no file from a veild (protocol.md 7.1). */
	if (cfg->limits.message_max < VEIL_FILE_CHUNK_HDR +
	    (size_t)veil_file_chunk_size(cfg->frames.size))
		log_warnx("limits.message_max (%zu bytes) is below one file chunk "
		    "(%zu): contacts cannot send files here", cfg->limits.message_max,
		    VEIL_FILE_CHUNK_HDR + (size_t)veil_file_chunk_size(cfg->frames.size));
	sweep(1);
	if (store_file_list(eng_store(), resume_cb, NULL) < 0) {
		seterr(err, errlen, "store: %s", store_errmsg(eng_store()));
		return -1;
	}
	return 0;
}

void
file_start(void)
{
	file_out_start();
}

void
file_shutdown(void)
{
	file_out_shutdown();
	file_in_shutdown();
}

struct prune {
	int64_t			 now;
	struct store_file	 gone[32];
	int			 n;
};

/* Rows to forget: ended outgoing ones after a week; refused offers after
 * a day; received files once they are no longer there, after a week. */
static int
prune_cb(const struct store_file *f, void *arg)
{
	struct prune *p = arg;
	struct stat st;
	int64_t age = p->now - f->updated;

	if (file_active(f->state))
		return 0;
	if ((f->dir == STORE_FILE_OUT && age > KEEP_ENDED_MS) ||
	    (f->dir == STORE_FILE_IN && f->state == FS_FAILED &&
	    age > KEEP_FAILED_IN_MS) ||
	    (f->dir == STORE_FILE_IN && f->state == FS_DONE && age > KEEP_ENDED_MS &&
	    stat(f->path, &st) == -1 && errno == ENOENT))
		p->gone[p->n++] = *f;
	return p->n == (int)(sizeof p->gone / sizeof p->gone[0]);
}

void
file_housekeeping(int64_t now)
{
	struct prune *p;

	if ((p = calloc(1, sizeof *p)) == NULL)
		return;
	p->now = now;
	if (store_file_list(eng_store(), prune_cb, p) >= 0 && p->n > 0 &&
	    txn_begin() == 0) {
		for (int i = 0; i < p->n; i++)
			store_file_delete(eng_store(), p->gone[i].dir,
			    p->gone[i].contact_id, p->gone[i].xfer);
		txn_commit();
	}
	free(p);
}
