/* hybrid_accept.c: the strategy registry and what every strategy shares.
 *
 * Owns: looking a strategy up by name, the listener-group count of the one
 * in force, the listeners' blocking mode, and accept() with its errno
 * sorted into "try again", "stop" and "sick" (hybrid_accept.h).
 */

#include <errno.h>
#include <fcntl.h>
#include <strings.h>

#include "apr_portable.h"

#include "apr_strings.h"

#include "httpd.h"
#include "http_log.h"
#include "http_main.h"

#include "hybrid_accept.h"
#include "hybrid_child.h"
#include "hybrid_config.h"
#include "hybrid_counters.h"
#include "hybrid_server.h"

static const hyb_strategy *const strategies[] = {
    &hyb_accept_mutex,
    &hyb_accept_preemptive,
    &hyb_accept_reuseport,
    &hyb_accept_exclusive,
};

#define NSTRATEGIES (sizeof(strategies) / sizeof(strategies[0]))

const hyb_strategy *hyb_strategy_find(const char *name)
{
    apr_size_t i;

    for (i = 0; i < NSTRATEGIES; i++) {
        if (!strcasecmp(strategies[i]->name, name)) {
            return strategies[i];
        }
    }
    return NULL;
}

const char *hyb_strategy_names(apr_pool_t *p)
{
    const char *all = "";
    apr_size_t i;

    for (i = 0; i < NSTRATEGIES; i++) {
        all = apr_pstrcat(p, all, i ? ", " : "", strategies[i]->name, NULL);
    }
    return all;
}

int hyb_accept_groups(void)
{
    return hyb_conf.strategy->groups ? hyb_conf.strategy->groups() : 1;
}

/* What this configuration would like. */
static int blocking_wanted(void)
{
    const hyb_strategy *st = hyb_conf.strategy;

    return hyb_conf.lim.threads_per_child == 1 && !hyb_conf.async
           && (st == &hyb_accept_exclusive || st == &hyb_accept_reuseport)
           && ap_listeners && !ap_listeners->next;
}

/* Decided once per generation (this DSO is loaded afresh for each), from
 * what the listeners were in the last one (retained): at a graceful
 * restart the old generation's children still accept for a moment, and a
 * thread of a threaded child must never block on a listener that another
 * process may empty first; so listeners turn blocking only at a start or
 * a hard restart (no old children), and turn non-blocking whenever this
 * generation does not want them blocking. */
int hyb_accept_blocks(void)
{
    static int decided = -1;
    int *was;

    if (decided < 0) {
        was = ap_retained_data_get("mpm_hybrid_blocking_listeners");
        if (!was) {
            was = ap_retained_data_create("mpm_hybrid_blocking_listeners",
                                          sizeof(*was));
        }
        decided = blocking_wanted()
                  && (*was || !hyb_server.mpm->was_graceful);
        *was = decided;
    }
    return decided;
}

/* APR remembers the mode it set and skips a change it thinks is made;
 * group sockets made outside APR start non-blocking: so the descriptor's
 * flag is set directly, and APR's record kept in step. */
void hyb_listeners_prepare(ap_listen_rec *lrs)
{
    int nonblocking = !hyb_accept_blocks();
    ap_listen_rec *lr;

    for (lr = lrs; lr; lr = lr->next) {
        apr_os_sock_t fd;
        int flags;

        apr_socket_opt_set(lr->sd, APR_SO_NONBLOCK, nonblocking);
        if (apr_os_sock_get(&fd, lr->sd) == APR_SUCCESS
            && (flags = fcntl(fd, F_GETFL)) >= 0) {
            fcntl(fd, F_SETFL, nonblocking ? flags | O_NONBLOCK
                                           : flags & ~O_NONBLOCK);
        }
    }
}

/* Resource shortages: fd limits, memory. */
static int accept_error_is_shortage(apr_status_t rv)
{
    return rv == APR_FROM_OS_ERROR(EMFILE) || rv == APR_FROM_OS_ERROR(ENFILE)
           || rv == APR_FROM_OS_ERROR(ENOBUFS)
           || rv == APR_FROM_OS_ERROR(ENOMEM);
}

hyb_accept_rc hyb_accept_on(hyb_child *ch, ap_listen_rec *lr,
                            apr_socket_t **csd, apr_pool_t *ptrans,
                            int woken)
{
    apr_status_t rv = apr_socket_accept(csd, lr->sd, ptrans);

    if (rv == APR_SUCCESS) {
        HYB_COUNT(ch, accepts, 1);
        return HYB_ACCEPT_OK;
    }
    if (APR_STATUS_IS_EAGAIN(rv) || APR_STATUS_IS_EINTR(rv)) {
        if (woken) {
            HYB_COUNT(ch, idle_wakeups, 1);
        }
        return HYB_ACCEPT_RETRY;
    }
    HYB_COUNT(ch, accept_errors, 1);
    if (accept_error_is_shortage(rv)) {
        errno = rv;
        return HYB_ACCEPT_SHORTAGE;
    }
    if (hyb_child_stopping(ch)) {
        return HYB_ACCEPT_STOP;   /* listener closed under us on the way out */
    }
    /* Connection-level failures (aborted, reset, unreachable) are the
     * client's problem, not ours. */
    ap_log_error(APLOG_MARK, APLOG_DEBUG, rv, ap_server_conf, HYBLOGNO(00021)
                 "accept failed, continuing");
    return HYB_ACCEPT_RETRY;
}
