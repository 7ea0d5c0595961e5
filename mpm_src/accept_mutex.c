/* accept_mutex.c: AcceptStrategy mutex.
 *
 * One child at a time waits for connections, serialized by the
 * "mpm-accept" mutex; the core's Mutex directive picks its mechanism
 * (flock, fcntl, sysvsem, posixsem, pthread).  Inside a child only the
 * thread holding the child's accept turn takes the lock, so the per-process
 * file locks (fcntl, flock) are safe with any ThreadsPerChild.
 *
 * If the lock breaks under a running server (a SysV semaphore removed with
 * ipcrm, which makes stock httpd exit), the child logs it once and falls
 * back to unserialized accept for the rest of its life; the next graceful
 * restart creates a fresh lock.
 */

#include <errno.h>
#include <fcntl.h>
#include <semaphore.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "apr_portable.h"
#include "apr_proc_mutex.h"
#include "apr_shm.h"

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_main.h"
#include "mpm_common.h"
#include "scoreboard.h"
#include "util_mutex.h"

#include "hybrid_accept.h"
#include "hybrid_child.h"
#include "hybrid_counters.h"
#include "hybrid_drain.h"
#include "hybrid_server.h"
#include "hybrid_poller.h"

static apr_proc_mutex_t *accept_lock;   /* this generation's, from pconf */

/* A POSIX semaphore stays taken when its holder is killed, which would
 * stop every child from accepting.  The holder notes its pid in a word of
 * shared memory; when the parent reaps a child killed by a signal and the
 * word names it, the parent posts the semaphore.  The word is written by
 * children, so the worst a lying child can cause is one extra post (two
 * acceptors for a moment), never anything the root parent acts on beyond
 * that. */
typedef struct { volatile pid_t holder; } lock_word;
static lock_word *posix_holder;

/* A child told to stop while it waits for the lock must notice.  The
 * semaphore and pthread mechanisms have native timed waits, so the wait is
 * sliced.  APR emulates timed waits on file locks by polling, which would
 * slow every hand-off, so for fcntl and flock the lock call is made here
 * on APR's descriptor: it blocks in the kernel and a signal (the stop
 * signal, or the child's main thread poking the waiting worker) interrupts
 * it with EINTR. */
typedef enum { WAIT_TIMED, WAIT_FCNTL, WAIT_FLOCK } lock_wait;

typedef struct {
    lock_wait wait;
    int fd;                     /* file lock descriptor (fcntl, flock) */
    int broken;                 /* lock failed: accept unserialized */
    int locked;                 /* this child holds it now */
} mutex_child;

static lock_word *holder_word(void)
{
    static const char key[] = "mpm_hybrid_lock_word";
    apr_shm_t **shm = ap_retained_data_get(key);

    if (!shm) {
        shm = ap_retained_data_create(key, sizeof(*shm));
        if (apr_shm_create(shm, sizeof(lock_word), NULL, ap_pglobal)
            != APR_SUCCESS) {
            *shm = NULL;
        }
    }
    return *shm ? apr_shm_baseaddr_get(*shm) : NULL;
}

static void mutex_reaped(pid_t pid)
{
    apr_os_proc_mutex_t os;

    if (!posix_holder || posix_holder->holder != pid
        || apr_os_proc_mutex_get(&os, accept_lock) != APR_SUCCESS) {
        return;
    }
    posix_holder->holder = 0;
    sem_post(os.psem_interproc);
    ap_log_error(APLOG_MARK, APLOG_WARNING, 0, ap_server_conf,
                 HYBLOGNO(00033) "child %" APR_PID_T_FMT " died holding the "
                 "posixsem accept mutex; released it", pid);
}

static apr_status_t mutex_open(apr_pool_t *p, server_rec *s)
{
    apr_status_t rv;

    rv = ap_proc_mutex_create(&accept_lock, NULL, AP_ACCEPT_MUTEX_TYPE, NULL,
                              s, p, 0);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s, HYBLOGNO(00030)
                     "could not create the accept mutex; check the Mutex "
                     "directive for mpm-accept");
        return rv;
    }
    hyb_listeners_prepare(ap_listeners);
    if (apr_proc_mutex_mech(accept_lock) == APR_LOCK_POSIXSEM) {
        posix_holder = holder_word();
    }
    return APR_SUCCESS;
}

static apr_status_t mutex_child_init(hyb_child *ch)
{
    mutex_child *mc = apr_pcalloc(ch->pool, sizeof(*mc));
    apr_status_t rv;

    rv = apr_proc_mutex_child_init(&accept_lock,
                                   apr_proc_mutex_lockfile(accept_lock),
                                   ch->pool);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, ap_server_conf,
                     HYBLOGNO(00031) "could not attach to the accept mutex "
                     "in the child");
        return rv;
    }
    mc->wait = WAIT_TIMED;
    switch (apr_proc_mutex_mech(accept_lock)) {
    case APR_LOCK_FCNTL:
    case APR_LOCK_FLOCK: {
        apr_os_proc_mutex_t os;

        if (apr_os_proc_mutex_get(&os, accept_lock) == APR_SUCCESS) {
            mc->fd = os.crossproc;
            mc->wait = apr_proc_mutex_mech(accept_lock) == APR_LOCK_FCNTL
                       ? WAIT_FCNTL : WAIT_FLOCK;
        }
        break;
    }
    default:
        break;
    }
    ch->accept_state = mc;
    hyb_drain_hold(ch, ap_listeners);
    return hyb_poller_listen(ch, ap_listeners, HYB_LISTEN_GATED);
}

static int file_lock(mutex_child *mc, int lock, int wait)
{
    if (mc->wait == WAIT_FLOCK) {
        return flock(mc->fd, lock ? (wait ? LOCK_EX : LOCK_EX | LOCK_NB)
                                  : LOCK_UN);
    }
    else {
        struct flock fl;

        memset(&fl, 0, sizeof(fl));
        fl.l_type = lock ? F_WRLCK : F_UNLCK;
        fl.l_whence = SEEK_SET;
        return fcntl(mc->fd, lock && wait ? F_SETLKW : F_SETLK, &fl);
    }
}

/* Waits up to `slice` for the lock.  Returns APR_SUCCESS with the lock
 * held, APR_TIMEUP, APR_EINTR if the child is stopping, or the lock's
 * error.  A file lock cannot be waited for with a timeout: a long slice
 * blocks (until a signal), a short one only tries. */
static apr_status_t lock_accept(hyb_child *ch, mutex_child *mc,
                                apr_interval_time_t slice)
{
    int wait = slice >= apr_time_from_msec(HYB_WAIT_SLICE_MS);
    apr_status_t rv;

    if (hyb_child_stopping(ch)) {
        return APR_EINTR;
    }
    if (mc->wait == WAIT_TIMED) {
        return apr_proc_mutex_timedlock(accept_lock, slice);
    }
    if (wait) {
        hyb_child_mark_interruptible(ch, 1);
    }
    rv = file_lock(mc, 1, wait) == 0 ? APR_SUCCESS : errno;
    if (wait) {
        hyb_child_mark_interruptible(ch, 0);
    }
    if (rv == APR_EINTR || rv == EAGAIN || rv == EWOULDBLOCK
        || rv == EACCES) {
        return hyb_child_stopping(ch) ? APR_EINTR : APR_TIMEUP;
    }
    return rv;
}

static apr_status_t unlock_accept(mutex_child *mc)
{
    if (mc->wait == WAIT_TIMED) {
        return apr_proc_mutex_unlock(accept_lock);
    }
    return file_lock(mc, 0, 0) == 0 ? APR_SUCCESS : errno;
}

/* Logged once for the whole server: every child that finds the lock gone
 * falls back, but only the first one says so. */
static void lock_broken(hyb_child *ch, mutex_child *mc, apr_status_t rv)
{
    mc->broken = 1;
    if (ch->generation != ap_scoreboard_image->global->running_generation) {
        return;    /* old generation on its way out: the lock went first */
    }
    if (!hyb_stats_mutex_broken_first()) {
        return;
    }
    ap_log_error(APLOG_MARK, APLOG_ERR, rv, ap_server_conf, HYBLOGNO(00032)
                 "the accept mutex (%s) failed; this child now accepts "
                 "without it. A graceful restart (apachectl graceful) "
                 "creates a new mutex", apr_proc_mutex_name(accept_lock));
}

/* The holder of this child's accept turn, before it polls the listeners:
 * one child at a time.  A broken lock lets every child through. */
static apr_status_t mutex_gate_enter(hyb_child *ch, apr_interval_time_t slice)
{
    mutex_child *mc = ch->accept_state;
    apr_time_t t0 = apr_time_now();
    apr_status_t rv;

    if (mc->broken) {
        return hyb_child_stopping(ch) ? APR_EINTR : APR_SUCCESS;
    }
    rv = lock_accept(ch, mc, slice);
    if (rv == APR_TIMEUP || rv == APR_EINTR) {
        return rv;
    }
    if (rv != APR_SUCCESS) {
        if (hyb_child_stopping(ch)) {
            return APR_EINTR;
        }
        lock_broken(ch, mc, rv);
        return APR_SUCCESS;
    }
    mc->locked = 1;
    HYB_COUNT(ch, accept_waits, 1);
    HYB_COUNT(ch, accept_wait_us, (apr_uint64_t)(apr_time_now() - t0));
    if (posix_holder) {
        posix_holder->holder = getpid();
    }
    return APR_SUCCESS;
}

static void mutex_gate_leave(hyb_child *ch)
{
    mutex_child *mc = ch->accept_state;
    apr_status_t rv;

    if (!mc->locked) {
        return;
    }
    mc->locked = 0;
    if (posix_holder) {
        posix_holder->holder = 0;
    }
    rv = unlock_accept(mc);
    if (rv != APR_SUCCESS && !hyb_child_stopping(ch)) {
        lock_broken(ch, mc, rv);
    }
}

static const char *mutex_name(void)
{
    return accept_lock ? apr_proc_mutex_name(accept_lock) : NULL;
}

const hyb_strategy hyb_accept_mutex = {
    .name = "mutex",
    .id = HYBRID_ACCEPT_MUTEX,
    .open = mutex_open,
    .child_init = mutex_child_init,
    .gate_enter = mutex_gate_enter,
    .gate_leave = mutex_gate_leave,
    .mutex_name = mutex_name,
    .reaped = mutex_reaped,
};
