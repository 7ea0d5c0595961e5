/* accept_reuseport.c: AcceptStrategy reuseport.
 *
 * The kernel spreads connections over G listener groups (SO_REUSEPORT);
 * each child accepts from one group only.  Group 0 is httpd's own
 * listeners (made SO_REUSEPORT through ListenCoresBucketsRatio); groups
 * 1..G-1 are sockets the root parent creates, configured like the primary
 * ones it copies them from (backlog, buffers, deferred accept, v6only).
 *
 * Why nothing is reset: a reuseport socket drops its queue when its last
 * reference closes.  Here the parent holds every group socket for the
 * life of the server, in retained data, across graceful and hard
 * restarts; children come and go without closing any queue.  The group
 * count is fixed at the first start (changing it needs a full stop), and
 * the parent keeps at least one child per group (hybrid_parent.c), so a
 * queued connection always has a taker.  Only a Listen removed from the
 * config closes that address's sockets, after its queues are drained
 * (hybrid_drain.c).
 *
 * Where a connection goes: not by the kernel's hash alone, which does not
 * know which group is busy, but by a program that sends it to a group with
 * a free thread (reuseport_steer.c).
 */

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "apr_portable.h"
#include "apr_strings.h"

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_main.h"
#include "mpm_common.h"

#include "hybrid_accept.h"
#include "hybrid_child.h"
#include "hybrid_config.h"
#include "hybrid_drain.h"
#include "hybrid_server.h"
#include "hybrid_poller.h"
#include "reuseport_steer.h"

typedef struct rp_sock {
    struct rp_sock *next;
    char key[128];           /* "addr:port" of the primary listener */
    int group;               /* 1..G-1 */
    int in_use;              /* matched a Listen in this generation */
    apr_socket_t *primary_sd; /* httpd's listener when this one was made */
    ap_listen_rec lr;        /* our copy; lr.sd lives in the retained pool */
} rp_sock;

typedef struct rp_retained {
    apr_pool_t *pool;        /* never cleared: sockets outlive generations */
    rp_sock *socks;
    int groups;              /* G, fixed at first start */
} rp_retained;

static rp_retained *rp;
static ap_listen_rec **rp_group_listeners; /* this generation, [G] lists */
static int rp_use_exclusive;               /* EPOLLEXCLUSIVE available */

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    return n > 0 ? (int)n : 1;
}

static const char *reuseport_probe(apr_pool_t *p)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1, ok;

    if (fd < 0) {
        return "cannot create a probe socket";
    }
    ok = setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == 0;
    close(fd);
    return ok ? NULL : "the kernel does not support SO_REUSEPORT";
}

/* Called from AcceptStrategy: httpd then creates its own listeners with
 * SO_REUSEPORT so that ours can join the same addresses. */
static const char *reuseport_configure(cmd_parms *cmd)
{
    return ap_set_listencbratio(cmd, NULL, "1");
}

static int wanted_groups(void)
{
    int g = hyb_conf.reuseport_groups ? hyb_conf.reuseport_groups
                                      : online_cpus();
    int most = hyb_conf.lim.daemons_limit;

    if (hyb_server.one_process) {
        return 1;      /* -X: the one process must serve every queue */
    }
    return g > most ? most : (g < 1 ? 1 : g);
}

static void log_migrate_req(server_rec *s)
{
    char buf[8] = "";
    int fd = open("/proc/sys/net/ipv4/tcp_migrate_req", O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

    if (fd >= 0) {
        close(fd);
    }
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, HYBLOGNO(00090)
                 "reuseport: net.ipv4.tcp_migrate_req is %s; %s",
                 n > 0 && buf[0] == '1' ? "on" : (n > 0 ? "off" : "absent"),
                 n > 0 && buf[0] == '1'
                 ? "the kernel also moves queued connections off a closing "
                   "group socket"
                 : "mpm_hybrid keeps group sockets open in the parent so "
                   "queues are never closed while the server runs");
}

/* Copies an integer socket option from the primary listener. */
static int opt_on(int fd, int level, int name)
{
    int v = 0;
    socklen_t len = sizeof(v);

    return getsockopt(fd, level, name, &v, &len) == 0 && v;
}

static void copy_opt(int from, int to, int level, int name, int halve)
{
    int v = 0;
    socklen_t len = sizeof(v);

    if (getsockopt(from, level, name, &v, &len) == 0) {
        if (halve) {
            v /= 2;   /* the kernel reports twice what was set */
        }
        setsockopt(to, level, name, &v, sizeof(v));
    }
}

/* The primary's listen(2) backlog. */
static int primary_backlog(int fd)
{
    unsigned backlog = hyb_listener_info(fd).tcpi_sacked;

    return backlog > 0 ? (int)backlog : DEFAULT_LISTENBACKLOG;
}

static int default_buffer(int level, int name)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), v = 0;
    socklen_t len = sizeof(v);

    if (fd >= 0) {
        getsockopt(fd, level, name, &v, &len);
        close(fd);
    }
    return v;
}

static void copy_buffer(int from, int to, int name)
{
    int v = 0;
    socklen_t len = sizeof(v);

    /* Only an explicit SendBufferSize/ReceiveBufferSize is copied; setting
     * the default explicitly would turn off the kernel's autotuning. */
    if (getsockopt(from, SOL_SOCKET, name, &v, &len) == 0
        && v != default_buffer(SOL_SOCKET, name)) {
        copy_opt(from, to, SOL_SOCKET, name, 1);
    }
}

/* A listening socket on the primary's address, configured like it. */
static int open_group_fd(ap_listen_rec *primary, apr_status_t *rv)
{
    apr_sockaddr_t *sa = primary->bind_addr;
    apr_os_sock_t pfd;
    int fd, one = 1;

    apr_os_sock_get(&pfd, primary->sd);
    fd = socket(sa->family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        *rv = errno;
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    copy_opt(pfd, fd, SOL_SOCKET, SO_KEEPALIVE, 0);
    copy_opt(pfd, fd, IPPROTO_TCP, TCP_NODELAY, 0);
    copy_opt(pfd, fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, 0);
    copy_buffer(pfd, fd, SO_SNDBUF);
    copy_buffer(pfd, fd, SO_RCVBUF);
    if (sa->family == AF_INET6) {
        copy_opt(pfd, fd, IPPROTO_IPV6, IPV6_V6ONLY, 0);
    }
    if (bind(fd, (struct sockaddr *)&sa->sa, sa->salen) < 0
        || listen(fd, primary_backlog(pfd)) < 0) {
        *rv = errno;
        close(fd);
        return -1;
    }
    return fd;
}

static apr_status_t make_group_socket(ap_listen_rec *primary, rp_sock *rs)
{
    apr_sockaddr_t *sa = primary->bind_addr;
    apr_os_sock_info_t info;
    apr_status_t rv = APR_SUCCESS;
    int fd = open_group_fd(primary, &rv);

    if (fd < 0) {
        return rv;
    }
    memset(&info, 0, sizeof(info));
    info.os_sock = &fd;
    info.local = (struct sockaddr *)&sa->sa;
    info.family = sa->family;
    info.type = SOCK_STREAM;
    info.protocol = IPPROTO_TCP;
    rs->primary_sd = primary->sd;
    rs->lr = *primary;
    rs->lr.next = NULL;
    rs->lr.bind_addr = sa;   /* re-pointed each generation, see below */
    if ((rv = apr_os_sock_make(&rs->lr.sd, &info, rp->pool))
        != APR_SUCCESS) {
        close(fd);
        return rv;
    }
    /* The option was copied behind APR's back; telling APR too lets
     * accepted connections inherit its record of it, so httpd's core
     * does not set TCP_NODELAY again on every connection (as it does not
     * on the primary listener's). */
    if (opt_on(fd, IPPROTO_TCP, TCP_NODELAY)) {
        apr_socket_opt_set(rs->lr.sd, APR_TCP_NODELAY, 1);
    }
    return APR_SUCCESS;
}

static void address_key(ap_listen_rec *primary, char *key, apr_size_t len)
{
    apr_snprintf(key, len, "%pI", primary->bind_addr);
}

/* Group g's socket for the primary listener's address, if made. */
static rp_sock *find_sock(ap_listen_rec *primary, int g)
{
    char key[128];
    rp_sock *rs;

    address_key(primary, key, sizeof(key));
    for (rs = rp->socks; rs; rs = rs->next) {
        if (rs->group == g && !strcmp(rs->key, key)) {
            return rs;
        }
    }
    return NULL;
}

static rp_sock *find_or_make(ap_listen_rec *primary, int g, server_rec *s,
                             apr_status_t *rv)
{
    rp_sock *rs = find_sock(primary, g);

    *rv = APR_SUCCESS;
    if (rs) {
        return rs;
    }
    rs = apr_pcalloc(rp->pool, sizeof(*rs));
    address_key(primary, rs->key, sizeof(rs->key));
    rs->group = g;
    *rv = make_group_socket(primary, rs);
    if (*rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, *rv, s, HYBLOGNO(00091)
                     "reuseport: cannot open group %d socket for %s%s", g,
                     rs->key, *rv == APR_FROM_OS_ERROR(EADDRINUSE)
                     ? " (the running listener was made without "
                       "SO_REUSEPORT: switching to AcceptStrategy reuseport "
                       "needs a full stop and start)" : "");
        return NULL;
    }
    rs->next = rp->socks;
    rp->socks = rs;
    return rs;
}

/* Closes the sockets not marked in use, marked closing first: the
 * children that still hold one drain its queue (hybrid_drain.c). */
static void close_unused(server_rec *s, const char *why)
{
    rp_sock **pp = &rp->socks;

    while (*pp) {
        rp_sock *rs = *pp;

        if (rs->in_use) {
            pp = &rs->next;
            continue;
        }
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, HYBLOGNO(00092)
                     "reuseport: closing group %d socket for %s (%s)",
                     rs->group, rs->key, why);
        hyb_drain_mark_closing(rs->lr.sd);
        apr_socket_close(rs->lr.sd);
        *pp = rs->next;
    }
}

static void rp_retained_init(server_rec *s)
{
    rp = ap_retained_data_get("mpm_hybrid_reuseport");
    if (!rp) {
        rp = ap_retained_data_create("mpm_hybrid_reuseport", sizeof(*rp));
        apr_pool_create(&rp->pool, ap_pglobal);
        apr_pool_tag(rp->pool, "hybrid_reuseport");
    }
    if (!rp->groups) {
        rp->groups = wanted_groups();
    }
    else if (rp->groups != wanted_groups()) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, HYBLOGNO(00093)
                     "reuseport: keeping %d listener groups; a different "
                     "ReusePortGroups (%d) takes effect after a full stop "
                     "and start, so that no queued connection is reset",
                     rp->groups, wanted_groups());
    }
}

/* This generation's copy of a group socket's record, pointing at this
 * generation's records (protocol, bind_addr live in pconf). */
static ap_listen_rec *generation_copy(apr_pool_t *p, const rp_sock *rs,
                                      ap_listen_rec *primary)
{
    ap_listen_rec *lr = apr_pmemdup(p, &rs->lr, sizeof(rs->lr));

    lr->bind_addr = primary->bind_addr;
    lr->protocol = primary->protocol;
    lr->next = NULL;
    return lr;
}

/* Group g's sockets for every Listen, made where missing, as the list
 * of records its children wait on. */
static apr_status_t open_group(apr_pool_t *p, server_rec *s, int g)
{
    ap_listen_rec *primary, **tail = &rp_group_listeners[g];
    apr_status_t rv;
    rp_sock *rs;

    for (primary = ap_listeners; primary; primary = primary->next) {
        if (!(rs = find_or_make(primary, g, s, &rv))) {
            return rv;
        }
        rs->in_use = 1;
        *tail = generation_copy(p, rs, primary);
        tail = &(*tail)->next;
    }
    return APR_SUCCESS;
}

/* What steering needs of each address: its sockets in group order, and
 * whether the kernel lists them in that order, which is the order they
 * started listening in: known only if ours all came after httpd's. */
static void steer_addresses(apr_pool_t *p, server_rec *s)
{
    ap_listen_rec *primary;
    hyb_steer_addr *addrs;
    int n = 0, a, g;

    for (primary = ap_listeners; primary; primary = primary->next) {
        n++;
    }
    addrs = apr_pcalloc(p, sizeof(*addrs) * (n + 1));
    for (a = 0, primary = ap_listeners; primary; primary = primary->next) {
        hyb_steer_addr *sa = &addrs[a++];

        sa->addr = primary->bind_addr;
        sa->fds = apr_pcalloc(p, sizeof(int) * rp->groups);
        sa->in_order = 1;
        apr_os_sock_get(&sa->fds[0], primary->sd);
        for (g = 1; g < rp->groups; g++) {
            rp_sock *rs = find_sock(primary, g);   /* open_group made it */

            apr_os_sock_get(&sa->fds[g], rs->lr.sd);
            sa->in_order &= rs->primary_sd == primary->sd;
        }
    }
    hyb_steer_open(p, s, rp->groups, addrs, n);
}

static apr_status_t reuseport_open(apr_pool_t *p, server_rec *s)
{
    apr_status_t rv;
    rp_sock *rs;
    int g;

    rp_retained_init(s);
    for (rs = rp->socks; rs; rs = rs->next) {
        rs->in_use = 0;
    }
    hyb_listeners_prepare(ap_listeners);
    rp_group_listeners = apr_pcalloc(p, sizeof(*rp_group_listeners)
                                        * rp->groups);
    rp_group_listeners[0] = ap_listeners;
    for (g = 1; g < rp->groups; g++) {
        if ((rv = open_group(p, s, g)) != APR_SUCCESS) {
            return rv;
        }
        hyb_listeners_prepare(rp_group_listeners[g]);
    }
    close_unused(s, "no longer in the Listen configuration");
    steer_addresses(p, s);
    rp_use_exclusive = hyb_exclusive_supported();
    if (hyb_server.startup_pass || !hyb_server.mpm->was_graceful) {
        log_migrate_req(s);
    }
    return APR_SUCCESS;
}

static int reuseport_groups(void)
{
    return rp ? rp->groups : 1;
}

/* A child's way of waiting on its group: when several children share a
 * group, EPOLLEXCLUSIVE wakes one of them per connection and its re-arm
 * rotates them, as in AcceptStrategy exclusive; or a blocking accept()
 * where the child has nothing else to wait for (hyb_accept_blocks). */
static apr_status_t reuseport_child_init(hyb_child *ch)
{
    ap_listen_rec *lr;
    rp_sock *rs;
    int g = ch->group;

    if (g < 0 || g >= rp->groups) {
        g = ch->group = 0;
    }
    /* Only this group's queue is ours: let go of the other groups'
     * sockets, httpd's own (group 0) included, so that a stop of this
     * child closes every listener it had (the parent holds them all). */
    for (rs = rp->socks; rs; rs = rs->next) {
        if (rs->group != g) {
            hyb_drain_drop(rs->lr.sd);
        }
    }
    if (g != 0) {
        for (lr = ap_listeners; lr; lr = lr->next) {
            hyb_drain_drop(lr->sd);
        }
    }
    hyb_drain_hold(ch, rp_group_listeners[g]);
    return hyb_poller_listen(ch, rp_group_listeners[g],
                             hyb_accept_blocks() ? HYB_LISTEN_BLOCKING
                             : rp_use_exclusive ? HYB_LISTEN_EXCLUSIVE : 0);
}

/* The server is stopping: close every group socket now, so that clients
 * are refused once the children have drained what is queued. */
static void reuseport_stopping(void)
{
    rp_sock *rs;

    if (!rp) {
        return;
    }
    for (rs = rp->socks; rs; rs = rs->next) {
        rs->in_use = 0;
    }
    close_unused(ap_server_conf, "server stopping");
}

const hyb_strategy hyb_accept_reuseport = {
    .name = "reuseport",
    .id = HYBRID_ACCEPT_REUSEPORT,
    .probe = reuseport_probe,
    .configure = reuseport_configure,
    .open = reuseport_open,
    .groups = reuseport_groups,
    .child_init = reuseport_child_init,
    .stopping = reuseport_stopping,
};
