/* hybrid_server.h: facts about this run of the server that every part of
 * mpm_hybrid reads, and the log tag of its messages.
 *
 * Set by the module glue (mod_mpm_hybrid.c) in pre_config, again for every
 * generation: the MPM DSO is unloaded and reloaded at each restart, so
 * these are re-derived each time; what must outlive a generation lives in
 * each part's own retained data.
 */
#ifndef HYBRID_SERVER_H
#define HYBRID_SERVER_H

#include "apr_pools.h"
#include "httpd.h"
#include "http_config.h"
#include "unixd.h"

/* Every part logs as mpm_hybrid (LogLevel mpm_hybrid:debug, and the
 * [mpm_hybrid:...] tag); the glue file gets this from AP_DECLARE_MODULE. */
#ifndef HYB_MODULE_GLUE
APLOG_USE_MODULE(mpm_hybrid);
#endif

/* Log tags for this module's own messages: "HYBnnnnn: ". */
#define HYBLOGNO(n) "HYB" #n ": "

/* Longest a child sleeps in one wait without checking for a stop or a
 * vanished parent. */
#define HYB_WAIT_SLICE_MS 1000

/* Sent by the kernel to a child whose parent died (PR_SET_PDEATHSIG). */
#define HYB_SIG_PARENT_DIED SIGUSR2

typedef struct hyb_server_t {
    ap_unixd_mpm_retained_data *mpm; /* httpd's own MPM state: generation,
                                        restart/shutdown flags, mpm_state */
    apr_pool_t *pconf;        /* this generation's configuration pool */
    int one_process;          /* -X or -DDEBUG: no children, no detach */
    int startup_pass;         /* the first of the two start-up config reads:
                                 messages go to the console */
    int detach_pass;          /* the second one (module_loads == 2): say
                                 nothing twice */
} hyb_server_t;

extern hyb_server_t hyb_server;

#endif /* HYBRID_SERVER_H */
