/* hybrid_poller.c: a child's one wait (hybrid_poller.h).
 *
 * Owns: the child's epoll set and what is in it (listeners, parked
 * connections, the wake-up pipe, an eventfd that sends every thread home,
 * a timerfd that is the child's clock, and for gated listeners an eventfd
 * that hands the accept turn on), the deadlines of parked connections
 * (kept in order by hybrid_deadlines.c), the child's connection counts
 * and limit, the gated wait of the mutex strategy, and the reserve of idle
 * threads (at most two watch the epoll set in a threaded child on ungated
 * listeners).  Transaction pools come from hybrid_pools.c; lingering
 * closes wait off the epoll set (hybrid_linger.c), looked at by threads
 * on their way here and by the clock.
 *
 * Threads: idle threads wait in epoll_wait(1 event), with no timeout: the
 * clock wakes one of them when a deadline comes.  A parked
 * connection is armed EPOLLONESHOT, so its readiness goes to exactly one
 * thread, which claims it under the lock (taking it off the deadlines).  A
 * connection whose wait runs out is never closed by the thread that
 * notices: that thread marks it expired and shuts its socket down, which
 * fires its one event, and whoever gets that event closes it.  So exactly
 * one thread ever owns a connection, and nobody frees memory another
 * thread may still read.
 *
 * Listeners are level-triggered (EPOLLEXCLUSIVE where the strategy wants
 * one child woken per connection).  Every HYB_REARM_EVERY accepts a child
 * re-adds its exclusive listeners, which moves it to the back of the
 * kernel's wake-up order (nginx does the same, for the same reason).
 */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "apr_allocator.h"
#include "apr_portable.h"
#include "apr_thread_mutex.h"

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_main.h"
#include "mpm_common.h"
#include "scoreboard.h"

#include "hybrid_accept.h"
#include "hybrid_child.h"
#include "hybrid_config.h"
#include "hybrid_conn.h"
#include "hybrid_counters.h"
#include "hybrid_deadlines.h"
#include "hybrid_door.h"
#include "hybrid_drain.h"
#include "hybrid_linger.h"
#include "hybrid_poller.h"
#include "hybrid_pools.h"
#include "hybrid_server.h"
#include "hybrid_worker.h"

#define HYB_REARM_EVERY      8
#define HOUSEKEEPING_EVERY   apr_time_from_msec(100)
#define GATED_SHORT_SLICE    apr_time_from_msec(10)
#define SHORTAGE_PAUSE       apr_time_from_msec(200)
#define SHORTAGES_SICK       600
#define WATCHERS_MAX         2    /* idle threads on the epoll set */
#define QUICK_SERVICE        apr_time_from_msec(2)    /* see looks_quick */
/* A thread out for less than this is expected back (one_back_soon).  On
 * a busy machine most of that time is a wait for a CPU: with 2 ms, 95 %
 * of the leaving watchers' let-outs found every thread out for 2-10 ms,
 * runnable or waiting for the process's mmap lock, none for a client. */
#define BACK_SOON            apr_time_from_msec(4)
#define SERVICE_JUDGED_AFTER 8    /* responses timed before a verdict */
#define SERVICE_WINDOW       64   /* responses the average is over */
#define SENTRY_MS            5    /* the main thread's look, busy */
#define SENTRY_IDLE_MS       100  /* and idle */

/* epoll data: a connection's address (8-aligned), or a tag in the low
 * three bits with an index above them. */
enum { TAG_CONN = 0, TAG_LISTEN = 1, TAG_WAKE = 2, TAG_DONE = 3,
       TAG_TOKEN = 4, TAG_TIMER = 5 };

#define TAG_OF(u)   ((int)((u) & 7))
#define INDEX_OF(u) ((int)((u) >> 3))

typedef struct {
    hyb_child *ch;
    int epfd;
    int flags;                /* HYB_LISTEN_* of the listeners */
    int nlisten;
    ap_listen_rec **lrs;
    int *lfds;
    int listening;            /* listeners are in the epoll set */
    apr_uint32_t accepts;     /* since the last re-arm (exclusive) */
    int done_fd;              /* eventfd: every thread leaves */
    int token_fd;             /* eventfd (gated): take the accept turn */
    int timer_fd;             /* timerfd: the child's one clock */
    int stop_handled;
    pthread_mutex_t lock;     /* everything below */
    hyb_deadlines deadlines;  /* parked connections by expiry */
    int parked[HYB_PARK_KINDS];
    apr_time_t timer_at;      /* when timer_fd fires next */
    apr_time_t next_tick;     /* the timer's thread only */
    apr_time_t next_housekeeping;
    apr_time_t paused_until;  /* listeners off after a shortage */
    int limit_logged, shortage_logged;
    /* read and written without the lock */
    volatile apr_uint32_t held;   /* connections this child has */
    volatile int shortages;       /* accept shortages in a row */
    volatile apr_uint32_t watchers;   /* threads waiting on the epoll set */
    /* idle threads beyond the watchers (see wait_in_reserve) */
    apr_uint32_t watchers_max;
    volatile apr_uint32_t reserved;
    volatile apr_time_t service;      /* a thread's time out, averaged */
    volatile apr_uint32_t service_samples;   /* up to SERVICE_WINDOW */
    hyb_door reserve;         /* where the reserved threads sleep */
} poller;

static poller P = { .epfd = -1, .done_fd = -1, .token_fd = -1,
                    .timer_fd = -1, .reserve = HYB_DOOR_INIT };

/* The connection a deadline belongs to (hyb_conn embeds its hyb_park). */
static hyb_conn *conn_of(hyb_park *park)
{
    return (hyb_conn *)(void *)((char *)park - offsetof(hyb_conn, park));
}

/* ------------------------------------------------------------------ */
/* The clock: one timerfd in the epoll set, armed EPOLLONESHOT, so each
 * deadline wakes exactly one thread and the others sleep until an event
 * comes.  It fires for the first parked connection's timeout, for the
 * listeners' return after a shortage, every 100 ms while a stopping child
 * still has idle connections, and at least once a slice: then the thread
 * checks on the parent (in case PR_SET_PDEATHSIG was lost) and has
 * exclusive listeners polled afresh (a wake-up swallowed by a child that
 * was stopping must not leave a connection waiting). */

/* Under P.lock. */
static void timer_set(apr_time_t at)
{
    struct itimerspec its;
    apr_time_t now = apr_time_now();
    apr_interval_time_t d = at - now;

    if (d < 1000) {
        d = 1000;             /* a zero it_value would disarm it */
    }
    memset(&its, 0, sizeof(its));
    its.it_value.tv_sec = (time_t)(d / APR_USEC_PER_SEC);
    its.it_value.tv_nsec = (long)(d % APR_USEC_PER_SEC) * 1000;
    timerfd_settime(P.timer_fd, 0, &its, NULL);
    P.timer_at = now + d;
}

/* Under P.lock: something new is due at `at`. */
static void timer_sooner(apr_time_t at)
{
    if (at < P.timer_at) {
        timer_set(at);
    }
}

void hyb_poller_clock_by(apr_time_t at)
{
    pthread_mutex_lock(&P.lock);
    timer_sooner(at);
    pthread_mutex_unlock(&P.lock);
}

/* Under P.lock: when the clock is next needed. */
static apr_time_t next_deadline(apr_time_t now)
{
    apr_time_t next = P.next_tick;

    hyb_park *first = hyb_deadlines_first(&P.deadlines);
    apr_time_t lingering = hyb_linger_due();

    if (first && first->expiry < next) {
        next = first->expiry;
    }
    if (lingering && lingering < next) {
        next = lingering;
    }
    if (!P.listening && P.paused_until > now && P.paused_until < next) {
        next = P.paused_until;
    }
    if (hyb_child_stopping(P.ch) && P.parked[HYB_PARK_KEEPALIVE]
        && now + HOUSEKEEPING_EVERY < next) {
        next = now + HOUSEKEEPING_EVERY;   /* idle ones go soon */
    }
    return next;
}

/* ------------------------------------------------------------------ */
/* Set-up                                                              */

/* On kernels with EPOLLEXCLUSIVE, EPOLL_CTL_MOD of an exclusive entry is
 * refused with EINVAL; older kernels silently ignore the unknown flag. */
int hyb_exclusive_supported(void)
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

static int add_fd(int fd, apr_uint32_t events, apr_uint64_t data)
{
    struct epoll_event ev;

    memset(&ev, 0, sizeof(ev));
    ev.events = events;
    ev.data.u64 = data;
    return epoll_ctl(P.epfd, EPOLL_CTL_ADD, fd, &ev);
}

apr_status_t hyb_poller_create(hyb_child *ch)
{
    P.ch = ch;
    pthread_mutex_init(&P.lock, NULL);
    P.epfd = epoll_create1(EPOLL_CLOEXEC);
    P.done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    P.token_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    P.timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (P.epfd < 0 || P.done_fd < 0 || P.token_fd < 0 || P.timer_fd < 0
        || add_fd(ch->wake_fd[0], EPOLLIN, TAG_WAKE) < 0
        || add_fd(P.done_fd, EPOLLIN, TAG_DONE) < 0
        || add_fd(P.token_fd, EPOLLIN | EPOLLONESHOT, TAG_TOKEN) < 0
        || add_fd(P.timer_fd, EPOLLIN | EPOLLONESHOT, TAG_TIMER) < 0) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, errno, ap_server_conf,
                     HYBLOGNO(00095) "child: cannot set up its epoll set");
        return APR_EGENERAL;
    }
    P.next_tick = apr_time_now() + apr_time_from_msec(HYB_WAIT_SLICE_MS);
    timer_set(P.next_tick);
    return APR_SUCCESS;
}

static int listeners_on(void)
{
    apr_uint32_t events = EPOLLIN;
    int i;

    if (P.flags & HYB_LISTEN_EXCLUSIVE) {
        events |= EPOLLEXCLUSIVE;
    }
    for (i = 0; i < P.nlisten; i++) {
        if (P.lfds[i] >= 0
            && add_fd(P.lfds[i], events,
                      ((apr_uint64_t)i << 3) | TAG_LISTEN) < 0
            && errno != EEXIST) {
            return errno;
        }
    }
    P.listening = 1;
    return 0;
}

static void listeners_off(void)
{
    int i;

    for (i = 0; i < P.nlisten; i++) {
        if (P.lfds[i] >= 0) {
            epoll_ctl(P.epfd, EPOLL_CTL_DEL, P.lfds[i], NULL);
        }
    }
    P.listening = 0;
}

apr_status_t hyb_poller_listen(hyb_child *ch, ap_listen_rec *lrs, int flags)
{
    ap_listen_rec *lr;
    int i = 0;

    for (lr = lrs; lr; lr = lr->next) {
        P.nlisten++;
    }
    if (!P.nlisten) {
        return APR_ENOSOCKET;
    }
    P.flags = flags;
    P.lrs = apr_pcalloc(ch->pool, sizeof(*P.lrs) * P.nlisten);
    P.lfds = apr_pcalloc(ch->pool, sizeof(*P.lfds) * P.nlisten);
    for (lr = lrs; lr; lr = lr->next, i++) {
        apr_os_sock_t fd;

        apr_os_sock_get(&fd, lr->sd);
        P.lrs[i] = lr;
        P.lfds[i] = fd;
    }
    if (!(flags & (HYB_LISTEN_GATED | HYB_LISTEN_BLOCKING))
        && listeners_on() != 0) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, errno, ap_server_conf,
                     HYBLOGNO(00096) "child: cannot add its listeners to "
                     "its epoll set%s", (flags & HYB_LISTEN_EXCLUSIVE)
                     ? " (EPOLLEXCLUSIVE)" : "");
        return APR_EGENERAL;
    }
    if (ch->threaded && !(flags & (HYB_LISTEN_GATED | HYB_LISTEN_BLOCKING))) {
        P.watchers_max = WATCHERS_MAX;
    }
    return APR_SUCCESS;
}

void hyb_poller_forget_listener(int fd)
{
    int i;

    if (P.epfd < 0) {
        return;
    }
    epoll_ctl(P.epfd, EPOLL_CTL_DEL, fd, NULL);
    for (i = 0; i < P.nlisten; i++) {
        if (P.lfds[i] == fd) {
            P.lfds[i] = -1;
        }
    }
}

/* ------------------------------------------------------------------ */
/* Counts, the limit, the scoreboard                                   */

static int limit(void)
{
    return hyb_conf.async ? hyb_conf.async_limit
                          : hyb_conf.lim.threads_per_child;
}

/* Under P.lock: the listeners come back once the child is well below its
 * limit and any shortage pause is over. */
static void maybe_listen_again(apr_time_t now)
{
    if (!P.listening && !(P.flags & (HYB_LISTEN_GATED | HYB_LISTEN_BLOCKING))
        && P.nlisten
        && !hyb_child_stopping(P.ch) && now >= P.paused_until
        && __atomic_load_n(&P.held, __ATOMIC_RELAXED)
           < (apr_uint32_t)limit() - (apr_uint32_t)limit() / 10) {
        listeners_on();
    }
}

static void publish_counts(void)
{
    process_score *ps = ap_get_scoreboard_process(P.ch->slot);

    ps->connections = __atomic_load_n(&P.held, __ATOMIC_RELAXED);
    ps->keep_alive = P.parked[HYB_PARK_KEEPALIVE];
    ps->write_completion = P.parked[HYB_PARK_WRITE];
    ps->lingering_close = P.parked[HYB_PARK_LINGER] + hyb_linger_waiting();
    ps->suspended = 0;
    ps->not_accepting = !P.listening && !(P.flags & HYB_LISTEN_GATED);
}

/* A place taken for an accept that found nothing, or beyond the limit. */
static void give_back_place(void)
{
    __atomic_sub_fetch(&P.held, 1, __ATOMIC_RELAXED);
}

/* A place for one more connection, taken before the accept: threads
 * woken together for the listener must not both take the last one
 * (AsyncConnectionLimit is a ceiling; counted after the accept, a child
 * once held 51 of 50).  Returns how many the child holds with it, 0 when
 * none is left (the thread that took the last one turns the listeners
 * off). */
static apr_uint32_t take_a_place(void)
{
    apr_uint32_t held = __atomic_add_fetch(&P.held, 1, __ATOMIC_RELAXED);

    if (hyb_conf.async && held > (apr_uint32_t)limit()) {
        give_back_place();
        return 0;
    }
    return held;
}

/* One more connection, already counted in `held`.  At the limit the
 * child takes no more, so that the other children do. */
static void counted(apr_uint32_t held)
{
    P.shortages = 0;
    if (!hyb_conf.async || held < (apr_uint32_t)limit() || !P.listening) {
        return;
    }
    pthread_mutex_lock(&P.lock);
    if (P.listening) {
        listeners_off();
        if (!P.limit_logged) {
            P.limit_logged = 1;
            ap_log_error(APLOG_MARK, APLOG_INFO, 0, ap_server_conf,
                         HYBLOGNO(00112) "child %d holds %d connections "
                         "(AsyncConnectionLimit): it takes no new ones "
                         "until it has fewer", P.ch->slot, limit());
        }
    }
    pthread_mutex_unlock(&P.lock);
}

/* After the accept, past the limit if need be (see hybrid_poller.h). */
void hyb_poller_count_accepted(void)
{
    counted(__atomic_add_fetch(&P.held, 1, __ATOMIC_RELAXED));
}

static int stop_done(void)
{
    return hyb_child_stopping(P.ch) && hyb_drain_released()
           && __atomic_load_n(&P.held, __ATOMIC_RELAXED)
              <= (apr_uint32_t)(P.parked[HYB_PARK_LINGER]
                                + hyb_linger_waiting());
}

/* ------------------------------------------------------------------ */
/* The reserve.  Every thread waiting in epoll_wait is one the kernel may
 * wake for the next event, even while a busy thread is about to come
 * back for it: with 25 threads on a handful of busy connections that was
 * a wake-up and a context switch per request.  So at most watchers_max
 * idle threads wait on the epoll set, and the others wait here.  When
 * the last watcher leaves to serve something, one is let out at once
 * unless the child's responses usually take less than QUICK_SERVICE,
 * another thread left the watch less than BACK_SOON ago (it will most
 * likely be back for the next event first: letting one out every time
 * cost a futex wake per request), and no connection is parked.  A thread
 * that stays out longer than that is in a slow request, or on a client
 * that keeps it busy: then the main thread, which looks every SENTRY_MS
 * while threads serve (SENTRY_IDLE_MS otherwise), lets one out, so the
 * set is not left unwatched for long while idle threads are available.
 * A stopping child's main thread opens the reserve for good: every
 * thread then watches. */

/* Every thread in the reserve looks again whether it may watch (after
 * whatever reserve_full reads has changed: a waiter either sees the
 * change or is already asleep when the door opens). */
static void let_all_out(void)
{
    hyb_door_open(&P.reserve, HYB_DOOR_EVERYONE);
}

void hyb_poller_open_reserve(void)
{
    __atomic_store_n(&P.watchers_max, 0, __ATOMIC_SEQ_CST);
    let_all_out();
}

/* Are this child's responses usually done within QUICK_SERVICE?  Only
 * then is the reserve worth it: with slower requests a wake-up per
 * request is small beside the request, and every idle thread watches, as
 * without the reserve.  Until SERVICE_JUDGED_AFTER responses have been
 * timed the child looks quick, keeping its reserve (see note_service),
 * but is not proven so: a thread that has just taken an event is not yet
 * trusted to be back soon (one_back_soon). */
static int looks_quick(void)
{
    return P.service_samples < SERVICE_JUDGED_AFTER
           || P.service < QUICK_SERVICE;
}

static int proven_quick(void)
{
    return P.service_samples >= SERVICE_JUDGED_AFTER
           && P.service < QUICK_SERVICE;
}

static int reserve_full(void *unused)
{
    apr_uint32_t max = __atomic_load_n(&P.watchers_max, __ATOMIC_SEQ_CST);

    return max && looks_quick()
           && __atomic_load_n(&P.watchers, __ATOMIC_SEQ_CST) >= max;
}

/* reserved goes up before watchers is read, and a leaving watcher lowers
 * watchers before it reads reserved: so either this thread sees the
 * room, or the watcher sees this thread and opens the door. */
static void wait_in_reserve(void)
{
    __atomic_add_fetch(&P.reserved, 1, __ATOMIC_SEQ_CST);
    hyb_door_wait(&P.reserve, reserve_full, NULL);
    __atomic_sub_fetch(&P.reserved, 1, __ATOMIC_SEQ_CST);
}

static void let_one_out(void)
{
    hyb_door_open(&P.reserve, 1);
}

/* The mean of the responses timed so far, then an average over the last
 * SERVICE_WINDOW or so (on a loaded machine a quick request's wall time
 * jumps from 0.1 to 4 ms as threads wait for a CPU; over 8 the average
 * crossed QUICK_SERVICE now and then); threads race on it, and a lost
 * update only makes it a little less exact.
 *
 * A child counts as quick, keeping its reserve, until SERVICE_JUDGED_AFTER
 * responses say otherwise: the reserve spreads a burst of new connections
 * over the children (each takes two at a time), and one slow first
 * response, as a child's first often is, must not undo that (with the
 * verdict after one response, 8 keep-alive clients went to one of two
 * children now and then: 0.9-1.1 context switches per request against
 * 0.65-0.84).  Meanwhile the last watcher to leave always lets one out.
 * When requests turn slow, every thread in the reserve comes out at
 * once.  (Trusted to be quick from the start, and let out one at a time
 * when no watcher was left, the threads of a child were still mostly in
 * the reserve through a burst of 5 ms requests, the backlog drained by
 * two watchers and the sentry: wrk -c200 on 8 x 25 threads, p99 21 ms
 * against 15.7 ms with no reserve.) */
static void note_service(apr_interval_time_t took)
{
    int was_quick = looks_quick();
    apr_uint32_t n = P.service_samples < SERVICE_WINDOW
                     ? ++P.service_samples : SERVICE_WINDOW;

    P.service += (took - P.service) / n;
    if (was_quick && !looks_quick()) {
        let_all_out();
    }
}

/* Timed per response, not per stay: a thread that goes on with the next
 * request of its client at once is quick, however many it serves. */
void hyb_poller_served(hyb_thread *t)
{
    apr_time_t now = apr_time_now();

    if (t->serving_since) {
        note_service(now - t->serving_since);
        t->served = 1;
    }
    t->serving_since = now;
}

void hyb_poller_resumed(hyb_thread *t)
{
    t->serving_since = apr_time_now();
}

/* Has a thread other than `self` left the watch less than BACK_SOON
 * ago?  *serving: whether any is out serving at all.  Counted from when
 * it left, not from its last response: a thread on a keep-alive client
 * that always has its next request ready finishes a response every few
 * microseconds but never comes back. */
static int one_back_soon(const hyb_thread *self, apr_time_t now,
                         int *serving)
{
    const hyb_thread *th = P.ch->threads;
    int i, soon = 0;
    int quick = proven_quick();

    *serving = 0;
    for (i = 0; i < hyb_conf.lim.threads_per_child; i++) {
        apr_time_t since = th[i].out_since;

        if (&th[i] != self && since) {
            *serving = 1;
            if (quick && now - since < BACK_SOON) {
                soon = 1;
            }
        }
    }
    return soon;
}

/* Parked connections that wait for their client (keep-alive) or for
 * room to write: each needs a watcher the moment it turns ready.  Read
 * without the lock; a stale count only lets one thread out too many or
 * leaves the decision to the sentry's next look. */
static int parked_waiting(void)
{
    return __atomic_load_n(&P.parked[HYB_PARK_KEEPALIVE], __ATOMIC_RELAXED)
           + __atomic_load_n(&P.parked[HYB_PARK_WRITE], __ATOMIC_RELAXED);
}

/* Whether the watch may be left empty for a moment, for a thread that
 * will be back soon.  Not while connections are parked: a thread back
 * from a keep-alive response goes on with its own client whenever that
 * client's next request is there, and so under load it may not come back
 * to the watch for a long time while parked clients wait (wrk -c50 on
 * 8 x 25: p99 26-33 ms against 3.5-5 ms for worker). */
static int may_leave_unwatched(const hyb_thread *self, apr_time_t now,
                               int *serving)
{
    return one_back_soon(self, now, serving) && !parked_waiting();
}

static void left_the_watch(hyb_thread *t, apr_time_t now)
{
    int serving;

    if (__atomic_sub_fetch(&P.watchers, 1, __ATOMIC_SEQ_CST) == 0
        && __atomic_load_n(&P.reserved, __ATOMIC_SEQ_CST)
        && !may_leave_unwatched(t, now, &serving)) {
        let_one_out();
    }
}

int hyb_poller_sentry(void)
{
    int serving = 0;

    if (!__atomic_load_n(&P.watchers_max, __ATOMIC_SEQ_CST)) {
        return HYB_WAIT_SLICE_MS;
    }
    if (!may_leave_unwatched(NULL, apr_time_now(), &serving)
        && !__atomic_load_n(&P.watchers, __ATOMIC_SEQ_CST)
        && __atomic_load_n(&P.reserved, __ATOMIC_SEQ_CST)) {
        let_one_out();
    }
    /* with slow requests, a leaving watcher lets one out itself */
    return serving && looks_quick() ? SENTRY_MS : SENTRY_IDLE_MS;
}

/* Every thread leaves (level-triggered: each epoll_wait returns it). */
static void send_everyone_home(void)
{
    apr_uint64_t one = 1;

    if (write(P.done_fd, &one, sizeof(one)) < 0) {
        /* already readable */
    }
}

void hyb_poller_conn_gone(hyb_child *ch)
{
    int done = 0;

    __atomic_sub_fetch(&P.held, 1, __ATOMIC_RELAXED);
    if (P.listening && !hyb_child_stopping(ch)) {
        return;       /* the common case: nothing to decide, no lock */
    }
    pthread_mutex_lock(&P.lock);
    maybe_listen_again(apr_time_now());
    done = stop_done();
    pthread_mutex_unlock(&P.lock);
    if (done) {
        send_everyone_home();
    }
}

void hyb_poller_close(hyb_thread *t, hyb_conn *conn)
{
    apr_pool_t *pool = conn->pool;

    apr_socket_close(conn->sock);
    hyb_pool_recycle(t, pool);
    hyb_poller_conn_gone(t->child);
}

/* ------------------------------------------------------------------ */
/* Parking and claiming                                                */

apr_status_t hyb_poller_park(hyb_conn *conn, hyb_park_kind kind,
                             int want_write, apr_interval_time_t timeout)
{
    struct epoll_event ev;
    int op = conn->park.registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;

    pthread_mutex_lock(&P.lock);
    conn->park.kind = kind;
    conn->park.expired = 0;
    conn->park.since = apr_time_now();
    conn->park.expiry = conn->park.since + timeout;
    if (hyb_deadlines_add(&P.deadlines, &conn->park) < 0) {
        pthread_mutex_unlock(&P.lock);
        return APR_ENOMEM;
    }
    P.parked[kind]++;
    timer_sooner(conn->park.expiry);
    pthread_mutex_unlock(&P.lock);

    /* Armed last: from here on another thread may own it. */
    memset(&ev, 0, sizeof(ev));
    ev.events = (want_write ? EPOLLOUT : EPOLLIN) | EPOLLONESHOT;
    ev.data.u64 = (apr_uint64_t)(uintptr_t)conn;
    conn->park.registered = 1;
    if (epoll_ctl(P.epfd, op, conn->fd, &ev) < 0) {
        apr_status_t rv = errno;

        pthread_mutex_lock(&P.lock);
        hyb_deadlines_remove(&P.deadlines, &conn->park);
        P.parked[kind]--;
        pthread_mutex_unlock(&P.lock);
        return rv;
    }
    return APR_SUCCESS;
}

/* A parked connection's one event came to this thread: it is ours now. */
static hyb_conn *claim(hyb_conn *conn)
{
    pthread_mutex_lock(&P.lock);
    if (conn->park.index >= 0) {
        hyb_deadlines_remove(&P.deadlines, &conn->park);
        P.parked[conn->park.kind]--;
    }
    /* else: its wait ran out and it was taken off the deadlines then */
    pthread_mutex_unlock(&P.lock);
    return conn;
}

int hyb_poller_readable_within(int fd, int ms)
{
    struct pollfd pfd = { fd, POLLIN, 0 };

    return poll(&pfd, 1, ms) > 0;
}

/* Under P.lock: the connection's wait ran out.  It is taken off the
 * deadlines
 * and its socket shut down, which fires its event; the thread that gets
 * it closes the connection.  A keep-alive connection whose next request
 * has arrived is not expired: a thread is on its way to serve it. */
static void expire(hyb_conn *conn, apr_time_t now)
{
    if (conn->park.kind == HYB_PARK_KEEPALIVE
        && hyb_poller_readable_within(conn->fd, 0)) {
        hyb_deadlines_remove(&P.deadlines, &conn->park);
        conn->park.expiry = now + apr_time_from_sec(1);
        hyb_deadlines_add(&P.deadlines, &conn->park);   /* room: was in */
        return;
    }
    hyb_deadlines_remove(&P.deadlines, &conn->park);
    P.parked[conn->park.kind]--;
    conn->park.expired = 1;
    shutdown(conn->fd, conn->park.kind == HYB_PARK_WRITE ? SHUT_RDWR
                                                         : SHUT_RD);
}

/* A stopping child: idle keep-alive connections go (a request that has
 * already arrived is still served, with Connection: close).  Closing one
 * races a request the client may be sending that moment, which would be
 * lost; a client that is busy on its connection sends its next request
 * within microseconds, so only connections idle for STOP_IDLE_GRACE are
 * closed, the others are answered (with Connection: close) or closed
 * once they have been idle that long.  The child exits soon either way. */
#define STOP_IDLE_GRACE apr_time_from_msec(200)

static void expire_idle_keepalive(apr_time_t now)
{
    int i;

    for (i = P.deadlines.n - 1; i >= 0; i--) {
        hyb_park *park = i < P.deadlines.n ? P.deadlines.at[i] : NULL;

        if (park && park->kind == HYB_PARK_KEEPALIVE
            && now - park->since >= STOP_IDLE_GRACE) {
            hyb_conn *conn = conn_of(park);

            if (!hyb_poller_readable_within(conn->fd, 0)) {
                expire(conn, now);
            }
        }
    }
}

/* Timers, the listeners' return, the scoreboard's counts, and what a
 * stop asks for: done by one thread at a time, at most every 100 ms
 * unless the clock asks (forced). */
static void housekeeping(apr_time_t now, int forced)
{
    hyb_park *first;
    int done;
    int new_stop = hyb_child_stopping(P.ch) && !P.stop_handled;

    /* A stop is seen at once: until then the wake pipe keeps every
     * epoll_wait returning. */
    if (forced) {
        pthread_mutex_lock(&P.lock);
    }
    else if ((now < P.next_housekeeping && !new_stop)
             || pthread_mutex_trylock(&P.lock) != 0) {
        return;
    }
    P.next_housekeeping = now + HOUSEKEEPING_EVERY;
    while ((first = hyb_deadlines_first(&P.deadlines))
           && first->expiry <= now) {
        expire(conn_of(first), now);
    }
    if (hyb_child_stopping(P.ch)) {
        if (!P.stop_handled) {
            P.stop_handled = 1;
            epoll_ctl(P.epfd, EPOLL_CTL_DEL, P.ch->wake_fd[0], NULL);
            timer_sooner(now + HOUSEKEEPING_EVERY);
        }
        expire_idle_keepalive(now);
    }
    maybe_listen_again(now);
    publish_counts();
    done = stop_done();
    pthread_mutex_unlock(&P.lock);
    if (hyb_child_stopping(P.ch)) {
        hyb_drain_release(0);
    }
    if (done) {
        send_everyone_home();
    }
}

/* ------------------------------------------------------------------ */
/* Accepting                                                           */

/* A shortage (fd limit, memory): said once, and the child stops
 * accepting for a moment instead of spinning; if it lasts, the thread
 * gives up (the child is replaced). */
static hyb_event_kind shortage(void)
{
    hyb_event_kind kind = HYB_EV_NONE;

    pthread_mutex_lock(&P.lock);
    if (!P.shortage_logged) {
        P.shortage_logged = 1;
        ap_log_error(APLOG_MARK, APLOG_ERR, errno, ap_server_conf,
                     HYBLOGNO(00020) "child %d: accept failed for lack of "
                     "resources (%d connections held); it stops accepting "
                     "for a while. Raise the file descriptor limit (ulimit "
                     "-n) or lower AsyncConnectionLimit", P.ch->slot,
                     (int)P.held);
    }
    if (P.listening) {
        listeners_off();
    }
    P.paused_until = apr_time_now() + SHORTAGE_PAUSE;
    timer_sooner(P.paused_until);
    if (++P.shortages > SHORTAGES_SICK) {
        kind = HYB_EV_SICK;
    }
    pthread_mutex_unlock(&P.lock);
    return kind;
}

/* Taking the listeners out and back in makes the kernel poll them
 * afresh (and, for exclusive waiters, moves this child to the back of the
 * wake-up order). */
static void rearm_listeners(void)
{
    pthread_mutex_lock(&P.lock);
    if (P.listening) {
        listeners_off();
        listeners_on();
    }
    pthread_mutex_unlock(&P.lock);
}

static void rearm_exclusive(void)
{
    if ((P.flags & HYB_LISTEN_EXCLUSIVE)
        && __atomic_add_fetch(&P.accepts, 1, __ATOMIC_RELAXED)
           % HYB_REARM_EVERY == 0) {
        rearm_listeners();
    }
}

static void accept_new(hyb_thread *t, int i, hyb_event *ev)
{
    apr_pool_t *pool = hyb_pool_take(t);
    hyb_accept_rc rc = HYB_ACCEPT_RETRY;
    apr_uint32_t held = take_a_place();

    if (held && i >= 0 && i < P.nlisten && P.lfds[i] >= 0) {
        rc = hyb_accept_on(t->child, P.lrs[i], &ev->csd, pool, 1);
    }
    if (rc != HYB_ACCEPT_OK) {
        if (held) {
            give_back_place();   /* the accept found nothing */
        }
        t->ptrans = pool;     /* kept for the next one */
        ev->kind = rc == HYB_ACCEPT_SHORTAGE ? shortage() : HYB_EV_NONE;
        return;
    }
    counted(held);
    ev->kind = HYB_EV_NEW;
    ev->pool = pool;
    rearm_exclusive();
}

/* The clock woke this thread (and only this one). */
static void timer_fired(hyb_thread *t)
{
    struct epoll_event e;
    apr_uint64_t v;
    apr_time_t now = apr_time_now();

    if (read(P.timer_fd, &v, sizeof(v)) < 0) {
        /* set afresh since it fired */
    }
    if (now >= P.next_tick) {
        P.next_tick = now + apr_time_from_msec(HYB_WAIT_SLICE_MS);
        hyb_child_check_parent(t->child);
        if (P.flags & HYB_LISTEN_EXCLUSIVE) {
            rearm_listeners();
        }
    }
    housekeeping(now, 1);
    hyb_linger_look(t, now, 1);
    pthread_mutex_lock(&P.lock);
    timer_set(next_deadline(apr_time_now()));
    pthread_mutex_unlock(&P.lock);
    memset(&e, 0, sizeof(e));
    e.events = EPOLLIN | EPOLLONESHOT;
    e.data.u64 = TAG_TIMER;
    epoll_ctl(P.epfd, EPOLL_CTL_MOD, P.timer_fd, &e);
}

/* What an epoll event asks of this thread. */
static void dispatch(hyb_thread *t, const struct epoll_event *e,
                     hyb_event *ev)
{
    apr_uint64_t u = e->data.u64, v;

    switch (TAG_OF(u)) {
    case TAG_CONN:
        ev->kind = HYB_EV_CONN;
        ev->conn = claim((hyb_conn *)(uintptr_t)u);
        break;
    case TAG_LISTEN:
        accept_new(t, INDEX_OF(u), ev);
        break;
    case TAG_DONE:
        ev->kind = HYB_EV_EXIT;
        break;
    case TAG_TOKEN:
        if (read(P.token_fd, &v, sizeof(v)) < 0) {
            /* taken by another thread */
        }
        break;
    case TAG_TIMER:
        timer_fired(t);
        break;
    default:                  /* the wake pipe: housekeeping handles it */
        break;
    }
}

/* Threads that wait on the epoll set, and so would serve a parked
 * connection that turns readable now.  An idle thread is not always one
 * of them: the holder of the accept turn (mutex) may be waiting for the
 * strategy's lock. */
static void watching(int delta)
{
    if (delta) {
        __atomic_add_fetch(&P.watchers, (apr_uint32_t)delta,
                           __ATOMIC_RELAXED);
    }
}

int hyb_poller_watched(void)
{
    return __atomic_load_n(&P.watchers, __ATOMIC_RELAXED) > 0;
}

int hyb_poller_reserved(void)
{
    return __atomic_load_n(&P.watchers_max, __ATOMIC_RELAXED) != 0
           && looks_quick();
}

/* Wakes one thread waiting in the epoll set (an EPOLLONESHOT eventfd:
 * exactly one gets it) to take on a role this thread leaves. */
static void hand_on(int fd, int tag)
{
    struct epoll_event e;
    apr_uint64_t one = 1;

    memset(&e, 0, sizeof(e));
    e.events = EPOLLIN | EPOLLONESHOT;
    e.data.u64 = (apr_uint64_t)tag;
    if (write(fd, &one, sizeof(one)) < 0) {
        /* already posted */
    }
    epoll_ctl(P.epfd, EPOLL_CTL_MOD, fd, &e);
}

/* timeout_ms: 0 for a quick look, -1 to wait until something comes. */
static void epoll_next(hyb_thread *t, int timeout_ms, hyb_event *ev)
{
    struct epoll_event e;
    int n;

    watching(timeout_ms != 0);
    n = epoll_wait(P.epfd, &e, 1, timeout_ms);
    watching(-(timeout_ms != 0));
    if (n > 0) {
        dispatch(t, &e, ev);
    }
}

/* The ungated wait: in the reserve while enough threads watch. */
static void watched_next(hyb_thread *t, hyb_event *ev)
{
    struct epoll_event e;
    apr_time_t now;
    int n;

    wait_in_reserve();
    watching(1);
    n = epoll_wait(P.epfd, &e, 1, -1);
    now = apr_time_now();
    if (n > 0) {
        t->serving_since = now;
        t->out_since = now;
    }
    left_the_watch(t, now);
    if (n > 0) {
        dispatch(t, &e, ev);
    }
}

/* ------------------------------------------------------------------ */
/* Gated listeners (AcceptStrategy mutex): one thread of the child at a
 * time holds the accept turn, takes the strategy's lock, and polls the
 * listeners (and the epoll set, so that the child's parked connections
 * are not left waiting while it does).  The other idle threads wait in
 * the epoll set; a thread leaving the turn hands it on with the token. */

/* Leaves the accept turn; a thread that leaves it to serve something
 * hands it on to a thread waiting in the epoll set. */
static void pass_turn(hyb_child *ch, int handing_on)
{
    if (!ch->threaded) {
        return;
    }
    apr_thread_mutex_unlock(ch->accept_turn);
    if (handing_on) {
        hand_on(P.token_fd, TAG_TOKEN);
    }
}

/* Holding the strategy's lock: waits for a listener, the epoll set or
 * the stop; returns 1 if something came, 0 on a quiet slice.  A child
 * that has as many connections as threads serves its own first: while
 * some of them wait for a thread, it leaves new ones to the other
 * children (and its spare count tells the parent to start more).
 * Otherwise a child that holds the lock through a burst takes every
 * connection of it and keeps them, parked between requests, on its own
 * threads. */
static int gated_poll(hyb_thread *t, hyb_event *ev)
{
    struct pollfd fds[P.nlisten + 2];
    int i, n;

    for (i = 0; i < P.nlisten; i++) {
        fds[i].fd = P.lfds[i];
        fds[i].events = POLLIN;
    }
    fds[P.nlisten].fd = t->child->wake_fd[0];
    fds[P.nlisten].events = POLLIN;
    fds[P.nlisten + 1].fd = P.epfd;
    fds[P.nlisten + 1].events = POLLIN;
    watching(1);
    n = poll(fds, P.nlisten + 2, HYB_WAIT_SLICE_MS);
    watching(-1);
    if (n <= 0) {
        return 0;
    }
    if (fds[P.nlisten + 1].revents & POLLIN
        && __atomic_load_n(&P.held, __ATOMIC_RELAXED)
           >= (apr_uint32_t)hyb_conf.lim.threads_per_child) {
        return 1;                 /* parked connections turned readable */
    }
    for (i = 0; i < P.nlisten; i++) {
        int k = (int)((P.accepts + i) % P.nlisten);

        if (fds[k].revents & (POLLIN | POLLERR | POLLHUP)) {
            P.accepts++;          /* round-robin start among listeners */
            accept_new(t, k, ev);
            return ev->kind != HYB_EV_NONE;
        }
    }
    return 1;                     /* the wake pipe or the epoll set */
}

/* One try at the accept turn.  With no other thread on the epoll set (a
 * ThreadsPerChild 1 child), a child with parked connections does not wait
 * for the lock: it tries it once, and otherwise waits on its epoll set
 * for a short slice, where a parked connection that turns readable wakes
 * it at once.  So its clients never wait for the lock, and new
 * connections go to the children that wait for it, those with nothing
 * parked. */
static void gated_next(hyb_thread *t, hyb_event *ev)
{
    hyb_child *ch = t->child;
    const hyb_strategy *st = hyb_conf.strategy;
    int alone = !ch->threaded && P.deadlines.n;
    apr_status_t rv;

    if (ch->threaded
        && apr_thread_mutex_trylock(ch->accept_turn) != APR_SUCCESS) {
        epoll_next(t, -1, ev);
        return;
    }
    rv = st->gate_enter(ch, alone ? 0
                                  : apr_time_from_msec(HYB_WAIT_SLICE_MS));
    if (rv == APR_SUCCESS) {
        gated_poll(t, ev);
        st->gate_leave(ch);
    }
    pass_turn(ch, ev->kind != HYB_EV_NONE);
    if (ev->kind == HYB_EV_NONE) {
        /* what woke the poll, or a look at the parked connections while
         * the lock is elsewhere */
        epoll_next(t, rv == APR_TIMEUP && alone
                      ? (int)apr_time_as_msec(GATED_SHORT_SLICE) : 0, ev);
    }
}

/* HYB_LISTEN_BLOCKING: the child's one thread waits in accept() itself.
 * A stop signal interrupts it, having let go of the listener (so the
 * next call fails at once); then the child waits in its epoll set, as
 * any stopping child does. */
static void blocking_next(hyb_thread *t, hyb_event *ev)
{
    apr_pool_t *pool = hyb_pool_take(t);
    hyb_accept_rc rc = HYB_ACCEPT_RETRY;

    if (P.lfds[0] >= 0) {
        rc = hyb_accept_on(t->child, P.lrs[0], &ev->csd, pool, 0);
    }
    if (rc != HYB_ACCEPT_OK) {
        t->ptrans = pool;
        if (rc == HYB_ACCEPT_SHORTAGE) {
            ev->kind = shortage();
            apr_sleep(SHORTAGE_PAUSE);   /* no listener to switch off */
        }
        else if (P.lfds[0] >= 0 && (fcntl(P.lfds[0], F_GETFL) & O_NONBLOCK)) {
            /* a new generation that does not block made the listener
             * non-blocking: this child is about to be told to stop */
            epoll_next(t, -1, ev);
        }
        return;
    }
    hyb_poller_count_accepted();
    ev->kind = HYB_EV_NEW;
    ev->pool = pool;
}

/* ------------------------------------------------------------------ */

void hyb_poller_next(hyb_thread *t, hyb_event *ev)
{
    apr_time_t now = apr_time_now();

    memset(ev, 0, sizeof(*ev));
    if (t->serving_since && !t->served) {
        note_service(now - t->serving_since);   /* an accept, a close */
    }
    t->serving_since = 0;
    t->out_since = 0;
    t->served = 0;
    if (__atomic_load_n(&t->child->stop, __ATOMIC_SEQ_CST) == HYB_STOP_NOW) {
        ev->kind = HYB_EV_EXIT;
        return;
    }
    housekeeping(now, 0);
    hyb_linger_look(t, now, 0);
    if (P.flags & HYB_LISTEN_BLOCKING && !hyb_child_stopping(t->child)) {
        blocking_next(t, ev);
    }
    else if (P.flags & HYB_LISTEN_GATED && !hyb_child_stopping(t->child)) {
        gated_next(t, ev);
    }
    else {
        watched_next(t, ev);
    }
}
