/* accept_exclusive.c: AcceptStrategy exclusive.
 *
 * Shared listeners; each child waits in its own epoll set where the
 * listeners are registered with EPOLLEXCLUSIVE, so the kernel wakes one
 * waiting child per connection: no lock and no thundering herd.  The
 * wait itself, with the periodic re-arm that keeps the kernel's wake-up
 * order from favouring one child, is the child's poller's
 * (hybrid_poller.c), which reuseport uses too for groups of several
 * children.  Where a child has nothing else to wait for (ThreadsPerChild
 * 1, AsyncConnections Off, one Listen) it blocks in accept() instead,
 * which wakes one waiter too (hyb_accept_blocks).
 */

#include "hybrid_accept.h"
#include "hybrid_child.h"
#include "hybrid_drain.h"
#include "hybrid_poller.h"

static const char *exclusive_probe(apr_pool_t *p)
{
    return hyb_exclusive_supported() ? NULL
           : "the kernel does not support EPOLLEXCLUSIVE (Linux 4.5 or "
             "later is needed)";
}

static apr_status_t exclusive_open(apr_pool_t *p, server_rec *s)
{
    hyb_listeners_prepare(ap_listeners);
    return APR_SUCCESS;
}

static apr_status_t exclusive_child_init(hyb_child *ch)
{
    hyb_drain_hold(ch, ap_listeners);
    return hyb_poller_listen(ch, ap_listeners, hyb_accept_blocks()
                                               ? HYB_LISTEN_BLOCKING
                                               : HYB_LISTEN_EXCLUSIVE);
}

const hyb_strategy hyb_accept_exclusive = {
    .name = "exclusive",
    .id = HYBRID_ACCEPT_EXCLUSIVE,
    .probe = exclusive_probe,
    .open = exclusive_open,
    .child_init = exclusive_child_init,
};
