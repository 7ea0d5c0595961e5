/* hybrid_wait.c: waiting for a new connection on a child's listeners,
 * with poll() or with an epoll set and EPOLLEXCLUSIVE (hybrid_wait.h).
 *
 * Owns: the wait's descriptors, the fairness tricks each kind needs
 * (round-robin over ready listeners for poll; the periodic re-arm for
 * EPOLLEXCLUSIVE), and the slicing that lets a waiting child notice a
 * vanished parent.  Does not own: who may wait (the strategies), or what
 * accept() errors mean (hyb_accept_on).
 * Called from: a strategy's child_init (open), accept_one (accept) and
 * child_exit (close), in the child.
 */

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "apr_portable.h"
#include "apr_strings.h"

#include "httpd.h"
#include "http_log.h"
#include "http_main.h"

#include "hybrid_child.h"
#include "hybrid_counters.h"
#include "hybrid_server.h"
#include "hybrid_wait.h"

/* The kernel wakes exclusive waiters in the order they registered and
 * skips epoll sets nobody is waiting in, so the first child to register
 * would get nearly every connection at moderate load.  Every
 * HYB_REARM_EVERY accepts a child deletes and re-adds its listeners, which
 * moves it to the back of the line (nginx re-adds its listeners for the
 * same reason). */
#define HYB_REARM_EVERY 8
#define HYB_EXCL_EVENTS 16

struct hyb_wait {
    hyb_wait_kind kind;
    int nlisten;
    ap_listen_rec **lrs;      /* [nlisten] */
    struct pollfd *fds;       /* poll: listeners, then the wake pipe */
    int next;                 /* poll: round-robin start among ready ones */
    int epfd;                 /* exclusive: epoll data = listener index */
    unsigned accepts;         /* exclusive: since the last re-arm */
};

/* On kernels with EPOLLEXCLUSIVE, EPOLL_CTL_MOD of an exclusive entry is
 * refused with EINVAL; older kernels silently ignore the unknown flag. */
int hyb_wait_exclusive_supported(void)
{
    int ep = epoll_create1(EPOLL_CLOEXEC), fds[2], ok = 0;
    struct epoll_event ev;

    if (ep < 0) {
        return 0;
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
    return ok;
}

static int listener_fd(ap_listen_rec *lr)
{
    apr_os_sock_t fd = -1;

    apr_os_sock_get(&fd, lr->sd);
    return fd;
}

static int excl_arm(hyb_wait *w, int add)
{
    struct epoll_event ev;
    int i;

    for (i = 0; i < w->nlisten; i++) {
        if (!add) {
            epoll_ctl(w->epfd, EPOLL_CTL_DEL, w->fds[i].fd, NULL);
            continue;
        }
        memset(&ev, 0, sizeof(ev));
        ev.events = EPOLLIN | EPOLLEXCLUSIVE;
        ev.data.u32 = (apr_uint32_t)i;
        if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->fds[i].fd, &ev) < 0) {
            return errno;
        }
    }
    return 0;
}

static void excl_rearm(hyb_wait *w)
{
    excl_arm(w, 0);
    excl_arm(w, 1);
}

static apr_status_t excl_open(hyb_child *ch, hyb_wait *w)
{
    struct epoll_event ev;

    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.u32 = (apr_uint32_t)w->nlisten;   /* the wake pipe */
    if (w->epfd < 0
        || epoll_ctl(w->epfd, EPOLL_CTL_ADD, ch->wake_fd[0], &ev) < 0
        || excl_arm(w, 1) != 0) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, errno, ap_server_conf,
                     HYBLOGNO(00095) "cannot register the listeners with "
                     "epoll (EPOLLEXCLUSIVE)");
        return APR_EGENERAL;
    }
    return APR_SUCCESS;
}

apr_status_t hyb_wait_open(hyb_child *ch, ap_listen_rec *lrs,
                           hyb_wait_kind kind, hyb_wait **out)
{
    hyb_wait *w = apr_pcalloc(ch->pool, sizeof(*w));
    ap_listen_rec *lr;
    int i = 0;

    *out = w;
    w->kind = kind;
    w->epfd = -1;
    for (lr = lrs; lr; lr = lr->next) {
        w->nlisten++;
    }
    if (!w->nlisten) {
        return APR_ENOSOCKET;
    }
    w->lrs = apr_pcalloc(ch->pool, sizeof(*w->lrs) * w->nlisten);
    w->fds = apr_pcalloc(ch->pool, sizeof(*w->fds) * (w->nlisten + 1));
    for (lr = lrs; lr; lr = lr->next, i++) {
        w->lrs[i] = lr;
        w->fds[i].fd = listener_fd(lr);
        w->fds[i].events = POLLIN;
    }
    w->fds[w->nlisten].fd = ch->wake_fd[0];
    w->fds[w->nlisten].events = POLLIN;
    return kind == HYB_WAIT_EXCLUSIVE ? excl_open(ch, w) : APR_SUCCESS;
}

/* Under load a connection is usually already queued when a thread gets
 * its turn: with a single listener, try accept() before poll() and save a
 * system call per connection.  An empty queue costs one EAGAIN. */
static int accept_queued(hyb_child *ch, hyb_wait *w, apr_socket_t **csd,
                         apr_pool_t *ptrans)
{
    if (w->nlisten != 1 || hyb_child_stopping(ch)
        || apr_socket_accept(csd, w->lrs[0]->sd, ptrans) != APR_SUCCESS) {
        return 0;
    }
    HYB_COUNT(ch, accepts, 1);
    return 1;
}

static hyb_accept_rc poll_accept(hyb_child *ch, hyb_wait *w,
                                 apr_socket_t **csd, apr_pool_t *ptrans)
{
    int n, i;

    if (accept_queued(ch, w, csd, ptrans)) {
        return HYB_ACCEPT_OK;
    }
    for (;;) {
        if (hyb_child_stopping(ch)) {
            return HYB_ACCEPT_STOP;
        }
        n = poll(w->fds, w->nlisten + 1, HYB_WAIT_SLICE_MS);
        if (n > 0) {
            break;
        }
        if (n < 0 && errno != EINTR) {
            ap_log_error(APLOG_MARK, APLOG_ERR, errno, ap_server_conf,
                         HYBLOGNO(00022) "poll on listeners failed");
            apr_sleep(apr_time_from_msec(100));
        }
        hyb_child_check_parent(ch);
    }
    if (w->fds[w->nlisten].revents) {
        return HYB_ACCEPT_STOP;
    }
    /* Start after the listener served last time so one busy Listen
     * cannot starve the others. */
    for (i = 0; i < w->nlisten; i++) {
        int k = (w->next + i) % w->nlisten;

        if (w->fds[k].revents & (POLLIN | POLLERR | POLLHUP)) {
            w->next = (k + 1) % w->nlisten;
            return hyb_accept_on(ch, w->lrs[k], csd, ptrans);
        }
    }
    return HYB_ACCEPT_RETRY;
}

/* Picks a listener among the events epoll returned, -1 if only the wake
 * pipe fired.  A listener comes first even when the child is stopping:
 * an exclusive wake-up delivered to this child went to no other waiter,
 * and a connection nobody takes would wait for the next one. */
static int excl_pick_listener(const hyb_wait *w,
                              const struct epoll_event *ev, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        if (ev[i].data.u32 < (apr_uint32_t)w->nlisten) {
            return (int)ev[i].data.u32;
        }
    }
    return -1;
}

static hyb_accept_rc excl_accept(hyb_child *ch, hyb_wait *w,
                                 apr_socket_t **csd, apr_pool_t *ptrans)
{
    struct epoll_event ev[HYB_EXCL_EVENTS];
    hyb_accept_rc rc;
    int n, k;

    for (;;) {
        if (hyb_child_stopping(ch)) {
            return HYB_ACCEPT_STOP;
        }
        n = epoll_wait(w->epfd, ev, HYB_EXCL_EVENTS, HYB_WAIT_SLICE_MS);
        if (n > 0) {
            break;
        }
        if (n == 0) {
            /* A whole slice without a wake-up: re-registering polls the
             * listeners afresh, so even a wake-up lost to another waiter
             * leaves a connection waiting one slice at most. */
            excl_rearm(w);
        }
        hyb_child_check_parent(ch);
    }
    if ((k = excl_pick_listener(w, ev, n)) < 0) {
        return HYB_ACCEPT_STOP;
    }
    rc = hyb_accept_on(ch, w->lrs[k], csd, ptrans);
    if (rc == HYB_ACCEPT_OK && ++w->accepts >= HYB_REARM_EVERY) {
        w->accepts = 0;
        excl_rearm(w);
    }
    return rc;
}

hyb_accept_rc hyb_wait_accept(hyb_child *ch, hyb_wait *w,
                              apr_socket_t **csd, apr_pool_t *ptrans)
{
    return w->kind == HYB_WAIT_EXCLUSIVE ? excl_accept(ch, w, csd, ptrans)
                                         : poll_accept(ch, w, csd, ptrans);
}

void hyb_wait_close(hyb_wait *w)
{
    if (w && w->epfd >= 0) {
        close(w->epfd);
        w->epfd = -1;
    }
}
