/* accept_exclusive.c: AcceptStrategy exclusive.
 *
 * Shared listeners; each child waits in its own epoll set where the
 * listeners are registered with EPOLLEXCLUSIVE, so the kernel wakes one
 * waiting child per connection: no lock and no thundering herd.
 *
 * The waiting itself (and the periodic re-arm that keeps the kernel's
 * wake-up order from favouring one child) is in hybrid_accept.c, shared
 * with the reuseport strategy, whose groups may hold several children.
 */

static const char *exclusive_probe(apr_pool_t *p)
{
    return hyb_excl_supported() ? NULL
           : "the kernel does not support EPOLLEXCLUSIVE (Linux 4.5 or "
             "later is needed)";
}

static apr_status_t exclusive_open(apr_pool_t *p, server_rec *s)
{
    hyb_listeners_nonblocking(ap_listeners);
    return APR_SUCCESS;
}

static apr_status_t exclusive_child_init(hyb_child *ch)
{
    hyb_excl *ex;
    apr_status_t rv = hyb_excl_init(ch, ap_listeners, &ex);

    ch->accept_state = ex;
    return rv;
}

static hyb_accept_rc exclusive_accept_one(hyb_child *ch, apr_socket_t **csd,
                                          apr_pool_t *ptrans)
{
    return hyb_excl_wait_and_accept(ch, ch->accept_state, csd, ptrans);
}

static void exclusive_child_exit(hyb_child *ch)
{
    hyb_excl_close(ch->accept_state);
}

static const hyb_strategy accept_exclusive = {
    "exclusive", HYBRID_ACCEPT_EXCLUSIVE,
    exclusive_probe,
    exclusive_open,
    exclusive_child_init,
    exclusive_accept_one,
    exclusive_child_exit,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
};
