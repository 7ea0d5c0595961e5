/* test_spare.c: the spare-thread policy (mpm_src/hybrid_spare.c), driven
 * directly: exponential spawning, the MaxRequestWorkers cap, retiring,
 * and the hold-off after a restart. */
#include <stdio.h>
#include <stdlib.h>

#include "hybrid_spare.h"
#include "hybrid_spare.c"
#include "unit_check.h"

static hyb_spare_in base(void)
{
    hyb_spare_in in = { 0 };

    in.daemons_limit = 100;
    in.free_slots = 100;
    in.spare_min = 50;
    in.spare_max = 100;
    in.spawn_rate = 1;
    return in;
}

/* Ticks of a server whose idle threads never appear (all busy): the rate
 * doubles 1, 2, 4, 8, 16, 32 and stays at 32. */
static void test_exponential(void)
{
    hyb_spare_in in = base();
    int expect[] = { 1, 2, 4, 8, 16, 32, 32 }, i;

    for (i = 0; i < 7; i++) {
        hyb_spare_out out = hyb_spare_decide(&in);

        CHECK(out.spawn == expect[i]);
        CHECK(!out.retire);
        in.spawn_rate = out.next_rate;
    }
}

static void test_cap_at_max_workers(void)
{
    hyb_spare_in in = base();
    hyb_spare_out out;

    in.active_children = 98;
    in.spawn_rate = 8;
    out = hyb_spare_decide(&in);
    CHECK(out.spawn == 2);                  /* only 2 more allowed */

    in.active_children = 100;
    out = hyb_spare_decide(&in);
    CHECK(out.spawn == 0);
    CHECK(out.at_max_workers);
    CHECK(out.next_rate == 1);
}

static void test_no_free_slot(void)
{
    hyb_spare_in in = base();
    hyb_spare_out out;

    in.active_children = 10;
    in.free_slots = 0;
    out = hyb_spare_decide(&in);
    CHECK(out.spawn == 0);
    CHECK(out.no_free_slot);
    CHECK(!out.at_max_workers);

    in.free_slots = 3;
    in.spawn_rate = 16;
    out = hyb_spare_decide(&in);
    CHECK(out.spawn == 3);
}

static void test_retire_one_above_max(void)
{
    hyb_spare_in in = base();
    hyb_spare_out out;

    in.idle_threads = 101;
    in.active_children = 5;
    in.spawn_rate = 16;
    out = hyb_spare_decide(&in);
    CHECK(out.retire == 1);
    CHECK(out.spawn == 0);
    CHECK(out.next_rate == 1);

    in.active_children = 1;                 /* never the last child */
    out = hyb_spare_decide(&in);
    CHECK(out.retire == 0);
}

static void test_between_limits_resets_rate(void)
{
    hyb_spare_in in = base();
    hyb_spare_out out;

    in.idle_threads = 60;
    in.active_children = 3;
    in.spawn_rate = 32;
    out = hyb_spare_decide(&in);
    CHECK(out.spawn == 0 && out.retire == 0);
    CHECK(out.next_rate == 1);
}

static void test_hold_off_keeps_rate(void)
{
    hyb_spare_in in = base();
    hyb_spare_out out;

    in.hold_off = 5;
    in.spawn_rate = 1;
    out = hyb_spare_decide(&in);
    CHECK(out.spawn == 1);
    CHECK(out.next_rate == 1);              /* no doubling yet */
}

int main(void)
{
    test_exponential();
    test_cap_at_max_workers();
    test_no_free_slot();
    test_retire_one_above_max();
    test_between_limits_resets_rate();
    test_hold_off_keeps_rate();
    return unit_report("test_spare");
}
