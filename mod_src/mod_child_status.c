/* mod_child_status.c: per-child load for /server-status and its own page.
 *
 * Owns: the module (child_status_module), its hooks, the child-status
 * handler and its query arguments, and the mod_status hook.  Does not
 * own: counting (cstatus_record.c), snapshots (cstatus_collect.c) or
 * output formats (cstatus_{html,json,prom,auto}.c).
 *
 * Works with any MPM; with mpm_hybrid it also shows what the MPM's
 * optional function hands out.  Neither module links against the other.
 */
#include <stdlib.h>
#include <string.h>

#include "apr_optional.h"
#include "apr_strings.h"

#include "httpd.h"
#include "http_config.h"
#include "http_connection.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "ap_mpm.h"
#include "mod_status.h"
#include "mpm_common.h"

#include "mod_mpm_hybrid.h"
#include "cstatus_model.h"
#include "cstatus_record.h"

#define HANDLER_NAME "child-status"
#define MAX_REFRESH 86400

/* The MPM DSO is loaded again every generation, so the function is
 * fetched again in each optional_fn_retrieve. */
static APR_OPTIONAL_FN_TYPE(hybrid_get_stats) *hybrid_stats_fn;

static int post_config(apr_pool_t *pconf, apr_pool_t *plog,
                       apr_pool_t *ptemp, server_rec *s)
{
    int limit = 0, generation = 0;
    apr_status_t rv;

    /* The first pass only checks the configuration; no child follows. */
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        return OK;
    }
    ap_mpm_query(AP_MPMQ_HARD_LIMIT_DAEMONS, &limit);
    ap_mpm_query(AP_MPMQ_GENERATION, &generation);
    rv = cstatus_record_setup(s, limit, generation);
    if (rv != APR_SUCCESS) {
        /* Not fatal: the pages still show what the scoreboard knows. */
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s,
                     "mod_child_status: cannot create shared memory for "
                     "%d slots; per-child counters are unavailable", limit);
    }
    return OK;
}

static void retrieve_optional_fns(void)
{
    hybrid_stats_fn = APR_RETRIEVE_OPTIONAL_FN(hybrid_get_stats);
}

static void child_init(apr_pool_t *pchild, server_rec *s)
{
    cstatus_record_child_started();
}

static void child_stopping(apr_pool_t *pchild, int graceful)
{
    cstatus_record_child_stopping();
}

static int count_connection(conn_rec *c, void *csd)
{
    cstatus_record_connection(c);
    return OK;
}

static int count_request(request_rec *r)
{
    cstatus_record_request(r);
    return DECLINED;
}

/* A positive number of seconds, or 0 if `s` is not one. */
static int parse_refresh(const char *s)
{
    char *end;
    long v;

    if (s == NULL || *s == '\0') {
        return 1;       /* plain "refresh", as mod_status */
    }
    v = strtol(s, &end, 10);
    if (*end != '\0' || v < 1) {
        return 0;
    }
    return v > MAX_REFRESH ? MAX_REFRESH : (int)v;
}

/* Reads "json", "prometheus", "auto" and "refresh[=N]" from the query;
 * the first format named wins, anything else is ignored. */
static const cstatus_renderer *parse_query(request_rec *r, cstatus_view *v)
{
    const cstatus_renderer *chosen = NULL;
    char *args, *tok, *state;

    if (r->args == NULL) {
        return &cstatus_html;
    }
    args = apr_pstrdup(r->pool, r->args);
    for (tok = apr_strtok(args, "&;", &state); tok;
         tok = apr_strtok(NULL, "&;", &state)) {
        char *value = strchr(tok, '=');
        const cstatus_renderer *fmt = NULL;

        if (value) {
            *value++ = '\0';
        }
        if (strcmp(tok, "refresh") == 0) {
            v->refresh = parse_refresh(value);
        }
        else if (strcmp(tok, "json") == 0) {
            fmt = &cstatus_json;
        }
        else if (strcmp(tok, "prometheus") == 0) {
            fmt = &cstatus_prom;
        }
        else if (strcmp(tok, "auto") == 0) {
            fmt = &cstatus_auto;
        }
        if (fmt && chosen == NULL) {
            chosen = fmt;
        }
    }
    return chosen ? chosen : &cstatus_html;
}

static int child_status_handler(request_rec *r)
{
    const cstatus_renderer *fmt;
    cstatus_view view;
    cstatus_model *m;

    if (r->handler == NULL || strcmp(r->handler, HANDLER_NAME) != 0) {
        return DECLINED;
    }
    r->allowed = (AP_METHOD_BIT << M_GET);
    if (r->method_number != M_GET) {
        return HTTP_METHOD_NOT_ALLOWED;
    }
    memset(&view, 0, sizeof(view));
    fmt = parse_query(r, &view);
    ap_set_content_type(r, fmt->content_type);
    apr_table_setn(r->headers_out, "Cache-Control", "no-cache");
    if (view.refresh > 0) {
        apr_table_setn(r->headers_out, "Refresh",
                       apr_itoa(r->pool, view.refresh));
    }
    if (r->header_only) {
        return OK;
    }
    m = cstatus_collect(r->pool, hybrid_stats_fn);
    fmt->render(r, m, &view);
    return OK;
}

/* mod_status calls this after its own output: HTML section or ?auto lines,
 * appended only, so every existing key keeps its place and format. */
static int status_hook(request_rec *r, int flags)
{
    cstatus_model *m = cstatus_collect(r->pool, hybrid_stats_fn);

    if (flags & AP_STATUS_SHORT) {
        cstatus_auto_lines(r, m);
    }
    else {
        cstatus_html_section(r, m, !(flags & AP_STATUS_NOTABLE));
    }
    return OK;
}

static void register_hooks(apr_pool_t *p)
{
    ap_hook_post_config(post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_optional_fn_retrieve(retrieve_optional_fns, NULL, NULL,
                                 APR_HOOK_MIDDLE);
    ap_hook_child_init(child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_stopping(child_stopping, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_pre_connection(count_connection, NULL, NULL, APR_HOOK_FIRST);
    ap_hook_log_transaction(count_request, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(child_status_handler, NULL, NULL, APR_HOOK_MIDDLE);
    APR_OPTIONAL_HOOK(ap, status_hook, status_hook, NULL, NULL,
                      APR_HOOK_MIDDLE);
}

__attribute__((visibility("default")))
AP_DECLARE_MODULE(child_status) = {
    STANDARD20_MODULE_STUFF,
    NULL,                       /* per-directory config */
    NULL,                       /* merge per-directory config */
    NULL,                       /* per-server config */
    NULL,                       /* merge per-server config */
    NULL,                       /* no directives */
    register_hooks
};
