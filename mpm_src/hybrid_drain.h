/* hybrid_drain.h: a listener that closes is drained first, not reset.
 * Both ends: the parent marks a listener closing, the children that hold
 * it serve what is queued and only then let go.  (hybrid_drain.c says
 * why and how.) */
#ifndef HYBRID_DRAIN_H
#define HYBRID_DRAIN_H

#include <netinet/tcp.h>

#include "apr_network_io.h"
#include "ap_listen.h"

#include "hybrid_types.h"

/* Parent: the listener takes no new connection from now on. */
void hyb_drain_mark_closing(apr_socket_t *sd);
void hyb_drain_mark_all(ap_listen_rec *lrs);

/* Parent, pre_config (before ap_listen_pre_config): remember this
 * generation's listeners; open_logs (before ap_setup_listeners): mark the
 * ones the new config dropped, so the old children drain them. */
void hyb_drain_note_old_listeners(apr_pool_t *p);
void hyb_drain_mark_removed_listeners(void);

/* Any process: TCP_INFO of a listening socket (tcpi_unacked is the length
 * of its accept queue, tcpi_sacked its listen(2) backlog; all zero on
 * error), and the queue length alone. */
struct tcp_info hyb_listener_info(int fd);
unsigned hyb_listener_queued(int fd);

/* Child main thread, before the strategy's child_init. */
void hyb_drain_child_init(hyb_child *ch);

/* Child, from a strategy's child_init: the listeners this child serves
 * (let go of when it stops; called once), and a socket it does not serve
 * (let go of now; the fd number stays taken). */
void hyb_drain_hold(hyb_child *ch, ap_listen_rec *lrs);
void hyb_drain_drop(apr_socket_t *sd);

/* Child, when it stops: lets go of every held listener, or (all == 0)
 * of every one that is not closing with connections still queued.
 * Async-signal-safe. */
void hyb_drain_release(int all);

/* Has this child let go of every listener it held? */
int hyb_drain_released(void);

/* Worker thread, once the child stops gracefully: serves what is still
 * queued on the closing listeners this child holds, then lets go of
 * them all. */
void hyb_drain_serve_queued(hyb_thread *t);

#endif /* HYBRID_DRAIN_H */
