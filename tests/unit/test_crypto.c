/* test_crypto.c: unit tests of crypto.c: sealing, keyed hashes, tokens and master-key loading. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "crypto.h"
#include "gh.h"

/* A temporary data directory for the master.key tests; removed with its files afterwards. */
typedef struct {
    char dir[64];
    char keyfile[96];
} tmpdir_t;

/* Makes random subkeys directly, for tests that do not care where the keys come from. */
static void random_keys(gh_keys_t *k)
{
    randombytes_buf(k, sizeof(*k));
}

/* Creates a fresh temporary directory and clears GATEHOUSE_MASTER_KEY; state owns the tmpdir_t. */
static int setup_tmpdir(void **state)
{
    tmpdir_t *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return -1;
    snprintf(t->dir, sizeof(t->dir), "/tmp/gh-test-crypto-XXXXXX");
    if (mkdtemp(t->dir) == NULL) {
        free(t);
        return -1;
    }
    snprintf(t->keyfile, sizeof(t->keyfile), "%s/master.key", t->dir);
    unsetenv("GATEHOUSE_MASTER_KEY");
    *state = t;
    return 0;
}

/* Removes what setup_tmpdir made. */
static int teardown_tmpdir(void **state)
{
    tmpdir_t *t = *state;

    unlink(t->keyfile);
    rmdir(t->dir);
    free(t);
    unsetenv("GATEHOUSE_MASTER_KEY");
    return 0;
}

/* Sets GATEHOUSE_MASTER_KEY to the standard base64 of len bytes of raw. */
static void set_env_key(const unsigned char *raw, size_t len)
{
    char b64[128];

    sodium_bin2base64(b64, sizeof(b64), raw, len, sodium_base64_VARIANT_ORIGINAL);
    assert_int_equal(setenv("GATEHOUSE_MASTER_KEY", b64, 1), 0);
}

/* A sealed secret opens to exactly the plaintext, and the sealed bytes do not contain it. */
static void test_seal_open_round_trip(void **state)
{
    const char *plain = "sk-ant-api03-secret-value";
    unsigned char *sealed = NULL;
    size_t sealed_len = 0, out_len = 0;
    char *out = NULL;
    gh_keys_t k;

    (void)state;
    random_keys(&k);
    assert_int_equal(gh_secret_seal(&k, plain, strlen(plain), &sealed, &sealed_len), GH_OK);
    assert_int_equal(sealed_len,
                     crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + strlen(plain));
    assert_null(memmem(sealed, sealed_len, plain, strlen(plain)));
    assert_int_equal(gh_secret_open(&k, sealed, sealed_len, &out, &out_len), GH_OK);
    assert_int_equal(out_len, strlen(plain));
    assert_string_equal(out, plain);
    free(out);
    free(sealed);

    /* The empty secret round-trips too. */
    assert_int_equal(gh_secret_seal(&k, "", 0, &sealed, &sealed_len), GH_OK);
    assert_int_equal(gh_secret_open(&k, sealed, sealed_len, &out, &out_len), GH_OK);
    assert_string_equal(out, "");
    free(out);
    free(sealed);
}

/* A value sealed under one key does not open under another. */
static void test_open_wrong_key_fails(void **state)
{
    unsigned char *sealed = NULL;
    size_t sealed_len = 0;
    char *out = (char *)"unchanged";
    gh_keys_t k1, k2;

    (void)state;
    random_keys(&k1);
    random_keys(&k2);
    assert_int_equal(gh_secret_seal(&k1, "secret", 6, &sealed, &sealed_len), GH_OK);
    assert_int_equal(gh_secret_open(&k2, sealed, sealed_len, &out, NULL), GH_ERR);
    assert_null(out);
    free(sealed);
}

/* Flipping any single bit of a sealed value, or truncating it, makes it fail to open. */
static void test_open_tampered_fails(void **state)
{
    unsigned char *sealed = NULL;
    size_t sealed_len = 0, i;
    char *out = NULL;
    gh_keys_t k;

    (void)state;
    random_keys(&k);
    assert_int_equal(gh_secret_seal(&k, "secret", 6, &sealed, &sealed_len), GH_OK);
    /* Any flipped bit, in the nonce, the MAC or the ciphertext, must be detected. */
    for (i = 0; i < sealed_len; i++) {
        sealed[i] ^= 0x01;
        assert_int_equal(gh_secret_open(&k, sealed, sealed_len, &out, NULL), GH_ERR);
        assert_null(out);
        sealed[i] ^= 0x01;
    }
    /* Truncated values too, including shorter than nonce + MAC. */
    assert_int_equal(gh_secret_open(&k, sealed, sealed_len - 1, &out, NULL), GH_ERR);
    assert_int_equal(gh_secret_open(&k, sealed, 10, &out, NULL), GH_ERR);
    assert_int_equal(gh_secret_open(&k, sealed, sealed_len, &out, NULL), GH_OK);
    free(out);
    free(sealed);
}

/* Every seal draws a new nonce, so sealing the same text twice gives different bytes. */
static void test_seal_fresh_nonce(void **state)
{
    unsigned char *a = NULL, *b = NULL;
    size_t alen = 0, blen = 0;
    gh_keys_t k;

    (void)state;
    random_keys(&k);
    assert_int_equal(gh_secret_seal(&k, "same text", 9, &a, &alen), GH_OK);
    assert_int_equal(gh_secret_seal(&k, "same text", 9, &b, &blen), GH_OK);
    assert_int_equal(alen, blen);
    assert_memory_not_equal(a, b, crypto_secretbox_NONCEBYTES);
    assert_memory_not_equal(a, b, alen);
    free(a);
    free(b);
}

/* The keyed hash is 64 lowercase hex digits, deterministic, and depends on key and input. */
static void test_hash_hex(void **state)
{
    char h1[GH_HASH_HEX_LEN + 1], h2[GH_HASH_HEX_LEN + 1], h3[GH_HASH_HEX_LEN + 1];
    gh_keys_t k1, k2;
    size_t i;

    (void)state;
    random_keys(&k1);
    random_keys(&k2);
    gh_secret_hash_hex(&k1, "gh-vk-abc", 9, h1);
    gh_secret_hash_hex(&k1, "gh-vk-abc", 9, h2);
    assert_int_equal(strlen(h1), GH_HASH_HEX_LEN);
    assert_string_equal(h1, h2);
    for (i = 0; i < GH_HASH_HEX_LEN; i++)
        assert_non_null(strchr("0123456789abcdef", h1[i]));
    gh_secret_hash_hex(&k2, "gh-vk-abc", 9, h3);
    assert_string_not_equal(h1, h3);
    gh_secret_hash_hex(&k1, "gh-vk-abd", 9, h3);
    assert_string_not_equal(h1, h3);
}

/* Checks that token starts with prefix followed by 43 base64url characters and nothing else. */
static void assert_token_shape(const char *token, const char *prefix)
{
    size_t plen = strlen(prefix), i;

    assert_int_equal(strncmp(token, prefix, plen), 0);
    assert_int_equal(strlen(token), plen + 43);
    for (i = plen; token[i] != '\0'; i++)
        assert_non_null(
            strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", token[i]));
}

/* Virtual keys are the prefix plus 43 base64url characters, never twice the same. */
static void test_vkey_format(void **state)
{
    char a[GH_VKEY_MAX_LEN], b[GH_VKEY_MAX_LEN], small[20];

    (void)state;
    assert_int_equal(gh_vkey_generate(a, sizeof(a)), GH_OK);
    assert_int_equal(gh_vkey_generate(b, sizeof(b)), GH_OK);
    assert_token_shape(a, GH_VKEY_PREFIX);
    assert_token_shape(b, GH_VKEY_PREFIX);
    assert_string_not_equal(a, b);
    assert_int_equal(gh_vkey_generate(small, sizeof(small)), GH_ERR);
}

/* Admin tokens have the same shape as virtual keys behind their own prefix. */
static void test_admin_token_format(void **state)
{
    char a[GH_VKEY_MAX_LEN], b[GH_VKEY_MAX_LEN];

    (void)state;
    assert_int_equal(gh_admin_token_generate(a, sizeof(a)), GH_OK);
    assert_int_equal(gh_admin_token_generate(b, sizeof(b)), GH_OK);
    assert_token_shape(a, "gh-admin-");
    assert_token_shape(b, "gh-admin-");
    assert_string_not_equal(a, b);
}

/* gh_ct_equal: equal, different, and different lengths. */
static void test_ct_equal(void **state)
{
    (void)state;
    assert_int_equal(gh_ct_equal("abcd", 4, "abcd", 4), 1);
    assert_int_equal(gh_ct_equal("abcd", 4, "abce", 4), 0);
    assert_int_equal(gh_ct_equal("abcd", 4, "abcde", 5), 0);
    assert_int_equal(gh_ct_equal("abcd", 3, "abcd", 4), 0);
    assert_int_equal(gh_ct_equal("", 0, "", 0), 1);
}

/* last4 shows the last four characters, and nothing of secrets too short to hide. */
static void test_last4(void **state)
{
    char out[5];

    (void)state;
    gh_secret_last4("sk-ant-api03-XYZ1234", out);
    assert_string_equal(out, "1234");
    gh_secret_last4("abcde", out);
    assert_string_equal(out, "bcde");
    /* Too short to show four characters without showing the whole secret. */
    gh_secret_last4("abcd", out);
    assert_string_equal(out, "");
    gh_secret_last4("", out);
    assert_string_equal(out, "");
    gh_secret_last4(NULL, out);
    assert_string_equal(out, "");
}

/* GATEHOUSE_MASTER_KEY gives stable, distinct subkeys and writes no file. */
static void test_keys_from_env(void **state)
{
    tmpdir_t *t = *state;
    unsigned char raw[GH_MASTER_KEY_BYTES];
    gh_keys_t a, b;
    struct stat st;

    randombytes_buf(raw, sizeof(raw));
    set_env_key(raw, sizeof(raw));
    assert_int_equal(gh_keys_load(t->dir, &a), GH_OK);
    assert_int_equal(gh_keys_load(t->dir, &b), GH_OK);
    assert_memory_equal(&a, &b, sizeof(a));
    /* The subkeys are distinct from each other and from the master key. */
    assert_memory_not_equal(a.enc, a.hash, sizeof(a.enc));
    assert_memory_not_equal(a.enc, a.check, sizeof(a.enc));
    assert_memory_not_equal(a.enc, raw, sizeof(raw));
    /* With the key in the environment no file is written. */
    assert_int_not_equal(stat(t->keyfile, &st), 0);

    /* Surrounding whitespace, as from "$(cat master.key)" quoting mistakes, is accepted. */
    {
        char b64[64], padded[80];

        sodium_bin2base64(b64, sizeof(b64), raw, sizeof(raw), sodium_base64_VARIANT_ORIGINAL);
        snprintf(padded, sizeof(padded), "%s\n", b64);
        assert_int_equal(setenv("GATEHOUSE_MASTER_KEY", padded, 1), 0);
        assert_int_equal(gh_keys_load(t->dir, &b), GH_OK);
        assert_memory_equal(&a, &b, sizeof(a));
    }

    /* Another master key gives other subkeys. */
    raw[0] ^= 1;
    set_env_key(raw, sizeof(raw));
    assert_int_equal(gh_keys_load(t->dir, &b), GH_OK);
    assert_memory_not_equal(a.enc, b.enc, sizeof(a.enc));
    assert_memory_not_equal(a.hash, b.hash, sizeof(a.hash));
    assert_memory_not_equal(a.check, b.check, sizeof(a.check));
}

/* Valid base64 of anything but 32 bytes is refused. */
static void test_keys_env_wrong_length(void **state)
{
    tmpdir_t *t = *state;
    unsigned char raw[64] = {0};
    gh_keys_t k;

    set_env_key(raw, 16);
    assert_int_equal(gh_keys_load(t->dir, &k), GH_ERR);
    set_env_key(raw, 31);
    assert_int_equal(gh_keys_load(t->dir, &k), GH_ERR);
    set_env_key(raw, 33);
    assert_int_equal(gh_keys_load(t->dir, &k), GH_ERR);
    set_env_key(raw, 64);
    assert_int_equal(gh_keys_load(t->dir, &k), GH_ERR);
}

/* Text that is not standard padded base64 is refused. */
static void test_keys_env_bad_base64(void **state)
{
    tmpdir_t *t = *state;
    unsigned char raw[GH_MASTER_KEY_BYTES] = {0xfb, 0xff};
    char b64[64];
    gh_keys_t k;

    assert_int_equal(setenv("GATEHOUSE_MASTER_KEY", "not base64 at all!!", 1), 0);
    assert_int_equal(gh_keys_load(t->dir, &k), GH_ERR);
    /* The URL-safe alphabet is not the standard one. */
    sodium_bin2base64(b64, sizeof(b64), raw, sizeof(raw), sodium_base64_VARIANT_URLSAFE);
    assert_non_null(strpbrk(b64, "-_"));
    assert_int_equal(setenv("GATEHOUSE_MASTER_KEY", b64, 1), 0);
    assert_int_equal(gh_keys_load(t->dir, &k), GH_ERR);
    /* Missing padding. */
    sodium_bin2base64(b64, sizeof(b64), raw, sizeof(raw),
                      sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
    assert_int_equal(setenv("GATEHOUSE_MASTER_KEY", b64, 1), 0);
    assert_int_equal(gh_keys_load(t->dir, &k), GH_ERR);
}

/* Without the variable a 0600 master.key is generated once and read back afterwards. */
static void test_keys_generated_file(void **state)
{
    tmpdir_t *t = *state;
    char text[128];
    unsigned char raw[GH_MASTER_KEY_BYTES];
    size_t rawlen = 0;
    gh_keys_t a, b, c;
    struct stat st;
    ssize_t n;
    int fd;

    assert_int_equal(gh_keys_load(t->dir, &a), GH_OK);
    assert_int_equal(stat(t->keyfile, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);
    /* The file is the base64 text of 32 bytes and a newline. */
    fd = open(t->keyfile, O_RDONLY);
    assert_true(fd >= 0);
    n = read(fd, text, sizeof(text) - 1);
    close(fd);
    assert_int_equal(n, 45);
    text[n] = '\0';
    assert_int_equal(text[44], '\n');
    assert_int_equal(sodium_base642bin(raw, sizeof(raw), text, 44, NULL, &rawlen, NULL,
                                       sodium_base64_VARIANT_ORIGINAL),
                     0);
    assert_int_equal(rawlen, GH_MASTER_KEY_BYTES);

    /* Loading again reads the same key back. */
    assert_int_equal(gh_keys_load(t->dir, &b), GH_OK);
    assert_memory_equal(&a, &b, sizeof(a));

    /* The file's content in the environment gives the same keys: operators can move it there. */
    text[44] = '\0';
    assert_int_equal(setenv("GATEHOUSE_MASTER_KEY", text, 1), 0);
    assert_int_equal(gh_keys_load(t->dir, &c), GH_OK);
    assert_memory_equal(&a, &c, sizeof(a));

    /* An empty variable means the file. */
    assert_int_equal(setenv("GATEHOUSE_MASTER_KEY", "", 1), 0);
    assert_int_equal(gh_keys_load(t->dir, &c), GH_OK);
    assert_memory_equal(&a, &c, sizeof(a));
}

/* A master.key readable by group or other is refused until chmod 600. */
static void test_keys_file_too_open_refused(void **state)
{
    tmpdir_t *t = *state;
    gh_keys_t k;

    assert_int_equal(gh_keys_load(t->dir, &k), GH_OK);
    assert_int_equal(chmod(t->keyfile, 0644), 0);
    assert_int_equal(gh_keys_load(t->dir, &k), GH_ERR);
    assert_int_equal(chmod(t->keyfile, 0640), 0);
    assert_int_equal(gh_keys_load(t->dir, &k), GH_ERR);
    /* chmod 600, as the message says, fixes it. */
    assert_int_equal(chmod(t->keyfile, 0600), 0);
    assert_int_equal(gh_keys_load(t->dir, &k), GH_OK);
}

/* A master.key with a wrong-length key is refused and left in place. */
static void test_keys_file_invalid(void **state)
{
    tmpdir_t *t = *state;
    gh_keys_t k;
    int fd;

    fd = open(t->keyfile, O_CREAT | O_EXCL | O_WRONLY, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "dG9vIHNob3J0\n", 13), 13);
    close(fd);
    assert_int_equal(gh_keys_load(t->dir, &k), GH_ERR);
    /* The bad file is left alone, not replaced by a new key. */
    assert_int_equal(access(t->keyfile, F_OK), 0);
}

/* A missing data directory is an error, not a crash. */
static void test_keys_missing_dir(void **state)
{
    gh_keys_t k;

    (void)state;
    unsetenv("GATEHOUSE_MASTER_KEY");
    assert_int_equal(gh_keys_load("/nonexistent/gh-test-dir", &k), GH_ERR);
    assert_int_equal(gh_keys_load(NULL, &k), GH_ERR);
}

/* Runs every test above after initialising libsodium. */
int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seal_open_round_trip),
        cmocka_unit_test(test_open_wrong_key_fails),
        cmocka_unit_test(test_open_tampered_fails),
        cmocka_unit_test(test_seal_fresh_nonce),
        cmocka_unit_test(test_hash_hex),
        cmocka_unit_test(test_vkey_format),
        cmocka_unit_test(test_admin_token_format),
        cmocka_unit_test(test_ct_equal),
        cmocka_unit_test(test_last4),
        cmocka_unit_test_setup_teardown(test_keys_from_env, setup_tmpdir, teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_keys_env_wrong_length, setup_tmpdir, teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_keys_env_bad_base64, setup_tmpdir, teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_keys_generated_file, setup_tmpdir, teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_keys_file_too_open_refused, setup_tmpdir,
                                        teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_keys_file_invalid, setup_tmpdir, teardown_tmpdir),
        cmocka_unit_test(test_keys_missing_dir),
    };

    if (gh_crypto_init() != GH_OK)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
