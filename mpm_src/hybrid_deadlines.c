/* hybrid_deadlines.c: parked connections by expiry (hybrid_deadlines.h).
 *
 * Adding and removing are O(log n) with n parked connections, which is
 * what lets a child hold tens of thousands of idle keep-alive
 * connections with one timer: a sorted list would cost O(n) per park,
 * and a scan on every tick O(n) per tick. */

#include <stdlib.h>

#include "hybrid_deadlines.h"

#define FIRST_CAPACITY 1024

static void place(hyb_deadlines *d, int i, hyb_park *p)
{
    d->at[i] = p;
    p->index = i;
}

static int parent_of(int i)
{
    return (i - 1) / 2;
}

static void move_up(hyb_deadlines *d, int i)
{
    hyb_park *p = d->at[i];

    while (i > 0 && d->at[parent_of(i)]->expiry > p->expiry) {
        place(d, i, d->at[parent_of(i)]);
        i = parent_of(i);
    }
    place(d, i, p);
}

static void move_down(hyb_deadlines *d, int i)
{
    hyb_park *p = d->at[i];

    for (;;) {
        int child = 2 * i + 1;

        if (child >= d->n) {
            break;
        }
        if (child + 1 < d->n
            && d->at[child + 1]->expiry < d->at[child]->expiry) {
            child++;
        }
        if (d->at[child]->expiry >= p->expiry) {
            break;
        }
        place(d, i, d->at[child]);
        i = child;
    }
    place(d, i, p);
}

int hyb_deadlines_add(hyb_deadlines *d, hyb_park *p)
{
    if (d->n == d->cap) {
        int cap = d->cap ? 2 * d->cap : FIRST_CAPACITY;
        hyb_park **grown = realloc(d->at, sizeof(*grown) * (size_t)cap);

        if (!grown) {
            return -1;
        }
        d->at = grown;
        d->cap = cap;
    }
    place(d, d->n++, p);
    move_up(d, p->index);
    return 0;
}

void hyb_deadlines_remove(hyb_deadlines *d, hyb_park *p)
{
    int i = p->index;
    hyb_park *last = d->at[--d->n];

    p->index = -1;
    if (i == d->n) {
        return;               /* it was the last one */
    }
    /* the last entry fills the hole, then goes whichever way it must */
    place(d, i, last);
    move_down(d, i);
    move_up(d, last->index);
}

hyb_park *hyb_deadlines_first(const hyb_deadlines *d)
{
    return d->n ? d->at[0] : NULL;
}
