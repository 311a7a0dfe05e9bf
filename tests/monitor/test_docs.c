/* test_docs.c - docs/metrics.md and the monitor code agree: every family
 * the system sampler and the alert detector render is documented with the
 * same type and its labels, every row of the System and Alerts sections is
 * rendered, and the alert table lists every alert with the default
 * threshold and severity the code uses. (The server's whole /metrics is
 * compared with the document by tests/serve/monitor_checks.sh.) */
#include <ctype.h>
#include <math.h>
#include <stdbool.h>

#include "base/mem.h"
#include "monitor/alert.h"
#include "monitor/sys.h"
#include "qf_test.h"

#define MAX_ROWS 256

typedef struct row {
    char name[96], type[32], labels[96], where[64], section[96];
} row;

static row g_rows[MAX_ROWS];
static int g_n;

typedef struct arow {
    char name[64], threshold[96], severity[32];
} arow;
static arow g_alerts[32];
static int g_na;

/* Trim blanks and surrounding backticks in place. */
static char *trim(char *s) {
    while (*s == ' ' || *s == '`')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '`' || s[n - 1] == '\n'))
        s[--n] = 0;
    return s;
}

/* Split a markdown table row "| a | b | c |" into up to cap cells. */
static int cells(char *line, char **out, int cap) {
    if (line[0] != '|') return 0;
    int n = 0;
    char *p = line + 1;
    while (n < cap) {
        char *bar = strchr(p, '|');
        while (bar && bar > p && bar[-1] == '\\') /* "\|" inside a cell */
            bar = strchr(bar + 1, '|');
        if (!bar) break;
        *bar = 0;
        out[n++] = trim(p);
        p = bar + 1;
    }
    return n;
}

static bool load_doc(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/docs/metrics.md", QF_SOURCE_DIR);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    char line[4096], section[96] = "";
    bool in_alerts = false;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "## ", 3)) {
            snprintf(section, sizeof section, "%s", trim(line + 3));
            in_alerts = false;
        }
        if (!strncmp(line, "### The alerts", 14)) in_alerts = true;
        if (!strncmp(line, "### Settings", 12)) in_alerts = false;
        char *c[8];
        int n = cells(line, c, 8);
        if (n >= 5 && !strncmp(c[0], "qforge_", 7) && g_n < MAX_ROWS) {
            row *r = &g_rows[g_n++];
            snprintf(r->name, sizeof r->name, "%s", c[0]);
            snprintf(r->type, sizeof r->type, "%s", c[1]);
            snprintf(r->labels, sizeof r->labels, "%s", c[2]);
            snprintf(r->where, sizeof r->where, "%s", c[3]);
            snprintf(r->section, sizeof r->section, "%s", section);
        } else if (in_alerts && n >= 3 && islower((unsigned char)c[0][0]) &&
                   strcmp(c[0], "alert") != 0 && g_na < 32) {
            arow *a = &g_alerts[g_na++];
            snprintf(a->name, sizeof a->name, "%s", c[0]);
            snprintf(a->threshold, sizeof a->threshold, "%s", c[1]);
            snprintf(a->severity, sizeof a->severity, "%s", c[2]);
        }
    }
    fclose(f);
    return true;
}

static const row *find_row(const char *name) {
    for (int i = 0; i < g_n; i++)
        if (!strcmp(g_rows[i].name, name)) return &g_rows[i];
    return NULL;
}

/* A registry holding everything the monitor layer renders. */
static qf_metrics *monitor_registry(void) {
    qf_metrics *m = qf_metrics_new(NULL);
    qf_sys *s = qf_sys_new("/proc", NULL);
    qf_sys_sample a;
    qf_sys_sample_now(s, &a);
    qf_sys_sample_now(s, &a);
    a.gpu_present = true; /* render the GPU series too */
    a.gpu_util = 0.5;
    a.gpu_mem_used = 1;
    a.gpu_mem_total = 2;
    a.n_cores = a.n_cores > 0 ? a.n_cores : 1;
    a.core_util[0] = 0.5;
    a.mem_pressure = 0.5;
    a.pressure_source = QF_SYS_PRESSURE_PSI;
    a.io_read = a.io_write = a.io_storage_read = a.io_storage_write = 1;
    a.rss = a.mem_total = a.mem_available = 1;
    a.cpu_util = 0.5;
    qf_sys_to_metrics(&a, m);
    qf_sys_free(s);
    qf_alerts *al = qf_alerts_new(NULL, NULL);
    qf_alert_snapshot snap = qf_alert_snapshot_blank();
    snap.t = 1;
    snap.mem_pressure = 0.5;
    qf_alerts_feed(al, &snap);
    qf_alerts_to_metrics(al, m);
    qf_alerts_free(al);
    return m;
}

static void test_doc_parses(void) {
    ASSERT_MSG(load_doc(), "cannot read docs/metrics.md under %s", QF_SOURCE_DIR);
    ASSERT(g_n >= 30);
    ASSERT_EQ_INT(g_na, QF_ALERT_COUNT);
    /* no name twice */
    for (int i = 0; i < g_n; i++)
        for (int j = i + 1; j < g_n; j++)
            ASSERT_MSG(strcmp(g_rows[i].name, g_rows[j].name) != 0, "%s twice", g_rows[i].name);
}

static void test_rendered_are_documented(void) {
    qf_metrics *m = monitor_registry();
    char *t = qf_metrics_render(m, NULL);
    ASSERT(t);
    int n = 0;
    for (const char *p = t; (p = strstr(p, "# TYPE ")) != NULL; p += 7) {
        char name[96], type[32];
        ASSERT_EQ_INT(sscanf(p + 7, "%95s %31s", name, type), 2);
        const row *r = find_row(name);
        ASSERT_MSG(r, "%s is rendered but not in docs/metrics.md", name);
        ASSERT_MSG(!strcmp(r->type, type), "%s: documented as %s, rendered as %s", name, r->type,
                   type);
        ASSERT_MSG(strstr(r->where, "serve"), "%s: where should include serve", name);
        n++;
    }
    ASSERT(n >= 20);
    /* every label key rendered is documented for its family */
    for (const char *p = t; *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : p + strlen(p)) {
        if (*p == '#' || *p == '\n') continue;
        const char *brace = strchr(p, '{'), *eol = strchr(p, '\n');
        if (!brace || (eol && brace > eol)) continue;
        char name[96];
        size_t k = (size_t)(brace - p);
        if (k >= sizeof name) continue;
        memcpy(name, p, k);
        name[k] = 0;
        const row *r = find_row(name);
        ASSERT_MSG(r, "%s not documented", name);
        const char *q = brace + 1;
        while (*q && *q != '}') {
            const char *eq = strchr(q, '=');
            char key[64];
            size_t kl = (size_t)(eq - q);
            ASSERT(eq && kl < sizeof key);
            memcpy(key, q, kl);
            key[kl] = 0;
            ASSERT_MSG(strstr(r->labels, key), "%s: label %s not documented (%s)", name, key,
                       r->labels);
            q = strchr(eq + 2, '"'); /* values here hold no escaped quotes */
            ASSERT(q);
            q++;
            if (*q == ',') q++;
        }
    }
    /* and the other way: rows of the System and Alerts sections are all
     * rendered by the monitor layer */
    for (int i = 0; i < g_n; i++) {
        if (strncmp(g_rows[i].section, "System", 6) && strncmp(g_rows[i].section, "Alerts", 6))
            continue;
        char want[160];
        snprintf(want, sizeof want, "# TYPE %.95s ", g_rows[i].name);
        ASSERT_MSG(strstr(t, want), "%s is documented but not rendered", g_rows[i].name);
    }
    qf_free(t);
    qf_metrics_free(m);
}

static void test_alert_table(void) {
    qf_alert_config c = qf_alert_config_default();
    for (int id = 0; id < QF_ALERT_COUNT; id++) {
        const char *name = qf_alert_name((qf_alert_id)id);
        const arow *a = NULL;
        for (int i = 0; i < g_na; i++)
            if (!strcmp(g_alerts[i].name, name)) a = &g_alerts[i];
        ASSERT_MSG(a, "alert %s missing from docs/metrics.md", name);
        /* "> 0.95", "> 120 s", "< 0.70, once warm ..." */
        const char *p = a->threshold;
        char op = *p;
        ASSERT_MSG(op == '>' || op == '<', "%s: threshold '%s'", name, a->threshold);
        ASSERT_EQ_INT(op == '<', id == QF_ALERT_CACHE_HIT_RATE);
        double v = strtod(p + 1, NULL);
        ASSERT_MSG(fabs(v - c.rule[id].threshold) < 1e-9, "%s: documented %g, code %g", name, v,
                   c.rule[id].threshold);
        ASSERT_STR_EQ(a->severity, qf_alert_severity_name(c.rule[id].severity));
    }
    ASSERT_EQ_INT(g_na, QF_ALERT_COUNT); /* nothing documented that does not exist */
}

int main(void) {
    RUN_TEST(test_doc_parses);
    RUN_TEST(test_rendered_are_documented);
    RUN_TEST(test_alert_table);
    TEST_MAIN_END();
}
