/* accept_exclusive.c: AcceptStrategy exclusive.
 *
 * Shared listeners; each child waits in its own epoll set where the
 * listeners are registered with EPOLLEXCLUSIVE, so the kernel wakes one
 * waiting child per connection: no lock and no thundering herd.
 *
 * The kernel wakes exclusive waiters in the order they registered, so the
 * first child to register would get nearly every connection.  Every
 * REARM_EVERY accepts a child deletes and re-adds its listeners, which
 * moves it to the back of the line (nginx does the same for the same
 * reason).
 */

#include <sys/epoll.h>

#ifndef EPOLLEXCLUSIVE
#define EPOLLEXCLUSIVE (1u << 28)
#endif

#define REARM_EVERY 16

typedef struct {
    int epfd;
    int nlisten;
    int *fds;                /* listener fds, index = epoll data */
    ap_listen_rec **lrs;
    unsigned accepts;        /* since the last re-arm */
} excl_child;

/* On kernels with EPOLLEXCLUSIVE, EPOLL_CTL_MOD of an exclusive entry is
 * refused with EINVAL; older kernels silently ignore the unknown flag. */
static const char *exclusive_probe(apr_pool_t *p)
{
    int ep = epoll_create1(EPOLL_CLOEXEC), fds[2], ok = 0;
    struct epoll_event ev;

    if (ep < 0) {
        return "epoll is not available";
    }
    if (pipe(fds) == 0) {
        memset(&ev, 0, sizeof(ev));
        ev.events = EPOLLIN | EPOLLEXCLUSIVE;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[0], &ev) == 0) {
            ok = epoll_ctl(ep, EPOLL_CTL_MOD, fds[0], &ev) < 0
                 && errno == EINVAL;
        }
        close(fds[0]);
        close(fds[1]);
    }
    close(ep);
    return ok ? NULL : "the kernel does not support EPOLLEXCLUSIVE "
                       "(Linux 4.5 or later is needed)";
}

static apr_status_t exclusive_open(apr_pool_t *p, server_rec *s)
{
    hyb_listeners_nonblocking(ap_listeners);
    return APR_SUCCESS;
}

static int arm(excl_child *ex, int op)
{
    struct epoll_event ev;
    int i;

    for (i = 0; i < ex->nlisten; i++) {
        if (op == EPOLL_CTL_DEL) {
            epoll_ctl(ex->epfd, EPOLL_CTL_DEL, ex->fds[i], NULL);
            continue;
        }
        memset(&ev, 0, sizeof(ev));
        ev.events = EPOLLIN | EPOLLEXCLUSIVE;
        ev.data.u32 = (apr_uint32_t)i;
        if (epoll_ctl(ex->epfd, EPOLL_CTL_ADD, ex->fds[i], &ev) < 0) {
            return errno;
        }
    }
    return 0;
}

static apr_status_t exclusive_child_init(hyb_child *ch)
{
    excl_child *ex = apr_pcalloc(ch->pool, sizeof(*ex));
    hyb_pollset ps;
    struct epoll_event ev;
    int i, rv;

    /* The poll set gives the listener list (and registers the fds with
     * the child so a stop releases them); epoll does the waiting. */
    if (hyb_pollset_build(ch, ap_listeners, &ps) != APR_SUCCESS) {
        return APR_ENOSOCKET;
    }
    ex->nlisten = ps.nlisten;
    ex->fds = apr_pcalloc(ch->pool, sizeof(int) * ps.nlisten);
    ex->lrs = ps.lrs;
    for (i = 0; i < ps.nlisten; i++) {
        ex->fds[i] = ps.fds[i].fd;
    }
    ex->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (ex->epfd < 0) {
        return errno;
    }
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.u32 = (apr_uint32_t)ps.nlisten;   /* the wake pipe */
    if (epoll_ctl(ex->epfd, EPOLL_CTL_ADD, ch->wake_fd[0], &ev) < 0
        || (rv = arm(ex, EPOLL_CTL_ADD)) != 0) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, errno, ap_server_conf,
                     HYBLOGNO(00095) "exclusive: cannot register listeners "
                     "with epoll");
        return APR_EGENERAL;
    }
    ch->accept_state = ex;
    return APR_SUCCESS;
}

static hyb_accept_rc exclusive_accept_one(hyb_child *ch, apr_socket_t **csd,
                                          apr_pool_t *ptrans)
{
    excl_child *ex = ch->accept_state;
    struct epoll_event ev;
    hyb_accept_rc rc;
    int n;

    for (;;) {
        if (hyb_child_stopping(ch)) {
            return HYB_ACCEPT_STOP;
        }
        n = epoll_wait(ex->epfd, &ev, 1, HYB_WAIT_SLICE_MS);
        if (n > 0) {
            break;
        }
        if (ch->parent_pid && getppid() != ch->parent_pid) {
            hyb_child_request_stop(ch, HYB_STOP_GRACEFUL);
        }
    }
    if (ev.data.u32 >= (apr_uint32_t)ex->nlisten) {
        return HYB_ACCEPT_STOP;
    }
    rc = hyb_accept_on(ch, ex->lrs[ev.data.u32], csd, ptrans);
    if (rc == HYB_ACCEPT_OK && ++ex->accepts >= REARM_EVERY) {
        ex->accepts = 0;
        arm(ex, EPOLL_CTL_DEL);
        arm(ex, EPOLL_CTL_ADD);
    }
    return rc;
}

static void exclusive_child_exit(hyb_child *ch)
{
    excl_child *ex = ch->accept_state;

    if (ex && ex->epfd >= 0) {
        close(ex->epfd);
    }
}

static const hyb_strategy accept_exclusive = {
    "exclusive", HYBRID_ACCEPT_EXCLUSIVE,
    exclusive_probe,
    exclusive_open,
    exclusive_child_init,
    exclusive_accept_one,
    exclusive_child_exit,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
};
