/* mod_bench_sleep.c: a test-only handler that blocks its worker thread.
 *
 * `SetHandler bench-sleep` on a location makes every GET/HEAD there sleep
 * for ?ms=N milliseconds (0..BENCH_SLEEP_MAX_MS, default 0) and then answer
 * a short text/plain body.  It stands in for database-like work in the
 * benchmark (test/bench) and gives the integration tests a slow request
 * on demand.  Bad or out-of-range arguments get 400, other methods 405.
 * The X-Bench-Thread response header says whether the request ran on its
 * process's main thread ("main") or another one ("other"): what a
 * non-thread-safe module would care about.
 */
#include "httpd.h"
#include "http_config.h"
#include "http_protocol.h"
#include "http_request.h"
#include "apr_strings.h"
#include "apr_time.h"

#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define BENCH_SLEEP_MAX_MS 10000L

/* Parse the ms=N argument of a query string.  Returns 0 and sets *ms on
 * success (N absent means 0), -1 if N is not a number in range. */
static int parse_ms(const char *args, long *ms)
{
    const char *p = args;

    *ms = 0;
    while (p && *p) {
        if (strncmp(p, "ms=", 3) == 0) {
            char *end;
            long v;

            p += 3;
            if (*p < '0' || *p > '9') {
                return -1;
            }
            v = strtol(p, &end, 10);
            if ((*end != '\0' && *end != '&') || v < 0
                || v > BENCH_SLEEP_MAX_MS) {
                return -1;
            }
            *ms = v;
            return 0;
        }
        p = strchr(p, '&');
        if (p) {
            p++;
        }
    }
    return 0;
}

static int bench_sleep_handler(request_rec *r)
{
    long ms;

    if (!r->handler || strcmp(r->handler, "bench-sleep") != 0) {
        return DECLINED;
    }
    r->allowed |= (AP_METHOD_BIT << M_GET);
    if (r->method_number != M_GET) {
        return HTTP_METHOD_NOT_ALLOWED;
    }
    if (parse_ms(r->args, &ms) != 0) {
        return HTTP_BAD_REQUEST;
    }
    if (ms > 0) {
        apr_sleep(apr_time_from_msec(ms));
    }
    apr_table_setn(r->headers_out, "X-Bench-Thread",
                   syscall(SYS_gettid) == getpid() ? "main" : "other");
    ap_set_content_type(r, "text/plain");
    if (!r->header_only) {
        ap_rprintf(r, "slept %ld ms\n", ms);
    }
    return OK;
}

static void register_hooks(apr_pool_t *p)
{
    ap_hook_handler(bench_sleep_handler, NULL, NULL, APR_HOOK_MIDDLE);
}

__attribute__((visibility("default")))
module AP_MODULE_DECLARE_DATA bench_sleep_module = {
    STANDARD20_MODULE_STUFF,
    NULL,               /* per-directory config creator */
    NULL,               /* per-directory config merger */
    NULL,               /* per-server config creator */
    NULL,               /* per-server config merger */
    NULL,               /* command table */
    register_hooks
};
