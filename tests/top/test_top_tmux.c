/* test_top_tmux.c - the live ncurses view of `qforge top` in a real
 * terminal: tmux runs it in a detached 120x40 session and `capture-pane`
 * reads the screen. Checked: the labels and numbers of a live server, a
 * refresh after another request, a resize, the server going away (the view
 * shows the error and stays) and coming back on the same port, q quitting
 * with status 0, and the gen view of a finished job. Skips (77) without
 * tmux. A private tmux socket keeps it off the user's sessions. */
#include <time.h>

#include "top_util.h"

static char g_sock[64];
static char g_rc[700];

static char *screen(void) {
    char *out = NULL;
    sh_run(&out, false, "tmux -L %s capture-pane -p -t top", g_sock);
    return out;
}

/* Wait up to secs until the screen shows every needle (NULL-terminated);
 * returns the last screen (caller frees). */
static char *wait_screen(double secs, const char *const *needles, const char *const *absent) {
    char *s = NULL;
    for (double t = 0; t < secs; t += 0.2) {
        free(s);
        s = screen();
        bool ok = s != NULL;
        for (int i = 0; ok && needles[i]; i++)
            ok = strstr(s, needles[i]) != NULL;
        for (int i = 0; ok && absent && absent[i]; i++)
            ok = strstr(s, absent[i]) == NULL;
        if (ok) return s;
        usleep(200000);
    }
    return s;
}

/* The widest line of a captured screen. */
static int max_columns(const char *s) {
    int w = 0;
    for (const char *p = s, *nl; *p; p = nl + 1) {
        nl = strchr(p, '\n');
        int n = nl ? (int)(nl - p) : (int)strlen(p);
        if (n > w) w = n;
        if (!nl) break;
    }
    return w;
}

static bool has_all(const char *s, const char *const *needles) {
    for (int i = 0; needles[i]; i++)
        if (!s || !strstr(s, needles[i])) {
            fprintf(stderr, "screen lacks '%s'\n", needles[i]);
            return false;
        }
    return true;
}

static bool session_alive(void) {
    return sh_run(NULL, false, "tmux -L %s has-session -t top", g_sock) == 0;
}

static bool start_top(const char *args) {
    unlink(g_rc);
    sh_run(NULL, false, "tmux -L %s kill-session -t top", g_sock); /* left by a failed test */
    /* the shell in the pane records top's exit status, then the session ends */
    return sh_run(NULL, true,
                  "tmux -L %s new-session -d -s top -x 120 -y 40 \"'%s' top %s; echo \\$? > '%s'\"",
                  g_sock, g_exe, args, g_rc) == 0;
}

/* Send q; true when top exited 0 and the session is gone. */
static bool quit_top(void) {
    sh_run(NULL, false, "tmux -L %s send-keys -t top q", g_sock);
    for (int i = 0; i < 50; i++) {
        usleep(100000);
        char *rc = slurp(g_rc);
        if (rc) {
            bool ok = atoi(rc) == 0 && rc[0] == '0';
            if (!ok) fprintf(stderr, "top exited with %s\n", rc);
            free(rc);
            for (int k = 0; k < 20 && session_alive(); k++)
                usleep(100000);
            return ok && !session_alive();
        }
    }
    fprintf(stderr, "top did not exit after q\n");
    return false;
}

static void test_serve_view(void) {
    server s;
    /* an alert that any request sets off, when this server has alerts */
    const char *extra = "--alert response_latency=0.001";
    if (!server_start(&s, 0, extra)) {
        extra = NULL;
        ASSERT_MSG(server_start(&s, 0, NULL), "qforge serve did not start");
    }
    ASSERT_EQ_INT(send_chat(s.url, NULL), 200);
    char args[256];
    snprintf(args, sizeof args, "%s --interval 0.3", s.url);
    ASSERT(start_top(args));
    const char *want[] = {"qforge top",
                          "serve",
                          s.url,
                          "throughput",
                          "tokens/s",
                          "requests 1 (",
                          "queue",
                          "running",
                          "models loaded 1",
                          "kv cache",
                          "prefix cache hit rate",
                          "memory",
                          "rss",
                          "latency",
                          "ttft",
                          "p50",
                          "p90",
                          "p99",
                          "(n=1)",
                          "alerts",
                          "cpu",
                          "q quit",
                          NULL};
    char *scr = wait_screen(20, want, NULL);
    ASSERT_MSG(has_all(scr, want), "screen:\n%s", scr);
    /* the second line says all is well; the KV line has its block counts */
    ASSERT_MSG(strstr(scr, "\nok\n") && strstr(scr, " blocks)"), "%s", scr);
    bool has_alerts = !strstr(scr, "no /alerts endpoint");
    free(scr);
    if (has_alerts && extra) {
        const char *al[] = {"alerts       1 active", "warning  response_latency (value ",
                            "threshold 0.001, for ", NULL};
        scr = wait_screen(10, al, NULL);
        ASSERT_MSG(has_all(scr, al), "%s", scr);
        free(scr);
    }

    /* it refreshes: another request shows up */
    ASSERT_EQ_INT(send_chat(s.url, NULL), 200);
    const char *want2[] = {"requests 2 (", "(n=2)", NULL};
    scr = wait_screen(10, want2, NULL);
    ASSERT_MSG(has_all(scr, want2), "%s", scr);
    free(scr);

    /* a smaller terminal: redrawn to fit */
    ASSERT_EQ_INT(sh_run(NULL, true, "tmux -L %s resize-window -t top -x 70 -y 20", g_sock), 0);
    /* poll until redrawn (a loaded machine may take longer than a frame) */
    const char *want3[] = {"throughput", NULL};
    scr = NULL;
    for (int tries = 0; tries < 50; tries++) {
        free(scr);
        scr = wait_screen(10, want3, NULL);
        if (scr && max_columns(scr) <= 70) break;
        usleep(200000);
    }
    ASSERT(scr && strstr(scr, "throughput"));
    int lines = 0;
    for (char *p = scr, *nl; p && *p; p = nl + 1, lines++) {
        nl = strchr(p, '\n');
        if (!nl) break;
        ASSERT_MSG(nl - p <= 70, "a line of %d columns after the resize: %.*s", (int)(nl - p),
                   (int)(nl - p), p);
    }
    ASSERT_MSG(lines <= 20, "%d lines", lines);
    free(scr);
    ASSERT_EQ_INT(sh_run(NULL, true, "tmux -L %s resize-window -t top -x 120 -y 40", g_sock), 0);

    /* the server goes away: the error shows, top stays */
    int port = s.port;
    server_stop(&s);
    const char *down[] = {"ERROR", "cannot reach", "last good snapshot", "throughput", NULL};
    scr = wait_screen(10, down, NULL);
    ASSERT_MSG(has_all(scr, down), "%s", scr);
    free(scr);
    ASSERT(session_alive());
    /* ... and comes back on the same port: the view recovers by itself */
    ASSERT_MSG(server_start(&s, port, extra), "restart on port %d", port);
    const char *up[] = {"\nok\n", "requests 0 (", NULL}, *gone[] = {"ERROR", NULL};
    scr = wait_screen(15, up, gone);
    ASSERT_MSG(has_all(scr, up) && !strstr(scr, "ERROR"), "%s", scr);
    free(scr);

    ASSERT(quit_top());
    server_stop(&s);
}

static void test_gen_view(void) {
    char out[700];
    snprintf(out, sizeof out, "%s/g.jsonl", g_tmp);
    char *log = NULL;
    int rc = sh_run(&log, true,
                    "%s gen %s/examples/docs/swarming.pdf -o %s -m %s --pairs 1 --max-tokens 720 "
                    "--chunk-tokens 1500 "
                    "--min-answer 10 --progress off",
                    g_exe, QF_SOURCE_DIR, out, g_model);
    ASSERT_MSG(rc == 0, "%s", log);
    free(log);
    char args[800];
    /* a long interval: only the resize itself can redraw, and q must not wait for a refresh */
    snprintf(args, sizeof args, "--db %s.qforge.db --interval 60", out);
    ASSERT(start_top(args));
    const char *want[] = {
        "qforge top", "gen",    "state done", "progress", "100.0%", "documents    1/1 done",
        "pairs",      "tokens", "failures",   NULL};
    char *scr = wait_screen(15, want, NULL);
    ASSERT_MSG(has_all(scr, want), "%s", scr);
    ASSERT(strstr(scr, "every 60s"));
    free(scr);
    /* too few rows for the view: only a redraw at the new size writes the "enlarge" line */
    ASSERT_EQ_INT(sh_run(NULL, true, "tmux -L %s resize-window -t top -x 60 -y 8", g_sock), 0);
    usleep(1000000);
    scr = screen();
    ASSERT(scr && strstr(scr, "progress"));
    ASSERT_MSG(strstr(scr, "enlarge the window"), "not redrawn after the resize:\n%s", scr);
    int longest = 0;
    for (char *p = scr, *nl; (nl = strchr(p, '\n')); p = nl + 1)
        if (nl - p > longest) longest = (int)(nl - p);
    ASSERT_MSG(longest <= 60 && longest >= 50, "longest line %d after resizing to 60 columns:\n%s",
               longest, scr);
    free(scr);
    double t0 = (double)time(NULL);
    ASSERT(quit_top());
    ASSERT((double)time(NULL) - t0 < 5);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    if (sh_run(NULL, false, "tmux -V") != 0) QF_SKIP("tmux is not installed");
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (!top_setup("test_top_tmux")) return 1;
    snprintf(g_sock, sizeof g_sock, "qftop%d", (int)getpid());
    snprintf(g_rc, sizeof g_rc, "%s/top.rc", g_tmp);
    RUN_TEST(test_serve_view);
    RUN_TEST(test_gen_view);
    sh_run(NULL, false, "tmux -L %s kill-server; rm -f \"${TMUX_TMPDIR:-/tmp}/tmux-$(id -u)/%s\"",
           g_sock, g_sock);
    curl_global_cleanup();
    TEST_MAIN_END();
}
