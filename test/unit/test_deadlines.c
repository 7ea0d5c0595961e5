/* test_deadlines.c: the parked connections' deadlines
 * (mpm_src/hybrid_deadlines.c): the first is always the earliest, every
 * entry knows its place, removal from anywhere keeps the order, and the
 * heap grows past its first capacity. */
#include <stdio.h>
#include <stdlib.h>

#include "hybrid_deadlines.h"
#include "hybrid_deadlines.c"
#include "unit_check.h"

/* Every parent no later than its children, every index right. */
static int well_ordered(const hyb_deadlines *d)
{
    int i;

    for (i = 0; i < d->n; i++) {
        if (d->at[i]->index != i) {
            return 0;
        }
        if (i > 0 && d->at[(i - 1) / 2]->expiry > d->at[i]->expiry) {
            return 0;
        }
    }
    return 1;
}

static apr_time_t earliest(hyb_park *p, int n)
{
    apr_time_t min = 0;
    int i, seen = 0;

    for (i = 0; i < n; i++) {
        if (p[i].index >= 0 && (!seen || p[i].expiry < min)) {
            min = p[i].expiry;
            seen = 1;
        }
    }
    return min;
}

static void test_empty(void)
{
    hyb_deadlines d = { 0 };

    CHECK(hyb_deadlines_first(&d) == NULL);
}

static void test_single(void)
{
    hyb_deadlines d = { 0 };
    hyb_park p = { 0 };

    p.expiry = 42;
    CHECK(hyb_deadlines_add(&d, &p) == 0);
    CHECK(hyb_deadlines_first(&d) == &p && p.index == 0);
    hyb_deadlines_remove(&d, &p);
    CHECK(p.index == -1 && d.n == 0 && hyb_deadlines_first(&d) == NULL);
    free(d.at);
}

/* Random expiries (with ties), random removals, re-adds with a new
 * expiry (as a keep-alive connection that got a request is given one
 * more second), past the first capacity of 1024. */
static void test_random(void)
{
    enum { N = 5000 };
    static hyb_park p[N];
    hyb_deadlines d = { 0 };
    int i, round;

    srand(7);
    for (i = 0; i < N; i++) {
        p[i].index = -1;
        p[i].expiry = rand() % 1000;
        CHECK(hyb_deadlines_add(&d, &p[i]) == 0);
    }
    CHECK(d.n == N && d.cap >= N);
    CHECK(well_ordered(&d));
    CHECK(hyb_deadlines_first(&d)->expiry == earliest(p, N));
    for (round = 0; round < 20000; round++) {
        hyb_park *q = &p[rand() % N];

        if (q->index >= 0) {
            hyb_deadlines_remove(&d, q);
            CHECK(q->index == -1);
            if (rand() % 2) {
                q->expiry = rand() % 1000;
                CHECK(hyb_deadlines_add(&d, q) == 0);
            }
        }
        else {
            q->expiry = rand() % 1000;
            CHECK(hyb_deadlines_add(&d, q) == 0);
        }
        if (round % 1000 == 0) {
            CHECK(well_ordered(&d));
            CHECK(!d.n || hyb_deadlines_first(&d)->expiry
                          == earliest(p, N));
        }
    }
    /* taking the first one each time gives the expiries in order */
    {
        apr_time_t last = -1;
        hyb_park *first;

        while ((first = hyb_deadlines_first(&d))) {
            CHECK(first->expiry >= last);
            last = first->expiry;
            hyb_deadlines_remove(&d, first);
        }
        CHECK(d.n == 0);
    }
    free(d.at);
}

int main(void)
{
    test_empty();
    test_single();
    test_random();
    return unit_report("test_deadlines");
}
