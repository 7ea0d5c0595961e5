/* accept_preempt.c: AcceptStrategy preemptive.
 *
 * No lock: every child with an idle thread polls the shared listeners and
 * the kernel picks the winner; losers see EAGAIN (counted as wake-ups
 * that lost the race) and wait again.  Cheapest per connection, but the
 * kernel tends to favour the process that ran last, so load concentrates
 * in few children (the first seed text); mod_child_status shows it.
 */

#include "hybrid_accept.h"
#include "hybrid_child.h"
#include "hybrid_drain.h"
#include "hybrid_wait.h"

static apr_status_t preempt_open(apr_pool_t *p, server_rec *s)
{
    hyb_listeners_nonblocking(ap_listeners);
    return APR_SUCCESS;
}

static apr_status_t preempt_child_init(hyb_child *ch)
{
    hyb_wait *w;
    apr_status_t rv;

    hyb_drain_hold(ch, ap_listeners);
    rv = hyb_wait_open(ch, ap_listeners, HYB_WAIT_POLL, &w);
    ch->accept_state = w;
    return rv;
}

static hyb_accept_rc preempt_accept_one(hyb_child *ch, apr_socket_t **csd,
                                        apr_pool_t *ptrans)
{
    return hyb_wait_accept(ch, ch->accept_state, csd, ptrans);
}

const hyb_strategy hyb_accept_preemptive = {
    .name = "preemptive",
    .id = HYBRID_ACCEPT_PREEMPTIVE,
    .open = preempt_open,
    .child_init = preempt_child_init,
    .accept_one = preempt_accept_one,
};
