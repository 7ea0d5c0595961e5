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

#include <netinet/tcp.h>
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
    int steer_tried;         /* the steering program, made once: */
    int map_fd, prog_fd;     /* its map and program (-1 if none) */
    apr_int32_t *room;       /* [G], the map's memory, shared */
} rp_retained;

static rp_retained *rp;
static void rp_steer_open(apr_pool_t *p, server_rec *s);
static void reuseport_steer(const int *idle, const int *children,
                            int groups);
static void reuseport_reaped(pid_t pid);
static ap_listen_rec **rp_group_listeners; /* this generation, [G] lists */
static int rp_use_epoll;                   /* EPOLLEXCLUSIVE available */

/* A child's way of waiting on its group: when several children share a
 * group, EPOLLEXCLUSIVE wakes one of them per connection and its re-arm
 * rotates them, as in AcceptStrategy exclusive; plain poll otherwise. */
typedef struct {
    hyb_pollset ps;
    hyb_excl *ex;
} rp_child;

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
    int g = conf.reuseport_groups ? conf.reuseport_groups : online_cpus();

    if (retained->one_process) {
        return 1;      /* -X: the one process must serve every queue */
    }
    return g > conf.daemons_limit ? conf.daemons_limit : (g < 1 ? 1 : g);
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

static apr_status_t make_group_socket(ap_listen_rec *primary, rp_sock *rs)
{
    apr_sockaddr_t *sa = primary->bind_addr;
    apr_os_sock_info_t info;
    apr_os_sock_t pfd;
    int fd, one = 1;

    apr_os_sock_get(&pfd, primary->sd);
    fd = socket(sa->family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        return errno;
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
        apr_status_t rv = errno;

        close(fd);
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
    return apr_os_sock_make(&rs->lr.sd, &info, rp->pool);
}

static rp_sock *find_or_make(ap_listen_rec *primary, int g, server_rec *s,
                             apr_status_t *rv)
{
    char key[128];
    rp_sock *rs;

    apr_snprintf(key, sizeof(key), "%pI", primary->bind_addr);
    *rv = APR_SUCCESS;
    for (rs = rp->socks; rs; rs = rs->next) {
        if (rs->group == g && !strcmp(rs->key, key)) {
            return rs;
        }
    }
    rs = apr_pcalloc(rp->pool, sizeof(*rs));
    apr_cpystrn(rs->key, key, sizeof(rs->key));
    rs->group = g;
    *rv = make_group_socket(primary, rs);
    if (*rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, *rv, s, HYBLOGNO(00091)
                     "reuseport: cannot open group %d socket for %s%s", g,
                     key, *rv == APR_FROM_OS_ERROR(EADDRINUSE)
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
        hyb_listener_mark_closing(rs->lr.sd);
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

static apr_status_t reuseport_open(apr_pool_t *p, server_rec *s)
{
    ap_listen_rec *primary, **tail;
    apr_status_t rv;
    rp_sock *rs;
    int g;

    rp_retained_init(s);
    for (rs = rp->socks; rs; rs = rs->next) {
        rs->in_use = 0;
    }
    hyb_listeners_nonblocking(ap_listeners);
    rp_group_listeners = apr_pcalloc(p, sizeof(*rp_group_listeners)
                                        * rp->groups);
    rp_group_listeners[0] = ap_listeners;
    for (g = 1; g < rp->groups; g++) {
        tail = &rp_group_listeners[g];
        for (primary = ap_listeners; primary; primary = primary->next) {
            if (!(rs = find_or_make(primary, g, s, &rv))) {
                return rv;
            }
            rs->in_use = 1;
            /* Hand children a per-generation copy that points at this
             * generation's records (protocol, bind_addr live in pconf). */
            *tail = apr_pmemdup(p, &rs->lr, sizeof(rs->lr));
            (*tail)->bind_addr = primary->bind_addr;
            (*tail)->protocol = primary->protocol;
            (*tail)->next = NULL;
            tail = &(*tail)->next;
        }
    }
    close_unused(s, "no longer in the Listen configuration");
    rp_steer_open(p, s);
    rp_use_epoll = hyb_excl_supported();
    if (retained->startup_pass || !retained->mpm->was_graceful) {
        log_migrate_req(s);
    }
    return APR_SUCCESS;
}

static int reuseport_groups(void)
{
    return rp ? rp->groups : 1;
}

static void drop_fd(hyb_child *ch, apr_socket_t *sd)
{
    apr_os_sock_t fd;

    if (apr_os_sock_get(&fd, sd) == APR_SUCCESS && fd >= 0) {
        if (ch->placeholder_fd >= 0) {
            dup2(ch->placeholder_fd, fd);
        }
        else {
            close(fd);
        }
    }
}

static apr_status_t reuseport_child_init(hyb_child *ch)
{
    rp_child *rc = apr_pcalloc(ch->pool, sizeof(*rc));
    rp_sock *rs;
    int g = ch->group;

    if (g < 0 || g >= rp->groups) {
        g = ch->group = 0;
    }
    /* Only this group's queue is ours: let go of the other groups'
     * sockets, httpd's own (group 0) included, so that a stop of this
     * child closes every listener it had (the parent holds them all).
     * dup2() keeps the fd numbers taken, as release_listeners does. */
    for (rs = rp->socks; rs; rs = rs->next) {
        if (rs->group != g) {
            drop_fd(ch, rs->lr.sd);
        }
    }
    if (g != 0) {
        ap_listen_rec *lr;

        for (lr = ap_listeners; lr; lr = lr->next) {
            drop_fd(ch, lr->sd);
        }
    }
    ch->accept_state = rc;
    if (rp_use_epoll) {
        return hyb_excl_init(ch, rp_group_listeners[g], &rc->ex);
    }
    return hyb_pollset_build(ch, rp_group_listeners[g], &rc->ps);
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

static hyb_accept_rc reuseport_accept_one(hyb_child *ch, apr_socket_t **csd,
                                          apr_pool_t *ptrans)
{
    rp_child *rc = ch->accept_state;

    return rc->ex ? hyb_excl_wait_and_accept(ch, rc->ex, csd, ptrans)
                  : hyb_wait_and_accept(ch, &rc->ps, csd, ptrans);
}

static void reuseport_child_exit(hyb_child *ch)
{
    rp_child *rc = ch->accept_state;

    if (rc) {
        hyb_excl_close(rc->ex);
    }
}

static const hyb_strategy accept_reuseport = {
    "reuseport", HYBRID_ACCEPT_REUSEPORT,
    reuseport_probe,
    reuseport_open,
    reuseport_child_init,
    reuseport_accept_one,
    reuseport_child_exit,
    NULL,
    reuseport_configure,
    reuseport_groups,
    reuseport_reaped,
    reuseport_stopping,
    reuseport_steer,
};
