/* hybrid_poller.h: a child's one wait.
 *
 * Every idle thread of a child waits here, in one epoll set holding the
 * child's listeners (unless the strategy gates them behind a lock), its
 * parked connections and its wake-up pipe, and comes back with one thing
 * to do: a new connection, a parked one that is ready (or whose wait ran
 * out), or leaving.  No accept turn, no queue: the kernel wakes one
 * waiting thread per event.  Parked connections have their timeouts here
 * too, and the child's counts of them (shown in the scoreboard).
 */
#ifndef HYBRID_POLLER_H
#define HYBRID_POLLER_H

#include "apr_network_io.h"
#include "apr_pools.h"
#include "ap_listen.h"

#include "hybrid_conn.h"
#include "hybrid_types.h"

/* How a strategy's listeners join the wait (hyb_poller_listen flags). */
#define HYB_LISTEN_EXCLUSIVE 1   /* EPOLLEXCLUSIVE: the kernel wakes one
                                    waiting child per connection */
#define HYB_LISTEN_GATED     2   /* not in the epoll set: polled only by
                                    the thread holding the strategy's gate
                                    (the accept mutex) */
#define HYB_LISTEN_BLOCKING  4   /* not in the epoll set: the child's one
                                    thread blocks in accept() on its one
                                    listener (hyb_accept_blocks) */

typedef enum {
    HYB_EV_NONE,      /* nothing for this thread this time; wait again */
    HYB_EV_NEW,       /* a new connection: csd, in its own pool */
    HYB_EV_CONN,      /* a parked connection to resume */
    HYB_EV_EXIT,      /* the child is done: leave */
    HYB_EV_SICK       /* a resource shortage that lasted: give up */
} hyb_event_kind;

typedef struct hyb_event {
    hyb_event_kind kind;
    apr_socket_t *csd;
    apr_pool_t *pool;
    hyb_conn *conn;
} hyb_event;

/* Child main thread, after fork, before the strategy's child_init. */
apr_status_t hyb_poller_create(hyb_child *ch);

/* Strategy child_init: the listeners this child accepts from. */
apr_status_t hyb_poller_listen(hyb_child *ch, ap_listen_rec *lrs, int flags);

/* Worker: waits for the next thing to do. */
void hyb_poller_next(hyb_thread *t, hyb_event *ev);

/* Connection path: park a connection (the calling thread must not touch
 * it after success); close one; count one that is gone (served without
 * parking); give a cleared pool back. */
apr_status_t hyb_poller_park(hyb_conn *conn, hyb_park_kind kind,
                             int want_write, apr_interval_time_t timeout);
void hyb_poller_close(hyb_thread *t, hyb_conn *conn);
void hyb_poller_conn_gone(hyb_child *ch);

/* The child's clock looks by `at` at the latest (for the lingering
 * closes of hybrid_linger.c, which it looks at when it fires). */
void hyb_poller_clock_by(apr_time_t at);

/* Count a connection taken outside the wait: while draining a closing
 * listener, or by the blocking accept of a ThreadsPerChild 1 child.  It
 * is counted after the accept, and so may take the child past
 * AsyncConnectionLimit: a drained connection must be served, not reset,
 * and a blocking child (AsyncConnections off) holds one at most. */
void hyb_poller_count_accepted(void);

/* Does the socket turn readable (data, the client's FIN, an error)
 * within ms, 0 for a look at what is there now? */
int hyb_poller_readable_within(int fd, int ms);

/* Is another thread of this child waiting on the epoll set now (so that
 * a parked connection turning readable would be served)? */
int hyb_poller_watched(void);

/* Do idle threads beyond a few wait in the reserve (a threaded child on
 * ungated listeners, not stopping, with quick requests)?  Then a thread
 * in a lingering close parks the connection at once rather than wait for
 * the client's FIN. */
int hyb_poller_reserved(void);

/* A stopping child: every idle thread watches the epoll set from now on
 * (called by the main thread; not async-signal-safe). */
void hyb_poller_open_reserve(void);

/* A response is done (served), or the next request on the same
 * connection came after a wait (resumed): the child's usual service time,
 * which decides whether the reserve is worth it, counts the responses. */
void hyb_poller_served(hyb_thread *t);
void hyb_poller_resumed(hyb_thread *t);

/* The main thread's look at the reserve (hybrid_poller.c); returns how
 * long it may wait, in ms, before the next look. */
int hyb_poller_sentry(void);

/* Does this kernel have EPOLLEXCLUSIVE?  (Any process, any time.) */
int hyb_exclusive_supported(void);

/* Drain, before letting go of a listener: out of the epoll set first
 * (epoll watches the socket, which other processes keep open).
 * Async-signal-safe. */
void hyb_poller_forget_listener(int fd);

#endif /* HYBRID_POLLER_H */
