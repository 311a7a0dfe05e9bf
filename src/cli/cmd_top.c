/* cmd_top.c - `qforge top`: a terminal view of a running `qforge serve` or
 * of a `qforge gen` job.
 *
 * The data comes from monitor/top.h (fetch, parse, quantiles, rates); this
 * file only lays it out. The layout is built once as a list of text lines
 * with an attribute each, then either drawn with ncurses (the live view) or
 * printed (--once). The live loop takes a snapshot, draws, then waits for
 * a key until the next refresh is due; q quits, r refreshes now, a resize
 * redraws at once. A failed snapshot does not end the view: the error is
 * shown above the last good data (marked with its age), and the next
 * refresh tries again, so a restarting server comes back by itself.
 */
#include <curses.h>
#include <locale.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/mem.h"
#include "cli/cli.h"
#include "monitor/top.h"

static const char *k_usage =
    "usage: qforge top [URL | --db JOB.db] [--interval S] [--once [--json]] [--api-key KEY] "
    "[--timeout S]\n"
    "\n"
    "A live terminal view of a running `qforge serve` (its /metrics and /alerts) or of a\n"
    "`qforge gen` job (its job database OUT.jsonl.qforge.db, opened read-only).\n"
    "\n"
    "  URL                 the server (default http://127.0.0.1:1234)\n"
    "      --db FILE       a gen job database; the job's -o OUT.jsonl also works\n"
    "  -i, --interval S    seconds between refreshes (default 1; 0.1 .. 3600)\n"
    "      --once          print one snapshot and exit (text, or JSON with --json)\n"
    "      --json          with --once: the snapshot as one JSON object (keys below)\n"
    "      --api-key KEY   for a server started with --api-key        [QFORGE_API_KEY]\n"
    "      --timeout S     per HTTP request (default 2)\n"
    "\n"
    "keys: q quit, r refresh now\n"
    "\n"
    "--once --json keys (null where the source does not report a value):\n"
    "  both   source (\"serve\"|\"gen\"), target, time_unix, up, error\n"
    "  serve  tokens_per_s, queue_depth, running_sequences, requests_total (on /v1 and /api),\n"
    "         requests_per_s (null with --once), prompt_tokens_total, generated_tokens_total,\n"
    "         requests_cancelled_total, models_loaded, uptime_s,\n"
    "         kv{usage_ratio, blocks_used, blocks_total}, prefix_cache_hit_ratio,\n"
    "         cpu{cores[] (0..1 per core), mean}, memory{rss_bytes, pressure_ratio},\n"
    "         latency_s{count, p50, p90, p99}, ttft_s{count, p50, p90, p99},\n"
    "         alerts_endpoint, alerts_error,\n"
    "         alerts[{name, severity, message, value, threshold, since_unix}]\n"
    "  gen    state (running|done|interrupted|failed|unknown), snapshot_age_s, elapsed_s, eta_s,\n"
    "         tokens_per_s, documents{total, done, skipped},\n"
    "         chunks{total, total_final, done, in_flight, pending},\n"
    "         pairs{accepted, rejected, duplicate}, tokens{in, out}, requests_total,\n"
    "         cache{hits, misses, hit_ratio}, failures{REASON: n}, failures_total\n"
    "\n"
    "exit status: 0 ok; 1 the server or database could not be read (--once), or no terminal;\n"
    "2 wrong usage\n";

/* ---- options ---- */

typedef struct top_opts {
    char url[512];
    char db[1024];
    bool is_db;
    double interval_s, timeout_s;
    bool once, json;
    const char *api_key;
} top_opts;

static bool take(top_opts *o, qf_top_snap *s, qf_err *err) {
    if (o->is_db) return qf_top_read_db(s, o->db, err) == QF_OK;
    return qf_top_fetch_serve(s, o->url, o->api_key, o->timeout_s, err) == QF_OK;
}

/* ---- layout ---- */

enum { AT_NORM = 0, AT_HEAD, AT_LABEL, AT_OK, AT_WARN, AT_BAD, AT_DIM };

#define VIEW_LINES 160
#define LINE_CAP   512

typedef struct top_line {
    int attr;
    char text[LINE_CAP];
} top_line;

typedef struct view {
    top_line l[VIEW_LINES];
    int n;
    int width;
} view;

static void add(view *v, int attr, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void add(view *v, int attr, const char *fmt, ...) {
    if (v->n >= VIEW_LINES) return;
    top_line *l = &v->l[v->n++];
    l->attr = attr;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->text, sizeof l->text, fmt, ap);
    va_end(ap);
}

/* Number formatting: "-" for absent (NaN) values. Each returns buf. */
static const char *f_num(char *buf, size_t cap, double v, int prec) {
    if (!isfinite(v))
        snprintf(buf, cap, "-");
    else if (prec == 0 || v == floor(v))
        snprintf(buf, cap, "%.0f", v);
    else
        snprintf(buf, cap, "%.*f", prec, v);
    return buf;
}

static const char *f_pct(char *buf, size_t cap, double ratio) {
    if (!isfinite(ratio))
        snprintf(buf, cap, "-");
    else
        snprintf(buf, cap, "%.1f%%", 100 * ratio);
    return buf;
}

static const char *f_bytes(char *buf, size_t cap, double b) {
    if (!isfinite(b))
        snprintf(buf, cap, "-");
    else if (b >= 1024.0 * 1024 * 1024)
        snprintf(buf, cap, "%.2f GiB", b / (1024.0 * 1024 * 1024));
    else if (b >= 1024.0 * 1024)
        snprintf(buf, cap, "%.1f MiB", b / (1024.0 * 1024));
    else if (b >= 1024.0)
        snprintf(buf, cap, "%.1f KiB", b / 1024.0);
    else
        snprintf(buf, cap, "%.0f B", b);
    return buf;
}

/* A duration: 850ms, 12.3s, 4m05s, 2h07m. */
static const char *f_dur(char *buf, size_t cap, double s) {
    if (!isfinite(s) || s < 0)
        snprintf(buf, cap, "-");
    else if (s < 1)
        snprintf(buf, cap, "%.0fms", s * 1000);
    else if (s < 60)
        snprintf(buf, cap, "%.1fs", s);
    else if (s < 3600)
        snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else
        snprintf(buf, cap, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
    return buf;
}

static void bar(char *out, int width, double ratio) {
    int fill = isfinite(ratio) ? (int)(ratio * width + 0.5) : 0;
    if (fill < 0) fill = 0;
    if (fill > width) fill = width;
    for (int i = 0; i < width; i++)
        out[i] = i < fill ? '#' : '.';
    out[width] = 0;
}

#define B(n) char n[48]
#define S(n) n, sizeof n

static void view_serve(view *v, const qf_top_snap *s) {
    B(a);
    B(b);
    B(c);
    B(d);
    B(e);
    add(v, AT_LABEL,
        "throughput   tokens/s %-9s requests %s (%s/s)   prompt tokens %s   generated %s",
        f_num(S(a), s->tokens_per_s, 1), f_num(S(b), s->requests_total, 0),
        f_num(S(c), s->requests_per_s, 2), f_num(S(d), s->prompt_tokens_total, 0),
        f_num(S(e), s->generated_tokens_total, 0));
    add(v, AT_LABEL, "scheduler    queue %-12s running %-10s models loaded %-6s cancelled %s",
        f_num(S(a), s->queue_depth, 0), f_num(S(b), s->running, 0),
        f_num(S(c), s->models_loaded, 0), f_num(S(d), s->cancelled_total, 0));
    char kvb[64];
    if (isfinite(s->kv_blocks_total))
        snprintf(kvb, sizeof kvb, " (%.0f/%.0f blocks)",
                 isfinite(s->kv_blocks_used) ? s->kv_blocks_used : 0, s->kv_blocks_total);
    else
        kvb[0] = 0;
    add(v, AT_LABEL, "kv cache     used %s%s   prefix cache hit rate %s", f_pct(S(a), s->kv_usage),
        kvb, f_pct(S(b), s->prefix_hit_ratio));
    add(v, AT_LABEL, "memory       rss %-12s pressure %s", f_bytes(S(a), s->rss_bytes),
        f_pct(S(b), s->mem_pressure));
    const char *nm[2] = {"latency ", "ttft    "};
    const double *pp[2] = {s->lat_p, s->ttft_p};
    const double cnt[2] = {s->lat_count, s->ttft_count};
    for (int k = 0; k < 2; k++) {
        char n[48];
        add(v, AT_LABEL, "%s     p50 %-9s p90 %-9s p99 %-9s (n=%s)", nm[k], f_dur(S(a), pp[k][0]),
            f_dur(S(b), pp[k][1]), f_dur(S(c), pp[k][2]), f_num(S(n), cnt[k], 0));
    }
    /* alerts */
    if (s->alerts_state == 0) {
        add(v, AT_DIM, "alerts       - (this server has no /alerts endpoint)");
    } else if (s->alerts_state < 0) {
        add(v, AT_WARN, "alerts       ? %s", s->alerts_error);
    } else if (s->n_alerts == 0) {
        add(v, AT_OK, "alerts       none");
    } else {
        add(v, AT_BAD, "alerts       %d active", s->n_alerts);
        int n = s->n_alerts < QF_TOP_MAX_ALERTS ? s->n_alerts : QF_TOP_MAX_ALERTS;
        int64_t now = s->t_unix;
        for (int i = 0; i < n; i++) {
            const qf_top_alert *al = &s->alerts[i];
            char since[48] = "";
            if (al->since_unix > 0 && now >= al->since_unix) {
                char t[32];
                snprintf(since, sizeof since, ", for %s",
                         f_dur(S(t), (double)(now - al->since_unix)));
            }
            bool crit = !strcmp(al->severity, "critical") || !strcmp(al->severity, "error");
            /* numbers first: a narrow terminal cuts the message, not them */
            add(v, crit ? AT_BAD : AT_WARN, "  %-8s %s (value %s, threshold %s%s): %s",
                al->severity[0] ? al->severity : "alert", al->name, f_num(S(a), al->value, 3),
                f_num(S(b), al->threshold, 3), since, al->message);
        }
        if (s->n_alerts > n) add(v, AT_WARN, "  ... %d more", s->n_alerts - n);
    }
    /* cpu per core */
    int nc = 0;
    double sum = 0;
    for (int i = 0; i < s->n_cores; i++)
        if (isfinite(s->core_util[i])) {
            sum += s->core_util[i];
            nc++;
        }
    if (!nc) {
        add(v, AT_LABEL, "cpu          -");
        return;
    }
    add(v, AT_LABEL, "cpu          %d cores, mean %s", s->n_cores, f_pct(S(a), sum / nc));
    const int cell = 26; /* "  c12 [############]  99%" */
    int per = (v->width - 2) / cell;
    if (per < 1) per = 1;
    char line[LINE_CAP];
    size_t len = 0;
    for (int i = 0; i < s->n_cores; i++) {
        char bb[16];
        bar(bb, 12, s->core_util[i]);
        char pc[16];
        if (isfinite(s->core_util[i]))
            snprintf(pc, sizeof pc, "%3.0f%%", 100 * s->core_util[i]);
        else
            snprintf(pc, sizeof pc, "   -");
        len += (size_t)snprintf(line + len, sizeof line - len, "  c%-3d[%s] %s", i, bb, pc);
        if ((i + 1) % per == 0 || i + 1 == s->n_cores) {
            add(v, AT_NORM, "%s", line);
            len = 0;
            line[0] = 0;
        }
        if (len >= sizeof line) len = sizeof line - 1;
    }
}

static void view_gen(view *v, const qf_top_snap *s, double interval_s) {
    B(a);
    B(b);
    B(c);
    B(d);
    B(e);
    double stale_after = interval_s * 3 > 5 ? interval_s * 3 : 5;
    if (isnan(s->snapshot_age_s))
        add(v, AT_WARN,
            "no metrics snapshot in this database (job from an older qforge, or not started)");
    else if (!strcmp(s->state, "running") && s->snapshot_age_s > stale_after)
        add(v, AT_WARN, "the newest snapshot is %s old: is the job still running?",
            f_dur(S(a), s->snapshot_age_s));
    double ratio =
        isfinite(s->chunks_total) && s->chunks_total > 0 ? s->chunks_done / s->chunks_total : NAN;
    char bb[40];
    bar(bb, 30, ratio);
    add(v, AT_LABEL, "progress     [%s] %s   chunks %s/%s%s   (in flight %s, pending %s)", bb,
        f_pct(S(a), ratio), f_num(S(b), s->chunks_done, 0), f_num(S(c), s->chunks_total, 0),
        s->chunks_total_final ? "" : "+", f_num(S(d), s->chunks_in_flight, 0),
        f_num(S(e), s->chunks_pending, 0));
    add(v, AT_LABEL, "time         elapsed %-10s ETA %s", f_dur(S(a), s->elapsed_s),
        !strcmp(s->state, "running") ? f_dur(S(b), s->eta_s) : "-");
    add(v, AT_LABEL, "documents    %s/%s done, %s skipped", f_num(S(a), s->docs_done, 0),
        f_num(S(b), s->docs_total, 0), f_num(S(c), s->docs_skipped, 0));
    add(v, AT_LABEL, "pairs        accepted %-8s rejected %-8s duplicate %s",
        f_num(S(a), s->pairs_accepted, 0), f_num(S(b), s->pairs_rejected, 0),
        f_num(S(c), s->pairs_duplicate, 0));
    add(v, AT_LABEL, "tokens       in %-10s out %-10s tokens/s %s", f_num(S(a), s->tokens_in, 0),
        f_num(S(b), s->tokens_out, 0), f_num(S(c), s->tokens_per_s, 1));
    add(v, AT_LABEL, "requests     %-10s cache hits %s, misses %s (hit rate %s)",
        f_num(S(a), s->gen_requests, 0), f_num(S(b), s->cache_hits, 0),
        f_num(S(c), s->cache_misses, 0), f_pct(S(d), s->cache_hit_ratio));
    char fl[LINE_CAP] = "";
    size_t len = 0;
    for (int i = 0; i < s->n_failures && len < sizeof fl; i++)
        len += (size_t)snprintf(fl + len, sizeof fl - len, "%s%s %.0f", i ? ", " : "  (",
                                s->failures[i].reason, s->failures[i].n);
    if (s->n_failures && len < sizeof fl - 1) snprintf(fl + len, sizeof fl - len, ")");
    add(v, s->failures_total > 0 ? AT_WARN : AT_LABEL, "failures     %s%s",
        f_num(S(a), s->failures_total, 0), fl);
}

/* The whole screen for the newest snapshot cur (good: the newest one that
 * was up, shown under an error line when cur is not; may be NULL). */
static void build_view(view *v, const top_opts *o, const qf_top_snap *cur, const qf_top_snap *good,
                       bool live) {
    v->n = 0;
    B(a);
    const qf_top_snap *s = cur->up ? cur : good;
    char head[LINE_CAP];
    size_t n = (size_t)snprintf(head, sizeof head, "qforge top  %s %s", o->is_db ? "gen" : "serve",
                                cur->target);
    if (s && !o->is_db && isfinite(s->uptime_s))
        n += (size_t)snprintf(head + n, sizeof head - n, "   up %s", f_dur(S(a), s->uptime_s));
    if (s && o->is_db) n += (size_t)snprintf(head + n, sizeof head - n, "   state %s", s->state);
    if (live && n < sizeof head)
        snprintf(head + n, sizeof head - n, "   every %gs   q quit, r refresh", o->interval_s);
    add(v, AT_HEAD, "%s", head);
    if (!cur->up) {
        add(v, AT_BAD, "ERROR: %s", cur->error);
        if (good)
            add(v, AT_WARN, "retrying every %gs; below: the last good snapshot, %s old",
                o->interval_s, f_dur(S(a), cur->t_mono - good->t_mono));
        else
            add(v, AT_WARN, "retrying every %gs", o->interval_s);
    } else {
        add(v, AT_OK, "ok");
    }
    add(v, AT_NORM, "%s", "");
    if (!s) return;
    if (o->is_db)
        view_gen(v, s, o->interval_s);
    else
        view_serve(v, s);
}

/* ---- the live view ---- */

static volatile sig_atomic_t g_quit = 0;
static void on_signal(int sig) {
    (void)sig;
    g_quit = 1;
}

static void draw(const view *v) {
    erase();
    int rows = LINES, cols = COLS;
    for (int i = 0; i < v->n && i < rows; i++) {
        int at = A_NORMAL;
        switch (v->l[i].attr) {
        case AT_HEAD:
            at = A_BOLD | A_REVERSE;
            break;
        case AT_OK:
            at = has_colors() ? COLOR_PAIR(1) : A_NORMAL;
            break;
        case AT_WARN:
            at = has_colors() ? COLOR_PAIR(2) | A_BOLD : A_BOLD;
            break;
        case AT_BAD:
            at = has_colors() ? COLOR_PAIR(3) | A_BOLD : A_BOLD | A_REVERSE;
            break;
        case AT_DIM:
            at = A_DIM;
            break;
        default:
            break;
        }
        attrset(at);
        mvaddnstr(i, 0, v->l[i].text, cols);
        if (v->l[i].attr == AT_HEAD) /* the title bar spans the width */
            for (int x = (int)strlen(v->l[i].text); x < cols; x++)
                mvaddch(i, x, ' ');
    }
    attrset(A_NORMAL);
    if (v->n > rows && rows > 0) mvaddnstr(rows - 1, 0, "... (enlarge the window for more)", cols);
    refresh();
}

static int run_live(top_opts *o) {
    if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
        fprintf(stderr,
                "qforge: top: the live view needs a terminal; use --once [--json] in scripts\n");
        return QF_EXIT_FAIL;
    }
    setlocale(LC_ALL, "");
    SCREEN *scr = newterm(NULL, stdout, stdin);
    if (!scr) {
        fprintf(stderr, "qforge: top: cannot use this terminal (TERM=%s)\n",
                getenv("TERM") ? getenv("TERM") : "");
        return QF_EXIT_FAIL;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    cbreak();
    noecho();
    keypad(stdscr, TRUE);
    curs_set(0);
    if (has_colors()) {
        start_color();
        use_default_colors();
        init_pair(1, COLOR_GREEN, -1);
        init_pair(2, COLOR_YELLOW, -1);
        init_pair(3, COLOR_RED, -1);
    }
    qf_top_snap *snaps =
        qf_calloc(3, sizeof *snaps); /* cur, prev (last up), good (copy of last up) */
    view *v = qf_calloc(1, sizeof *v);
    if (!snaps || !v) {
        endwin();
        delscreen(scr);
        qf_free(snaps);
        qf_free(v);
        fprintf(stderr, "qforge: out of memory\n");
        return QF_EXIT_FAIL;
    }
    qf_top_snap *cur = &snaps[0], *good = &snaps[1];
    bool have_good = false;
    while (!g_quit) {
        qf_err err = {0};
        take(o, cur, &err);
        if (cur->up) {
            qf_top_rates(cur, have_good ? good : NULL);
            *good = *cur;
            have_good = true;
        }
        v->width = COLS;
        build_view(v, o, cur, have_good ? good : NULL, true);
        draw(v);
        double due = qf_now_s() + o->interval_s;
        bool refresh_now = false;
        while (!g_quit && !refresh_now) {
            double left = due - qf_now_s();
            if (left <= 0) break;
            /* wake at least every 200 ms so a signal is noticed */
            timeout(left > 0.2 ? 200 : (int)(left * 1000) + 1);
            int ch = getch();
            if (ch == 'q' || ch == 'Q' || ch == 27)
                g_quit = 1;
            else if (ch == 'r' || ch == 'R')
                refresh_now = true;
            else if (ch == KEY_RESIZE) {
                v->width = COLS;
                build_view(v, o, cur, have_good ? good : NULL, true);
                draw(v);
            }
        }
    }
    endwin();
    delscreen(scr);
    qf_free(snaps);
    qf_free(v);
    return QF_EXIT_OK;
}

/* ---- one snapshot ---- */

static int run_once(top_opts *o) {
    qf_top_snap *s = qf_calloc(1, sizeof *s);
    if (!s) {
        fprintf(stderr, "qforge: out of memory\n");
        return QF_EXIT_FAIL;
    }
    qf_err err = {0};
    int rc = QF_EXIT_OK;
    if (!take(o, s, &err)) {
        rc = cli_fail(&err);
        goto out;
    }
    if (o->json) {
        char *js = qf_top_snap_json(s);
        if (!js) {
            fprintf(stderr, "qforge: out of memory\n");
            rc = QF_EXIT_FAIL;
            goto out;
        }
        fputs(js, stdout);
        fputc('\n', stdout);
        qf_free(js);
    } else {
        view *v = qf_calloc(1, sizeof *v);
        if (!v) {
            fprintf(stderr, "qforge: out of memory\n");
            rc = QF_EXIT_FAIL;
            goto out;
        }
        v->width = 100;
        build_view(v, o, s, NULL, false);
        for (int i = 0; i < v->n; i++)
            puts(v->l[i].text);
        qf_free(v);
    }
    if (fflush(stdout) != 0) rc = QF_EXIT_FAIL;
out:
    qf_free(s);
    return rc;
}

/* ---- entry ---- */

static bool is_sqlite(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    char magic[16];
    bool ok =
        fread(magic, 1, sizeof magic, f) == sizeof magic && !memcmp(magic, "SQLite format 3", 16);
    fclose(f);
    return ok;
}

int cmd_top(int argc, char **argv) {
    top_opts o;
    memset(&o, 0, sizeof o);
    o.interval_s = 1;
    o.timeout_s = 2;
    o.api_key = getenv("QFORGE_API_KEY");
    const char *url = NULL, *db = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(k_usage, stdout);
            return QF_EXIT_OK;
        } else if (!strcmp(a, "--db")) {
            if (!(v = cli_value(argc, argv, &i)))
                return cli_usage_error(k_usage, "top: --db needs a file");
            db = v;
        } else if (!strcmp(a, "-i") || !strcmp(a, "--interval")) {
            if (!(v = cli_value(argc, argv, &i)))
                return cli_usage_error(k_usage, "top: %s needs seconds", a);
            if (!cli_parse_float(v, 0.1, 3600, &o.interval_s))
                return cli_usage_error(k_usage, "top: bad value '%s' for %s (0.1 .. 3600 seconds)",
                                       v, a);
        } else if (!strcmp(a, "--timeout")) {
            if (!(v = cli_value(argc, argv, &i)))
                return cli_usage_error(k_usage, "top: %s needs seconds", a);
            if (!cli_parse_float(v, 0.05, 600, &o.timeout_s))
                return cli_usage_error(k_usage, "top: bad value '%s' for %s (0.05 .. 600 seconds)",
                                       v, a);
        } else if (!strcmp(a, "--api-key")) {
            if (!(v = cli_value(argc, argv, &i)))
                return cli_usage_error(k_usage, "top: --api-key needs a key");
            o.api_key = v;
        } else if (!strcmp(a, "--once")) {
            o.once = true;
        } else if (!strcmp(a, "--json")) {
            o.json = true;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error(k_usage, "top: unknown option '%s'", a);
        } else if (url) {
            return cli_usage_error(k_usage, "top: one URL only (got '%s' and '%s')", url, a);
        } else {
            url = a;
        }
    }
    if (url && db) return cli_usage_error(k_usage, "top: give a URL or --db, not both");
    if (o.json && !o.once) return cli_usage_error(k_usage, "top: --json goes with --once");
    if (url && !*url) return cli_usage_error(k_usage, "top: empty URL");
    if (db) {
        /* the job's -o OUT.jsonl names its database OUT.jsonl.qforge.db */
        char alt[1024];
        snprintf(alt, sizeof alt, "%s.qforge.db", db);
        struct stat st;
        bool alt_ok = stat(alt, &st) == 0 && S_ISREG(st.st_mode);
        snprintf(o.db, sizeof o.db, "%s", alt_ok && !is_sqlite(db) ? alt : db);
        o.is_db = true;
    } else {
        const char *u = url ? url : "http://127.0.0.1:1234";
        snprintf(o.url, sizeof o.url, "%s%s", strstr(u, "://") ? "" : "http://", u);
    }
    return o.once ? run_once(&o) : run_live(&o);
}
