/* file_in.c: receiving a file — the OFFER against the limits, chunks into a .part file, then the hash checked and the file moved into files.dir under a name of its own. */
#define _GNU_SOURCE		/* renameat2 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <sodium.h>

#include "file_int.h"
#include "log.h"

#define IN_ACTIVE_MAX	8	/* transfers from one contact at once */
#define NAME_TRIES	1000	/* "name (1).ext" ... "name (999).ext" */

/* --- the OFFER ----------------------------------------------------------- */

struct usage {
	int64_t		 contact_id;
	uint64_t	 bytes;
	int		 active;
};

static uint64_t
cost(uint64_t size)
{
	return size < FILE_MIN_COST ? FILE_MIN_COST : size;
}

/* What a contact's files take: those on their way, and those received
 * that are still in files.dir (deleting one frees its share). */
static int
usage_cb(const struct store_file *f, void *arg)
{
	struct usage *u = arg;
	struct stat st;

	if (f->dir != STORE_FILE_IN || f->contact_id != u->contact_id)
		return 0;
	if (file_active(f->state)) {
		u->bytes += cost(f->size);
		u->active++;
	} else if (f->state == FS_DONE && lstat(f->path, &st) == 0 &&
	    S_ISREG(st.st_mode))
		u->bytes += cost((uint64_t)st.st_size);
	return 0;
}

/* The name it will have here, or why none: the sender's, if it is one a
 * file may have (no separator, control or invisible character, not a dot
 * name), with a leading '.' made '_' so that it is not hidden. */
static int
safe_name(const char *offered, char out[VEIL_FILE_NAME_MAX + 1])
{
	if (veil_file_name_check(offered) != VEIL_OK)
		return -1;
	copystr(out, offered, VEIL_FILE_NAME_MAX + 1);
	if (out[0] == '.')
		out[0] = '_';
	return 0;
}

/* A refused name as it may be listed: valid UTF-8, '?' for the rest. */
static void
shown_name(const char *offered, char out[VEIL_FILE_NAME_MAX + 1])
{
	size_t i, o = 0;

	for (i = 0; offered[i] != '\0' && o < VEIL_FILE_NAME_MAX; i++) {
		unsigned char ch = (unsigned char)offered[i];

		out[o++] = ch >= 0x20 && ch < 0x7f && ch != '/' && ch != '\\' ?
		    (char)ch : '?';
	}
	out[o] = '\0';
}

static uint8_t
offer_check(struct contact *c, const struct veil_file_msg *m, struct store_file *f)
{
	const struct veild_config *cfg = eng_cfg();
	struct usage u = { c->id, 0, 0 };

	if (safe_name(m->name, f->name) != 0) {
		shown_name(m->name, f->name);
		return VEIL_FILE_BADNAME;
	}
	if (m->size > cfg->files.max_size)
		return VEIL_FILE_TOOBIG;
	if (store_file_list(eng_store(), usage_cb, &u) < 0)
		return VEIL_FILE_IOERR;
	if (u.active >= IN_ACTIVE_MAX)
		return VEIL_FILE_BUSY;
	if (u.bytes + cost(m->size) > cfg->files.quota)
		return VEIL_FILE_QUOTA;
	return VEIL_FILE_OK;
}

void
file_in_offer(struct contact *c, const uint8_t msgid[VEIL_MSGID_BYTES],
    const struct veil_file_msg *m)
{
	struct store *st = eng_store();
	struct store_file *f;
	char part[ENGINE_PATH_MAX];
	uint8_t status;
	int r, fd;

	if ((f = calloc(1, sizeof *f)) == NULL)
		return;
	if ((r = store_file_get(st, STORE_FILE_IN, c->id, m->id, f)) != 0) {
		if (r == 1)
			file_ack(c, msgid, 1);	/* a copy: it was ACKed */
		goto out;
	}
	memset(f, 0, sizeof *f);
	f->dir = STORE_FILE_IN;
	f->contact_id = c->id;
	memcpy(f->xfer, m->id, sizeof f->xfer);
	f->size = m->size;
	memcpy(f->hash, m->hash, sizeof f->hash);
	f->chunk = m->chunk;
	f->created = f->updated = now_ms();
	if ((status = offer_check(c, m, f)) == VEIL_FILE_OK) {
		file_part_path(c->id, m->id, part, sizeof part);
		fd = open(part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
		    0600);
		if (fd == -1) {
			log_warn("file: %s", part);
			status = VEIL_FILE_IOERR;
		} else
			close(fd);
	}
	if (status != VEIL_FILE_OK) {
		f->state = FS_FAILED;
		f->status = status;
	} else
		f->state = file_nchunks(f) > 0 ? FS_RECEIVING : FS_VERIFYING;
	if (store_file_add(st, f) != 1 ||
	    (status != VEIL_FILE_OK && file_send_end(c, m->id, status, 0) != 0) ||
	    file_ack(c, msgid, 0) != 0) {
		log_warnx("store: cannot take a file offer: %s", store_errmsg(st));
		goto out;
	}
	if (status == VEIL_FILE_OK)
		log_info("contact %" PRId64 ": receiving a file of %" PRIu64 " bytes",
		    c->id, f->size);
	else
		log_info("contact %" PRId64 ": refused a file of %" PRIu64 " bytes: %s",
		    c->id, f->size, file_status_text(status));
	file_note(f, 1);
	if (f->state == FS_VERIFYING)
		file_in_resume(f);
out:
	free(f);
}

/* --- chunks -------------------------------------------------------------- */

static int
write_chunk(const char *path, uint64_t off, const uint8_t *data, size_t len)
{
	size_t done = 0;
	ssize_t r;
	int fd;

	if ((fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW)) == -1)
		return -1;
	while (done < len) {
		r = pwrite(fd, data + done, len - done, (off_t)(off + done));
		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0) {
			close(fd);
			return -1;
		}
		done += (size_t)r;
	}
	/* On disk before the ACK leaves (after the group commit). */
	if (fdatasync(fd) == -1) {
		close(fd);
		return -1;
	}
	return close(fd);
}

void
file_in_chunk(struct contact *c, const uint8_t msgid[VEIL_MSGID_BYTES],
    const struct veil_file_msg *m)
{
	struct store *st = eng_store();
	struct store_file *f;
	char part[ENGINE_PATH_MAX];
	uint64_t n, want;
	int r;

	if ((f = malloc(sizeof *f)) == NULL)
		return;
	if ((r = store_file_get(st, STORE_FILE_IN, c->id, m->id, f)) != 1) {
		/* Its OFFER has not come yet (lost, resent later): no ACK, so
		 * the chunk comes again. */
		if (r == 0)
			log_debug("contact %" PRId64 ": a chunk before its offer",
			    c->id);
		goto out;
	}
	if (f->state != FS_RECEIVING) {
		file_ack(c, msgid, 1);	/* ended, or all here: a copy */
		goto out;
	}
	n = file_nchunks(f);
	want = m->index + 1 == n ? f->size - (uint64_t)m->index * f->chunk : f->chunk;
	if (m->index >= n || m->len != want) {
		log_warnx("contact %" PRId64 ": a chunk that does not fit its offer",
		    c->id);
		file_in_fail(f, VEIL_FILE_CANCELLED, 1);
		file_ack(c, msgid, 0);
		goto out;
	}
	file_part_path(c->id, f->xfer, part, sizeof part);
	if (write_chunk(part, (uint64_t)m->index * f->chunk, m->data, m->len) != 0) {
		log_warn("file: %s", part);
		file_in_fail(f, VEIL_FILE_IOERR, 1);
		file_ack(c, msgid, 0);
		goto out;
	}
	if ((r = store_file_chunk_add(st, c->id, f->xfer, m->index)) < 0)
		goto storefail;
	if (r == 1) {
		if (++f->done >= n)
			f->state = FS_VERIFYING;
		if (file_save(f) != 0)
			goto storefail;
	}
	if (file_ack(c, msgid, r == 0) != 0)
		goto storefail;
	file_note(f, f->state != FS_RECEIVING);
	if (f->state == FS_VERIFYING)
		file_in_resume(f);
	goto out;
storefail:
	log_warnx("store: cannot keep a chunk: %s", store_errmsg(st));
out:
	free(f);
}

/* --- verifying and placing ----------------------------------------------- */

enum { J_HASH, J_PLACE, J_COPY };

struct job {
	struct job		*next;
	int64_t			 contact_id;
	uint8_t			 xfer[STORE_XFER_BYTES];
	int			 phase;
	int			 in, out;
	uint64_t		 off;
	crypto_generichash_state h;
	struct event		*ev;
};

static struct job *jobs;

static void
job_free(struct job *j)
{
	for (struct job **pp = &jobs; *pp != NULL; pp = &(*pp)->next)
		if (*pp == j) {
			*pp = j->next;
			break;
		}
	if (j->ev != NULL)
		event_free(j->ev);
	if (j->in != -1)
		close(j->in);
	if (j->out != -1)
		close(j->out);
	free(j);
}

static struct job *
job_find(int64_t contact_id, const uint8_t xfer[STORE_XFER_BYTES])
{
	for (struct job *j = jobs; j != NULL; j = j->next)
		if (j->contact_id == contact_id &&
		    memcmp(j->xfer, xfer, STORE_XFER_BYTES) == 0)
			return j;
	return NULL;
}

static void job_step(evutil_socket_t, short, void *);

void
file_in_resume(const struct store_file *f)
{
	struct job *j;

	if (job_find(f->contact_id, f->xfer) != NULL || (j = calloc(1, sizeof *j)) == NULL)
		return;
	j->contact_id = f->contact_id;
	memcpy(j->xfer, f->xfer, sizeof j->xfer);
	j->in = j->out = -1;
	/* PLACING was written after the hash matched. */
	j->phase = f->state == FS_PLACING ? J_PLACE : J_HASH;
	crypto_generichash_init(&j->h, NULL, 0, VEIL_FILE_HASH_BYTES);
	if ((j->ev = evtimer_new(eng_base(), job_step, j)) == NULL) {
		free(j);
		return;
	}
	j->next = jobs;
	jobs = j;
	timer_add_ms(j->ev, 0);
}

int
file_in_fail(struct store_file *f, uint8_t status, int tell)
{
	struct contact *c = contact_find(f->contact_id);
	struct job *j;
	char part[ENGINE_PATH_MAX];

	if ((j = job_find(f->contact_id, f->xfer)) != NULL)
		job_free(j);
	file_part_path(f->contact_id, f->xfer, part, sizeof part);
	unlink(part);
	f->state = FS_FAILED;
	f->status = status;
	if (file_save(f) != 0 ||
	    store_file_chunk_clear(eng_store(), f->contact_id, f->xfer) != 0)
		return -1;
	if (tell && c != NULL && file_send_end(c, f->xfer, status, 0) != 0)
		return -1;
	log_info("contact %" PRId64 ": a file transfer ended: %s", f->contact_id,
	    file_status_text(status));
	file_note(f, 1);
	return 0;
}

/* The same, in a bracket of its own (a job runs outside any). */
static void
job_fail(struct job *j, struct store_file *f, uint8_t status)
{
	job_free(j);
	if (txn_begin() != 0)
		return;
	if (file_in_fail(f, status, 1) == 0)
		txn_commit();
	else
		txn_rollback();
}

/* Candidate k for name in dir: name, then "stem (k).ext". */
static void
candidate(const char *name, int k, char *out, size_t len)
{
	const char *dot = strrchr(name, '.');
	char suffix[16];
	size_t stem, keep, ext;

	if (k == 0) {
		snprintf(out, len, "%s/%s", file_dir(), name);
		return;
	}
	if (dot == NULL || dot == name || strlen(dot) > 16)
		dot = name + strlen(name);
	ext = strlen(dot);
	stem = (size_t)(dot - name);
	snprintf(suffix, sizeof suffix, " (%d)", k);
	/* At most VEIL_FILE_NAME_MAX bytes, cut at a character boundary. */
	keep = stem;
	while (keep + strlen(suffix) + ext > VEIL_FILE_NAME_MAX && keep > 0)
		keep--;
	while (keep > 0 && ((unsigned char)name[keep] & 0xc0) == 0x80)
		keep--;
	snprintf(out, len, "%s/%.*s%s%s", file_dir(), (int)keep, name, suffix, dot);
}

static int
sync_dir(void)
{
	int fd = open(file_dir(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd == -1)
		return -1;
	fsync(fd);
	return close(fd);
}

/* The file is where f->path says: a "file" message for the apps, the
 * verdict for the sender. */
static void
job_done(struct job *j, struct store_file *f)
{
	struct store *st = eng_store();
	struct contact *c = contact_find(f->contact_id);
	struct engine_event ev;
	const char *slash;
	uint8_t *body = NULL;
	size_t blen = 0;

	job_free(j);
	sync_dir();
	if (c == NULL)
		return;
	f->state = FS_DONE;
	f->done = (uint32_t)file_nchunks(f);
	if ((slash = strrchr(f->path, '/')) != NULL)
		copystr(f->name, slash + 1, sizeof f->name);
	if (file_rx_body(f, &body, &blen) != 0 || txn_begin() != 0) {
		free(body);
		return;
	}
	/* The message ID of the "file" message is the transfer's: one a
	 * contact, as message IDs are. */
	if (file_save(f) != 0 ||
	    store_file_chunk_clear(st, f->contact_id, f->xfer) != 0 ||
	    store_rx_add(st, c->id, f->xfer, VEIL_T_FILE, body, blen, now_ms(),
	    NULL) < 0 ||
	    file_send_end(c, f->xfer, VEIL_FILE_OK, 0) != 0 || txn_commit() != 0) {
		log_warnx("store: a file arrived but cannot be recorded: %s",
		    store_errmsg(st));
		txn_rollback();
		free(body);
		return;
	}
	free(body);
	log_info("contact %" PRId64 ": a file of %" PRIu64 " bytes arrived intact",
	    c->id, f->size);
	file_note(f, 1);
	memset(&ev, 0, sizeof ev);
	ev.type = ENGINE_EV_MESSAGE;
	ev.name = c->name;
	ev.msgtype = VEIL_T_FILE;
	msgid_hex(f->xfer, ev.msgid);
	ev.received = now_ms() / 1000;
	eng_event(&ev);
}

/* Where it goes is written down (and committed) before it moves, so that a
 * crash in between finds it again. */
static int
save_path(struct store_file *f, const char *path)
{
	copystr(f->path, path, sizeof f->path);
	f->state = FS_PLACING;
	if (txn_begin() != 0)
		return -1;
	if (file_save(f) != 0) {
		txn_rollback();
		return -1;
	}
	if (txn_commit() != 0)
		return -1;
	return txn_flush();
}

/*
 * Moves the .part file to a name of its own in files.dir, never replacing
 * anything (RENAME_NOREPLACE: an existing file or symlink of that name
 * makes it try the next).  0 done, 1 another filesystem (copy it), -1.
 */
static int
place(struct store_file *f, const char *part)
{
	char path[ENGINE_PATH_MAX];
	struct stat st;
	int k;

	/* Verified, then a crash: if the move happened, it is there. */
	if (f->state == FS_PLACING && access(part, F_OK) != 0 && errno == ENOENT)
		return lstat(f->path, &st) == 0 && S_ISREG(st.st_mode) &&
		    (uint64_t)st.st_size == f->size ? 0 : -1;
	chmod(part, 0640);	/* for the socket's group, as files.dir */
	for (k = 0; k < NAME_TRIES; k++) {
		candidate(f->name, k, path, sizeof path);
		if (save_path(f, path) != 0)
			return -1;
		if (renameat2(AT_FDCWD, part, AT_FDCWD, path, RENAME_NOREPLACE) == 0)
			return 0;
		if (errno == EXDEV)
			return 1;
		if (errno != EEXIST)
			return -1;
	}
	errno = EEXIST;
	return -1;
}

/* A files.dir on another filesystem: copied to a hidden temporary there,
 * a FILE_STEP a pass, then renamed as place() does. */
static int
copy_step(struct job *j, struct store_file *f, const char *part)
{
	char tmp[ENGINE_PATH_MAX], hex[2 * STORE_XFER_BYTES + 1], path[ENGINE_PATH_MAX];
	uint8_t *buf;
	ssize_t r;
	int k;

	sodium_bin2hex(hex, sizeof hex, f->xfer, sizeof f->xfer);
	snprintf(tmp, sizeof tmp, "%s/.veil-%s.tmp", file_dir(), hex);
	if (j->out == -1) {
		if ((j->in = open(part, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) == -1 ||
		    (j->out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC |
		    O_NOFOLLOW, 0640)) == -1 || fchmod(j->out, 0640) == -1)
			return -1;
		j->off = 0;
	}
	if ((buf = malloc(FILE_STEP)) == NULL)
		return -1;
	r = pread(j->in, buf, FILE_STEP, (off_t)j->off);
	if (r > 0 && write(j->out, buf, (size_t)r) != r)
		r = -1;
	free(buf);
	if (r < 0)
		return -1;
	j->off += (uint64_t)r;
	if (r > 0)
		return 1;
	if (j->off != f->size || fsync(j->out) == -1)
		return -1;
	for (k = 0; k < NAME_TRIES; k++) {
		candidate(f->name, k, path, sizeof path);
		if (save_path(f, path) != 0)
			return -1;
		if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0) {
			unlink(part);
			return 0;
		}
		if (errno != EEXIST)
			return -1;
	}
	return -1;
}

static void
job_step(evutil_socket_t fd, short ev, void *arg)
{
	struct job *j = arg;
	struct store_file *f;
	uint8_t hash[VEIL_FILE_HASH_BYTES], *buf;
	char part[ENGINE_PATH_MAX];
	ssize_t r;

	(void)fd;
	(void)ev;
	if ((f = malloc(sizeof *f)) == NULL) {
		timer_add_ms(j->ev, 1000);
		return;
	}
	if (store_file_get(eng_store(), STORE_FILE_IN, j->contact_id, j->xfer, f) != 1 ||
	    (f->state != FS_VERIFYING && f->state != FS_PLACING)) {
		job_free(j);	/* cancelled, or the contact went */
		goto out;
	}
	file_part_path(f->contact_id, f->xfer, part, sizeof part);
	switch (j->phase) {
	case J_HASH:
		if (j->in == -1 &&
		    (j->in = open(part, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) == -1) {
			log_warn("file: %s", part);
			job_fail(j, f, VEIL_FILE_IOERR);
			goto out;
		}
		if ((buf = malloc(FILE_STEP)) == NULL)
			break;
		r = pread(j->in, buf, FILE_STEP, (off_t)j->off);
		if (r > 0)
			crypto_generichash_update(&j->h, buf, (size_t)r);
		free(buf);
		if (r < 0 || (r == 0 && j->off != f->size) ||
		    j->off + (uint64_t)r > f->size) {
			job_fail(j, f, VEIL_FILE_IOERR);
			goto out;
		}
		j->off += (uint64_t)r;
		if (r > 0)
			break;		/* and read on, next pass */
		crypto_generichash_final(&j->h, hash, sizeof hash);
		close(j->in);
		j->in = -1;
		if (sodium_memcmp(hash, f->hash, sizeof hash) != 0) {
			log_warnx("contact %" PRId64 ": a file did not match its hash",
			    f->contact_id);
			job_fail(j, f, VEIL_FILE_BADHASH);
			goto out;
		}
		j->phase = J_PLACE;
		/* FALLTHROUGH */
	case J_PLACE:
		switch (place(f, part)) {
		case 0:
			job_done(j, f);
			goto out;
		case 1:
			j->phase = J_COPY;
			break;
		default:
			log_warn("file: cannot place a received file in %s", file_dir());
			job_fail(j, f, VEIL_FILE_IOERR);
			goto out;
		}
		break;
	case J_COPY:
		switch (copy_step(j, f, part)) {
		case 0:
			job_done(j, f);
			goto out;
		case 1:
			break;
		default:
			log_warn("file: cannot copy a received file to %s", file_dir());
			job_fail(j, f, VEIL_FILE_IOERR);
			goto out;
		}
		break;
	}
	timer_add_ms(j->ev, 0);
out:
	free(f);
}

void
file_in_shutdown(void)
{
	while (jobs != NULL)
		job_free(jobs);
}
