/* hybrid_child.c: one child process, from fork to exit.
 *
 * Owns: the post-fork start-up order (attach shared resources, drop
 * privileges, run child_init), the child's signals, starting and joining
 * its worker threads, and the two ways to stop: graceful (finish what is
 * in flight) and now.  With ThreadsPerChild 1 no thread is created: the
 * main thread serves, exactly like prefork.
 *
 * Signals only set the stop mode and write a byte to the child's wake
 * pipe; the pipe is never drained, so once stopping every poll() in the
 * child returns at once (level-triggered, no resend loop).
 */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "apr_thread_mutex.h"
#include "apr_thread_proc.h"

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_main.h"
#include "ap_mpm.h"
#include "mpm_common.h"
#include "scoreboard.h"

#include "hybrid_accept.h"
#include "hybrid_child.h"
#include "hybrid_config.h"
#include "hybrid_counters.h"
#include "hybrid_drain.h"
#include "hybrid_notes.h"
#include "hybrid_poller.h"
#include "hybrid_pools.h"
#include "hybrid_retire.h"
#include "hybrid_server.h"
#include "hybrid_worker.h"

hyb_child *hyb_the_child;

static void child_exit(hyb_child *ch, int code) __attribute__((noreturn));

int hyb_child_stopping(const hyb_child *ch)
{
    return __atomic_load_n(&ch->stop, __ATOMIC_RELAXED) != HYB_RUNNING;
}

/* A stopping child lets go of the listening sockets at once (unless a
 * closing one still has connections queued, which a worker drains
 * first: hybrid_drain.c), so that a graceful stop refuses new connections
 * while in-flight requests finish. */
/* Async-signal-safe: atomics, write(), dup2() and shutdown() only. */
void hyb_child_request_stop(hyb_child *ch, hyb_stop_mode mode)
{
    apr_uint32_t old = __atomic_load_n(&ch->stop, __ATOMIC_RELAXED);
    int saved = errno;

    while (old < (apr_uint32_t)mode
           && !__atomic_compare_exchange_n(&ch->stop, &old, mode, 0,
                                           __ATOMIC_SEQ_CST,
                                           __ATOMIC_RELAXED)) {
    }
    hyb_server.mpm->mpm_state = AP_MPMQ_STOPPING;
    if (write(ch->wake_fd[1], "x", 1) < 0) {
        /* already full: already readable */
    }
    hyb_drain_release(mode == HYB_STOP_NOW);
    if (mode == HYB_STOP_NOW && !ch->threaded) {
        int fd = ch->threads[0].active_fd;

        if (fd >= 0) {
            shutdown(fd, SHUT_RDWR);   /* make the request's I/O fail now */
        }
    }
    errno = saved;
}

/* A worker about to block in a wait only a signal can interrupt (a file
 * lock) lets the stop signal in for the duration, and says so, so that the
 * main thread can poke it with pthread_kill when the child stops.  With
 * ThreadsPerChild 1 the only thread already takes the signals. */
void hyb_child_mark_interruptible(hyb_child *ch, int on)
{
    sigset_t set;

    if (!ch->threaded) {
        return;
    }
    sigemptyset(&set);
    sigaddset(&set, AP_SIG_GRACEFUL);
    if (on) {
        ch->waiter = pthread_self();
        __atomic_store_n(&ch->waiting, 1, __ATOMIC_SEQ_CST);
        pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    }
    else {
        pthread_sigmask(SIG_BLOCK, &set, NULL);
        __atomic_store_n(&ch->waiting, 0, __ATOMIC_SEQ_CST);
    }
}

static void poke_waiter(hyb_child *ch)
{
    if (__atomic_load_n(&ch->waiting, __ATOMIC_SEQ_CST)) {
        pthread_kill(ch->waiter, AP_SIG_GRACEFUL);
    }
}

/* The parent is gone: nothing may keep serving.  Stop gracefully, and end
 * the keep-alive waits now, which would otherwise serve their clients for
 * up to KeepAliveTimeout more.  Async-signal-safe. */
static void child_orphaned(hyb_child *ch)
{
    int i;

    hyb_child_request_stop(ch, HYB_STOP_GRACEFUL);
    for (i = 0; i < hyb_conf.lim.threads_per_child; i++) {
        int fd = ch->threads[i].active_fd;

        if (fd >= 0 && ap_scoreboard_image->servers[ch->slot][i].status
                       == SERVER_BUSY_KEEPALIVE) {
            shutdown(fd, SHUT_RD);
        }
    }
}

void hyb_child_check_parent(hyb_child *ch)
{
    if (ch->parent_pid && getppid() != ch->parent_pid) {
        child_orphaned(ch);
    }
}

static void on_parent_death(int sig)
{
    if (hyb_the_child) {
        child_orphaned(hyb_the_child);
    }
}

static void on_signal(int sig)
{
    if (hyb_the_child) {
        hyb_child_request_stop(hyb_the_child,
                               sig == AP_SIG_GRACEFUL || sig == SIGWINCH
                                   ? HYB_STOP_GRACEFUL : HYB_STOP_NOW);
    }
}

static void set_handler(int sig, void (*fn)(int))
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = fn;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, NULL);   /* no SA_RESTART: blocking calls return */
}

/* The parent's handlers were inherited by fork; replace them.  SIGINT
 * goes to the whole process group on ^C: the parent handles it, unless
 * there is no parent (-X). */
static void install_child_signals(void)
{
    set_handler(AP_SIG_GRACEFUL, on_signal);
    set_handler(SIGTERM, on_signal);
    set_handler(SIGHUP, on_signal);
    set_handler(HYB_SIG_PARENT_DIED, on_parent_death);
    set_handler(SIGINT, hyb_server.one_process ? on_signal : SIG_IGN);
    set_handler(SIGWINCH, hyb_server.one_process ? on_signal : SIG_DFL);
    /* The parent's SIGCHLD handler writes to the parent's wake-up pipe;
     * this child's own children (CGI and the like) are none of its
     * business. */
    if (!hyb_server.one_process) {
        set_handler(SIGCHLD, SIG_DFL);
    }
}

void hyb_child_block_signals(int how)
{
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, AP_SIG_GRACEFUL);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGWINCH);
    sigaddset(&set, HYB_SIG_PARENT_DIED);
    pthread_sigmask(how, &set, NULL);
}

static void child_exit(hyb_child *ch, int code)
{
    hyb_server.mpm->mpm_state = AP_MPMQ_STOPPING;
    if (ch && ch->pool) {
        if (!ch->stopping_hooks_run) {
            ap_run_child_stopping(ch->pool, code == 0);
        }
        if (hyb_conf.strategy->child_exit) {
            hyb_conf.strategy->child_exit(ch);
        }
        apr_pool_destroy(ch->pool);
    }
    exit(code);
}

/* ------------------------------------------------------------------ */

static hyb_child *child_create(int slot, int group)
{
    apr_pool_t *pchild;
    hyb_child *ch;
    int i;

    apr_pool_create(&pchild, hyb_server.pconf);
    apr_pool_tag(pchild, "pchild");
    ch = apr_pcalloc(pchild, sizeof(*ch));
    ch->pool = pchild;
    ch->slot = slot;
    ch->group = group;
    ch->generation = hyb_server.mpm->my_generation;
    ch->parent_pid = hyb_server.one_process ? 0 : getppid();
    ch->threaded = hyb_conf.lim.threads_per_child > 1;
    ch->threads = apr_pcalloc(pchild, sizeof(*ch->threads)
                                      * hyb_conf.lim.threads_per_child);
    for (i = 0; i < hyb_conf.lim.threads_per_child; i++) {
        ch->threads[i].child = ch;
        ch->threads[i].num = i;
        ch->threads[i].active_fd = -1;
    }
    if (pipe2(ch->wake_fd, O_CLOEXEC | O_NONBLOCK) < 0) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, errno, ap_server_conf,
                     HYBLOGNO(00070) "child: cannot create its wake-up pipe");
        child_exit(NULL, APEXIT_CHILDSICK);
    }
    ch->counters = hyb_stats_counters(slot);
    return ch;
}

/* Everything between fork and serving: order matters (the lock must be
 * attached before privileges are dropped; signals are blocked while
 * child_init hooks may start threads so those threads never take them). */
static void child_init(hyb_child *ch)
{
    hyb_notes_child_init();
    ap_reopen_scoreboard(ch->pool, NULL, 0);
    hyb_drain_child_init(ch);
    if (hyb_poller_create(ch) != APR_SUCCESS
        || hyb_conf.strategy->child_init(ch) != APR_SUCCESS) {
        child_exit(ch, APEXIT_CHILDFATAL);
    }
    if (ap_run_drop_privileges(ch->pool, ap_server_conf)) {
        child_exit(ch, APEXIT_CHILDFATAL);
    }
    if (ch->parent_pid) {
        /* After the privilege drop, which clears it. */
        prctl(PR_SET_PDEATHSIG, HYB_SIG_PARENT_DIED);
        hyb_child_check_parent(ch);
    }
    hyb_child_block_signals(SIG_BLOCK);
    ap_run_child_init(ch->pool, ap_server_conf);
    hyb_retire_child_init(ch);
}

static apr_status_t start_workers(hyb_child *ch)
{
    apr_threadattr_t *attr;
    apr_status_t rv;
    int i;

    apr_thread_mutex_create(&ch->accept_turn, APR_THREAD_MUTEX_DEFAULT,
                            ch->pool);
    apr_threadattr_create(&attr, ch->pool);
    apr_threadattr_detach_set(attr, 0);
    if (ap_thread_stacksize) {
        apr_threadattr_stacksize_set(attr, ap_thread_stacksize);
    }
    for (i = 0; i < hyb_conf.lim.threads_per_child; i++) {
        __atomic_add_fetch(&ch->live_threads, 1, __ATOMIC_SEQ_CST);
        ch->threads[i].ptrans = hyb_pool_new(&ch->threads[i]);
        rv = ap_thread_create(&ch->threads[i].thd, attr, hyb_worker_thread,
                              &ch->threads[i], ch->pool);
        if (rv != APR_SUCCESS) {
            __atomic_sub_fetch(&ch->live_threads, 1, __ATOMIC_SEQ_CST);
            ap_log_error(APLOG_MARK, APLOG_ALERT, rv, ap_server_conf,
                         HYBLOGNO(00071) "cannot create worker thread %d "
                         "of %d", i, hyb_conf.lim.threads_per_child);
            return i ? APR_SUCCESS : rv;   /* run with what we have */
        }
    }
    return APR_SUCCESS;
}

/* An immediate stop: in-flight connections are dropped (their sockets
 * shut down, so blocked I/O fails at once) and the workers get up to 3 s
 * to notice.  Pool cleanups must not run while a worker is still inside
 * request code: in -X mode exit() destroys every pool and unloads the
 * modules, so a worker that does not finish in time makes this _exit(). */
static void drop_connections_now(hyb_child *ch)
{
    apr_time_t deadline = apr_time_now() + apr_time_from_sec(3);
    int i;

    while (__atomic_load_n(&ch->live_threads, __ATOMIC_SEQ_CST)) {
        for (i = 0; i < hyb_conf.lim.threads_per_child; i++) {
            int fd = ch->threads[i].active_fd;

            if (fd >= 0) {
                shutdown(fd, SHUT_RDWR);
            }
        }
        if (apr_time_now() > deadline) {
            _exit(0);
        }
        poke_waiter(ch);
        apr_sleep(apr_time_from_msec(10));
    }
}

/* The main thread of a threaded child: wait for a stop, then for the
 * workers; a second signal turns a graceful stop into an immediate one. */
static void supervise_workers(hyb_child *ch)
{
    struct pollfd pfd = { ch->wake_fd[0], POLLIN, 0 };
    apr_time_t parent_checked = apr_time_now();
    int i;

    while (!hyb_child_stopping(ch)) {
        if (poll(&pfd, 1, hyb_poller_sentry()) == 0
            && apr_time_now() - parent_checked
               >= apr_time_from_msec(HYB_WAIT_SLICE_MS)) {
            hyb_child_check_parent(ch);
            parent_checked = apr_time_now();
        }
        if (!__atomic_load_n(&ch->live_threads, __ATOMIC_SEQ_CST)) {
            break;   /* every worker gave up (sick) */
        }
    }
    hyb_poller_open_reserve();
    ap_run_child_stopping(ch->pool, ch->stop == HYB_STOP_GRACEFUL);
    ch->stopping_hooks_run = 1;
    while (__atomic_load_n(&ch->live_threads, __ATOMIC_SEQ_CST)) {
        poke_waiter(ch);
        if (__atomic_load_n(&ch->stop, __ATOMIC_SEQ_CST) == HYB_STOP_NOW) {
            drop_connections_now(ch);
            break;
        }
        /* A closing listener kept for draining, whose queue others have
         * emptied meanwhile, need not wait for one of our busy workers. */
        hyb_drain_release(0);
        apr_sleep(apr_time_from_msec(20));
    }
    for (i = 0; i < hyb_conf.lim.threads_per_child; i++) {
        apr_status_t ignored;

        if (ch->threads[i].thd) {
            apr_thread_join(&ignored, ch->threads[i].thd);
        }
    }
}

void hyb_child_main(int slot, int group)
{
    hyb_child *ch;

    hyb_server.mpm->mpm_state = AP_MPMQ_STARTING;
#if AP_HAS_THREAD_LOCAL
    if (!hyb_server.one_process) {
        apr_thread_t *thd = NULL;

        ap_thread_current_after_fork();
        ap_thread_main_create(&thd, hyb_server.pconf);
    }
#endif
    if (!hyb_server.one_process) {
        ap_fatal_signal_child_setup(ap_server_conf);
    }
    ch = child_create(slot, group);
    hyb_the_child = ch;
    install_child_signals();
    /* The parent forked with our signals blocked, so that none could reach
     * the handlers inherited from it; anything sent meanwhile is delivered
     * now, to ours. */
    hyb_child_block_signals(SIG_UNBLOCK);
    child_init(ch);
    hyb_server.mpm->mpm_state = AP_MPMQ_RUNNING;

    if (!ch->threaded) {
        hyb_child_block_signals(SIG_UNBLOCK);
        ch->live_threads = 1;
        hyb_worker_run(&ch->threads[0]);
        child_exit(ch, ch->sick ? APEXIT_CHILDSICK : 0);
    }
    if (start_workers(ch) != APR_SUCCESS) {
        child_exit(ch, APEXIT_CHILDSICK);
    }
    hyb_child_block_signals(SIG_UNBLOCK);
    supervise_workers(ch);
    child_exit(ch, ch->sick ? APEXIT_CHILDSICK : 0);
}
