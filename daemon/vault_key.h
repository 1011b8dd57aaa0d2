/* vault_key.h: the vault's cryptography, without state — key material from a credential or key file, the passphrase's Argon2id, wrapping the data key. */
#ifndef VEILD_VAULT_KEY_H
#define VEILD_VAULT_KEY_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define VK_MATERIAL_MIN	32	/* bytes of a credential or key file */
#define VK_MATERIAL_MAX	4096

/* A wrapping key from a credential or a key file. */
struct vk_source {
	const char	*what;		/* "systemd credential", "key file" */
	int		 present;
	uint8_t		 kek[32];
	uint8_t		 id[STORE_KEY_ID_BYTES];
};

/*
 * KEK = BLAKE2b-256(key = "veil-wrapping-v1", material), id = first 16
 * bytes of BLAKE2b-256(key = KEK, "veil-key-id-v1").  vk_read reads 32 to
 * 4096 bytes from path (private: refuse a file others may read): 0, 1 no
 * such file, -1 (why).
 */
void	vk_derive(struct vk_source *k, const uint8_t *material, size_t len);
int	vk_read(const char *path, int private, struct vk_source *k, char *why,
	    size_t whylen);

/*
 * The wrap: nonce (24) || XChaCha20-Poly1305(KEK, data key) with AD
 * "veil-vault-v1" || u8 kind || key_id || salt || u64 opslimit || u64
 * memlimit, so a row's limits or kind cannot be changed under it.
 */
void	vk_wrap(struct store_wrap *w, const uint8_t kek[32],
	    const uint8_t key[STORE_KEY_BYTES]);
int	vk_unwrap(const struct store_wrap *w, const uint8_t kek[32],
	    uint8_t key[STORE_KEY_BYTES]);
/* The KEK of a passphrase row (Argon2id13, its salt and limits): 0, -1
 * out of memory, -2 limits out of range (a damaged or hostile row). */
int	vk_kdf(uint8_t kek[32], const char *pass, size_t len,
	    const struct store_wrap *w);
/* A new passphrase row (fresh salt) or key row for key: 0 or -1. */
int	vk_passphrase_wrap(struct store_wrap *w, const char *pass, size_t len,
	    uint64_t ops, uint64_t mem, const uint8_t key[STORE_KEY_BYTES]);
void	vk_source_wrap(struct store_wrap *w, const struct vk_source *k,
	    const uint8_t key[STORE_KEY_BYTES]);

/* For tools (tests/pairdump, veil-mkcontacts): keys st with the data key
 * the key file at path unwraps.  0, or -1 with err. */
int	vk_unlock_with_file(struct store *st, const char *path, char *err,
	    size_t errlen);

#endif
