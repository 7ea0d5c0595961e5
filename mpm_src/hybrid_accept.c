/* hybrid_accept.c: the strategy registry and what strategies share.
 *
 * Owns: looking a strategy up by name, building a child's poll set
 * (its listeners plus its wake-up fd), waiting on it, and accept() with
 * errno sorted into "try again", "stop" and "sick".  Each strategy
 * (accept_*.c) adds only what makes it different: a lock, its own
 * sockets, epoll flags.
 */

static const hyb_strategy *const strategies[] = {
    &accept_mutex,
    &accept_preemptive,
    &accept_reuseport,
    &accept_exclusive,
};

#define NSTRATEGIES (sizeof(strategies) / sizeof(strategies[0]))

static const hyb_strategy *hyb_strategy_find(const char *name)
{
    apr_size_t i;

    for (i = 0; i < NSTRATEGIES; i++) {
        if (!strcasecmp(strategies[i]->name, name)) {
            return strategies[i];
        }
    }
    return NULL;
}

static int hyb_groups(void)
{
    return conf.strategy->groups ? conf.strategy->groups() : 1;
}

static const char *hyb_strategy_names(apr_pool_t *p)
{
    const char *all = "";
    apr_size_t i;

    for (i = 0; i < NSTRATEGIES; i++) {
        all = apr_pstrcat(p, all, i ? ", " : "", strategies[i]->name, NULL);
    }
    return all;
}

/* Listeners are shared open file descriptions, so O_NONBLOCK set here is
 * seen by every process; all strategies poll before they accept, so a
 * connection another process took first must give EAGAIN, not block. */
static void hyb_listeners_nonblocking(ap_listen_rec *lrs)
{
    ap_listen_rec *lr;

    for (lr = lrs; lr; lr = lr->next) {
        apr_socket_opt_set(lr->sd, APR_SO_NONBLOCK, 1);
    }
}

static apr_status_t hyb_pollset_build(hyb_child *ch, ap_listen_rec *lrs,
                                      hyb_pollset *ps)
{
    ap_listen_rec *lr;
    int n = 0, i = 0;

    for (lr = lrs; lr; lr = lr->next) {
        n++;
    }
    ps->fds = apr_pcalloc(ch->pool, sizeof(*ps->fds) * (n + 1));
    ps->lrs = apr_pcalloc(ch->pool, sizeof(*ps->lrs) * (n + 1));
    ch->listen_fds = apr_pcalloc(ch->pool, sizeof(int) * (n + 1));
    ch->listen_lrs = apr_pcalloc(ch->pool, sizeof(*ch->listen_lrs) * (n + 1));
    ch->listen_released = apr_pcalloc(ch->pool, sizeof(apr_uint32_t)
                                                * (n + 1));
    for (lr = lrs; lr; lr = lr->next, i++) {
        apr_os_sock_t fd;

        apr_os_sock_get(&fd, lr->sd);
        ch->listen_lrs[ch->nlisten_fds] = lr;
        ch->listen_fds[ch->nlisten_fds++] = fd;
        ps->fds[i].fd = fd;
        ps->fds[i].events = POLLIN;
        ps->lrs[i] = lr;
    }
    ps->fds[n].fd = ch->wake_fd[0];
    ps->fds[n].events = POLLIN;
    ps->nlisten = n;
    ps->next = 0;
    return n ? APR_SUCCESS : APR_ENOSOCKET;
}

/* Resource shortages (fd limits, memory): back off a little rather than
 * spin, and let the worker give up if it lasts. */
static int accept_error_is_shortage(apr_status_t rv)
{
    return rv == APR_FROM_OS_ERROR(EMFILE) || rv == APR_FROM_OS_ERROR(ENFILE)
           || rv == APR_FROM_OS_ERROR(ENOBUFS)
           || rv == APR_FROM_OS_ERROR(ENOMEM);
}

static hyb_accept_rc hyb_accept_on(hyb_child *ch, ap_listen_rec *lr,
                               apr_socket_t **csd, apr_pool_t *ptrans)
{
    static __thread int shortages;
    apr_status_t rv = apr_socket_accept(csd, lr->sd, ptrans);

    if (rv == APR_SUCCESS) {
        shortages = 0;
        HYB_COUNT(ch, accepts, 1);
        return HYB_ACCEPT_OK;
    }
    if (APR_STATUS_IS_EAGAIN(rv) || APR_STATUS_IS_EINTR(rv)) {
        HYB_COUNT(ch, idle_wakeups, 1);
        return HYB_ACCEPT_RETRY;
    }
    HYB_COUNT(ch, accept_errors, 1);
    if (accept_error_is_shortage(rv)) {
        if (++shortages == 1 || shortages % 100 == 0) {
            ap_log_error(APLOG_MARK, APLOG_ERR, rv, ap_server_conf,
                         HYBLOGNO(00020) "accept: resource shortage "
                         "(%d in a row); raise the limit (ulimit -n, "
                         "MaxRequestWorkers) if this persists", shortages);
        }
        apr_sleep(apr_time_from_msec(shortages < 10 ? 10 : 100));
        return shortages > 600 ? HYB_ACCEPT_SICK : HYB_ACCEPT_RETRY;
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

/* Under load a connection is usually already queued when a thread gets
 * its turn: with a single listener, try accept() before poll() and save a
 * system call per connection.  An empty queue costs one EAGAIN. */
static int accept_queued(hyb_child *ch, hyb_pollset *ps, apr_socket_t **csd,
                         apr_pool_t *ptrans)
{
    if (ps->nlisten != 1 || hyb_child_stopping(ch)
        || apr_socket_accept(csd, ps->lrs[0]->sd, ptrans) != APR_SUCCESS) {
        return 0;
    }
    HYB_COUNT(ch, accepts, 1);
    return 1;
}

/* Waits until a listener is readable or the child is woken, then accepts.
 * The wait is sliced so a child whose parent vanished notices. */
static hyb_accept_rc hyb_wait_and_accept(hyb_child *ch, hyb_pollset *ps,
                                         apr_socket_t **csd,
                                         apr_pool_t *ptrans)
{
    int n, i;

    if (accept_queued(ch, ps, csd, ptrans)) {
        return HYB_ACCEPT_OK;
    }
    for (;;) {
        if (hyb_child_stopping(ch)) {
            return HYB_ACCEPT_STOP;
        }
        n = poll(ps->fds, ps->nlisten + 1, HYB_WAIT_SLICE_MS);
        if (n > 0) {
            break;
        }
        if (n < 0 && errno != EINTR) {
            ap_log_error(APLOG_MARK, APLOG_ERR, errno, ap_server_conf,
                         HYBLOGNO(00022) "poll on listeners failed");
            apr_sleep(apr_time_from_msec(100));
        }
        if (ch->parent_pid && getppid() != ch->parent_pid) {
            hyb_child_orphaned(ch);
        }
    }
    if (ps->fds[ps->nlisten].revents) {
        return HYB_ACCEPT_STOP;
    }
    /* Start after the listener served last time so one busy Listen
     * cannot starve the others. */
    for (i = 0; i < ps->nlisten; i++) {
        int k = (ps->next + i) % ps->nlisten;

        if (ps->fds[k].revents & (POLLIN | POLLERR | POLLHUP)) {
            ps->next = (k + 1) % ps->nlisten;
            return hyb_accept_on(ch, ps->lrs[k], csd, ptrans);
        }
    }
    return HYB_ACCEPT_RETRY;
}

/* ------------------------------------------------------------------ */
/* Waiting with EPOLLEXCLUSIVE: one waiting child is woken per connection.
 *
 * The kernel wakes exclusive waiters in the order they registered and
 * skips epoll sets nobody is waiting in, so the first child to register
 * would get nearly every connection at moderate load.  Every
 * HYB_REARM_EVERY accepts a child deletes and re-adds its listeners, which
 * moves it to the back of the line (nginx re-adds its listeners for the
 * same reason). */

#define HYB_REARM_EVERY 8

struct hyb_excl {
    int epfd;
    int nlisten;
    int *fds;                 /* listener fds; epoll data = index */
    ap_listen_rec **lrs;
    unsigned accepts;         /* since the last re-arm */
};

/* On kernels with EPOLLEXCLUSIVE, EPOLL_CTL_MOD of an exclusive entry is
 * refused with EINVAL; older kernels silently ignore the unknown flag. */
static int hyb_excl_supported(void)
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

static int excl_arm(hyb_excl *ex, int add)
{
    struct epoll_event ev;
    int i;

    for (i = 0; i < ex->nlisten; i++) {
        if (!add) {
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

static apr_status_t hyb_excl_init(hyb_child *ch, ap_listen_rec *lrs,
                                  hyb_excl **out)
{
    hyb_excl *ex = apr_pcalloc(ch->pool, sizeof(*ex));
    struct epoll_event ev;
    hyb_pollset ps;
    int i;

    *out = ex;
    ex->epfd = -1;
    /* The poll set gives the listener list and registers the fds with
     * the child, so that a stop releases them; epoll does the waiting. */
    if (hyb_pollset_build(ch, lrs, &ps) != APR_SUCCESS) {
        return APR_ENOSOCKET;
    }
    ex->nlisten = ps.nlisten;
    ex->lrs = ps.lrs;
    ex->fds = apr_pcalloc(ch->pool, sizeof(int) * ps.nlisten);
    for (i = 0; i < ps.nlisten; i++) {
        ex->fds[i] = ps.fds[i].fd;
    }
    ex->epfd = epoll_create1(EPOLL_CLOEXEC);
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.u32 = (apr_uint32_t)ps.nlisten;   /* the wake pipe */
    if (ex->epfd < 0
        || epoll_ctl(ex->epfd, EPOLL_CTL_ADD, ch->wake_fd[0], &ev) < 0
        || excl_arm(ex, 1) != 0) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, errno, ap_server_conf,
                     HYBLOGNO(00095) "cannot register the listeners with "
                     "epoll (EPOLLEXCLUSIVE)");
        return APR_EGENERAL;
    }
    return APR_SUCCESS;
}

/* Picks a listener among the events epoll returned, -1 if only the wake
 * pipe fired.  A listener comes first even when the child is stopping:
 * an exclusive wake-up delivered to this child went to no other waiter,
 * and a connection nobody takes would wait for the next one. */
static int excl_pick_listener(const hyb_excl *ex,
                              const struct epoll_event *ev, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        if (ev[i].data.u32 < (apr_uint32_t)ex->nlisten) {
            return (int)ev[i].data.u32;
        }
    }
    return -1;
}

#define HYB_EXCL_EVENTS 16

static hyb_accept_rc hyb_excl_wait_and_accept(hyb_child *ch, hyb_excl *ex,
                                              apr_socket_t **csd,
                                              apr_pool_t *ptrans)
{
    struct epoll_event ev[HYB_EXCL_EVENTS];
    hyb_accept_rc rc;
    int n, k;

    for (;;) {
        if (hyb_child_stopping(ch)) {
            return HYB_ACCEPT_STOP;
        }
        n = epoll_wait(ex->epfd, ev, HYB_EXCL_EVENTS, HYB_WAIT_SLICE_MS);
        if (n > 0) {
            break;
        }
        if (n == 0) {
            /* A whole slice without a wake-up: re-registering polls the
             * listeners afresh, so even a wake-up lost to another waiter
             * leaves a connection waiting one slice at most. */
            excl_arm(ex, 0);
            excl_arm(ex, 1);
        }
        if (ch->parent_pid && getppid() != ch->parent_pid) {
            hyb_child_orphaned(ch);
        }
    }
    if ((k = excl_pick_listener(ex, ev, n)) < 0) {
        return HYB_ACCEPT_STOP;
    }
    rc = hyb_accept_on(ch, ex->lrs[k], csd, ptrans);
    if (rc == HYB_ACCEPT_OK && ++ex->accepts >= HYB_REARM_EVERY) {
        ex->accepts = 0;
        excl_arm(ex, 0);
        excl_arm(ex, 1);
    }
    return rc;
}

static void hyb_excl_close(hyb_excl *ex)
{
    if (ex && ex->epfd >= 0) {
        close(ex->epfd);
        ex->epfd = -1;
    }
}
