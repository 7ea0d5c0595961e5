/* hybrid_accept.c: the strategy registry and what every strategy shares.
 *
 * Owns: looking a strategy up by name, the listener-group count of the one
 * in force, making listeners non-blocking, and accept() with its errno
 * sorted into "try again", "stop" and "sick" (hybrid_accept.h).
 */

#include <errno.h>
#include <strings.h>

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

void hyb_listeners_nonblocking(ap_listen_rec *lrs)
{
    ap_listen_rec *lr;

    for (lr = lrs; lr; lr = lr->next) {
        apr_socket_opt_set(lr->sd, APR_SO_NONBLOCK, 1);
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
                            apr_socket_t **csd, apr_pool_t *ptrans)
{
    apr_status_t rv = apr_socket_accept(csd, lr->sd, ptrans);

    if (rv == APR_SUCCESS) {
        HYB_COUNT(ch, accepts, 1);
        return HYB_ACCEPT_OK;
    }
    if (APR_STATUS_IS_EAGAIN(rv) || APR_STATUS_IS_EINTR(rv)) {
        HYB_COUNT(ch, idle_wakeups, 1);
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
