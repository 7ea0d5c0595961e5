/* hybrid_linger.c: lingering closes off the epoll set (hybrid_linger.h).
 *
 * Owns: the child's list of connections that have sent their FIN and
 * wait for the client's, and the reads that drop what clients still send.
 *
 * Why not in the epoll set, as the other waits: there one close woke a
 * thread twice.  The client's ACK of the FIN changes the socket's state,
 * and the kernel wakes a waiter for that without saying what changed: it
 * looks, finds nothing to read, and sleeps again; the client's own FIN
 * wakes one more.  Under wrk -H 'Connection: close' on 8 x 25 threads
 * that was 0.80 and 0.72 wake-ups per connection, beside an epoll_ctl to
 * add each.  Here one poll() looks at all the waiting connections, done
 * by a thread that is on its way to wait anyway, at most every
 * LOOK_EVERY: the client has its whole response already, so the close is
 * the server's own business (its socket a little longer).  When no thread
 * comes by (an idle child), the child's clock looks LOOK_LATE after the
 * last look.  A poll() costs for every entry, and so the list holds only
 * clients about to close: one that has not within MOVE_AFTER, or that
 * sends more, waits in the epoll set from then on, where waiting costs
 * nothing; when the list is full, new ones go there at once.
 *
 * Threads: the list is under its own lock, held for the poll() and the
 * bookkeeping; the reads and closes of finished connections are done
 * outside it.  It never calls into the poller while holding it (the
 * poller may read hyb_linger_due under its own lock).
 * Called from: the connection path (hybrid_conn.c) and the poller.
 */

#include <poll.h>
#include <pthread.h>
#include <stdlib.h>

#include "apr_network_io.h"

#include "hybrid_conn.h"
#include "hybrid_linger.h"
#include "hybrid_poller.h"

#define LOOK_EVERY apr_time_from_msec(1)
#define LOOK_LATE  apr_time_from_msec(10)
#define MOVE_AFTER apr_time_from_msec(20)
#define LIST_MAX   1024
#define DONE_BATCH 64               /* taken out per look, the rest next */
#define DRAIN_BUF  (16 * 1024)
#define FIRST_CAP  16

static struct {
    pthread_mutex_t lock;
    hyb_conn **at;
    struct pollfd *pfds;       /* the poll() of a look, one per entry */
    int n, cap;
    apr_time_t next_look;      /* a passing thread looks no sooner */
    apr_time_t due;            /* the clock looks by then (0: none wait) */
} L = { .lock = PTHREAD_MUTEX_INITIALIZER };

int hyb_linger_drain(hyb_conn *conn)
{
    char buf[DRAIN_BUF];
    apr_size_t n;
    apr_status_t rv;

    do {
        n = sizeof(buf);
        rv = apr_socket_recv(conn->sock, buf, &n);
    } while (rv == APR_SUCCESS && n > 0);
    return !APR_STATUS_IS_EAGAIN(rv);
}

/* Under L.lock.  n is read without it, too (a thread on its way to wait
 * sees at a glance whether anything waits). */
static void set_count(int n)
{
    __atomic_store_n(&L.n, n, __ATOMIC_RELAXED);
}

/* Under L.lock. */
static int grow(void)
{
    int cap = L.cap ? L.cap * 2 : FIRST_CAP;
    hyb_conn **at = realloc(L.at, sizeof(*at) * (size_t)cap);
    struct pollfd *pfds;

    if (!at) {
        return -1;
    }
    L.at = at;
    pfds = realloc(L.pfds, sizeof(*pfds) * (size_t)cap);
    if (!pfds) {
        return -1;             /* at is larger, harmlessly */
    }
    L.pfds = pfds;
    L.cap = cap;
    return 0;
}

int hyb_linger_add(hyb_conn *conn, apr_time_t now, apr_time_t until)
{
    apr_time_t due = 0;

    pthread_mutex_lock(&L.lock);
    if (L.n >= LIST_MAX || (L.n == L.cap && grow() < 0)) {
        pthread_mutex_unlock(&L.lock);
        return -1;
    }
    conn->park.since = now;
    conn->park.expiry = until;
    L.at[L.n] = conn;
    set_count(L.n + 1);
    if (L.n == 1) {
        due = now + LOOK_LATE;
        __atomic_store_n(&L.due, due, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&L.lock);
    if (due) {
        hyb_poller_clock_by(due);   /* the clock may be set for later */
    }
    return 0;
}

/* Under L.lock: takes out (into done) those the poll says are ready
 * (readable[] set), those whose wait ran out and those that have been
 * here MOVE_AFTER. */
static int take_out(apr_time_t now, hyb_conn **done, int *readable)
{
    int i, ndone = 0;

    for (i = 0; i < L.n; i++) {
        L.pfds[i].fd = L.at[i]->fd;
        L.pfds[i].events = POLLIN;
        L.pfds[i].revents = 0;
    }
    if (poll(L.pfds, (nfds_t)L.n, 0) < 0) {
        for (i = 0; i < L.n; i++) {
            L.pfds[i].revents = 0;   /* only the expired ones, then */
        }
    }
    /* backwards, so that the last entry moved into a hole was seen */
    for (i = L.n - 1; i >= 0 && ndone < DONE_BATCH; i--) {
        hyb_park *park = &L.at[i]->park;

        if (L.pfds[i].revents || now >= park->expiry
            || now - park->since >= MOVE_AFTER) {
            readable[ndone] = L.pfds[i].revents != 0;
            done[ndone++] = L.at[i];
            L.at[i] = L.at[L.n - 1];
            set_count(L.n - 1);
        }
    }
    return ndone;
}

/* A connection the look took out: closed if its client has closed or its
 * wait has run out; else (it sent more, or is slow to close) it waits on
 * in the epoll set, HYB_LINGER_AFTER_READ from a read. */
static void finish(hyb_thread *t, hyb_conn *conn, int readable,
                   apr_time_t now)
{
    apr_time_t until = readable ? now + HYB_LINGER_AFTER_READ
                                : conn->park.expiry;

    if (hyb_linger_drain(conn) || now >= conn->linger_until
        || (!readable && now >= conn->park.expiry)) {
        hyb_conn_lingered(t, conn);
        return;
    }
    if (until > conn->linger_until) {
        until = conn->linger_until;
    }
    if (hyb_poller_park(conn, HYB_PARK_LINGER, 0, until - now)
        != APR_SUCCESS) {
        hyb_conn_lingered(t, conn);
    }
}

void hyb_linger_look(hyb_thread *t, apr_time_t now, int forced)
{
    hyb_conn *done[DONE_BATCH];
    int readable[DONE_BATCH];
    int ndone = 0, i;

    if (!__atomic_load_n(&L.n, __ATOMIC_RELAXED)
        || (!forced && now < __atomic_load_n(&L.next_look,
                                             __ATOMIC_RELAXED))) {
        return;
    }
    if (forced) {
        pthread_mutex_lock(&L.lock);
    }
    else if (pthread_mutex_trylock(&L.lock) != 0) {
        return;                /* another thread adds or looks */
    }
    if (L.n && (forced || now >= L.next_look)) {
        __atomic_store_n(&L.next_look, now + LOOK_EVERY, __ATOMIC_RELAXED);
        ndone = take_out(now, done, readable);
        __atomic_store_n(&L.due, L.n ? now + LOOK_LATE : 0,
                         __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&L.lock);
    for (i = 0; i < ndone; i++) {
        finish(t, done[i], readable[i], now);
    }
}

apr_time_t hyb_linger_due(void)
{
    return __atomic_load_n(&L.n, __ATOMIC_RELAXED)
           ? __atomic_load_n(&L.due, __ATOMIC_RELAXED) : 0;
}

int hyb_linger_waiting(void)
{
    return __atomic_load_n(&L.n, __ATOMIC_RELAXED);
}
