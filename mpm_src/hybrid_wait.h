/* hybrid_wait.h: a child waiting for a new connection on its listeners.
 *
 * Two ways to wait, for the strategies to choose from:
 *   HYB_WAIT_POLL       poll() on the listeners and the child's wake pipe;
 *                       every process waiting on a listener is woken by a
 *                       connection (the strategy decides who waits: all
 *                       idle children, or the holder of a lock).
 *   HYB_WAIT_EXCLUSIVE  the child's own epoll set, listeners registered
 *                       with EPOLLEXCLUSIVE: the kernel wakes one waiting
 *                       child per connection.
 * Both end when the child is woken to stop, and check on the parent every
 * HYB_WAIT_SLICE_MS.
 */
#ifndef HYBRID_WAIT_H
#define HYBRID_WAIT_H

#include "apr_network_io.h"
#include "ap_listen.h"

#include "hybrid_accept.h"
#include "hybrid_types.h"

typedef enum {
    HYB_WAIT_POLL,
    HYB_WAIT_EXCLUSIVE
} hyb_wait_kind;

typedef struct hyb_wait hyb_wait;

/* Does this kernel have EPOLLEXCLUSIVE?  (Any process, any time.) */
int hyb_wait_exclusive_supported(void);

/* Child main thread, from a strategy's child_init: a wait on lrs (a list
 * linked by ->next), allocated from the child's pool. */
apr_status_t hyb_wait_open(hyb_child *ch, ap_listen_rec *lrs,
                           hyb_wait_kind kind, hyb_wait **out);

/* The worker holding the accept turn: waits until a listener is readable
 * (or the child stops), then accepts from it. */
hyb_accept_rc hyb_wait_accept(hyb_child *ch, hyb_wait *w,
                              apr_socket_t **csd, apr_pool_t *ptrans);

/* Child main thread, after the workers are done. */
void hyb_wait_close(hyb_wait *w);

#endif /* HYBRID_WAIT_H */
