/* master.h: the master process: listening sockets, the worker process table, signals. */
#ifndef GH_MASTER_H
#define GH_MASTER_H

#include "cli.h"
#include "crypto.h"

/* Opens the listening sockets, forks cfg->workers workers and supervises them until SIGTERM,
 * SIGINT or SIGQUIT. Returns the process exit status. */
int gh_master_run(const gh_config_t *cfg, const gh_keys_t *keys);

/* Creates a non-blocking listening TCP socket on hp. Returns the fd or -1 (logged). */
int gh_listen_socket(const gh_hostport_t *hp);

#endif
