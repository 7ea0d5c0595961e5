/* accept_preempt.c: AcceptStrategy preemptive.
 *
 * No lock: every child with an idle thread waits on the shared listeners
 * (plain level-triggered epoll) and the kernel wakes them all; losers see
 * EAGAIN (counted as wake-ups that lost the race) and wait again.  Cheapest per connection, but the
 * kernel tends to favour the process that ran last, so load concentrates
 * in few children (the first seed text); mod_child_status shows it.
 */

#include "hybrid_accept.h"
#include "hybrid_child.h"
#include "hybrid_drain.h"
#include "hybrid_poller.h"

static apr_status_t preempt_open(apr_pool_t *p, server_rec *s)
{
    hyb_listeners_prepare(ap_listeners);
    return APR_SUCCESS;
}

static apr_status_t preempt_child_init(hyb_child *ch)
{
    hyb_drain_hold(ch, ap_listeners);
    return hyb_poller_listen(ch, ap_listeners, 0);
}

const hyb_strategy hyb_accept_preemptive = {
    .name = "preemptive",
    .id = HYBRID_ACCEPT_PREEMPTIVE,
    .open = preempt_open,
    .child_init = preempt_child_init,
};
