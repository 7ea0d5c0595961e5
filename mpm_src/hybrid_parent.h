/* hybrid_parent.h: the parent's main loop (the mpm hook). */
#ifndef HYBRID_PARENT_H
#define HYBRID_PARENT_H

#include "apr_pools.h"
#include "httpd.h"

/* check_config: the loop's state kept across generations. */
void hyb_parent_init(void);

/* ap_hook_mpm: runs one generation; OK to restart, DONE to exit. */
int hyb_parent_run(apr_pool_t *pconf, apr_pool_t *plog, server_rec *s);

#endif /* HYBRID_PARENT_H */
