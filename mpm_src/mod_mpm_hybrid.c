/* mod_mpm_hybrid.c: mpm_hybrid, a processes x threads MPM for httpd 2.4.
 *
 * A root parent keeps N children with M worker threads each.  With
 * ThreadsPerChild 1 a child is a prefork child (no threads; the MPM says
 * "threaded: no"); with more it works like worker.  How children take
 * connections is an AcceptStrategy (accept_*.c).
 *
 * This file is the glue httpd sees: the module struct, the hooks, the
 * mpm_query answers, and the list of the parts, compiled as one unit so
 * that nothing but the module struct is visible outside (see
 * hybrid_internal.h for the map of files).
 */

#include "hybrid_internal.h"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include "hybrid_config.c"
#include "hybrid_counters.c"
#include "hybrid_spare.c"
#include "hybrid_drain.c"
#include "accept_mutex.c"
#include "accept_preempt.c"
#include "accept_reuseport.c"
#include "reuseport_steer.c"
#include "accept_exclusive.c"
#include "hybrid_accept.c"
#include "hybrid_proc.c"
#include "hybrid_parent.c"
#include "hybrid_child.c"
#include "hybrid_worker.c"

#define RETAINED_KEY "mpm_hybrid_module"

static int hyb_query(int query_code, int *result, apr_status_t *rv)
{
    int tpc1 = (conf.threads_per_child ? conf.threads_per_child
                                       : tpc_read) == 1;

    *rv = APR_SUCCESS;
    switch (query_code) {
    case AP_MPMQ_MAX_DAEMON_USED:
        *result = retained->max_daemon_used;
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
        *result = conf.server_limit;
        break;
    case AP_MPMQ_HARD_LIMIT_THREADS:
        *result = conf.thread_limit;
        break;
    case AP_MPMQ_MAX_THREADS:
        *result = conf.threads_per_child;
        break;
    case AP_MPMQ_MIN_SPARE_DAEMONS:
        *result = tpc1 ? conf.spare_min : 0;
        break;
    case AP_MPMQ_MIN_SPARE_THREADS:
        *result = tpc1 ? 0 : conf.spare_min;
        break;
    case AP_MPMQ_MAX_SPARE_DAEMONS:
        *result = tpc1 ? conf.spare_max : 0;
        break;
    case AP_MPMQ_MAX_SPARE_THREADS:
        *result = tpc1 ? 0 : conf.spare_max;
        break;
    case AP_MPMQ_MAX_REQUESTS_DAEMON:
        *result = ap_max_requests_per_child;
        break;
    case AP_MPMQ_MAX_DAEMONS:
        *result = conf.daemons_limit;
        break;
    case AP_MPMQ_MPM_STATE:
        *result = retained->mpm->mpm_state;
        break;
    case AP_MPMQ_GENERATION:
        *result = retained->mpm->my_generation;
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

static hyb_retained *retained_get(void)
{
    hyb_retained *r = ap_retained_data_get(RETAINED_KEY);

    if (!r) {
        r = ap_retained_data_create(RETAINED_KEY, sizeof(*r));
        r->mpm = ap_unixd_mpm_get_retained_data();
        r->spawn_rate = 1;
        r->notify_fd[0] = r->notify_fd[1] = -1;
    }
    return r;
}

static int hyb_pre_config(apr_pool_t *p, apr_pool_t *plog, apr_pool_t *ptemp)
{
    int debug = ap_exists_config_define("DEBUG");
    int one_process = debug || ap_exists_config_define("ONE_PROCESS");
    int foreground = debug || ap_exists_config_define("FOREGROUND");
    int no_detach = !debug && ap_exists_config_define("NO_DETACH");
    apr_status_t rv;

    ap_mutex_register(p, AP_ACCEPT_MUTEX_TYPE, NULL, APR_LOCK_DEFAULT, 0);
    retained = retained_get();
    retained->mpm->mpm_state = AP_MPMQ_STARTING;
    if (retained->mpm->baton != retained) {
        retained->mpm->was_graceful = 0;
        retained->mpm->baton = retained;
    }
    ++retained->mpm->module_loads;
    retained->startup_pass = retained->mpm->module_loads == 1;
    retained->one_process = one_process;

    /* Detach on the second pass, as httpd's own MPMs do. */
    if (retained->mpm->module_loads == 2 && !one_process && !foreground) {
        ap_fatal_signal_setup(ap_server_conf, p);
        rv = apr_proc_detach(no_detach ? APR_PROC_DETACH_FOREGROUND
                                       : APR_PROC_DETACH_DAEMONIZE);
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, rv, NULL, HYBLOGNO(00080)
                         "apr_proc_detach failed");
            return HTTP_INTERNAL_SERVER_ERROR;
        }
    }
    pconf = p;
    hyb_drain_note_old_listeners(p);
    ap_listen_pre_config();
    hyb_config_defaults();
    ap_extended_status = 0;
    return OK;
}

/* Limits fixed at the first start size the scoreboard and the slot table
 * for the life of the process. */
static void fix_first_limits(void)
{
    if (!retained->first_server_limit) {
        retained->first_server_limit = conf.server_limit;
        retained->first_thread_limit = conf.thread_limit;
    }
    if (!retained->slots) {
        retained->slots = ap_retained_data_create(RETAINED_KEY "_slots",
            sizeof(hyb_slot) * retained->first_server_limit);
    }
}

static int hyb_check_config_hook(apr_pool_t *p, apr_pool_t *plog,
                                 apr_pool_t *ptemp, server_rec *s)
{
    int rc = hyb_check_config(p, plog, ptemp, s);

    if (rc == OK) {
        fix_first_limits();
    }
    return rc;
}

static apr_status_t open_notify_pipe(void)
{
    if (retained->notify_fd[0] >= 0) {
        return APR_SUCCESS;
    }
    if (pipe2(retained->notify_fd, O_CLOEXEC | O_NONBLOCK) < 0) {
        return errno;
    }
    return APR_SUCCESS;
}

/* Runs before the core's open_logs so start-up errors still reach the
 * console; as root, before any fork. */
static int hyb_open_logs(apr_pool_t *p, apr_pool_t *plog, apr_pool_t *ptemp,
                         server_rec *s)
{
    int startup = retained->mpm->module_loads == 1;
    int flags = startup ? APLOG_STARTUP : 0;
    server_rec *log_s = startup ? NULL : s;
    apr_status_t rv;

    pconf = p;
    hyb_drain_mark_removed_listeners();
    if (ap_setup_listeners(ap_server_conf) < 1) {
        ap_log_error(APLOG_MARK, APLOG_ALERT | flags, 0, log_s,
                     HYBLOGNO(00081) "no listening sockets available, "
                     "shutting down");
        return !OK;
    }
    if ((rv = open_notify_pipe()) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT | flags, rv, log_s,
                     HYBLOGNO(00082) "cannot create the parent's wake-up "
                     "pipe");
        return !OK;
    }
    hyb_stats_create(s);
    hyb_group_load_create();
    if (conf.strategy->open(p, s) != APR_SUCCESS) {
        return !OK;
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
    ap_hook_check_config(hyb_check_config_hook, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_mpm(hyb_run, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_mpm_query(hyb_query, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_mpm_get_name(hyb_get_name, NULL, NULL, APR_HOOK_MIDDLE);
    hyb_register_optional_fns();
}

AP_DECLARE_MODULE(mpm_hybrid) __attribute__((visibility("default"))) = {
    MPM20_MODULE_STUFF,
    NULL,               /* hook to run before apache parses args */
    NULL,               /* create per-directory config structure */
    NULL,               /* merge per-directory config structures */
    NULL,               /* create per-server config structure */
    NULL,               /* merge per-server config structures */
    hybrid_cmds,        /* command apr_table_t */
    hyb_register_hooks, /* register hooks */
    AP_MODULE_FLAG_NONE
};
