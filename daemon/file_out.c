/* file_out.c: sending a file — the copy into the state directory, the OFFER, chunks into the outbox a window at a time, the receiver's verdict. */
#define _GNU_SOURCE		/* O_PATH */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <sodium.h>

#include "file_int.h"
#include "log.h"

/*
 * file.send first copies the file into state_dir/outgoing/, hashing it on
 * the way, a FILE_STEP a loop pass (no stall however large it is): the
 * transfer must survive a restart of veild, which may no longer be able to
 * open what the client passed, and the bytes must be the ones hashed even
 * if the original changes meanwhile.  Only then is the transfer stored
 * and the client answered.
 */
struct spool {
	struct spool		*next;
	int64_t			 contact_id;
	uint8_t			 xfer[STORE_XFER_BYTES];
	char			 name[VEIL_FILE_NAME_MAX + 1];
	char			 shown[ENGINE_PATH_MAX];
	int			 in, out;
	uint64_t		 size, off;
	crypto_generichash_state h;
	struct event		*ev;
	engine_send_done	 done;
	void			*arg;
};

static struct spool *spools;

static void
spool_free(struct spool *s, int unlink_tmp)
{
	char p[ENGINE_PATH_MAX];

	for (struct spool **pp = &spools; *pp != NULL; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	if (s->ev != NULL)
		event_free(s->ev);
	if (s->in != -1)
		close(s->in);
	if (s->out != -1)
		close(s->out);
	if (unlink_tmp) {
		file_spool_path(s->xfer, 1, p, sizeof p);
		unlink(p);
	}
	sodium_memzero(&s->h, sizeof s->h);
	free(s);
}

static void __attribute__((format(printf, 3, 4)))
spool_fail(struct spool *s, int rv, const char *fmt, ...)
{
	char err[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, sizeof err, fmt, ap);
	va_end(ap);
	log_warnx("file: a send failed: %s", err);
	s->done(s->arg, rv, NULL, err);
	spool_free(s, 1);
}

/* The window of chunks after the first unacknowledged one: read from the
 * spool, queued as FILE messages, each with its file_wire row. */
int
file_out_pump(struct contact *c, struct store_file *f)
{
	struct store *st = eng_store();
	uint64_t n = file_nchunks(f);
	uint8_t *buf = NULL, msgid[VEIL_MSGID_BYTES];
	char path[ENGINE_PATH_MAX];
	int fd = -1, rv = -1;
	int64_t now = now_ms();

	if (f->state != FS_SENDING || f->next >= n || f->next - f->done >= FILE_WINDOW)
		return 0;
	file_spool_path(f->xfer, 0, path, sizeof path);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) == -1) {
		log_warn("file: %s", path);
		return -1;
	}
	if ((buf = malloc(VEIL_FILE_CHUNK_HDR + (size_t)f->chunk)) == NULL)
		goto out;
	while (f->next < n && f->next - f->done < FILE_WINDOW) {
		uint64_t off = (uint64_t)f->next * f->chunk;
		size_t len = f->size - off < f->chunk ? (size_t)(f->size - off) : f->chunk;
		size_t got = 0;
		ssize_t r;

		while (got < len) {
			r = pread(fd, buf + VEIL_FILE_CHUNK_HDR + got, len - got,
			    (off_t)(off + got));
			if (r == -1 && errno == EINTR)
				continue;
			if (r <= 0) {
				log_warnx("file: %s: short read", path);
				goto out;
			}
			got += (size_t)r;
		}
		veil_file_chunk_header(buf, f->xfer, f->next);
		veil_msgid_new(msgid);
		if (store_outbox_add(st, c->id, msgid, VEIL_T_FILE, buf,
		    VEIL_FILE_CHUNK_HDR + len, now, now + backoff(0)) < 0 ||
		    store_file_wire_add(st, msgid, f->xfer, f->next) < 0 ||
		    send_to(c, VEIL_T_FILE, msgid, buf, VEIL_FILE_CHUNK_HDR + len, 0) != 0)
			goto out;
		f->next++;
	}
	rv = file_save(f);
out:
	if (rv != 0)
		log_warnx("file: cannot queue a chunk: %s", store_errmsg(st));
	free(buf);
	close(fd);
	return rv;
}

/* The copy is complete: the transfer, its OFFER and the first window,
 * in one bracket. */
static void
spool_commit(struct spool *s)
{
	struct store *st = eng_store();
	struct engine_transfer t;
	struct store_file *f;
	struct contact *c = contact_find(s->contact_id);
	uint8_t body[VEIL_FILE_OFFER_MAX], msgid[VEIL_MSGID_BYTES];
	char tmp[ENGINE_PATH_MAX], path[ENGINE_PATH_MAX];
	int64_t now = now_ms();
	int n;

	if (c == NULL || c->state != CONTACT_ESTABLISHED) {
		spool_fail(s, ENGINE_ESTATE, "%s", "the contact is gone");
		return;
	}
	if ((f = calloc(1, sizeof *f)) == NULL) {
		spool_fail(s, ENGINE_EINTERNAL, "%s", "out of memory");
		return;
	}
	f->dir = STORE_FILE_OUT;
	f->contact_id = c->id;
	memcpy(f->xfer, s->xfer, sizeof f->xfer);
	copystr(f->name, s->name, sizeof f->name);
	f->size = s->size;
	crypto_generichash_final(&s->h, f->hash, sizeof f->hash);
	f->chunk = veil_file_chunk_size(eng_cfg()->frames.size);
	f->state = veil_file_chunks(f->size, f->chunk) > 0 ? FS_SENDING : FS_SENT;
	copystr(f->path, s->shown, sizeof f->path);
	f->created = f->updated = now;

	/* The copy is on disk before anything points at it. */
	file_spool_path(s->xfer, 1, tmp, sizeof tmp);
	file_spool_path(s->xfer, 0, path, sizeof path);
	if (fsync(s->out) == -1 || rename(tmp, path) == -1) {
		free(f);
		spool_fail(s, ENGINE_EINTERNAL, "the copy in the state directory: %s",
		    strerror(errno));
		return;
	}
	n = veil_file_offer_encode(body, sizeof body, f->xfer, f->size, f->chunk,
	    f->hash, f->name);
	veil_msgid_new(msgid);
	if (n < 0 || txn_begin() != 0)
		goto fail;
	if (store_file_add(st, f) != 1 ||
	    store_outbox_add(st, c->id, msgid, VEIL_T_FILE, body, (size_t)n, now,
	    now + backoff(0)) < 0 ||
	    store_file_wire_add(st, msgid, f->xfer, FILE_WIRE_OFFER) < 0 ||
	    send_to(c, VEIL_T_FILE, msgid, body, (size_t)n, 0) != 0 ||
	    file_out_pump(c, f) != 0 || txn_commit() != 0) {
		txn_rollback();
		goto fail;
	}
	log_info("contact %" PRId64 ": sending a file of %" PRIu64 " bytes",
	    c->id, f->size);
	file_note(f, 1);
	{
		char hex[ENGINE_XFER_TEXT];

		memset(&t, 0, sizeof t);
		sodium_bin2hex(hex, sizeof hex, f->xfer, sizeof f->xfer);
		copystr(t.id, hex, sizeof t.id);
		t.outgoing = 1;
		copystr(t.contact, c->name, sizeof t.contact);
		copystr(t.name, f->name, sizeof t.name);
		t.size = f->size;
		t.state = f->state == FS_SENDING ? "sending" : "sent";
		copystr(t.path, f->path, sizeof t.path);
		t.created = now / 1000;
	}
	s->done(s->arg, ENGINE_OK, &t, NULL);
	free(f);
	spool_free(s, 0);
	return;
fail:
	unlink(path);
	free(f);
	spool_fail(s, ENGINE_EINTERNAL, "store: %s", store_errmsg(st));
}

static void
spool_step(evutil_socket_t fd, short ev, void *arg)
{
	struct spool *s = arg;
	uint8_t *buf;
	size_t want, got = 0;
	ssize_t r;

	(void)fd;
	(void)ev;
	want = s->size - s->off < FILE_STEP ? (size_t)(s->size - s->off) : FILE_STEP;
	if ((buf = malloc(want ? want : 1)) == NULL) {
		spool_fail(s, ENGINE_EINTERNAL, "%s", "out of memory");
		return;
	}
	while (got < want) {
		/* pread: the client's file offset stays where it was. */
		r = pread(s->in, buf + got, want - got, (off_t)(s->off + got));
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			free(buf);
			spool_fail(s, ENGINE_EINVAL, "reading the file: %s",
			    strerror(errno));
			return;
		}
		if (r == 0) {
			free(buf);
			spool_fail(s, ENGINE_EINVAL, "%s",
			    "the file shrank while it was read");
			return;
		}
		got += (size_t)r;
	}
	for (size_t w = 0; w < got; ) {
		r = write(s->out, buf + w, got - w);
		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0) {
			free(buf);
			spool_fail(s, ENGINE_EINTERNAL,
			    "the copy in the state directory: %s", strerror(errno));
			return;
		}
		w += (size_t)r;
	}
	crypto_generichash_update(&s->h, buf, got);
	free(buf);
	s->off += got;
	if (s->off < s->size) {
		timer_add_ms(s->ev, 0);
		return;
	}
	close(s->in);
	s->in = -1;
	spool_commit(s);
}

int
engine_file_send(const char *to, int fd, const char *path, uid_t peer,
    const char *name, engine_send_done done, void *arg, void **handle,
    char *err, size_t errlen)
{
	struct contact *c = contact_by_name(to);
	const char *base;
	struct spool *s = NULL;
	struct stat st;
	char tmp[ENGINE_PATH_MAX];
	int fl, rv = ENGINE_EINVAL;

	if (c == NULL) {
		seterr(err, errlen, "no contact named %s", to);
		rv = ENGINE_ENOENT;
		goto fail;
	}
	if (c->state != CONTACT_ESTABLISHED) {
		seterr(err, errlen, "%s is %s, not established", c->name,
		    veil_agree_state_name(c->state));
		rv = ENGINE_ESTATE;
		goto fail;
	}
	if (fd == -1) {
		/* veild opens a path only for a client that could open it as
		 * veild: root, or veild's own user.  Anyone else passes the
		 * open file, so that its own permissions decide. */
		if (path == NULL) {
			seterr(err, errlen, "give a path or pass the open file");
			goto fail;
		}
		if (peer != 0 && peer != geteuid()) {
			seterr(err, errlen, "veild opens files only for its own user "
			    "and root: pass the open file instead (veilctl send-file "
			    "does)");
			goto fail;
		}
		if (path[0] != '/') {
			seterr(err, errlen, "path must be absolute");
			goto fail;
		}
		if ((fd = open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC)) == -1) {
			seterr(err, errlen, "%s: %s", path, strerror(errno));
			goto fail;
		}
	}
	if ((fl = fcntl(fd, F_GETFL)) == -1 || (fl & O_PATH) ||
	    (fl & O_ACCMODE) == O_WRONLY) {
		seterr(err, errlen, "the file is not open for reading");
		goto fail;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		seterr(err, errlen, "not a regular file");
		goto fail;
	}
	if ((uint64_t)st.st_size > eng_cfg()->files.max_size) {
		seterr(err, errlen, "the file has %lld bytes, more than files.max_size "
		    "(%zu)", (long long)st.st_size, eng_cfg()->files.max_size);
		rv = ENGINE_ETOOBIG;
		goto fail;
	}
	if (name == NULL) {
		if (path == NULL || *path == '\0') {
			seterr(err, errlen, "give a name for the file");
			goto fail;
		}
		base = strrchr(path, '/');
		name = base != NULL ? base + 1 : path;
	}
	/* What the receiver will take is its decision (file_in.c); here only
	 * what the OFFER can carry. */
	if (*name == '\0' || strlen(name) > VEIL_FILE_NAME_MAX) {
		seterr(err, errlen, "the name must have 1 to %d bytes",
		    VEIL_FILE_NAME_MAX);
		goto fail;
	}
	if ((s = calloc(1, sizeof *s)) == NULL) {
		rv = ENGINE_EINTERNAL;
		goto fail;
	}
	s->in = fd;
	fd = -1;
	s->out = -1;
	s->contact_id = c->id;
	veil_msgid_new(s->xfer);
	copystr(s->name, name, sizeof s->name);
	copystr(s->shown, path != NULL ? path : "", sizeof s->shown);
	s->size = (uint64_t)st.st_size;
	s->done = done;
	s->arg = arg;
	crypto_generichash_init(&s->h, NULL, 0, VEIL_FILE_HASH_BYTES);
	file_spool_path(s->xfer, 1, tmp, sizeof tmp);
	s->out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (s->out == -1) {
		seterr(err, errlen, "%s: %s", tmp, strerror(errno));
		rv = ENGINE_EINTERNAL;
		goto fail;
	}
	if ((s->ev = evtimer_new(eng_base(), spool_step, s)) == NULL ||
	    timer_add_ms(s->ev, 0) != 0) {
		rv = ENGINE_EINTERNAL;
		goto fail;
	}
	s->next = spools;
	spools = s;
	*handle = s;
	return ENGINE_OK;
fail:
	if (fd != -1)
		close(fd);
	if (s != NULL) {
		s->next = NULL;
		spool_free(s, 1);
	}
	return rv;
}

void
engine_file_send_abort(void *handle)
{
	spool_free(handle, 1);
}

/* An outbox row of ours arrived: a chunk counts, the window moves. */
void
file_out_acked(struct contact *c, const uint8_t msgid[VEIL_MSGID_BYTES])
{
	struct store *st = eng_store();
	uint8_t xfer[STORE_XFER_BYTES];
	struct store_file *f;
	int64_t idx;
	int was;

	if (store_file_wire_take(st, msgid, xfer, &idx) != 1 || idx < 0)
		return;
	if ((f = malloc(sizeof *f)) == NULL)
		return;
	if (store_file_get(st, STORE_FILE_OUT, 0, xfer, f) == 1 &&
	    f->contact_id == c->id && f->state == FS_SENDING) {
		/*
		 * An ACK: the receiver is there and the window moves, so the
		 * chunks still in flight are queued at the broker, not lost.
		 * Their retransmission waits another backoff from now, like a
		 * TCP timer restarted by an ACK: on a slow broker (prosody)
		 * a window can take longer to pass than retransmit.initial,
		 * and resending it then (outbox_hurry resends every retried
		 * row at each frame from the peer) only adds to the queue.
		 */
		store_file_wire_delay(st, xfer, now_ms() + backoff(0));
		was = f->state;
		if (++f->done >= file_nchunks(f))
			f->state = FS_SENT;
		if (file_save(f) == 0 && file_out_pump(c, f) == 0)
			file_note(f, f->state != was);
	}
	free(f);
}

/* The outbox rows still carrying f go: it ended before they arrived. */
static void
drop_row(const uint8_t msgid[STORE_MSGID_BYTES], void *arg)
{
	struct contact *c = arg;

	store_outbox_ack(eng_store(), c->id, msgid, NULL);
}

static void
wind_up(struct contact *c, struct store_file *f)
{
	char path[ENGINE_PATH_MAX];

	store_file_wire_drain(eng_store(), f->xfer, drop_row, c);
	file_spool_path(f->xfer, 0, path, sizeof path);
	unlink(path);
}

/* The receiver's verdict (or its refusal of the OFFER). */
void
file_out_end(struct contact *c, struct store_file *f, uint8_t status)
{
	if (f->state != FS_SENDING && f->state != FS_SENT)
		return;
	wind_up(c, f);
	f->status = status;
	f->state = status == VEIL_FILE_OK ? FS_DONE : FS_FAILED;
	if (f->state == FS_DONE)
		f->done = (uint32_t)file_nchunks(f);
	if (file_save(f) != 0)
		return;
	if (status == VEIL_FILE_OK)
		log_info("contact %" PRId64 ": a file arrived intact", c->id);
	else
		log_info("contact %" PRId64 ": a file was not taken: %s", c->id,
		    file_status_text(status));
	file_note(f, 1);
}

int
file_out_cancel(struct contact *c, struct store_file *f)
{
	wind_up(c, f);
	f->state = FS_FAILED;
	f->status = VEIL_FILE_CANCELLED;
	if (file_save(f) != 0 ||
	    file_send_end(c, f->xfer, VEIL_FILE_CANCELLED, 1) != 0)
		return -1;
	file_note(f, 1);
	return 0;
}

struct sending {
	uint8_t	(*ids)[STORE_XFER_BYTES];
	size_t	 n, cap;
};

static int
start_cb(const struct store_file *f, void *arg)
{
	struct sending *l = arg;

	if (f->dir != STORE_FILE_OUT || f->state != FS_SENDING)
		return 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		void *p = reallocarray(l->ids, cap, sizeof *l->ids);

		if (p == NULL)
			return 1;
		l->ids = p;
		l->cap = cap;
	}
	memcpy(l->ids[l->n++], f->xfer, STORE_XFER_BYTES);
	return 0;
}

/* At start: every window full again (a crash between an ACK and the next
 * chunk leaves nothing undone, but a pump that failed may have). */
void
file_out_start(void)
{
	struct sending l = { NULL, 0, 0 };
	struct store_file *f;
	struct contact *c;

	if ((f = malloc(sizeof *f)) == NULL)
		return;
	store_file_list(eng_store(), start_cb, &l);
	for (size_t i = 0; i < l.n; i++) {
		if (store_file_get(eng_store(), STORE_FILE_OUT, 0, l.ids[i], f) != 1 ||
		    (c = contact_find(f->contact_id)) == NULL || txn_begin() != 0)
			continue;
		if (file_out_pump(c, f) == 0)
			txn_commit();
		else
			txn_rollback();
	}
	free(l.ids);
	free(f);
}

void
file_out_shutdown(void)
{
	while (spools != NULL)
		spool_free(spools, 1);
}
