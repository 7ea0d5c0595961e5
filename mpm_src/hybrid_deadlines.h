/* hybrid_deadlines.h: a child's parked connections in the order their
 * waits run out, so that the one clock of the child is set for the first
 * and a tick finds every expired one without a scan.  A binary min-heap
 * on hyb_park.expiry; hyb_park.index is each entry's place in it, -1
 * when it is not there.  No lock of its own: the poller calls it under
 * its lock.  Pure (unit-tested in test/unit/test_deadlines.c). */
#ifndef HYBRID_DEADLINES_H
#define HYBRID_DEADLINES_H

#include "hybrid_conn.h"

typedef struct hyb_deadlines {
    hyb_park **at;            /* at[0] runs out first */
    int n, cap;
} hyb_deadlines;

/* Adds p, whose expiry is set; -1 (and p not added) if out of memory. */
int hyb_deadlines_add(hyb_deadlines *d, hyb_park *p);

/* Takes p out; p must be in d. */
void hyb_deadlines_remove(hyb_deadlines *d, hyb_park *p);

/* The entry that runs out first, NULL if there is none. */
hyb_park *hyb_deadlines_first(const hyb_deadlines *d);

#endif /* HYBRID_DEADLINES_H */
