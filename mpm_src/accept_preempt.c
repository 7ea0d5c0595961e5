/* accept_preempt.c: AcceptStrategy preemptive.
 *
 * No lock: every child with an idle thread waits on the shared listeners
 * and the kernel picks the winner; losers see EAGAIN and wait again.
 * Cheapest per connection, but the kernel tends to favour the process
 * that ran last, so load concentrates in few children (the first seed
 * text); mod_child_status shows it.
 */

static apr_status_t preempt_open(apr_pool_t *p, server_rec *s)
{
    hyb_listeners_nonblocking(ap_listeners);
    return APR_SUCCESS;
}

static apr_status_t preempt_child_init(hyb_child *ch)
{
    hyb_pollset *ps = apr_pcalloc(ch->pool, sizeof(*ps));

    ch->accept_state = ps;
    return hyb_pollset_build(ch, ap_listeners, ps);
}

static hyb_accept_rc preempt_accept_one(hyb_child *ch, apr_socket_t **csd,
                                        apr_pool_t *ptrans)
{
    return hyb_wait_and_accept(ch, ch->accept_state, csd, ptrans);
}

static const hyb_strategy accept_preemptive = {
    "preemptive", HYBRID_ACCEPT_PREEMPTIVE,
    NULL,
    preempt_open,
    preempt_child_init,
    preempt_accept_one,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
};
