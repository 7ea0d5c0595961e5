/* test_fair.c: the fairness rule (mod_src/cstatus_fair.c), driven
 * directly: each child measured against its fair share of every second
 * it was accepting, too-young children shown but not counted,
 * populations judged apart, real concentration still found and noise
 * not taken for it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cstatus_fair.h"
#include "cstatus_fair.c"
#include "unit_check.h"

#define NEAR(a, b, eps) ((a) - (b) <= (eps) && (b) - (a) <= (eps))

/* A whole second, so bucket k >= 1 is exactly second [NOW-k, NOW-k+1)
 * and bucket 0 (the current second) is empty. */
#define NOW apr_time_from_sec(1000000)
#define AGO(s) (NOW - (apr_time_t)((s) * APR_USEC_PER_SEC))

static cstatus_fair_child kids[16];
static cstatus_fair_child *ptrs[16];

/* Seconds of [NOW-k, NOW-k+1) inside [NOW-from_ago, NOW-to_ago]. */
static double inside(int k, double from_ago, double to_ago)
{
    double lo = k - 1 > to_ago ? k - 1 : to_ago;
    double hi = k < from_ago ? k : from_ago;

    return hi > lo ? hi - lo : 0.0;
}

/* Child i of population 0, accepting since `since_ago` seconds (0: long
 * before the window) with `threads`; no requests yet. */
static cstatus_fair_child *child(int i, double since_ago, int threads)
{
    cstatus_fair_child *c = &kids[i];

    memset(c, 0, sizeof(*c));
    c->since = since_ago > 0 ? AGO(since_ago) : 0;
    c->threads = threads;
    ptrs[i] = c;
    return c;
}

/* Add `rate` requests per second between `from_ago` and `to_ago`. */
static void serve(cstatus_fair_child *c, double rate, double from_ago,
                  double to_ago)
{
    int k;

    for (k = 1; k <= CSTATUS_FAIR_WINDOW_S; k++) {
        c->per_second[k] += rate * inside(k, from_ago, to_ago);
    }
}

static cstatus_fair_result judge(int n)
{
    cstatus_fair_result out;

    cstatus_fair_judge(ptrs, n, 0, NOW, &out);
    return out;
}

/* The case: three children at 30.8 / 32.8 / 34.0 % of the
 * requests and one spawned 1 s ago with 2.5 %.  Counting requests gave
 * J = 0.79, "concentrated"; the young one is shown, not counted. */
static void test_spawned_child_is_too_young(void)
{
    cstatus_fair_result f;

    serve(child(0, 0, 4), 30.8, 10, 0);
    serve(child(1, 0, 4), 32.8, 10, 0);
    serve(child(2, 0, 4), 34.0, 10, 0);
    serve(child(3, 1.0, 4), 25.0, 1, 0);
    f = judge(4);
    CHECK(f.judged == 3 && f.young == 1);
    CHECK(kids[3].status == CSTATUS_FAIR_YOUNG);
    CHECK(NEAR(kids[3].accepting_s, 1.0, 1e-9));
    CHECK(kids[3].has_rate && NEAR(kids[3].rate, 25.0 / 4, 1e-9));
    CHECK(kids[3].share == 0.0 && kids[3].expected == 0.0);
    CHECK(NEAR(f.min_accepting_s, 2.5, 1e-9));
    CHECK(f.has_jain && f.jain > 0.99);
    CHECK(strcmp(f.verdict, "spread") == 0);
    CHECK(NEAR(kids[0].share + kids[1].share + kids[2].share, 1.0, 1e-9));
    CHECK(NEAR(f.requests, 976.0, 1e-9));
}

/* 90 requests a second shared by 3, then by 4 once a fourth child came
 * 3 s ago: everyone did exactly its part (J = 1), although over their
 * lives the old children averaged 27.75 a second and the new one 22.5. */
static void test_spawned_child_judged_on_its_seconds(void)
{
    cstatus_fair_result f;
    int i;

    for (i = 0; i < 3; i++) {
        serve(child(i, 0, 4), 30.0, 10, 3);
        serve(&kids[i], 22.5, 3, 0);
    }
    serve(child(3, 3.0, 4), 22.5, 3, 0);
    f = judge(4);
    CHECK(f.judged == 4 && f.young == 0);
    CHECK(f.jain > 0.999999);
    CHECK(NEAR(kids[3].expected, 67.5, 1e-9));
    CHECK(NEAR(kids[0].expected, 277.5, 1e-9));
    CHECK(NEAR(kids[3].share, 0.25, 1e-9));
    CHECK(f.chi2 < 1e-9);
}

/* A child born in the middle of a second: in that second the two old
 * children served 50 a second alone, then 33.3 each with it.  Only whole
 * seconds are compared, so everyone did exactly its part; spreading that
 * second by the part of it each was there would blame the new child
 * (fair share 20 where 16.7 was its due). */
static void test_child_born_mid_second(void)
{
    cstatus_fair_result f;
    int i;

    for (i = 0; i < 2; i++) {
        serve(child(i, 0, 1), 50.0, 10, 2.5);
        serve(&kids[i], 100.0 / 3, 2.5, 0);
    }
    serve(child(2, 2.5, 1), 100.0 / 3, 2.5, 0);
    f = judge(3);
    CHECK(f.judged == 3);
    CHECK(NEAR(kids[2].accepting_s, 2.5, 1e-9));
    CHECK(NEAR(kids[2].compared, 200.0 / 3, 1e-6));
    CHECK(NEAR(kids[2].expected, 200.0 / 3, 1e-6));
    CHECK(NEAR(kids[2].requests, 250.0 / 3, 1e-6));
    CHECK(f.jain > 0.999999 && f.chi2 < 1e-9);
}

/* A child younger than its first whole second has nothing to compare,
 * even when every child is that young. */
static void test_no_whole_second_yet(void)
{
    cstatus_fair_result f;

    serve(child(0, 0.6, 1), 10.0, 0.6, 0);
    serve(child(1, 0.6, 1), 10.0, 0.6, 0);
    f = judge(2);
    CHECK(kids[0].status == CSTATUS_FAIR_YOUNG);
    CHECK(f.judged == 0 && f.young == 2);
    CHECK(strcmp(f.verdict, "idle") == 0);
}

/* prefork after a graceful restart: 4 children for 7 s, then 8 more for
 * the last 3 s, all doing their part.  Rates over their lives would be
 * 0.2 R against 0.083 R (J about 0.75); against fair shares J = 1. */
static void test_burst_of_children(void)
{
    cstatus_fair_result f;
    int i;

    for (i = 0; i < 4; i++) {
        serve(child(i, 0, 1), 120.0 / 4, 10, 3);
        serve(&kids[i], 120.0 / 12, 3, 0);
    }
    for (i = 4; i < 12; i++) {
        serve(child(i, 3.0, 1), 120.0 / 12, 3, 0);
    }
    f = judge(12);
    CHECK(f.judged == 12);
    CHECK(kids[0].rate > 2 * kids[11].rate);
    CHECK(f.jain > 0.999999);
    CHECK(strcmp(f.verdict, "spread") == 0);
}

/* A child that retired 4 s ago (MaxConnectionsPerChild) and did its part
 * while it accepted is not a laggard, and the others are not blamed for
 * taking over its part after. */
static void test_retired_child_judged_until_it_stopped(void)
{
    cstatus_fair_child *gone;
    cstatus_fair_result f;

    serve(child(0, 0, 1), 30.0, 10, 4);
    serve(&kids[0], 45.0, 4, 0);
    serve(child(1, 0, 1), 30.0, 10, 4);
    serve(&kids[1], 45.0, 4, 0);
    gone = child(2, 0, 1);
    serve(gone, 30.0, 10, 4);
    gone->stopped = 1;
    gone->until = AGO(4.0);
    f = judge(3);
    CHECK(f.judged == 3);
    CHECK(NEAR(gone->accepting_s, 6.0, 1e-9));
    CHECK(NEAR(gone->expected, 180.0, 1e-9));
    CHECK(f.jain > 0.999999);
}

/* Stopped at an unknown time (killed): cannot be placed, not judged. */
static void test_unknown_stop_not_judged(void)
{
    cstatus_fair_child *killed;
    cstatus_fair_result f;

    serve(child(0, 0, 1), 30.0, 10, 0);
    serve(child(1, 0, 1), 30.0, 10, 0);
    killed = child(2, 0, 1);
    serve(killed, 10.0, 10, 9);
    killed->stopped = 1;
    f = judge(3);
    CHECK(killed->status == CSTATUS_FAIR_STOP_UNKNOWN);
    CHECK(!killed->has_rate);
    CHECK(NEAR(killed->requests, 10.0, 1e-9));
    CHECK(f.judged == 2 && f.young == 0);
    CHECK(strcmp(f.verdict, "spread") == 0);
    CHECK(cstatus_fair_why_not(killed->status) != NULL);
    CHECK(cstatus_fair_why_not(CSTATUS_FAIR_JUDGED) == NULL);
}

/* Stopped 2 s into the window: accepting for 2 s of the 10, too brief.
 * Stopped before the window: outside it. */
static void test_brief_and_outside(void)
{
    cstatus_fair_child *brief, *before;
    cstatus_fair_result f;

    serve(child(0, 0, 1), 30.0, 10, 0);
    brief = child(1, 0, 1);
    serve(brief, 2.5, 10, 8);
    brief->stopped = 1;
    brief->until = AGO(8.0);
    before = child(2, 0, 1);
    before->stopped = 1;
    before->until = AGO(30.0);
    f = judge(3);
    CHECK(brief->status == CSTATUS_FAIR_BRIEF);
    CHECK(NEAR(brief->accepting_s, 2.0, 1e-9));
    CHECK(before->status == CSTATUS_FAIR_OUTSIDE);
    CHECK(before->accepting_s == 0.0 && !before->has_rate);
    CHECK(f.judged == 1 && f.young == 1);
}

/* Right after a start every child is young: all are compared with each
 * other, the bar being a quarter of the longest. */
static void test_all_young_compared_among_themselves(void)
{
    cstatus_fair_result f;

    serve(child(0, 2.0, 2), 20.0, 2, 0);
    serve(child(1, 2.0, 2), 19.0, 2, 0);
    serve(child(2, 0.4, 2), 20.0, 0.4, 0);      /* spawned just now */
    f = judge(3);
    CHECK(NEAR(f.min_accepting_s, 0.5, 1e-9));
    CHECK(f.judged == 2 && f.young == 1);
    CHECK(strcmp(f.verdict, "spread") == 0);
}

/* One child holding every connection still reads as concentrated. */
static void test_real_concentration(void)
{
    cstatus_fair_result f;

    serve(child(0, 0, 4), 150.0, 10, 0);
    child(1, 0, 4);
    child(2, 0, 4);
    child(3, 0, 4);
    f = judge(4);
    CHECK(f.judged == 4);
    CHECK(NEAR(f.jain, 0.25, 1e-9));
    CHECK(NEAR(f.max_share, 1.0, 1e-9) && f.min_share == 0.0);
    CHECK(f.chi2 > f.chi2_limit);
    CHECK(strcmp(f.verdict, "concentrated") == 0);
}

/* Concentration must beat chance: 3 requests all to one of four children
 * happen by chance 1 time in 16, 30 of 30 never; 12 against 5 between
 * two is noise. */
static void test_concentration_needs_evidence(void)
{
    cstatus_fair_result f;

    serve(child(0, 0, 1), 0.3, 10, 0);
    child(1, 0, 1);
    child(2, 0, 1);
    child(3, 0, 1);
    f = judge(4);
    CHECK(f.jain < CSTATUS_SPREAD_JAIN);
    CHECK(NEAR(f.chi2, 9.0, 1e-9));
    CHECK(f.chi2 < f.chi2_limit);
    CHECK(strcmp(f.verdict, "spread") == 0);

    serve(&kids[0], 2.7, 10, 0);
    f = judge(4);
    CHECK(NEAR(f.chi2, 90.0, 1e-9));
    CHECK(strcmp(f.verdict, "concentrated") == 0);

    serve(child(0, 0, 1), 1.2, 10, 0);
    serve(child(1, 0, 1), 0.5, 10, 0);
    f = judge(2);
    CHECK(f.jain < CSTATUS_SPREAD_JAIN);
    CHECK(strcmp(f.verdict, "spread") == 0);
}

/* The chi-square limit at 1 in 1000 against exact quantiles. */
static void test_chi2_limit(void)
{
    static const double exact[] = { 0, 10.828, 13.816, 16.266, 18.467,
                                    20.515, 22.458 };
    int df;

    for (df = 1; df <= 6; df++) {
        double got = cstatus_fair_chi2_limit(df);
        CHECK(got >= exact[df] * 0.99 && got <= exact[df] * 1.04);
    }
    CHECK(NEAR(cstatus_fair_chi2_limit(99), 148.23, 0.5));
    CHECK(cstatus_fair_chi2_limit(0) == 0.0);
}

/* A child with twice the threads has twice the fair share. */
static void test_fair_share_per_thread(void)
{
    cstatus_fair_result f;

    serve(child(0, 0, 1), 10.0, 10, 0);
    serve(child(1, 0, 2), 20.0, 10, 0);
    serve(child(2, 0, 0), 10.0, 10, 0);     /* unknown thread count: 1 */
    f = judge(3);
    CHECK(f.jain > 0.999999);
    CHECK(NEAR(kids[1].expected, 200.0, 1e-9));
    CHECK(NEAR(kids[1].rate, 10.0, 1e-9) && NEAR(kids[2].rate, 10.0, 1e-9));
}

/* Populations are judged apart; other populations are left alone. */
static void test_populations_apart(void)
{
    cstatus_fair_result cur, old;

    serve(child(0, 0, 1), 50.0, 10, 0);
    serve(child(1, 0, 1), 50.0, 10, 0);
    serve(child(2, 0, 1), 20.0, 10, 9);
    serve(child(3, 0, 1), 20.0, 10, 9);
    kids[2].population = kids[3].population = 1;
    kids[2].stopped = kids[3].stopped = 1;
    kids[2].until = kids[3].until = AGO(9.0);
    kids[2].status = kids[3].status = CSTATUS_FAIR_OTHER;
    cstatus_fair_judge(ptrs, 4, 0, NOW, &cur);
    CHECK(cur.judged == 2 && kids[2].status == CSTATUS_FAIR_OTHER);
    CHECK(NEAR(kids[0].expected, 500.0, 1e-9));
    cstatus_fair_judge(ptrs, 4, 1, NOW, &old);
    CHECK(old.judged == 2);
    CHECK(NEAR(kids[2].expected, 20.0, 1e-9));
    CHECK(strcmp(cur.verdict, "spread") == 0);
    CHECK(strcmp(old.verdict, "spread") == 0);
    CHECK(kids[0].status == CSTATUS_FAIR_JUDGED
          && NEAR(kids[0].share, 0.5, 1e-9));
}

/* Nothing served: idle, every child still in the count.  A child that
 * accepted only in seconds nobody served anything, while others served
 * later, has nothing to be judged by. */
static void test_idle_and_nothing_to_judge(void)
{
    cstatus_fair_child *early;
    cstatus_fair_result f;

    child(0, 0, 1);
    child(1, 0, 1);
    f = judge(2);
    CHECK(!f.has_jain && strcmp(f.verdict, "idle") == 0);
    CHECK(f.judged == 2);
    f = judge(0);
    CHECK(!f.has_jain && f.judged == 0 && strcmp(f.verdict, "idle") == 0);

    serve(child(0, 0, 1), 30.0, 5, 0);
    serve(child(1, 0, 1), 30.0, 5, 0);
    early = child(2, 0, 1);
    early->stopped = 1;
    early->until = AGO(6.0);
    f = judge(3);
    CHECK(early->status == CSTATUS_FAIR_OUTSIDE);
    CHECK(f.judged == 2 && f.jain > 0.999999);
}

int main(void)
{
    test_spawned_child_is_too_young();
    test_spawned_child_judged_on_its_seconds();
    test_burst_of_children();
    test_child_born_mid_second();
    test_no_whole_second_yet();
    test_retired_child_judged_until_it_stopped();
    test_unknown_stop_not_judged();
    test_brief_and_outside();
    test_all_young_compared_among_themselves();
    test_real_concentration();
    test_concentration_needs_evidence();
    test_chi2_limit();
    test_fair_share_per_thread();
    test_populations_apart();
    test_idle_and_nothing_to_judge();
    return unit_report("test_fair");
}
