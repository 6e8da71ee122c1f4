/* cli.h: the command line of DESIGN.md section 4 parsed into one gh_config_t. */
#ifndef GH_CLI_H
#define GH_CLI_H

#include <stddef.h>

typedef struct {
    char host[256];
    char port[16];
} gh_hostport_t;

typedef struct {
    gh_hostport_t listen;
    gh_hostport_t admin_listen;
    char data_dir[1024];
    int workers;       /* 0 = number of CPUs, resolved by gh_config_parse */
    int drain_timeout; /* seconds */
    size_t max_body;   /* bytes a client request body may have */
    size_t max_upload; /* bytes a streamed file upload may have */
    int show_version;
    int show_help;
} gh_config_t;

/* Fills cfg with the defaults of the contract. */
void gh_config_defaults(gh_config_t *cfg);

/* Parses "HOST:PORT", "[v6]:PORT" or ":PORT" (host defaults to 127.0.0.1) into out. The port must
 * be 0..65535. Returns GH_OK or GH_ERR. */
int gh_parse_hostport(const char *s, gh_hostport_t *out);

/* Parses argv (both "--flag value" and "--flag=value"). On a bad flag or value writes a one-line
 * reason into err (errsz bytes) and returns GH_ERR; the caller prints usage and exits 2. */
int gh_config_parse(gh_config_t *cfg, int argc, char **argv, char *err, size_t errsz);

/* Writes the usage text to f (a FILE *, void to keep stdio out of this header). */
void gh_config_usage(void *f);

#endif
