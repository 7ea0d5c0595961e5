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
 * What this does not cover: a hard stop (SIGTERM) drops connections by
 * definition, and so does a hard restart (SIGHUP) for a Listen it removes
 * (the children that would drain it are killed; kept listeners and their
 * queues live on in the parent); and a handshake that completes after the
 * last holder found the queue empty (within one round trip of the mark)
 * is still reset.
 */

#include <linux/filter.h>
#include <netinet/tcp.h>

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

/* Parent: the listener takes no new connection from now on. */
static void hyb_listener_mark_closing(apr_socket_t *sd)
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

static void hyb_listeners_mark_closing(ap_listen_rec *lrs)
{
    ap_listen_rec *lr;

    for (lr = lrs; lr; lr = lr->next) {
        hyb_listener_mark_closing(lr->sd);
    }
}

/* Any process: is this listener closing?  No other code attaches a
 * filter to httpd's listeners, so a filter of our length is ours.
 * getsockopt() is a plain system call: usable in a signal handler. */
static int hyb_listener_closing(int fd)
{
    socklen_t len = 0;

    return getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, NULL, &len) == 0
           && len == DRAIN_FILTER_LEN;
}

/* TCP_INFO of a listening socket: tcpi_unacked is the length of its
 * accept queue, tcpi_sacked its listen(2) backlog.  All zero on error. */
static struct tcp_info hyb_listener_info(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);

    memset(&ti, 0, sizeof(ti));   /* an older kernel fills less */
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0) {
        memset(&ti, 0, sizeof(ti));
    }
    return ti;
}

/* Connections waiting in a listener's accept queue. */
static unsigned hyb_listener_queued(int fd)
{
    return hyb_listener_info(fd).tcpi_unacked;
}

/* Must a stopping child keep this listener to drain it? */
static int hyb_listener_needs_drain(int fd)
{
    return hyb_listener_closing(fd) && hyb_listener_queued(fd) > 0;
}

/* ------------------------------------------------------------------ */
/* A Listen removed at a graceful restart.  httpd closes the listeners
 * the new config no longer has inside ap_setup_listeners(); before that,
 * they are marked, so that the old generation's children drain them. */

typedef struct {
    int n;
    ap_listen_rec **lrs;
} hyb_old_listeners;

static hyb_old_listeners old_listeners;

/* pre_config, before ap_listen_pre_config(): remember the previous
 * generation's listeners (their records live in the process pool). */
static void hyb_drain_note_old_listeners(apr_pool_t *p)
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

/* open_logs, before ap_setup_listeners(): a previous listener that the new
 * config did not take over is about to close. */
static void hyb_drain_mark_removed_listeners(void)
{
    int i;

    for (i = 0; i < old_listeners.n; i++) {
        ap_listen_rec *lr = old_listeners.lrs[i];

        if (!listed(ap_listeners, lr) && sock_fd(lr->sd) >= 0) {
            ap_log_error(APLOG_MARK, APLOG_INFO, 0, ap_server_conf,
                         HYBLOGNO(00101) "Listen %pI removed: the old "
                         "children drain its queue before it closes",
                         lr->bind_addr);
            hyb_listener_mark_closing(lr->sd);
        }
    }
    old_listeners.n = 0;
}
