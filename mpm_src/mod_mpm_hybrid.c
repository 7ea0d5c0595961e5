/* mod_mpm_hybrid.c: mpm_hybrid, a processes x threads MPM for httpd 2.4.
 *
 * A root parent keeps N children with M worker threads each.  With
 * ThreadsPerChild 1 a child is a prefork child (no threads; the MPM says
 * "threaded: no"); with more it works like worker.  How children take
 * connections is an AcceptStrategy (accept_*.c).
 *
 * This file is the glue httpd sees: the module struct, the hooks, the
 * mpm_query answers and the per-generation set-up of the parts, in the
 * order httpd runs them.  Every other file is its own translation unit;
 * built with -fvisibility=hidden, only the module struct leaves the DSO.
 * The map of files is in README.md ("Layout").
 */

#define HYB_MODULE_GLUE   /* AP_DECLARE_MODULE below sets the log index */

#include <sys/prctl.h>
#include <sys/resource.h>

#include "httpd.h"
#include "http_config.h"
#include "http_connection.h"
#include "http_log.h"
#include "http_core.h"
#include "http_main.h"
#include "http_protocol.h"
#include "ap_listen.h"
#include "ap_mpm.h"
#include "mpm_common.h"
#include "unixd.h"
#include "util_mutex.h"

#include "hybrid_accept.h"
#include "hybrid_config.h"
#include "hybrid_conn.h"
#include "hybrid_counters.h"
#include "hybrid_drain.h"
#include "hybrid_notes.h"
#include "hybrid_parent.h"
#include "hybrid_proc.h"
#include "hybrid_retire.h"
#include "hybrid_server.h"

#define RETAINED_KEY "mpm_hybrid_module"

hyb_server_t hyb_server;

static int hyb_query(int query_code, int *result, apr_status_t *rv)
{
    const hyb_limits *l = &hyb_conf.lim;
    int tpc1 = hyb_config_threads_per_child() == 1;

    *rv = APR_SUCCESS;
    switch (query_code) {
    case AP_MPMQ_MAX_DAEMON_USED:
        *result = hyb_proc_max_used();
        break;
    case AP_MPMQ_IS_THREADED:
        /* ThreadsPerChild 1 creates no thread at all: modules that are
         * not thread-safe may load. */
        *result = tpc1 ? AP_MPMQ_NOT_SUPPORTED : AP_MPMQ_STATIC;
        break;
    case AP_MPMQ_IS_FORKED:
        *result = AP_MPMQ_DYNAMIC;
        break;
    case AP_MPMQ_HARD_LIMIT_DAEMONS:
        *result = l->server_limit;
        break;
    case AP_MPMQ_HARD_LIMIT_THREADS:
        *result = l->thread_limit;
        break;
    case AP_MPMQ_MAX_THREADS:
        *result = l->threads_per_child;
        break;
    case AP_MPMQ_MIN_SPARE_DAEMONS:
        *result = tpc1 ? l->spare_min : 0;
        break;
    case AP_MPMQ_MIN_SPARE_THREADS:
        *result = tpc1 ? 0 : l->spare_min;
        break;
    case AP_MPMQ_MAX_SPARE_DAEMONS:
        *result = tpc1 ? l->spare_max : 0;
        break;
    case AP_MPMQ_MAX_SPARE_THREADS:
        *result = tpc1 ? 0 : l->spare_max;
        break;
    case AP_MPMQ_MAX_REQUESTS_DAEMON:
        *result = ap_max_requests_per_child;
        break;
    case AP_MPMQ_MAX_DAEMONS:
        *result = l->daemons_limit;
        break;
    case AP_MPMQ_MPM_STATE:
        /* asked before pre_config too (apache2 -V) */
        *result = hyb_server.mpm ? hyb_server.mpm->mpm_state
                                 : AP_MPMQ_STARTING;
        break;
    case AP_MPMQ_GENERATION:
        *result = hyb_server.mpm ? hyb_server.mpm->my_generation : 0;
        break;
    case AP_MPMQ_IS_ASYNC:
        /* http_core then serves one request per call and leaves the
         * connection's state for the MPM (hybrid_conn.c) */
        if (hyb_conf.async > 0) {
            *result = 1;
        }
        else {
            *rv = APR_ENOTIMPL;
        }
        break;
    default:
        *rv = APR_ENOTIMPL;
        break;
    }
    return OK;
}

static const char *hyb_get_name(void)
{
    return "hybrid";
}

/* httpd's shared MPM state, linked to this module on its first load. */
static void attach_mpm_state(void)
{
    int *baton = ap_retained_data_get(RETAINED_KEY);

    if (!baton) {
        baton = ap_retained_data_create(RETAINED_KEY, sizeof(*baton));
    }
    hyb_server.mpm = ap_unixd_mpm_get_retained_data();
    hyb_server.mpm->mpm_state = AP_MPMQ_STARTING;
    if (hyb_server.mpm->baton != baton) {
        hyb_server.mpm->was_graceful = 0;
        hyb_server.mpm->baton = baton;
    }
    ++hyb_server.mpm->module_loads;
    hyb_server.startup_pass = hyb_server.mpm->module_loads == 1;
    hyb_server.detach_pass = hyb_server.mpm->module_loads == 2;
}

/* Detach on the second pass, as httpd's own MPMs do. */
static int detach(apr_pool_t *p, int foreground, int no_detach)
{
    apr_status_t rv;

    if (!hyb_server.detach_pass || hyb_server.one_process || foreground) {
        return OK;
    }
    ap_fatal_signal_setup(ap_server_conf, p);
    rv = apr_proc_detach(no_detach ? APR_PROC_DETACH_FOREGROUND
                                   : APR_PROC_DETACH_DAEMONIZE);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, NULL, HYBLOGNO(00080)
                     "apr_proc_detach failed");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    return OK;
}

static int hyb_pre_config(apr_pool_t *p, apr_pool_t *plog, apr_pool_t *ptemp)
{
    int debug = ap_exists_config_define("DEBUG");
    int foreground = debug || ap_exists_config_define("FOREGROUND");
    int no_detach = !debug && ap_exists_config_define("NO_DETACH");
    int rc;

    ap_mutex_register(p, AP_ACCEPT_MUTEX_TYPE, NULL, APR_LOCK_DEFAULT, 0);
    attach_mpm_state();
    hyb_server.one_process = debug || ap_exists_config_define("ONE_PROCESS");
    if ((rc = detach(p, foreground, no_detach)) != OK) {
        return rc;
    }
    hyb_server.pconf = p;
    hyb_drain_note_old_listeners(p);
    ap_listen_pre_config();
    hyb_config_defaults();
    ap_extended_status = 0;
    return OK;
}

static int hyb_check_config(apr_pool_t *p, apr_pool_t *plog,
                            apr_pool_t *ptemp, server_rec *s)
{
    int rc = hyb_config_check(p, ptemp, s);

    if (rc == OK) {
        /* The slot table is sized once, like the scoreboard. */
        hyb_proc_init(hyb_conf.lim.first_server_limit);
        hyb_parent_init();
    }
    return rc;
}

/* A child holds a file descriptor per connection: the soft limit goes up
 * to the hard one (children inherit it), and a limit too low for
 * AsyncConnectionLimit is said once. */
static void raise_fd_limit(server_rec *s)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
        return;
    }
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (hyb_conf.async > 0 && rl.rlim_cur != RLIM_INFINITY
        && rl.rlim_cur < (rlim_t)hyb_conf.async_limit + 64) {
        hyb_config_warn(s, "AsyncConnectionLimit %d needs about %d file "
                        "descriptors per child, but the limit is %lu (ulimit "
                        "-Hn): a child stops accepting when it runs out",
                        hyb_conf.async_limit, hyb_conf.async_limit + 64,
                        (unsigned long)rl.rlim_cur);
    }
}

/* Runs before the core's open_logs so start-up errors still reach the
 * console; as root, before any fork. */
static int hyb_open_logs(apr_pool_t *p, apr_pool_t *plog, apr_pool_t *ptemp,
                         server_rec *s)
{
    int flags = hyb_server.startup_pass ? APLOG_STARTUP : 0;
    server_rec *log_s = hyb_server.startup_pass ? NULL : s;
    apr_status_t rv;

    hyb_server.pconf = p;
    raise_fd_limit(s);
    hyb_drain_mark_removed_listeners();
    if (ap_setup_listeners(ap_server_conf) < 1) {
        ap_log_error(APLOG_MARK, APLOG_ALERT | flags, 0, log_s,
                     HYBLOGNO(00081) "no listening sockets available, "
                     "shutting down");
        return !OK;
    }
    if ((rv = hyb_notes_open()) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT | flags, rv, log_s,
                     HYBLOGNO(00082) "cannot create the parent's wake-up "
                     "pipes");
        return !OK;
    }
    hyb_stats_create(s, hyb_proc_slots());
    hyb_retire_open(hyb_proc_slots());
    if (hyb_conf.strategy->open(p, s) != APR_SUCCESS) {
        return !OK;
    }
    return OK;
}

static int hyb_post_config(apr_pool_t *p, apr_pool_t *plog, apr_pool_t *ptemp,
                           server_rec *s)
{
    hyb_config_post_config(p, s);
    return OK;
}

static int hyb_pre_connection(conn_rec *c, void *csd)
{
    if (hyb_conf.async > 0) {
        hyb_conn_setup_secondary(c);
    }
    return OK;
}

static void hyb_register_hooks(apr_pool_t *p)
{
    /* open_logs must run before the core's, which redirects stderr. */
    static const char *const before_core[] = { "core.c", NULL };

    ap_hook_open_logs(hyb_open_logs, NULL, before_core, APR_HOOK_REALLY_FIRST);
    /* Other modules' pre_config may already ask for the MPM state. */
    ap_hook_pre_config(hyb_pre_config, NULL, NULL, APR_HOOK_REALLY_FIRST);
    ap_hook_check_config(hyb_check_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(hyb_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    /* HTTP/2 secondary connections need their own state before any other
     * pre_connection hook looks at it. */
    ap_hook_pre_connection(hyb_pre_connection, NULL, NULL,
                           APR_HOOK_REALLY_FIRST);
    ap_hook_post_read_request(hyb_conn_note_request, NULL, NULL,
                              APR_HOOK_MIDDLE);
    ap_hook_mpm(hyb_parent_run, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_mpm_query(hyb_query, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_mpm_get_name(hyb_get_name, NULL, NULL, APR_HOOK_MIDDLE);
    hyb_stats_register();
}

AP_DECLARE_MODULE(mpm_hybrid) __attribute__((visibility("default"))) = {
    MPM20_MODULE_STUFF,
    NULL,               /* hook to run before apache parses args */
    NULL,               /* create per-directory config structure */
    NULL,               /* merge per-directory config structures */
    NULL,               /* create per-server config structure */
    NULL,               /* merge per-server config structures */
    hyb_cmds,           /* command apr_table_t */
    hyb_register_hooks, /* register hooks */
    AP_MODULE_FLAG_NONE
};
