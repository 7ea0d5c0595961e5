/* cstatus_fair.c: the fairness rule (cstatus_fair.h says what and why).
 *
 * Owns: each child's accepting time per second of the window, who is
 * judged, the fair shares, Jain's index, the chi-square and the verdict.
 * Called from: cstatus_collect.c, once per population.  Pure (APR types
 * only; no libm either, see root()).
 */
#include "cstatus_fair.h"

#define NSECONDS (CSTATUS_FAIR_WINDOW_S + 1)

/* The standard normal's 1 - CSTATUS_CHANCE quantile. */
#define Z_CHANCE 3.090232

const char *cstatus_fair_why_not(cstatus_fair_status_e status)
{
    switch (status) {
    case CSTATUS_FAIR_JUDGED:       return NULL;
    case CSTATUS_FAIR_YOUNG:        return "too young";
    case CSTATUS_FAIR_BRIEF:        return "accepted too briefly";
    case CSTATUS_FAIR_STOP_UNKNOWN: return "stopped at an unknown time";
    case CSTATUS_FAIR_OUTSIDE:      return "not accepting while requests "
                                           "were served";
    default:                        return "not compared";
    }
}

/* sqrt(x) for 0 < x <= 1 by Newton's method: the module is loaded into
 * an apache2 that does not link libm. */
static double root(double x)
{
    double r = 1.0;
    int i;

    for (i = 0; i < 40; i++) {
        r = 0.5 * (r + x / r);
    }
    return r;
}

double cstatus_fair_chi2_limit(int df)
{
    double a, c;

    if (df < 1) {
        return 0.0;
    }
    a = 2.0 / (9.0 * df);
    c = 1.0 - a + Z_CHANCE * root(a);
    return df * c * c * c;
}

static int threads_of(const cstatus_fair_child *ch)
{
    return ch->threads > 1 ? ch->threads : 1;
}

/* Bucket k of the window (cstatus_fair.h: [0] the current second up to
 * now, [CSTATUS_FAIR_WINDOW_S] the oldest, cut at the window's start). */
static void bucket(apr_time_t now, int k, apr_time_t *from, apr_time_t *to)
{
    apr_time_t second = now - now % APR_USEC_PER_SEC;
    apr_time_t start = now - apr_time_from_sec(CSTATUS_FAIR_WINDOW_S);

    *from = second - apr_time_from_sec(k);
    *to = *from + APR_USEC_PER_SEC;
    if (*from < start) {
        *from = start;
    }
    if (*to > now) {
        *to = now;
    }
}

/* Seconds of bucket k in which the child was accepting. */
static double overlap(const cstatus_fair_child *ch, apr_time_t now, int k)
{
    apr_time_t from, to;

    bucket(now, k, &from, &to);
    if (ch->since > from) {
        from = ch->since;
    }
    if (ch->stopped && ch->until < to) {
        to = ch->until;
    }
    return to > from ? (double)(to - from) / APR_USEC_PER_SEC : 0.0;
}

/* Accepting through all of bucket k (to a millisecond).  Only such
 * children are compared in a second: requests are counted per second,
 * so who served what in the part of a second before a child started (or
 * after it stopped) cannot be told apart. */
static int throughout(const cstatus_fair_child *ch, apr_time_t now, int k)
{
    apr_time_t from, to;

    bucket(now, k, &from, &to);
    return to > from
           && overlap(ch, now, k) * APR_USEC_PER_SEC
              >= (double)(to - from) - 1000.0;
}

/* Requests, accepting time and rate of one child; its status as far as
 * time alone tells (judged until compared with the others). */
static void measure_child(cstatus_fair_child *ch, apr_time_t now)
{
    int k;

    ch->requests = 0.0;
    ch->accepting_s = 0.0;
    ch->expected = ch->compared = ch->share = ch->rate = 0.0;
    for (k = 0; k < NSECONDS; k++) {
        ch->requests += ch->per_second[k];
    }
    if (ch->stopped && ch->until == 0) {
        ch->status = CSTATUS_FAIR_STOP_UNKNOWN;
        ch->has_rate = 0;
        return;
    }
    for (k = 0; k < NSECONDS; k++) {
        ch->accepting_s += overlap(ch, now, k);
    }
    ch->has_rate = ch->accepting_s > 0.0;
    if (ch->has_rate) {
        ch->rate = ch->requests / ch->accepting_s / threads_of(ch);
    }
    ch->status = ch->has_rate ? CSTATUS_FAIR_JUDGED : CSTATUS_FAIR_OUTSIDE;
}

/* Measure the population; returns its longest accepting time. */
static double measure(cstatus_fair_child *const *c, int n, int population,
                      apr_time_t now)
{
    double longest = 0.0;
    int i;

    for (i = 0; i < n; i++) {
        if (c[i]->population == population) {
            measure_child(c[i], now);
            if (c[i]->status == CSTATUS_FAIR_JUDGED
                && c[i]->accepting_s > longest) {
                longest = c[i]->accepting_s;
            }
        }
    }
    return longest;
}

static int judged(const cstatus_fair_child *ch, int population)
{
    return ch->population == population && ch->status == CSTATUS_FAIR_JUDGED;
}

/* Set aside the children accepting for less than `bar` seconds. */
static void set_aside_young(cstatus_fair_child *const *c, int n,
                            int population, double bar)
{
    int i;

    for (i = 0; i < n; i++) {
        if (judged(c[i], population) && c[i]->accepting_s < bar) {
            c[i]->status = c[i]->stopped ? CSTATUS_FAIR_BRIEF
                                         : CSTATUS_FAIR_YOUNG;
        }
    }
}

/* Each judged child's fair share: in every second, the requests of the
 * judged children accepting throughout it, divided among them by
 * threads, against what the child served in those seconds. */
static void fair_shares(cstatus_fair_child *const *c, int n, int population,
                        apr_time_t now)
{
    double served[NSECONDS] = { 0 }, threads[NSECONDS] = { 0 }, total = 0.0;
    int i, k;

    for (i = 0; i < n; i++) {
        if (!judged(c[i], population)) {
            continue;
        }
        for (k = 0; k < NSECONDS; k++) {
            if (throughout(c[i], now, k)) {
                served[k] += c[i]->per_second[k];
                threads[k] += threads_of(c[i]);
            }
        }
        total += c[i]->requests;
    }
    for (i = 0; i < n; i++) {
        int seconds = 0;

        if (!judged(c[i], population)) {
            continue;
        }
        for (k = 0; k < NSECONDS; k++) {
            if (throughout(c[i], now, k)) {
                seconds++;
                c[i]->compared += c[i]->per_second[k];
                c[i]->expected += served[k] * threads_of(c[i]) / threads[k];
            }
        }
        if (c[i]->expected > 0.0 || total <= 0.0) {
            continue;
        }
        /* Nothing to compare it on: no whole second yet (too young), or
         * it accepted only while nobody served anything. */
        c[i]->status = seconds == 0 ? (c[i]->stopped ? CSTATUS_FAIR_BRIEF
                                                     : CSTATUS_FAIR_YOUNG)
                                    : CSTATUS_FAIR_OUTSIDE;
    }
}

void cstatus_fair_judge(cstatus_fair_child *const *c, int n, int population,
                        apr_time_t now, cstatus_fair_result *out)
{
    double sum = 0.0, sumsq = 0.0, max = 0.0, min = 0.0;
    double bar = CSTATUS_YOUNG_FRACTION * measure(c, n, population, now);
    int i;

    *out = (cstatus_fair_result){ 0 };
    out->min_accepting_s = bar;
    set_aside_young(c, n, population, bar);
    fair_shares(c, n, population, now);
    for (i = 0; i < n; i++) {
        cstatus_fair_child *ch = c[i];
        double x;

        if (ch->population == population
            && (ch->status == CSTATUS_FAIR_YOUNG
                || ch->status == CSTATUS_FAIR_BRIEF)) {
            out->young++;
        }
        if (!judged(ch, population)) {
            continue;
        }
        if (ch->expected <= 0.0) {
            out->judged++;      /* idle population: nothing to compare */
            continue;
        }
        x = ch->compared / ch->expected;
        if (out->judged == 0 || x > max) {
            max = x;
        }
        if (out->judged == 0 || x < min) {
            min = x;
        }
        out->judged++;
        out->requests += ch->requests;
        out->chi2 += (ch->compared - ch->expected)
                     * (ch->compared - ch->expected) / ch->expected;
        ch->share = x;          /* made a part of the sum below */
        sum += x;
        sumsq += x * x;
    }
    if (out->judged == 0 || sum <= 0.0 || sumsq <= 0.0) {
        out->chi2 = 0.0;
        out->verdict = "idle";
        return;
    }
    out->has_jain = 1;
    out->jain = (sum * sum) / ((double)out->judged * sumsq);
    if (out->jain > 1.0) {
        out->jain = 1.0;    /* rounding of equal parts */
    }
    out->max_share = max / sum;
    out->min_share = min / sum;
    out->chi2_limit = cstatus_fair_chi2_limit(out->judged - 1);
    out->verdict = out->jain < CSTATUS_SPREAD_JAIN
                   && out->chi2 > out->chi2_limit ? "concentrated" : "spread";
    for (i = 0; i < n; i++) {
        if (judged(c[i], population)) {
            c[i]->share /= sum;
        }
    }
}
