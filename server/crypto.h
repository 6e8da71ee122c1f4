/* crypto.h: the master key, provider-key encryption at rest, keyed hashes of virtual keys and
 * admin tokens, and constant-time comparison, all on libsodium. */
#ifndef GH_CRYPTO_H
#define GH_CRYPTO_H

#include <stddef.h>

#define GH_MASTER_KEY_BYTES 32  /* crypto_secretbox_KEYBYTES */
#define GH_HASH_BYTES 32        /* keyed crypto_generichash output */
#define GH_HASH_HEX_LEN 64      /* hex form, without NUL */
#define GH_VKEY_PREFIX "gh-vk-" /* every virtual key starts with this */
#define GH_VKEY_MAX_LEN 96      /* prefix + base64url of 32 random bytes, with room to spare */

typedef struct {
    unsigned char enc[GH_MASTER_KEY_BYTES];  /* secretbox key for provider keys */
    unsigned char hash[GH_MASTER_KEY_BYTES]; /* key for crypto_generichash of secrets */
    unsigned char
        check[GH_HASH_BYTES]; /* fingerprint stored in the database to detect a wrong key */
} gh_keys_t;

/* sodium_init(); call once at start-up before anything else here. */
int gh_crypto_init(void);

/* Loads the master key: from GATEHOUSE_MASTER_KEY (standard base64 of exactly 32 bytes) when set,
 * else from DATA_DIR/master.key, else generates one into that file with mode 0600 (created with
 * O_EXCL; an existing file with wider permissions is refused with a message). Derives the
 * encryption and hashing subkeys with crypto_kdf (contexts "ghenc___", "ghhash__", "ghcheck_").
 * Logs the reason and returns GH_ERR on any failure; never logs key material. */
int gh_keys_load(const char *data_dir, gh_keys_t *keys);

/* Encrypts plain with a fresh random nonce. *out receives malloc'd nonce||ciphertext(+MAC),
 * *outlen its length. Returns GH_OK or GH_ERR. */
int gh_secret_seal(const gh_keys_t *keys, const char *plain, size_t plain_len, unsigned char **out,
                   size_t *outlen);

/* Reverses gh_secret_seal: *out receives a malloc'd NUL-terminated plaintext. Returns GH_ERR when
 * the MAC does not verify (wrong master key or tampered row). */
int gh_secret_open(const gh_keys_t *keys, const unsigned char *sealed, size_t sealed_len,
                   char **out, size_t *outlen);

/* Keyed crypto_generichash of a secret (virtual key or admin token) as lowercase hex, NUL-
 * terminated in out (GH_HASH_HEX_LEN + 1 bytes). */
void gh_secret_hash_hex(const gh_keys_t *keys, const char *secret, size_t len,
                        char out[GH_HASH_HEX_LEN + 1]);

/* Generates a new secret GH_VKEY_PREFIX + base64url(32 random bytes, no padding) into out. */
int gh_vkey_generate(char *out, size_t outsz);

/* Generates an admin token "gh-admin-" + base64url(32 random bytes) into out. */
int gh_admin_token_generate(char *out, size_t outsz);

/* Constant-time equality of two byte strings of equal length (sodium_memcmp); a length mismatch
 * returns 0 without looking at the bytes. Returns 1 when equal. */
int gh_ct_equal(const void *a, size_t alen, const void *b, size_t blen);

/* Copies the last four characters of secret into out (NUL-terminated), for display. */
void gh_secret_last4(const char *secret, char out[5]);

#endif
