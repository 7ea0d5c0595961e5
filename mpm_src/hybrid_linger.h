/* hybrid_linger.h: lingering closes that wait for their client off the
 * epoll set (hybrid_linger.c).  After the FIN, a connection waits until
 * the client closes too, reading and dropping what it still sends, for
 * HYB_LINGER_AFTER_READ after the last read and until its linger_until at
 * most, as ap_lingering_close does.  Used by the connection path
 * (AsyncConnections on); the child's threads and its clock look at the
 * waiting ones (hybrid_poller.c). */
#ifndef HYBRID_LINGER_H
#define HYBRID_LINGER_H

#include "apr_time.h"

#include "hybrid_conn.h"
#include "hybrid_types.h"

#define HYB_LINGER_AFTER_READ apr_time_from_sec(2)    /* SECONDS_TO_LINGER */

/* Reads and drops what the client sent; 1 when the connection is done
 * (the client closed, or an error), 0 if it must wait for more. */
int hyb_linger_drain(hyb_conn *conn);

/* A connection that has just sent its FIN (suspended) waits here until
 * `until` unless its client closes first; it belongs to the list from now
 * on (a slow one moves on to the poller's epoll set).  -1, and the
 * connection still the caller's, if the list is full. */
int hyb_linger_add(hyb_conn *conn, apr_time_t now, apr_time_t until);

/* Closes the connections whose client has closed or whose wait has run
 * out.  A thread on its way to wait calls it (it looks at most once a
 * millisecond, and not while another thread does); the child's clock
 * calls it with `forced`. */
void hyb_linger_look(hyb_thread *t, apr_time_t now, int forced);

/* When the child's clock must look next (nobody else may), 0 if no
 * connection waits.  Lock-free; called under the poller's lock. */
apr_time_t hyb_linger_due(void);

/* How many wait (for the scoreboard and a stopping child). */
int hyb_linger_waiting(void);

#endif /* HYBRID_LINGER_H */
