/* test_escape.c: the escaping rules of every output format
 * (mod_src/cstatus_escape.c): what each format's special bytes become,
 * and that ordinary text passes unchanged. */
#include <stdio.h>
#include <string.h>

#include "apr_general.h"

#include "cstatus_escape.h"
#include "cstatus_escape.c"
#include "unit_check.h"

#define CHECK_STR(got, want) do {                                       \
        const char *g_ = (got), *w_ = (want);                           \
        if (strcmp(g_, w_) != 0) {                                      \
            fprintf(stderr, "%s:%d: %s gave [%s], want [%s]\n",         \
                    __FILE__, __LINE__, #got, g_, w_);                  \
            failures++;                                                 \
        }                                                               \
    } while (0)

static void test_html(apr_pool_t *p)
{
    CHECK_STR(cstatus_escape_html(p, "plain text 1.0"), "plain text 1.0");
    CHECK_STR(cstatus_escape_html(p, "<script>alert(\"x\")</script>"),
              "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;");
    CHECK_STR(cstatus_escape_html(p, "a&b 'c'"), "a&amp;b &#39;c&#39;");
    CHECK_STR(cstatus_escape_html(p, "&amp;"), "&amp;amp;");
    CHECK_STR(cstatus_escape_html(p, NULL), "");
    CHECK_STR(cstatus_escape_html(p, ""), "");
}

static void test_json(apr_pool_t *p)
{
    CHECK_STR(cstatus_escape_json(p, "mutex"), "\"mutex\"");
    CHECK_STR(cstatus_escape_json(p, "a\"b\\c"), "\"a\\\"b\\\\c\"");
    CHECK_STR(cstatus_escape_json(p, "line\nnext\ttab\x01"),
              "\"line\\u000anext\\u0009tab\\u0001\"");
    /* bytes of unknown encoding (the MPM wrote them) stay valid JSON */
    CHECK_STR(cstatus_escape_json(p, "caf\xc3\xa9\x7f"),
              "\"caf\\u00c3\\u00a9\\u007f\"");
    CHECK_STR(cstatus_escape_json(p, "</script>"), "\"</script>\"");
    CHECK_STR(cstatus_escape_json(p, NULL), "null");
    CHECK_STR(cstatus_escape_json(p, ""), "\"\"");
}

static void test_prom_label(apr_pool_t *p)
{
    CHECK_STR(cstatus_escape_prom_label(p, "hybrid"), "hybrid");
    CHECK_STR(cstatus_escape_prom_label(p, "a\"b\\c\nd"),
              "a\\\"b\\\\c\\nd");
    CHECK_STR(cstatus_escape_prom_label(p, "{x=\"1\"} 2"),
              "{x=\\\"1\\\"} 2");
    CHECK_STR(cstatus_escape_prom_label(p, NULL), "");
}

static void test_auto_word(apr_pool_t *p)
{
    CHECK_STR(cstatus_escape_auto_word(p, "Apache/2.4.71_x-y:z"),
              "Apache/2.4.71_x-y:z");
    CHECK_STR(cstatus_escape_auto_word(p, "too young"), "too_young");
    CHECK_STR(cstatus_escape_auto_word(p, "a=b\nKey: v\r"), "a_b_Key:_v_");
    CHECK_STR(cstatus_escape_auto_word(p, "\xc3\xa9"), "__");
    CHECK_STR(cstatus_escape_auto_word(p, NULL), "");
}

/* Long input: the measured length and the copy agree. */
static void test_long(apr_pool_t *p)
{
    char in[4001];
    const char *html, *json;
    int i;

    for (i = 0; i < 4000; i++) {
        in[i] = "<\"&\n"[i % 4];
    }
    in[4000] = '\0';
    html = cstatus_escape_html(p, in);
    json = cstatus_escape_json(p, in);
    /* per 4 bytes: &lt; &quot; &amp; \n, and < \" & \u000a */
    if (strlen(html) != 1000 * (4 + 6 + 5 + 1)
        || strlen(json) != 2 + 1000 * (1 + 2 + 1 + 6)) {
        fprintf(stderr, "lengths %zu %zu\n", strlen(html), strlen(json));
        failures++;
    }
    CHECK_STR(html + strlen(html) - 16, "&lt;&quot;&amp;\n");
    CHECK_STR(json + strlen(json) - 11, "<\\\"&\\u000a\"");
}

int main(void)
{
    apr_pool_t *p;

    apr_initialize();
    apr_pool_create(&p, NULL);
    test_html(p);
    test_json(p);
    test_prom_label(p);
    test_auto_word(p);
    test_long(p);
    apr_pool_destroy(p);
    apr_terminate();
    return unit_report("test_escape");
}
