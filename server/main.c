/* main.c: gatehouse's entry point: parses the command line, prepares the data directory and the
 * database, then hands over to the master process. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sodium.h>

#include "admin.h"
#include "cli.h"
#include "crypto.h"
#include "gh.h"
#include "log.h"
#include "master.h"
#include "store.h"

/* Creates the data directory (0700: it holds secrets) if missing. */
static int prepare_data_dir(const char *dir)
{
    struct stat st;

    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        gh_log_error("mkdir(%s) failed: %s", dir, strerror(errno));
        return GH_ERR;
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        gh_log_error("data directory %s is not a directory", dir);
        return GH_ERR;
    }
    return GH_OK;
}

/* Runs migrations, binds the master key to the database and seeds the first provider. The
 * connection is closed before fork: workers open their own. */
static int prepare_database(const char *dir, const gh_keys_t *keys)
{
    char path[1200];
    sqlite3 *db = NULL;
    int rc = GH_ERR;

    snprintf(path, sizeof(path), "%s/gatehouse.db", dir);
    if (gh_store_open(path, &db) != GH_OK)
        goto done;
    if (gh_store_migrate(db, 0) != GH_OK)
        goto done;
    if (gh_store_check_keys(db, keys) != GH_OK)
        goto done;
    if (gh_store_bootstrap(db, keys) != GH_OK)
        goto done;
    if (gh_admin_token_init(db, keys, dir) != GH_OK)
        goto done;
    rc = GH_OK;
done:
    gh_store_close(db);
    return rc;
}

int main(int argc, char **argv)
{
    gh_config_t cfg;
    gh_keys_t keys;
    char err[512];
    const char *lvl = getenv("GH_LOG_LEVEL");
    int rc;

    if (lvl != NULL) {
        if (strcmp(lvl, "debug") == 0)
            gh_log_set_level(GH_LOG_DEBUG);
        else if (strcmp(lvl, "warn") == 0)
            gh_log_set_level(GH_LOG_WARN);
        else if (strcmp(lvl, "error") == 0)
            gh_log_set_level(GH_LOG_ERROR);
    }
    gh_config_defaults(&cfg);
    if (gh_config_parse(&cfg, argc, argv, err, sizeof(err)) != GH_OK) {
        fprintf(stderr, "gatehouse: %s\n", err);
        gh_config_usage(stderr);
        return 2;
    }
    if (cfg.show_help) {
        gh_config_usage(stdout);
        return 0;
    }
    if (cfg.show_version) {
        printf("gatehouse %s\n", PACKAGE_VERSION);
        return 0;
    }
    /* everything gatehouse creates (database, keys, tokens) is for its owner only */
    umask(077);
    if (gh_crypto_init() != GH_OK)
        return 1;
    if (prepare_data_dir(cfg.data_dir) != GH_OK)
        return 1;
    if (gh_keys_load(cfg.data_dir, &keys) != GH_OK)
        return 1;
    if (prepare_database(cfg.data_dir, &keys) != GH_OK) {
        sodium_memzero(&keys, sizeof(keys));
        return 1;
    }
    rc = gh_master_run(&cfg, &keys);
    sodium_memzero(&keys, sizeof(keys));
    return rc;
}
