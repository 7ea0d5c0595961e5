/* hybrid_drain.c: a listener that is about to close is drained first.
 *
 * A listening socket whose last reference closes resets every connection
 * still in its accept queue: clients whose connect() already succeeded,
 * and who may have sent their request, get a reset.  That happens at a
 * graceful-stop and to a Listen removed at a graceful restart (stock
 * httpd does the same).  mpm_hybrid closes a listener in three steps:
 *
 *   1. The parent marks it closing: a socket filter that drops bare SYNs.
 *      New clients get no answer and retry (their SYN is retransmitted
 *      after a second, and by then the socket is gone, so they are
 *      refused); handshakes already under way still complete, and
 *      nothing already queued is touched.  The mark is on the socket
 *      itself, so every process that holds it sees it.
 *   2. The parent lets go of its own reference; the children that hold
 *      the socket are told to stop (graceful-stop) or that a new
 *      generation has begun (graceful restart).
 *   3. A stopping child lets go at once of every listener that is not
 *      closing or whose queue is empty; the others its workers first
 *      accept from until the queue is empty, serving what they get, and
 *      only then let go.  The last reference to close finds nothing
 *      queued.
 *
 * Owns all three steps: the mark (parent), the table of listeners a child
 * holds and their release (child, signal-safe), and the workers' draining.
 *
 * What this does not cover: a hard stop (SIGTERM) drops connections by
 * definition, and so does a hard restart (SIGHUP) for a Listen it removes
 * (the children that would drain it are killed; kept listeners and their
 * queues live on in the parent); and a handshake that completes after the
 * last holder found the queue empty (within one round trip of the mark)
 * is still reset.
 */

#include <fcntl.h>
#include <linux/filter.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "apr_portable.h"

#include "httpd.h"
#include "http_log.h"
#include "http_main.h"

#include "hybrid_child.h"
#include "hybrid_counters.h"
#include "hybrid_drain.h"
#include "hybrid_server.h"
#include "hybrid_poller.h"
#include "hybrid_pools.h"
#include "hybrid_worker.h"

/* Bare SYN (SYN set, ACK clear) -> drop; anything else -> keep.  The
 * kernel runs a listener's filter with the packet starting at its TCP
 * header, whose byte 13 holds the flags.  Accepted connections inherit
 * the filter, where it never matches. */
static struct sock_filter drain_syn_filter[] = {
    BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 13),
    BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0x12),        /* SYN | ACK */
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x02, 0, 1),  /* SYN alone? */
    BPF_STMT(BPF_RET | BPF_K, 0),
    BPF_STMT(BPF_RET | BPF_K, 0xffffffffu),
};

#define DRAIN_FILTER_LEN \
    (sizeof(drain_syn_filter) / sizeof(drain_syn_filter[0]))

static int sock_fd(apr_socket_t *sd)
{
    apr_os_sock_t fd = -1;

    return sd && apr_os_sock_get(&fd, sd) == APR_SUCCESS ? fd : -1;
}

void hyb_drain_mark_closing(apr_socket_t *sd)
{
    struct sock_fprog prog = { DRAIN_FILTER_LEN, drain_syn_filter };
    int fd = sock_fd(sd);

    if (fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog,
                              sizeof(prog)) < 0) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, errno, ap_server_conf,
                     HYBLOGNO(00100) "cannot mark listener fd %d as "
                     "closing; connections that arrive while it drains "
                     "may be reset", fd);
    }
}

void hyb_drain_mark_all(ap_listen_rec *lrs)
{
    ap_listen_rec *lr;

    for (lr = lrs; lr; lr = lr->next) {
        hyb_drain_mark_closing(lr->sd);
    }
}

/* Any process: is this listener closing?  No other code attaches a
 * filter to httpd's listeners, so a filter of our length is ours.
 * getsockopt() is a plain system call: usable in a signal handler. */
static int listener_closing(int fd)
{
    socklen_t len = 0;

    return getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, NULL, &len) == 0
           && len == DRAIN_FILTER_LEN;
}

struct tcp_info hyb_listener_info(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);

    memset(&ti, 0, sizeof(ti));   /* an older kernel fills less */
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0) {
        memset(&ti, 0, sizeof(ti));
    }
    return ti;
}

unsigned hyb_listener_queued(int fd)
{
    return hyb_listener_info(fd).tcpi_unacked;
}

/* Must a stopping child keep this listener to drain it? */
static int needs_drain(int fd)
{
    return listener_closing(fd) && hyb_listener_queued(fd) > 0;
}

/* ------------------------------------------------------------------ */
/* A Listen removed at a graceful restart.  httpd closes the listeners
 * the new config no longer has inside ap_setup_listeners(); before that,
 * they are marked, so that the old generation's children drain them. */

typedef struct {
    int n;
    ap_listen_rec **lrs;
} old_listener_list;

static old_listener_list old_listeners;

void hyb_drain_note_old_listeners(apr_pool_t *p)
{
    ap_listen_rec *lr;
    int i = 0;

    old_listeners.n = 0;
    for (lr = ap_listeners; lr; lr = lr->next) {
        old_listeners.n++;
    }
    old_listeners.lrs = apr_pcalloc(p, sizeof(*old_listeners.lrs)
                                       * (old_listeners.n + 1));
    for (lr = ap_listeners; lr; lr = lr->next) {
        old_listeners.lrs[i++] = lr;
    }
}

static int listed(ap_listen_rec *lrs, ap_listen_rec *which)
{
    for (; lrs; lrs = lrs->next) {
        if (lrs == which) {
            return 1;
        }
    }
    return 0;
}

void hyb_drain_mark_removed_listeners(void)
{
    int i;

    for (i = 0; i < old_listeners.n; i++) {
        ap_listen_rec *lr = old_listeners.lrs[i];

        if (!listed(ap_listeners, lr) && sock_fd(lr->sd) >= 0) {
            ap_log_error(APLOG_MARK, APLOG_INFO, 0, ap_server_conf,
                         HYBLOGNO(00101) "Listen %pI removed: the old "
                         "children drain its queue before it closes",
                         lr->bind_addr);
            hyb_drain_mark_closing(lr->sd);
        }
    }
    old_listeners.n = 0;
}

/* ------------------------------------------------------------------ */
/* The child's side: the listeners it holds.  One child per process, so
 * the table is this process's. */

typedef struct {
    int n;
    int *fds;                 /* listener fds this child holds */
    ap_listen_rec **lrs;      /* their records, to accept from them */
    apr_uint32_t *released;   /* [i]: fds[i] let go of */
    int placeholder_fd;       /* /dev/null, dup2()ed over them on release */
} held_listeners;

static held_listeners held = { 0, NULL, NULL, NULL, -1 };

void hyb_drain_child_init(hyb_child *ch)
{
    held.placeholder_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

void hyb_drain_hold(hyb_child *ch, ap_listen_rec *lrs)
{
    ap_listen_rec *lr;
    int n = 0, i;

    for (lr = lrs; lr; lr = lr->next) {
        n++;
    }
    /* Filled before any thread or signal handler looks at it: n is set
     * last. */
    held.fds = apr_pcalloc(ch->pool, sizeof(*held.fds) * n);
    held.lrs = apr_pcalloc(ch->pool, sizeof(*held.lrs) * n);
    held.released = apr_pcalloc(ch->pool, sizeof(*held.released) * n);
    for (i = 0, lr = lrs; lr; lr = lr->next, i++) {
        held.lrs[i] = lr;
        held.fds[i] = sock_fd(lr->sd);
    }
    held.n = n;
}

/* dup2() of a placeholder over the fd drops this process's reference
 * without freeing the fd number, so no other thread can find a
 * stranger's socket under it; the socket stays open in the parent and the
 * other children. */
void hyb_drain_drop(apr_socket_t *sd)
{
    int fd = sock_fd(sd);

    if (fd < 0) {
        return;
    }
    if (held.placeholder_fd >= 0) {
        dup2(held.placeholder_fd, fd);
    }
    else {
        close(fd);
    }
}

/* Async-signal-safe: atomics, getsockopt(), epoll_ctl() and dup2().  The
 * child's epoll set watches the socket itself, which the parent and the
 * other children keep open, so it leaves the set first: afterwards its fd
 * number names /dev/null and could not be taken out any more. */
void hyb_drain_release(int all)
{
    int i;

    if (held.placeholder_fd < 0) {
        return;
    }
    for (i = 0; i < held.n; i++) {
        if (__atomic_load_n(&held.released[i], __ATOMIC_SEQ_CST)
            || (!all && needs_drain(held.fds[i]))) {
            continue;
        }
        if (!__atomic_exchange_n(&held.released[i], 1, __ATOMIC_SEQ_CST)) {
            hyb_poller_forget_listener(held.fds[i]);
            dup2(held.placeholder_fd, held.fds[i]);
        }
    }
}

int hyb_drain_released(void)
{
    int i;

    for (i = 0; i < held.n; i++) {
        if (!__atomic_load_n(&held.released[i], __ATOMIC_SEQ_CST)) {
            return 0;
        }
    }
    return 1;
}

/* Takes one connection still queued on closing listener i; gives up on
 * an empty queue, on a listener already let go of (ENOTSOCK), or when the
 * stop turns immediate. */
static int accept_queued(hyb_child *ch, int i, apr_socket_t **csd,
                         apr_pool_t *ptrans)
{
    apr_status_t rv;

    do {
        if (__atomic_load_n(&ch->stop, __ATOMIC_SEQ_CST) == HYB_STOP_NOW) {
            return 0;
        }
        rv = apr_socket_accept(csd, held.lrs[i]->sd, ptrans);
    } while (APR_STATUS_IS_EINTR(rv) || APR_STATUS_IS_ECONNABORTED(rv));
    if (rv == APR_SUCCESS) {
        HYB_COUNT(ch, accepts, 1);
        return 1;
    }
    return 0;
}

/* A blocking listener (hyb_accept_blocks) is made non-blocking before it
 * is drained: two children may see the same last connection queued, and
 * the one that loses must find the queue empty, not wait on a listener
 * that gets no new connections.  Every process that holds a closing
 * listener is stopping, so none of them needs it blocking any more. */
static void drain_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);

    if (flags >= 0 && !(flags & O_NONBLOCK)) {
        fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    }
}

/* Every free worker joins in. */
void hyb_drain_serve_queued(hyb_thread *t)
{
    hyb_child *ch = t->child;
    apr_socket_t *csd;
    int i, served = 0;

    for (i = 0; i < held.n; i++) {
        if (__atomic_load_n(&held.released[i], __ATOMIC_SEQ_CST)
            || !listener_closing(held.fds[i])) {
            continue;
        }
        drain_nonblocking(held.fds[i]);
        for (;;) {
            apr_pool_t *pool = hyb_pool_take(t);

            if (!accept_queued(ch, i, &csd, pool)) {
                hyb_pool_recycle(t, pool);
                break;
            }
            hyb_poller_count_accepted();
            hyb_worker_serve(t, csd, pool);
            served++;
        }
    }
    hyb_drain_release(1);
    if (served) {
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, ap_server_conf,
                     HYBLOGNO(00102) "child %d thread %d: served %d "
                     "connections queued on closing listeners", ch->slot,
                     t->num, served);
    }
}
