/* libveil reasm: bounded reassembly of multi-frame messages; time comes from the caller. */
#ifndef VEIL_REASM_H
#define VEIL_REASM_H

#include "frame.h"

#ifdef __cplusplus
extern "C" {
#endif

struct veil_reasm;

/* max_bytes bounds the bodies held in total, max_msgs the messages under
 * reassembly; when either is hit the oldest partial message is evicted. */
struct veil_reasm *veil_reasm_new(size_t max_bytes, size_t max_msgs);
void veil_reasm_free(struct veil_reasm *r);
/*
 * Gives every sender a budget of its own, before any message is added:
 * one sender holds at most peer_bytes and peer_msgs of partial messages
 * (beyond, its own oldest is evicted, and a message larger than
 * peer_bytes is TOOBIG), and when max_bytes or max_msgs is reached the
 * sender holding the most bytes loses its oldest.  So a sender can evict
 * another's partial message only by holding less than that sender.
 * INVAL on zero limits or once messages are held.
 */
int veil_reasm_limit_peer(struct veil_reasm *r, size_t peer_bytes, size_t peer_msgs);

/*
 * Adds one opened frame from sender `peer` (an opaque handle of the caller;
 * use 0 for anonymous sealed frames).  Returns 1 when the message is
 * complete: *out (free() it) holds *outlen bytes.  Returns 0 when more
 * fragments are needed or the fragment was a duplicate.  A single-frame
 * message (frag_cnt == 1) completes at once.  Errors: FORMAT (index out of
 * range, count or type changed between fragments, a non-final fragment
 * shorter than `cap`), TOOBIG (message larger than the bounds).
 * cap = veil_frame_capacity() of the frames, so the total size is known.
 */
int veil_reasm_add(struct veil_reasm *r, uint64_t peer, const struct veil_frame_hdr *h,
    const uint8_t *body, size_t cap, uint64_t now, uint8_t **out, size_t *outlen);
/* Drops partial messages whose first fragment arrived before now - max_age. */
size_t veil_reasm_expire(struct veil_reasm *r, uint64_t now, uint64_t max_age);
/* Drops every partial message of one sender (contact removed). */
void veil_reasm_forget(struct veil_reasm *r, uint64_t peer);
size_t veil_reasm_pending(const struct veil_reasm *r);
size_t veil_reasm_bytes(const struct veil_reasm *r);
/* Bytes held for one sender. */
size_t veil_reasm_peer_bytes(const struct veil_reasm *r, uint64_t peer);

#ifdef __cplusplus
}
#endif
#endif
