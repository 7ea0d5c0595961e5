/* hybrid_pools.h: transaction pools.  Each connection has its own, so it
 * can move between a child's threads while it is parked. */
#ifndef HYBRID_POOLS_H
#define HYBRID_POOLS_H

#include "apr_pools.h"

#include "hybrid_types.h"

/* A new pool, from the thread's own allocator (capped by MaxMemFree). */
apr_pool_t *hyb_pool_new(hyb_thread *t);

/* A pool for a new connection: the thread's spare one, a recycled one,
 * or a new one. */
apr_pool_t *hyb_pool_take(hyb_thread *t);

/* A connection is done with its pool: cleared, it becomes the thread's
 * spare, or is kept for the child's next connections, or destroyed. */
void hyb_pool_recycle(hyb_thread *t, apr_pool_t *pool);

#endif /* HYBRID_POOLS_H */
