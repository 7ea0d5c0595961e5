/* cstatus_html.c: the model as an HTML page and as a mod_status section.
 *
 * Owns: the verdict sentence, the per-child table and the inline SVG bar
 * chart of each child's share.  No script: everything is readable as
 * plain markup.  Every string from outside (server, MPM) goes through
 * cstatus_escape_html; numbers are printed by us.  Absent fields show a
 * dash.
 */
#include <math.h>
#include <string.h>

#include "apr_strings.h"

#include "httpd.h"
#include "http_core.h"
#include "http_protocol.h"

#include "cstatus_escape.h"
#include "cstatus_model.h"

#define DASH "&#8212;"

/* Bar chart geometry, in SVG user units. */
#define SVG_WIDTH   660
#define SVG_LABEL   170     /* left column: "slot N, pid P" */
#define SVG_BARS    400     /* widest bar */
#define SVG_ROW     26
#define SVG_BAR     16
#define SVG_TOP     8

static const char *esc(request_rec *r, const char *s)
{
    return cstatus_escape_html(r->pool, s);
}

static double or_zero(double v)
{
    return isfinite(v) ? v : 0.0;
}

static void cell_u64(request_rec *r, int valid, apr_uint64_t v)
{
    if (valid) {
        ap_rprintf(r, "<td>%" APR_UINT64_T_FMT "</td>", v);
    }
    else {
        ap_rputs("<td>" DASH "</td>", r);
    }
}

static void cell_num(request_rec *r, int valid, const char *fmt, double v)
{
    ap_rputs("<td>", r);
    if (valid) {
        ap_rprintf(r, fmt, or_zero(v));
    }
    else {
        ap_rputs(DASH, r);
    }
    ap_rputs("</td>", r);
}

/* "the 3 children judged (1 more too young to judge)" */
static const char *judged_children(request_rec *r, const cstatus_fairness *f)
{
    const char *n = apr_psprintf(r->pool, "%d %s judged", f->judged,
                                 f->judged == 1 ? "child" : "children");

    if (f->young > 0) {
        n = apr_psprintf(r->pool, "%s (%d more too young to judge)", n,
                         f->young);
    }
    return n;
}

static void verdict(request_rec *r, const cstatus_model *m)
{
    const cstatus_fairness *f = &m->fairness;
    int win = cstatus_windows[CSTATUS_FAIR_WINDOW];

    ap_rprintf(r, "<p class=\"cs-verdict cs-%s\">", esc(r, f->verdict));
    if (!f->has_jain && f->judged == 0 && f->young > 0) {
        ap_rprintf(r, "<strong>Idle</strong> as far as can be told: none of "
                   "the %d children has been accepting for a whole second "
                   "yet.</p>\n", f->young);
        return;
    }
    if (!f->has_jain) {
        ap_rprintf(r, "<strong>Idle</strong>: no requests in the last %d s "
                   "to compare across the %s.</p>\n", win,
                   judged_children(r, f));
        return;
    }
    ap_rprintf(r, "Work is <strong>%s</strong> %s the %s: Jain's index "
               "%.2f over their requests against their fair shares in the "
               "last %d s; the busiest child's part is %.1f %%, the least "
               "busy one's %.1f %%.</p>\n", esc(r, f->verdict),
               strcmp(f->verdict, "concentrated") == 0 ? "in few of" : "over",
               judged_children(r, f), or_zero(f->jain), win,
               100.0 * or_zero(f->max_share), 100.0 * or_zero(f->min_share));
}

/* Older generations still finishing are judged apart. */
static void verdict_previous(request_rec *r, const cstatus_model *m)
{
    const cstatus_fairness *f = &m->previous;

    if (!m->has_previous) {
        return;
    }
    ap_rprintf(r, "<p class=\"cs-previous cs-%s\">Older generations, judged "
               "apart: ", esc(r, f->verdict));
    if (!f->has_jain) {
        ap_rprintf(r, "idle across the %s.</p>\n", judged_children(r, f));
        return;
    }
    ap_rprintf(r, "<strong>%s</strong> over the %s, Jain's index %.2f; "
               "the busiest %.1f %%, the least busy %.1f %%.</p>\n",
               esc(r, f->verdict), judged_children(r, f), or_zero(f->jain),
               100.0 * or_zero(f->max_share), 100.0 * or_zero(f->min_share));
}

static void thresholds(request_rec *r)
{
    ap_rprintf(r, "<p class=\"cs-note\">%s Jain's index J = (&#931;x)&#178; "
               "/ (n &#183; &#931;x&#178;) over x = requests / fair share of "
               "the n children judged: 1 when every child does its part, "
               "1/n when one child does all. J below %.1f reads as "
               "<em>concentrated</em> when chance would spread the requests "
               "that unevenly less than once in %.0f (chi-square of the "
               "requests against the fair shares), otherwise as "
               "<em>spread</em>; no requests reads as <em>idle</em>.</p>\n",
               esc(r, cstatus_fair_rule),
               CSTATUS_SPREAD_JAIN, 1.0 / CSTATUS_CHANCE);
}

/* The widest bar stands for the larger of the top share and an even
 * share, so an even split does not fill the whole width. */
static double chart_scale(const cstatus_model *m)
{
    const cstatus_fairness *f = &m->fairness;
    double even = f->judged > 0 ? 1.0 / f->judged : 1.0;
    double top = f->has_jain ? f->max_share : 0.0;

    return top > even ? top : even;
}

/* A row of the chart: the current generation's judged children get a
 * bar; those too young for it get their label and the reason. */
static int in_chart(const cstatus_child *ch)
{
    return ch->fair.population == CSTATUS_POP_CURRENT
           && (ch->fair.status == CSTATUS_FAIR_JUDGED
               || ch->fair.status == CSTATUS_FAIR_YOUNG
               || ch->fair.status == CSTATUS_FAIR_BRIEF);
}

static void chart_label(request_rec *r, const cstatus_child *ch, int y)
{
    ap_rprintf(r, "<text x=\"0\" y=\"%d\">slot %d, pid %ld</text>",
               y + SVG_BAR - 3, ch->slot, (long)ch->pid);
}

static void chart_row(request_rec *r, const cstatus_child *ch, int y,
                      double scale)
{
    double share = ch->has_share ? or_zero(ch->fair.share) : 0.0;
    int w = (int)(share / scale * SVG_BARS + 0.5);

    if (ch->fair.status != CSTATUS_FAIR_JUDGED) {
        ap_rprintf(r, "<g><title>slot %d, pid %ld: %s (accepting %.1f s)"
                   "</title>", ch->slot, (long)ch->pid,
                   cstatus_fair_why_not(ch->fair.status),
                   or_zero(ch->fair.accepting_s));
        chart_label(r, ch, y);
        ap_rprintf(r, "<text x=\"%d\" y=\"%d\" fill=\"#777\">%s</text>"
                   "</g>\n", SVG_LABEL, y + SVG_BAR - 3,
                   cstatus_fair_why_not(ch->fair.status));
        return;
    }
    ap_rprintf(r, "<g><title>slot %d, pid %ld: %.1f %% (%.0f requests, "
               "fair share %.0f, accepting %.1f s)</title>", ch->slot,
               (long)ch->pid, 100.0 * share, or_zero(ch->fair.requests),
               or_zero(ch->fair.expected), or_zero(ch->fair.accepting_s));
    chart_label(r, ch, y);
    ap_rprintf(r, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" "
               "fill=\"#3d6fb0\"/>", SVG_LABEL, y, w, SVG_BAR);
    ap_rprintf(r, "<text x=\"%d\" y=\"%d\">%.1f %%</text></g>\n",
               SVG_LABEL + w + 6, y + SVG_BAR - 3, 100.0 * share);
}

static void chart(request_rec *r, const cstatus_model *m)
{
    const cstatus_fairness *f = &m->fairness;
    int rows = 0, height, i, y = SVG_TOP;
    double scale = chart_scale(m);

    for (i = 0; i < m->nchildren; i++) {
        rows += in_chart(&m->children[i]);
    }
    height = SVG_TOP + (rows ? rows : 1) * SVG_ROW + 18;
    ap_rprintf(r, "<svg class=\"cs-chart\" xmlns=\"http://www.w3.org/2000/svg\" "
               "width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n"
               "<title>Each child's requests of the last %d s over its fair "
               "share, as parts of the whole</title>\n", SVG_WIDTH, height,
               SVG_WIDTH, height,
               cstatus_windows[CSTATUS_FAIR_WINDOW]);
    for (i = 0; i < m->nchildren; i++) {
        if (in_chart(&m->children[i])) {
            chart_row(r, &m->children[i], y, scale);
            y += SVG_ROW;
        }
    }
    if (f->judged == 0) {
        ap_rprintf(r, "<text x=\"0\" y=\"%d\">no children to judge</text>\n",
                   y + SVG_BAR - 3);
        y += SVG_ROW;
    }
    else {
        int x = SVG_LABEL + (int)(SVG_BARS / (scale * f->judged) + 0.5);
        ap_rprintf(r, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" "
                   "stroke=\"#b04a3d\" stroke-dasharray=\"4 3\"/>"
                   "<text x=\"%d\" y=\"%d\" fill=\"#b04a3d\">even share "
                   "%.1f %%</text>\n", x, SVG_TOP - 4, x, y, x + 4, y + 12,
                   100.0 / f->judged);
    }
    ap_rputs("</svg>\n", r);
}

static void table_head(request_rec *r, const cstatus_model *m)
{
    int w;

    ap_rputs("<table class=\"cs-children\" border=\"0\">\n<tr><th>Slot</th>"
             "<th>PID</th><th>Gen</th><th>State</th><th>Busy</th>"
             "<th>Idle</th><th>Conns</th><th>Requests</th><th>Bytes</th>", r);
    for (w = 0; w < CSTATUS_NWINDOWS; w++) {
        ap_rprintf(r, "<th>Req/s %ds</th>", cstatus_windows[w]);
    }
    ap_rputs("<th>Mean ms</th><th>Accepting s</th><th>Req/s/thread</th>"
             "<th>Share</th>", r);
    if (m->has_hybrid) {
        ap_rputs("<th>Strategy</th><th>Group</th><th>Accepts</th>"
                 "<th>Mutex waits</th><th>Wait ms</th>"
                 "<th>Lost wake-ups</th><th>Accept errors</th>"
                 "<th>Restarts</th><th>Last exit</th>", r);
    }
    if (m->is_async) {
        ap_rputs("<th>Async conns</th><th>Keep-alive</th><th>Writing</th>"
                 "<th>Lingering</th><th>Suspended</th>", r);
    }
    ap_rputs("</tr>\n", r);
}

static void hybrid_cells(request_rec *r, const cstatus_child *ch)
{
    int h = ch->has_hybrid;

    ap_rprintf(r, "<td>%s</td>", h && ch->strategy ? esc(r, ch->strategy)
                                                   : DASH);
    cell_u64(r, h, (apr_uint64_t)ch->group);
    cell_u64(r, h, ch->accepts);
    cell_u64(r, h, ch->accept_waits);
    cell_num(r, h, "%.1f", (double)ch->accept_wait_us / 1000.0);
    cell_u64(r, h, ch->lost_wakeups);
    cell_u64(r, h, ch->accept_errors);
    cell_u64(r, ch->has_slot_history, ch->restarts);
    if (ch->has_exit) {
        ap_rprintf(r, "<td>%s %d</td>", esc(r, ch->exit_why),
                   ch->exit_status);
    }
    else {
        ap_rputs("<td>" DASH "</td>", r);
    }
}

static void async_cells(request_rec *r, int valid, const cstatus_async *a)
{
    cell_u64(r, valid, a->connections);
    cell_u64(r, valid, a->keep_alive);
    cell_u64(r, valid, a->write_completion);
    cell_u64(r, valid, a->lingering_close);
    cell_u64(r, valid, a->suspended);
}

/* Accepting time, rate per thread, and the share or why there is none. */
static void fair_cells(request_rec *r, const cstatus_child *ch)
{
    const cstatus_fair_child *f = &ch->fair;
    int placed = f->status != CSTATUS_FAIR_OTHER;

    cell_num(r, placed && f->status != CSTATUS_FAIR_STOP_UNKNOWN, "%.1f",
             f->accepting_s);
    cell_num(r, placed && f->has_rate, "%.2f", f->rate);
    if (ch->has_share) {
        cell_num(r, 1, "%.1f %%", 100.0 * f->share);
    }
    else if (placed && f->status != CSTATUS_FAIR_JUDGED) {
        ap_rprintf(r, "<td class=\"cs-why\">%s</td>",
                   esc(r, cstatus_fair_why_not(f->status)));
    }
    else {
        ap_rputs("<td>" DASH "</td>", r);
    }
}

static void table_row(request_rec *r, const cstatus_model *m,
                      const cstatus_child *ch)
{
    int c = ch->has_counts, w;

    ap_rprintf(r, "<tr class=\"cs-%s\"><td>%d</td><td>%ld</td><td>%d</td>"
               "<td>%s</td><td>%d</td><td>%d</td>",
               cstatus_state_name(ch->state), ch->slot, (long)ch->pid,
               ch->generation, cstatus_state_name(ch->state),
               ch->threads_busy, ch->threads_idle);
    cell_u64(r, c, ch->connections);
    cell_u64(r, c, ch->requests);
    cell_u64(r, c, ch->bytes);
    for (w = 0; w < CSTATUS_NWINDOWS; w++) {
        cell_num(r, c, "%.2f", ch->rate[w]);
    }
    cell_num(r, c && ch->has_mean, "%.3f", ch->mean_ms);
    fair_cells(r, ch);
    if (m->has_hybrid) {
        hybrid_cells(r, ch);
    }
    if (m->is_async) {
        async_cells(r, ch->has_async, &ch->async);
    }
    ap_rputs("</tr>\n", r);
}

static void table_totals(request_rec *r, const cstatus_model *m)
{
    const cstatus_totals *t = &m->totals;
    int w;

    ap_rprintf(r, "<tr class=\"cs-total\"><th colspan=\"4\">Total (%d live)"
               "</th><td>%d</td><td>%d</td>", t->children, t->threads_busy,
               t->threads_idle);
    cell_u64(r, 1, t->connections);
    cell_u64(r, 1, t->requests);
    cell_u64(r, 1, t->bytes);
    for (w = 0; w < CSTATUS_NWINDOWS; w++) {
        cell_num(r, 1, "%.2f", t->rate[w]);
    }
    cell_num(r, t->has_mean, "%.3f", t->mean_ms);
    ap_rputs("<td></td><td></td><td></td>", r);
    if (m->has_hybrid) {
        ap_rputs("<td colspan=\"5\"></td>", r);
        cell_u64(r, 1, t->lost_wakeups);
        cell_u64(r, 1, t->accept_errors);
        ap_rputs("<td colspan=\"2\"></td>", r);
    }
    if (m->is_async) {
        async_cells(r, 1, &t->async);
    }
    ap_rputs("</tr>\n</table>\n", r);
}

static void table(request_rec *r, const cstatus_model *m)
{
    int i;

    table_head(r, m);
    for (i = 0; i < m->nchildren; i++) {
        table_row(r, m, &m->children[i]);
    }
    table_totals(r, m);
}

static void dd_u64(request_rec *r, const char *what, apr_uint64_t v)
{
    ap_rprintf(r, "<dt>%s</dt><dd>%" APR_UINT64_T_FMT "</dd>", what, v);
}

/* The counters that outlive children; what the server cannot count is
 * left out rather than shown as 0. */
static void server_counts(request_rec *r, const cstatus_model *m)
{
    const cstatus_counts *c = &m->server;

    if (!c->has_scoreboard && !c->has_hybrid) {
        return;
    }
    ap_rputs("<p>Since the server started (these outlive children and "
             "graceful restarts):</p>\n<dl class=\"cs-server cs-since\">", r);
    if (c->has_scoreboard) {
        dd_u64(r, "Requests", c->requests);
        dd_u64(r, "Bytes", c->bytes);
    }
    if (c->has_hybrid) {
        dd_u64(r, "Connections", c->connections);
        dd_u64(r, "Lost wake-ups", c->lost_wakeups);
        dd_u64(r, "Accept errors", c->accept_errors);
        dd_u64(r, "Mutex waits", c->accept_waits);
        dd_u64(r, "Child restarts", c->child_restarts);
    }
    ap_rputs("</dl>\n", r);
}

static void server_facts(request_rec *r, const cstatus_model *m)
{
    ap_rprintf(r, "<dl class=\"cs-server\"><dt>MPM</dt><dd>%s</dd>"
               "<dt>Generation</dt><dd>%d</dd>"
               "<dt>Accept strategy</dt><dd>%s</dd>"
               "<dt>Accept mutex</dt><dd>%s</dd></dl>\n",
               esc(r, m->mpm), m->generation,
               m->accept_strategy ? esc(r, m->accept_strategy)
                                  : "not reported by the MPM",
               m->accept_mutex ? esc(r, m->accept_mutex)
                               : "not reported by the MPM");
}

void cstatus_html_section(request_rec *r, const cstatus_model *m,
                          int with_table)
{
    ap_rputs("<hr /><h2 id=\"per-child-load\">Per-child load</h2>\n", r);
    server_facts(r, m);
    verdict(r, m);
    verdict_previous(r, m);
    chart(r, m);
    if (with_table) {
        table(r, m);
    }
    server_counts(r, m);
    thresholds(r);
}

static void render_html(request_rec *r, const cstatus_model *m,
                        const cstatus_view *v)
{
    /* HTML5, the document type that defines inline SVG. */
    ap_rputs("<!DOCTYPE html>\n<html lang=\"en\"><head>\n"
             "<meta charset=\"utf-8\">\n"
             "<title>Per-child load</title>\n"
             "<style type=\"text/css\">\n"
             "body { font-family: sans-serif; }\n"
             "table.cs-children { border-collapse: collapse; }\n"
             "table.cs-children td, table.cs-children th "
             "{ padding: 2px 8px; text-align: right; white-space: nowrap; "
             "border-bottom: 1px solid #ddd; }\n"
             "dl.cs-server dt { float: left; clear: left; width: 10em; "
             "font-weight: bold; }\n"
             "td.cs-why { color: #777; }\n"
             ".cs-verdict { font-size: 120%; }\n"
             "</style>\n</head><body>\n", r);
    ap_rprintf(r, "<h1>Child status of %s</h1>\n",
               esc(r, ap_get_server_name(r)));
    ap_rprintf(r, "<p>%s &#8212; %s</p>\n", esc(r, m->server_version),
               esc(r, ap_ht_time(r->pool, m->now, "%Y-%m-%d %H:%M:%S %Z",
                                 0)));
    cstatus_html_section(r, m, 1);
    ap_rputs("<p>Also as <a href=\"?json\">JSON</a>, "
             "<a href=\"?prometheus\">Prometheus metrics</a> and "
             "<a href=\"?auto\">plain text</a>.</p>\n</body></html>\n", r);
}

const cstatus_renderer cstatus_html = {
    "html", "text/html; charset=utf-8", render_html
};
