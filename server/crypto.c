/* crypto.c: the master key, provider-key encryption at rest and keyed secret hashes (libsodium). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "crypto.h"
#include "gh.h"
#include "log.h"

#define GH_MASTER_KEY_ENV "GATEHOUSE_MASTER_KEY"
#define GH_MASTER_KEY_FILE "master.key"
#define GH_ADMIN_TOKEN_PREFIX "gh-admin-"
#define GH_TOKEN_RANDOM_BYTES 32
/* A valid key is 44 characters of base64; anything much longer is certainly not one, and the cap
 * lets the decoder work in a fixed stack buffer that is wiped afterwards. */
#define GH_MASTER_B64_MAX 256
/* Returned by the file helpers (never outside this file) to steer gh_keys_load. */
#define GH_MASTER_MISSING 1
#define GH_MASTER_EXISTS 2

/* The three subkey ids of crypto_kdf; changing any of them makes every stored row unreadable. */
enum { GH_SUBKEY_ENC = 1, GH_SUBKEY_HASH = 2, GH_SUBKEY_CHECK = 3 };

/* Initialises libsodium (its RNG and CPU feature detection). Safe to call more than once. */
int gh_crypto_init(void)
{
    if (sodium_init() < 0) {
        gh_log_error("sodium_init failed: libsodium cannot be used");
        return GH_ERR;
    }
    return GH_OK;
}

/* Decodes len characters of standard base64 (b64, not necessarily NUL-terminated) into the 32-byte
 * master key; origin names the source in error messages. The caller owns master and wipes it. */
static int gh_master_decode(const char *b64, size_t len, const char *origin,
                            unsigned char master[GH_MASTER_KEY_BYTES])
{
    /* Decoded base64 is always shorter than its text, so this never overflows. */
    unsigned char buf[GH_MASTER_B64_MAX];
    size_t binlen = 0;
    int rc = GH_ERR;

    if (len > GH_MASTER_B64_MAX) {
        gh_log_error("%s is %zu characters long: the master key must be exactly 32 bytes in "
                     "standard base64 (44 characters, e.g. from `openssl rand -base64 32`)",
                     origin, len);
        goto done;
    }
    /* Surrounding whitespace is ignored so that "$(cat master.key)" and editors' newlines work. */
    if (sodium_base642bin(buf, sizeof(buf), b64, len, " \t\r\n", &binlen, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0) {
        gh_log_error("sodium_base642bin: %s is not valid standard base64: the master key must be "
                     "exactly 32 bytes in standard base64 (44 characters, e.g. from "
                     "`openssl rand -base64 32`)",
                     origin);
        goto done;
    }
    if (binlen != GH_MASTER_KEY_BYTES) {
        gh_log_error("%s decodes to %zu bytes: the master key must be exactly %d bytes (44 "
                     "characters of standard base64, e.g. from `openssl rand -base64 32`)",
                     origin, binlen, GH_MASTER_KEY_BYTES);
        goto done;
    }
    memcpy(master, buf, GH_MASTER_KEY_BYTES);
    rc = GH_OK;
done:
    sodium_memzero(buf, sizeof(buf));
    return rc;
}

/* Reads the master key from the file at path. Returns GH_OK, GH_MASTER_MISSING when the file does
 * not exist, or GH_ERR (logged) when it cannot be used. A file that group or other may access is
 * refused: the key decrypts every provider key in the database. */
static int gh_master_read_file(const char *path, unsigned char master[GH_MASTER_KEY_BYTES])
{
    char text[GH_MASTER_B64_MAX + 2];
    size_t len = 0;
    struct stat st;
    ssize_t n;
    int fd = -1, rc = GH_ERR;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            rc = GH_MASTER_MISSING;
            goto done;
        }
        gh_log_error("open(%s): %s", path, strerror(errno));
        goto done;
    }
    /* fstat on the open descriptor, so the mode checked is the mode of the file actually read. */
    if (fstat(fd, &st) != 0) {
        gh_log_error("fstat(%s): %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        gh_log_error("%s is not a regular file; it must hold the base64 master key", path);
        goto done;
    }
    if ((st.st_mode & 077) != 0) {
        gh_log_error("%s has mode %04o, which lets group or other users access the master key; "
                     "refusing to use it. Fix it with: chmod 600 %s",
                     path, (unsigned)(st.st_mode & 07777), path);
        goto done;
    }
    /* One byte more than the decoder accepts, so an oversized file is reported as such. */
    while (len < sizeof(text) - 1) {
        n = read(fd, text + len, sizeof(text) - 1 - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            gh_log_error("read(%s): %s", path, strerror(errno));
            goto done;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    rc = gh_master_decode(text, len, path, master);
done:
    sodium_memzero(text, sizeof(text));
    if (fd >= 0)
        close(fd);
    return rc;
}

/* Writes all len bytes of buf to fd, retrying short writes. Returns GH_OK or GH_ERR with errno. */
static int gh_write_all(int fd, const char *buf, size_t len)
{
    ssize_t n;

    while (len > 0) {
        n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return GH_ERR;
        }
        buf += n;
        len -= (size_t)n;
    }
    return GH_OK;
}

/* Generates a new master key into master and writes its base64 text plus a newline to path, created
 * with O_EXCL and mode 0600, then fsyncs the file and data_dir so the key survives a crash before
 * any row is encrypted with it. Returns GH_OK, GH_MASTER_EXISTS when another process created the
 * file first, or GH_ERR (logged; a partly written file is removed). */
static int gh_master_generate(const char *data_dir, const char *path,
                              unsigned char master[GH_MASTER_KEY_BYTES])
{
    char text[sodium_base64_ENCODED_LEN(GH_MASTER_KEY_BYTES, sodium_base64_VARIANT_ORIGINAL) + 1];
    size_t len;
    int fd = -1, dfd = -1, created = 0, err, rc = GH_ERR;

    fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0) {
        err = errno;
        if (err == EEXIST) {
            rc = GH_MASTER_EXISTS;
            goto done;
        }
        gh_log_error("open(%s, O_CREAT|O_EXCL): %s%s", path, strerror(err),
                     err == ENOENT ? " (the data directory must exist)" : "");
        goto done;
    }
    created = 1;
    randombytes_buf(master, GH_MASTER_KEY_BYTES);
    sodium_bin2base64(text, sizeof(text), master, GH_MASTER_KEY_BYTES,
                      sodium_base64_VARIANT_ORIGINAL);
    len = strlen(text);
    text[len++] = '\n';
    if (gh_write_all(fd, text, len) != GH_OK) {
        gh_log_error("write(%s): %s", path, strerror(errno));
        goto done;
    }
    if (fsync(fd) != 0) {
        gh_log_error("fsync(%s): %s", path, strerror(errno));
        goto done;
    }
    if (close(fd) != 0) {
        fd = -1;
        gh_log_error("close(%s): %s", path, strerror(errno));
        goto done;
    }
    fd = -1;
    /* Without this the directory entry itself may be lost on power failure. */
    dfd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        gh_log_error("open(%s): %s", data_dir, strerror(errno));
        goto done;
    }
    if (fsync(dfd) != 0) {
        gh_log_error("fsync(%s): %s", data_dir, strerror(errno));
        goto done;
    }
    gh_log_info("generated a new master key in %s (mode 0600); back it up: without it the provider "
                "keys stored in the database cannot be decrypted",
                path);
    rc = GH_OK;
done:
    sodium_memzero(text, sizeof(text));
    if (fd >= 0)
        close(fd);
    if (dfd >= 0)
        close(dfd);
    if (rc == GH_ERR) {
        sodium_memzero(master, GH_MASTER_KEY_BYTES);
        /* A half-written key file would be read back as a wrong or invalid key next start. */
        if (created && unlink(path) != 0)
            gh_log_error("unlink(%s): %s", path, strerror(errno));
    }
    return rc;
}

/* Derives the three subkeys of keys from master with crypto_kdf. The stored check value is a
 * subkey of its own, so publishing it in the database reveals nothing about the other two. */
static int gh_keys_derive(const unsigned char master[GH_MASTER_KEY_BYTES], gh_keys_t *keys)
{
    if (crypto_kdf_derive_from_key(keys->enc, sizeof(keys->enc), GH_SUBKEY_ENC, "ghenc___",
                                   master) != 0) {
        gh_log_error("crypto_kdf_derive_from_key(ghenc___) failed");
        return GH_ERR;
    }
    if (crypto_kdf_derive_from_key(keys->hash, sizeof(keys->hash), GH_SUBKEY_HASH, "ghhash__",
                                   master) != 0) {
        gh_log_error("crypto_kdf_derive_from_key(ghhash__) failed");
        return GH_ERR;
    }
    if (crypto_kdf_derive_from_key(keys->check, sizeof(keys->check), GH_SUBKEY_CHECK, "ghcheck_",
                                   master) != 0) {
        gh_log_error("crypto_kdf_derive_from_key(ghcheck_) failed");
        return GH_ERR;
    }
    return GH_OK;
}

/* Loads or creates the master key (environment first, then DATA_DIR/master.key) and fills keys
 * with its subkeys. The master key itself never leaves this function; on failure keys is wiped. */
int gh_keys_load(const char *data_dir, gh_keys_t *keys)
{
    unsigned char master[GH_MASTER_KEY_BYTES];
    char path[4096];
    const char *env = getenv(GH_MASTER_KEY_ENV);
    int n, r, rc = GH_ERR;

    if (keys == NULL) {
        gh_log_error("gh_keys_load: keys is NULL");
        goto done;
    }
    if (env != NULL && env[0] != '\0') {
        if (gh_master_decode(env, strlen(env), GH_MASTER_KEY_ENV, master) != GH_OK)
            goto done;
        gh_log_info("master key loaded from %s", GH_MASTER_KEY_ENV);
    } else {
        /* Compose files often pass an unset variable through as empty; the file is then meant. */
        if (env != NULL)
            gh_log_warn("%s is set but empty; using %s in the data directory", GH_MASTER_KEY_ENV,
                        GH_MASTER_KEY_FILE);
        if (data_dir == NULL || data_dir[0] == '\0') {
            gh_log_error("gh_keys_load: no data directory for %s and %s is not set",
                         GH_MASTER_KEY_FILE, GH_MASTER_KEY_ENV);
            goto done;
        }
        n = snprintf(path, sizeof(path), "%s/%s", data_dir, GH_MASTER_KEY_FILE);
        if (n < 0 || (size_t)n >= sizeof(path)) {
            gh_log_error("snprintf: data directory path too long for %s", GH_MASTER_KEY_FILE);
            goto done;
        }
        r = gh_master_read_file(path, master);
        if (r == GH_MASTER_MISSING) {
            r = gh_master_generate(data_dir, path, master);
            /* Lost a creation race with another process: its key is the one to use. */
            if (r == GH_MASTER_EXISTS)
                r = gh_master_read_file(path, master);
            if (r == GH_MASTER_MISSING || r == GH_MASTER_EXISTS) {
                gh_log_error("%s appeared and vanished while loading the master key", path);
                r = GH_ERR;
            }
        } else if (r == GH_OK) {
            gh_log_info("master key loaded from %s", path);
        }
        if (r != GH_OK)
            goto done;
    }
    if (gh_keys_derive(master, keys) != GH_OK)
        goto done;
    rc = GH_OK;
done:
    sodium_memzero(master, sizeof(master));
    if (rc != GH_OK && keys != NULL)
        sodium_memzero(keys, sizeof(*keys));
    return rc;
}

/* Encrypts plain into a new buffer nonce||ciphertext||MAC that the caller owns and frees. */
int gh_secret_seal(const gh_keys_t *keys, const char *plain, size_t plain_len, unsigned char **out,
                   size_t *outlen)
{
    const size_t overhead = crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES;
    unsigned char *buf = NULL;
    size_t len = 0;
    int rc = GH_ERR;

    if (keys == NULL || out == NULL || outlen == NULL || (plain == NULL && plain_len > 0)) {
        gh_log_error("gh_secret_seal: invalid arguments");
        goto done;
    }
    *out = NULL;
    *outlen = 0;
    if (plain == NULL)
        plain = "";
    if (plain_len > SIZE_MAX - overhead) {
        gh_log_error("gh_secret_seal: a %zu-byte secret is too long", plain_len);
        goto done;
    }
    len = overhead + plain_len;
    buf = malloc(len);
    if (buf == NULL) {
        gh_log_error("malloc(%zu) for a sealed secret failed", len);
        goto done;
    }
    /* A random 24-byte nonce never repeats in practice, so no counter has to be stored. */
    randombytes_buf(buf, crypto_secretbox_NONCEBYTES);
    if (crypto_secretbox_easy(buf + crypto_secretbox_NONCEBYTES, (const unsigned char *)plain,
                              plain_len, buf, keys->enc) != 0) {
        gh_log_error("crypto_secretbox_easy failed");
        goto done;
    }
    *out = buf;
    *outlen = len;
    buf = NULL;
    rc = GH_OK;
done:
    free(buf);
    return rc;
}

/* Decrypts what gh_secret_seal made into a new NUL-terminated buffer that the caller owns, wipes
 * (sodium_memzero) and frees. */
int gh_secret_open(const gh_keys_t *keys, const unsigned char *sealed, size_t sealed_len,
                   char **out, size_t *outlen)
{
    const size_t overhead = crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES;
    unsigned char *buf = NULL;
    size_t plen = 0;
    int rc = GH_ERR;

    if (keys == NULL || sealed == NULL || out == NULL) {
        gh_log_error("gh_secret_open: invalid arguments");
        goto done;
    }
    *out = NULL;
    if (outlen != NULL)
        *outlen = 0;
    if (sealed_len < overhead) {
        gh_log_error("gh_secret_open: sealed value is %zu bytes, shorter than nonce and MAC (%zu)",
                     sealed_len, overhead);
        goto done;
    }
    plen = sealed_len - overhead;
    buf = malloc(plen + 1);
    if (buf == NULL) {
        gh_log_error("malloc(%zu) for an opened secret failed", plen + 1);
        goto done;
    }
    if (crypto_secretbox_open_easy(buf, sealed + crypto_secretbox_NONCEBYTES,
                                   sealed_len - crypto_secretbox_NONCEBYTES, sealed,
                                   keys->enc) != 0) {
        gh_log_error("crypto_secretbox_open_easy: the MAC does not verify (wrong master key or a "
                     "tampered value)");
        goto done;
    }
    buf[plen] = '\0';
    *out = (char *)buf;
    if (outlen != NULL)
        *outlen = plen;
    buf = NULL;
    rc = GH_OK;
done:
    if (buf != NULL) {
        sodium_memzero(buf, plen + 1);
        free(buf);
    }
    return rc;
}

/* Writes the keyed BLAKE2b hash of secret as lowercase hex into out. On an internal failure (which
 * libsodium only reports for invalid sizes) out is the empty string, which matches no stored
 * hash, so a lookup fails closed. */
void gh_secret_hash_hex(const gh_keys_t *keys, const char *secret, size_t len,
                        char out[GH_HASH_HEX_LEN + 1])
{
    unsigned char h[GH_HASH_BYTES];

    out[0] = '\0';
    if (keys == NULL || (secret == NULL && len > 0)) {
        gh_log_error("gh_secret_hash_hex: invalid arguments");
        return;
    }
    if (secret == NULL)
        secret = "";
    if (crypto_generichash(h, sizeof(h), (const unsigned char *)secret, len, keys->hash,
                           sizeof(keys->hash)) != 0) {
        gh_log_error("crypto_generichash failed");
        return;
    }
    sodium_bin2hex(out, GH_HASH_HEX_LEN + 1, h, sizeof(h));
    sodium_memzero(h, sizeof(h));
}

/* Writes prefix + base64url(32 random bytes, unpadded) into out (outsz bytes, caller-owned). */
static int gh_token_generate(const char *prefix, char *out, size_t outsz)
{
    const size_t b64sz =
        sodium_base64_ENCODED_LEN(GH_TOKEN_RANDOM_BYTES, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    unsigned char rnd[GH_TOKEN_RANDOM_BYTES];
    size_t plen = strlen(prefix);
    int rc = GH_ERR;

    if (out == NULL || outsz < plen + b64sz) {
        gh_log_error("gh_token_generate: a %zu-byte buffer is too small for a %s token (need %zu)",
                     outsz, prefix, plen + b64sz);
        goto done;
    }
    randombytes_buf(rnd, sizeof(rnd));
    memcpy(out, prefix, plen);
    sodium_bin2base64(out + plen, outsz - plen, rnd, sizeof(rnd),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    rc = GH_OK;
done:
    sodium_memzero(rnd, sizeof(rnd));
    return rc;
}

/* Generates a virtual key into the caller's buffer. */
int gh_vkey_generate(char *out, size_t outsz)
{
    return gh_token_generate(GH_VKEY_PREFIX, out, outsz);
}

/* Generates an admin token into the caller's buffer. */
int gh_admin_token_generate(char *out, size_t outsz)
{
    return gh_token_generate(GH_ADMIN_TOKEN_PREFIX, out, outsz);
}

/* Compares in time independent of the contents; only the lengths may leak, and they are public. */
int gh_ct_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    if (alen != blen)
        return 0;
    if (alen == 0)
        return 1;
    if (a == NULL || b == NULL)
        return 0;
    return sodium_memcmp(a, b, alen) == 0;
}

/* Copies the last four characters of secret into out. A secret of four characters or fewer gives
 * the empty string, since showing "the last four" would show all of it. */
void gh_secret_last4(const char *secret, char out[5])
{
    size_t len = secret != NULL ? strlen(secret) : 0;

    out[0] = '\0';
    if (len <= 4)
        return;
    memcpy(out, secret + len - 4, 4);
    out[4] = '\0';
}
