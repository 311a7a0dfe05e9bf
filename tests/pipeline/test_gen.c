/* test_gen.c - `qforge gen` end to end, through the command line:
 *   the example documents with the embedded engine (a synthesized model),
 *   a second run served entirely from the cache, other formats from the cache,
 *   the HTTP provider against the fault-injecting server (faults, malformed
 *   replies repaired, <think> blocks, curation + rejects), failures recorded,
 *   kill -9 at random moments + --resume == one uninterrupted run,
 *   a full disk (ulimit -f) then --resume, --dry-run, usage errors, the
 *   no-network message, and `qforge serve` as an endpoint when it exists.
 * Set QF_QFORGE to test another binary. */
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "qf_test.h"

static char g_tmp[512];
static const char *g_exe;
static char g_model[600];

/* Run a shell command; capture stdout+stderr into *out (malloc'ed, may be NULL). */
static int sh(char **out, const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return qf_test_sh(cmd, 1, out);
}

static const char *tpath_buf(const char *name) {
    static char p[8][700];
    static int k;
    k = (k + 1) % 8;
    snprintf(p[k], sizeof p[k], "%s/%s", g_tmp, name);
    return p[k];
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    size_t got = fread(b, 1, (size_t)n, f);
    b[got] = 0;
    fclose(f);
    if (len) *len = got;
    return b;
}

static cJSON *load_json(const char *path) {
    char *s = slurp(path, NULL);
    cJSON *j = s ? cJSON_Parse(s) : NULL;
    free(s);
    return j;
}

static double jnum(const cJSON *j, const char *a, const char *b) {
    const cJSON *v = cJSON_GetObjectItem(j, a);
    if (b) v = cJSON_GetObjectItem(v, b);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

/* Lines of a JSONL file: all complete, all JSON objects; sorted copies for
 * comparisons. Returns the number of lines, -1 on a bad line. */
static int check_jsonl(const char *path, char ***sorted) {
    size_t len;
    char *s = slurp(path, &len);
    if (!s) return -1;
    if (len && s[len - 1] != '\n') {
        fprintf(stderr, "%s: partial last line\n", path);
        free(s);
        return -1;
    }
    int n = 0, cap = 64;
    char **v = malloc((size_t)cap * sizeof *v);
    for (char *p = s, *nl; *p; p = nl + 1) {
        nl = strchr(p, '\n');
        *nl = 0;
        cJSON *j = cJSON_Parse(p);
        if (!cJSON_IsObject(j)) {
            fprintf(stderr, "%s: line %d is not a JSON object: %.80s\n", path, n + 1, p);
            cJSON_Delete(j);
            free(s);
            for (int i = 0; i < n; i++) free(v[i]);
            free(v);
            return -1;
        }
        cJSON_Delete(j);
        if (n == cap) v = realloc(v, (size_t)(cap *= 2) * sizeof *v);
        v[n++] = strdup(p);
    }
    free(s);
    for (int i = 1; i < n; i++) /* insertion sort: small files */
        for (int k = i; k > 0 && strcmp(v[k - 1], v[k]) > 0; k--) {
            char *t = v[k];
            v[k] = v[k - 1];
            v[k - 1] = t;
        }
    if (sorted) *sorted = v;
    else {
        for (int i = 0; i < n; i++) free(v[i]);
        free(v);
    }
    return n;
}

static void free_lines(char **v, int n) {
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

static bool same_lines(char **a, int na, char **b, int nb) {
    if (na != nb) return false;
    for (int i = 0; i < na; i++)
        if (strcmp(a[i], b[i])) return false;
    return true;
}

/* ---- fault server ---- */

typedef struct server {
    pid_t pid;
    char url[64];
} server;

static bool server_start(server *s, const char *args) {
    int fd[2];
    if (pipe(fd) != 0) return false;
    s->pid = fork();
    if (s->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        dup2(fd[1], 1);
        close(fd[0]);
        int dn = open("/dev/null", 1);
        dup2(dn, 2);
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "exec %s %s", QF_FAULT_SERVER, args);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    FILE *f = fdopen(fd[0], "r");
    int port = 0;
    if (fscanf(f, "PORT %d", &port) != 1) port = 0;
    fclose(f);
    snprintf(s->url, sizeof s->url, "http://127.0.0.1:%d", port);
    return port > 0;
}

static void server_stop(server *s) {
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        waitpid(s->pid, NULL, 0);
    }
    s->pid = 0;
}

static long server_stat(server *s, const char *key) {
    char *out;
    sh(&out, "curl -s %s/stats", s->url);
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *q = strstr(out, pat);
    long v = q ? atol(q + strlen(pat)) : -1;
    free(out);
    return v;
}

/* ---- tests ---- */

static void test_engine_examples(void) {
    char *out;
    const char *common = "--pairs 1 --max-tokens 720 --chunk-tokens 1500 --min-answer 10 --progress plain";
    int rc = sh(&out, "cd %s && %s gen %s/examples/docs -o %s/eng.jsonl -m %s %s --report %s/eng1.json", g_tmp, g_exe,
                QF_SOURCE_DIR, g_tmp, g_model, common, g_tmp);
    ASSERT_MSG(rc == 0, "rc %d: %s", rc, out);
    ASSERT(strstr(out, "qforge gen: [")); /* plain progress lines when not a terminal */
    free(out);
    char **l1;
    int n1 = check_jsonl(tpath_buf("eng.jsonl"), &l1);
    ASSERT(n1 >= 1);
    cJSON *rep = load_json(tpath_buf("eng1.json"));
    ASSERT(rep);
    ASSERT_EQ_INT(jnum(rep, "documents", "total"), 6);
    ASSERT_EQ_INT(jnum(rep, "documents", "processed"), 6);
    ASSERT_EQ_INT(jnum(rep, "pairs", "accepted"), n1);
    ASSERT(jnum(rep, "tokens", "out") > 0 && jnum(rep, "requests", NULL) > 0);
    ASSERT(jnum(rep, "docs_per_s", NULL) > 0);
    ASSERT_EQ_INT(jnum(rep, "cache", "hits"), 0);
    int chunks = (int)jnum(rep, "chunks", "done");
    ASSERT(chunks >= 6);
    /* every chunk's one request either gave a pair (kept or a duplicate) or a recorded failure */
    ASSERT_EQ_INT(jnum(rep, "pairs", "accepted") + jnum(rep, "pairs", "duplicate") + jnum(rep, "failures_total", NULL),
                  chunks);
    ASSERT_STR_EQ(cJSON_GetObjectItem(rep, "backend")->valuestring, "engine");
    cJSON_Delete(rep);
    /* records: the DESIGN.md fields, sources among the example documents */
    for (int i = 0; i < n1; i++) {
        cJSON *j = cJSON_Parse(l1[i]);
        ASSERT(cJSON_IsString(cJSON_GetObjectItem(j, "id")) && cJSON_IsString(cJSON_GetObjectItem(j, "question")) &&
               cJSON_IsString(cJSON_GetObjectItem(j, "answer")) && cJSON_IsString(cJSON_GetObjectItem(j, "model")) &&
               cJSON_IsNumber(cJSON_GetObjectItem(j, "pass")));
        cJSON *src = cJSON_GetObjectItem(j, "source");
        ASSERT(strstr(cJSON_GetObjectItem(src, "path")->valuestring, "examples/docs/"));
        ASSERT(jnum(src, "start", NULL) >= 0 && jnum(src, "end", NULL) > jnum(src, "start", NULL));
        ASSERT_STR_EQ(cJSON_GetObjectItem(j, "model")->valuestring, "tiny.gguf");
        cJSON_Delete(j);
    }

    /* the same command again: nothing computed, every reply from the cache */
    rc = sh(&out, "cd %s && %s gen %s/examples/docs -o %s/eng.jsonl -m %s %s --report %s/eng2.json", g_tmp, g_exe,
            QF_SOURCE_DIR, g_tmp, g_model, common, g_tmp);
    ASSERT_MSG(rc == 0, "%s", out);
    free(out);
    rep = load_json(tpath_buf("eng2.json"));
    ASSERT_EQ_INT(jnum(rep, "tokens", "out"), 0);
    ASSERT_EQ_INT(jnum(rep, "tokens", "in"), 0);
    ASSERT_EQ_INT(jnum(rep, "requests", NULL), 0);
    ASSERT_NEAR(jnum(rep, "cache", "hit_rate"), 1.0, 1e-9);
    ASSERT(jnum(rep, "cache", "hits") >= chunks);
    cJSON_Delete(rep);
    char **l2;
    int n2 = check_jsonl(tpath_buf("eng.jsonl"), &l2);
    ASSERT(same_lines(l1, n1, l2, n2));
    free_lines(l2, n2);

    /* another format from the cache: same pairs, alpaca records */
    rc = sh(&out, "cd %s && %s gen %s/examples/docs -o %s/eng-alpaca.jsonl -m %s %s --format alpaca --db %s/eng.jsonl.qforge.db "
                  "--report %s/eng3.json",
            g_tmp, g_exe, QF_SOURCE_DIR, g_tmp, g_model, common, g_tmp, g_tmp);
    ASSERT_MSG(rc == 0, "%s", out);
    free(out);
    rep = load_json(tpath_buf("eng3.json"));
    ASSERT_EQ_INT(jnum(rep, "requests", NULL), 0);
    cJSON_Delete(rep);
    char **l3;
    int n3 = check_jsonl(tpath_buf("eng-alpaca.jsonl"), &l3);
    ASSERT_EQ_INT(n3, n1);
    cJSON *j = cJSON_Parse(l3[0]);
    ASSERT(cJSON_GetObjectItem(j, "instruction") && cJSON_GetObjectItem(j, "output") && !cJSON_GetObjectItem(j, "id"));
    cJSON_Delete(j);
    free_lines(l3, n3);
    free_lines(l1, n1);

    /* a changed parameter recomputes: other seed, cache misses */
    rc = sh(&out, "cd %s && %s gen %s/examples/docs/swarming.pdf -o %s/eng-seed.jsonl -m %s %s --seed 5 --db "
                  "%s/eng.jsonl.qforge.db --report %s/eng4.json",
            g_tmp, g_exe, QF_SOURCE_DIR, g_tmp, g_model, common, g_tmp, g_tmp);
    ASSERT_MSG(rc == 0, "%s", out);
    free(out);
    rep = load_json(tpath_buf("eng4.json"));
    ASSERT_EQ_INT(jnum(rep, "cache", "hits"), 0);
    ASSERT(jnum(rep, "requests", NULL) >= 1);
    cJSON_Delete(rep);

    /* --kv-type q8_0 reaches the engine, and the job completes on it */
    rc = sh(&out, "cd %s && QF_LOG=debug %s gen %s/examples/docs/swarming.pdf -o %s/eng-q8.jsonl -m %s %s --kv-type q8_0 "
                  "--report %s/eng5.json",
            g_tmp, g_exe, QF_SOURCE_DIR, g_tmp, g_model, common, g_tmp);
    ASSERT_MSG(rc == 0, "%s", out);
    ASSERT_MSG(strstr(out, "kv cache q8_0"), "%s", out);
    free(out);
    rep = load_json(tpath_buf("eng5.json"));
    ASSERT(jnum(rep, "requests", NULL) >= 1);
    ASSERT_EQ_INT(jnum(rep, "pairs", "accepted") + jnum(rep, "pairs", "duplicate") + jnum(rep, "failures_total", NULL),
                  jnum(rep, "chunks", "done"));
    cJSON_Delete(rep);
}

static void test_http_faults_curate(void) {
    server s;
    ASSERT(server_start(&s, "--faults 500,garbage,429,timeout,close --hang-ms 2500 --malformed-every 3 --think"));
    char *out;
    int rc = sh(&out,
                "%s gen %s/examples/docs -o %s/http.jsonl --endpoint %s --timeout 1 --backoff 0.02 --cooldown 0.1 "
                "--curate 6 --max-concurrent 4 --report %s/http.json --progress off",
                g_exe, QF_SOURCE_DIR, g_tmp, s.url, g_tmp);
    ASSERT_MSG(rc == 0, "%s", out);
    free(out);
    cJSON *rep = load_json(tpath_buf("http.json"));
    ASSERT(rep);
    ASSERT_EQ_INT(jnum(rep, "failures_total", NULL), 0); /* every fault was retried away */
    ASSERT_EQ_INT(jnum(rep, "documents", "processed"), 6);
    int acc = (int)jnum(rep, "pairs", "accepted"), rej = (int)jnum(rep, "pairs", "rejected");
    ASSERT(acc > 0 && rej > 0);
    ASSERT_STR_EQ(cJSON_GetObjectItem(rep, "model")->valuestring, "fault-model");
    cJSON_Delete(rep);
    ASSERT(server_stat(&s, "repair") > 0);  /* malformed replies were repaired */
    ASSERT(server_stat(&s, "curate") >= acc + rej); /* a timed-out attempt may still be answered */
    char **a, **r;
    ASSERT_EQ_INT(check_jsonl(tpath_buf("http.jsonl"), &a), acc);
    ASSERT_EQ_INT(check_jsonl(tpath_buf("http.rejects.jsonl"), &r), rej);
    for (int i = 0; i < acc; i++) {
        cJSON *j = cJSON_Parse(a[i]);
        ASSERT(jnum(j, "score", NULL) >= 6);
        ASSERT(!strstr(cJSON_GetObjectItem(j, "question")->valuestring, "think"));
        cJSON_Delete(j);
    }
    for (int i = 0; i < rej; i++) {
        cJSON *j = cJSON_Parse(r[i]);
        ASSERT(jnum(j, "score", NULL) >= 1 && jnum(j, "score", NULL) < 6);
        cJSON_Delete(j);
    }
    free_lines(a, acc);
    free_lines(r, rej);
    server_stop(&s);

    /* Ollama's API, OpenAI chat format output */
    ASSERT(server_start(&s, ""));
    rc = sh(&out, "%s gen %s/examples/docs/hive-seasons.md -o %s/oll.jsonl --ollama %s --format openai --progress off",
            g_exe, QF_SOURCE_DIR, g_tmp, s.url);
    ASSERT_MSG(rc == 0, "%s", out);
    free(out);
    char **o;
    int no = check_jsonl(tpath_buf("oll.jsonl"), &o);
    ASSERT(no == 3);
    cJSON *j = cJSON_Parse(o[0]);
    cJSON *m = cJSON_GetObjectItem(j, "messages");
    ASSERT_EQ_INT(cJSON_GetArraySize(m), 2);
    ASSERT_STR_EQ(cJSON_GetObjectItem(cJSON_GetArrayItem(m, 1), "role")->valuestring, "assistant");
    cJSON_Delete(j);
    free_lines(o, no);
    server_stop(&s);
}

static void test_failures_recorded(void) {
    server s;
    ASSERT(server_start(&s, "--always-malformed"));
    char *out;
    int rc = sh(&out, "%s gen %s/examples/docs -o %s/bad.jsonl --endpoint %s --passes 2 --report %s/bad.json --progress off",
                g_exe, QF_SOURCE_DIR, g_tmp, s.url, g_tmp);
    ASSERT_MSG(rc == 0, "%s", out);
    ASSERT(strstr(out, "malformed"));
    free(out);
    cJSON *rep = load_json(tpath_buf("bad.json"));
    int chunks = (int)jnum(rep, "chunks", "done");
    ASSERT(chunks >= 6);
    ASSERT_EQ_INT(jnum(rep, "pairs", "accepted"), 0);
    ASSERT_EQ_INT(jnum(rep, "failures", "malformed"), 2 * chunks); /* never silently dropped */
    cJSON_Delete(rep);
    ASSERT_EQ_INT(server_stat(&s, "repair"), 2 * chunks); /* each got its one repair */
    ASSERT_EQ_INT(check_jsonl(tpath_buf("bad.jsonl"), NULL), 0);
    server_stop(&s);

    /* a server that always fails: failures by reason, exit still 0 (the job ran) */
    ASSERT(server_start(&s, "--fail-all"));
    rc = sh(&out, "%s gen %s/examples/docs/swarming.pdf -o %s/down.jsonl --endpoint %s --retries 1 --backoff 0.01 "
                  "--cooldown 0.05 --report %s/down.json --progress off",
            g_exe, QF_SOURCE_DIR, g_tmp, s.url, g_tmp);
    ASSERT_MSG(rc == 0, "%s", out);
    free(out);
    rep = load_json(tpath_buf("down.json"));
    ASSERT(jnum(rep, "failures", "http_500") >= 1);
    cJSON_Delete(rep);
    server_stop(&s);
}

/* Identical chunks (the same text under four names) are computed once: the
 * copies in flight together wait for the one request (single flight), later
 * ones hit the cache. When that one request fails, a waiter computes it. */
static void test_identical_chunks_once(void) {
    char dir[700];
    snprintf(dir, sizeof dir, "%s/same", g_tmp);
    ASSERT(sh(NULL, "rm -rf %s && mkdir -p %s/one %s/four && cp %s/examples/docs/hive-seasons.md %s/one/a.md && "
                    "for n in a b c d; do cp %s/examples/docs/hive-seasons.md %s/four/$n.md; done",
              dir, dir, dir, QF_SOURCE_DIR, dir, QF_SOURCE_DIR, dir) == 0);
    server s;
    char *out;
    /* one copy: how many distinct requests the text makes */
    ASSERT(server_start(&s, "--delay-ms 300"));
    int rc = sh(&out, "%s gen %s/one -o %s/one.jsonl --endpoint %s --report %s/one.json --progress off", g_exe, dir,
                dir, s.url, dir);
    ASSERT_MSG(rc == 0, "%s", out);
    free(out);
    long distinct = server_stat(&s, "gen");
    ASSERT(distinct >= 1);
    server_stop(&s);
    char rp[800];
    snprintf(rp, sizeof rp, "%s/one.json", dir);
    cJSON *rep = load_json(rp);
    int pairs1 = (int)jnum(rep, "pairs", "accepted");
    ASSERT(pairs1 > 0);
    cJSON_Delete(rep);

    /* four copies at once: still `distinct` requests; the rest shared */
    ASSERT(server_start(&s, "--delay-ms 300"));
    rc = sh(&out, "%s gen %s/four -o %s/four.jsonl --endpoint %s --max-concurrent 8 --report %s/four.json --progress off",
            g_exe, dir, dir, s.url, dir);
    ASSERT_MSG(rc == 0, "%s", out);
    ASSERT(strstr(out, "shared with an identical request in flight"));
    free(out);
    ASSERT_EQ_INT(server_stat(&s, "gen"), distinct);
    server_stop(&s);
    snprintf(rp, sizeof rp, "%s/four.json", dir);
    rep = load_json(rp);
    ASSERT_EQ_INT(jnum(rep, "requests", NULL), distinct);
    ASSERT_EQ_INT(jnum(rep, "cache", "hits"), 3 * distinct);
    ASSERT(jnum(rep, "cache", "shared") >= 1); /* the copies overlapped (300 ms per request) */
    ASSERT_EQ_INT(jnum(rep, "pairs", "accepted"), pairs1); /* the other copies' pairs are duplicates */
    ASSERT_EQ_INT(jnum(rep, "pairs", "duplicate"), 3 * pairs1);
    ASSERT_EQ_INT(jnum(rep, "failures_total", NULL), 0);
    cJSON_Delete(rep);

    /* the shared request fails (500, no retries): its own chunk records the
     * failure, a waiter sends it again (attempt 2 succeeds) for the rest */
    ASSERT(server_start(&s, "--faults 500 --delay-ms 300"));
    rc = sh(&out,
            "%s gen %s/four -o %s/fail.jsonl --endpoint %s --max-concurrent 8 --retries 0 --report %s/fail.json "
            "--progress off",
            g_exe, dir, dir, s.url, dir);
    ASSERT_MSG(rc == 0, "%s", out);
    free(out);
    ASSERT_EQ_INT(server_stat(&s, "chat"), 2 * distinct); /* the failed attempt and the resend */
    server_stop(&s);
    snprintf(rp, sizeof rp, "%s/fail.json", dir);
    rep = load_json(rp);
    ASSERT_EQ_INT(jnum(rep, "failures", "http_500"), distinct);
    ASSERT_EQ_INT(jnum(rep, "pairs", "accepted"), pairs1);
    ASSERT_EQ_INT(jnum(rep, "pairs", "duplicate"), 2 * pairs1);
    cJSON_Delete(rep);
}

static void make_corpus(const char *dir, int n_docs) {
    if (sh(NULL, "rm -rf %s && mkdir -p %s", dir, dir) != 0) return;
    const char *w[] = {"bee", "hive", "queen", "worker", "drone", "honey", "wax", "comb", "nectar", "pollen",
                       "swarm", "colony", "frame", "brood", "smoker", "flower", "garden", "summer", "winter", "cell"};
    unsigned seed = 12345;
    for (int d = 0; d < n_docs; d++) {
        char p[1200];
        snprintf(p, sizeof p, "%s/doc%02d.txt", dir, d);
        FILE *f = fopen(p, "w");
        for (int para = 0; para < 3; para++) {
            for (int s = 0; s < 5; s++) {
                for (int k = 0; k < 9; k++) {
                    seed = seed * 1103515245u + 12345u;
                    fprintf(f, "%s%s", k ? " " : "", w[(seed >> 16) % 20]);
                }
                fprintf(f, ". ");
            }
            fprintf(f, "\n\n");
        }
        fclose(f);
    }
    /* and one file that cannot be read as text */
    char p[1200];
    snprintf(p, sizeof p, "%s/zz-binary.txt", dir);
    FILE *f = fopen(p, "wb");
    fwrite("\x00\x01\x02\x03", 1, 4, f);
    fclose(f);
}

static void test_kill_resume(void) {
    char corpus[700];
    snprintf(corpus, sizeof corpus, "%s/corpus", g_tmp);
    make_corpus(corpus, 24);
    server s;
    ASSERT(server_start(&s, "--delay-ms 40 --malformed-every 5"));
    char args[2048];
    snprintf(args, sizeof args,
             "%s gen %s --endpoint %s --model-name m --chunk-tokens 48 --curate 4 --no-near-dedup --progress off "
             "--max-concurrent 3",
             g_exe, corpus, s.url);
    char *out;
    int rc = sh(&out, "%s -o %s/ref.jsonl --report %s/ref.json", args, g_tmp, g_tmp);
    ASSERT_MSG(rc == 0, "%s", out);
    free(out);
    cJSON *rep = load_json(tpath_buf("ref.json"));
    ASSERT_EQ_INT(jnum(rep, "documents", "skipped"), 1); /* the binary file, listed */
    ASSERT_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(rep, "skipped_files")), 1);
    cJSON_Delete(rep);

    /* kill -9 at random moments, resume, until a run completes */
    srand(qf_test_seed());
    int kills = 0;
    bool done = false;
    for (int round = 0; round < 80 && !done; round++) {
        char cmd[4096];
        snprintf(cmd, sizeof cmd, "exec %s -o %s/killed.jsonl %s > /dev/null 2>&1", args, g_tmp,
                 round ? "--resume" : "");
        pid_t pid = fork();
        if (pid == 0) {
            execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
            _exit(127);
        }
        struct timespec ts = {0, (long)(50 + rand() % 700) * 1000000L};
        nanosleep(&ts, NULL);
        int st = 0;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            ASSERT_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "round %d: exit %d", round, WEXITSTATUS(st));
            done = true;
            break;
        }
        kill(pid, SIGKILL); /* the shell exec'ed qforge: pid is qforge itself */
        waitpid(pid, &st, 0);
        kills++;
        /* the dataset never holds a partial line */
        ASSERT(check_jsonl(tpath_buf("killed.jsonl"), NULL) >= 0);
    }
    if (!done) {
        rc = sh(&out, "%s -o %s/killed.jsonl --resume", args, g_tmp);
        ASSERT_MSG(rc == 0, "%s", out);
        free(out);
    }
    fprintf(stderr, "kill -9 x %d, then resumed to completion\n", kills);
    ASSERT(kills >= 1);
    char **a, **b, **ra, **rb;
    int na = check_jsonl(tpath_buf("ref.jsonl"), &a), nb = check_jsonl(tpath_buf("killed.jsonl"), &b);
    ASSERT(na > 0);
    ASSERT_MSG(same_lines(a, na, b, nb), "%d vs %d lines", na, nb); /* every pair exactly once */
    int nra = check_jsonl(tpath_buf("ref.rejects.jsonl"), &ra), nrb = check_jsonl(tpath_buf("killed.rejects.jsonl"), &rb);
    ASSERT(same_lines(ra, nra, rb, nrb));
    free_lines(a, na);
    free_lines(b, nb);
    free_lines(ra, nra);
    free_lines(rb, nrb);

    /* --resume with other settings is refused, naming what differs */
    rc = sh(&out, "%s -o %s/killed.jsonl --resume --temperature 0.9", args, g_tmp);
    ASSERT_EQ_INT(rc, 1);
    ASSERT(strstr(out, "temperature") && strstr(out, "without --resume"));
    free(out);
    server_stop(&s);
}

static void test_disk_full(void) {
    char corpus[700];
    snprintf(corpus, sizeof corpus, "%s/corpus", g_tmp);
    server s;
    ASSERT(server_start(&s, ""));
    char args[2048];
    snprintf(args, sizeof args,
             "%s gen %s --endpoint %s --model-name m --chunk-tokens 48 --curate 4 --no-near-dedup --progress off "
             "--max-concurrent 3 -o %s/full.jsonl",
             g_exe, corpus, s.url, g_tmp);
    char *out;
    /* files may grow to 96 KiB: the job runs into the limit part way */
    int rc = sh(&out, "trap '' XFSZ; ulimit -f 96; exec %s", args);
    ASSERT_MSG(rc == 1, "rc %d: %s", rc, out);
    ASSERT_MSG(strstr(out, "disk full") || strstr(out, "File too large"), "%s", out);
    ASSERT(strstr(out, "--resume"));
    free(out);
    struct stat st;
    if (stat(tpath_buf("full.jsonl"), &st) == 0) /* (the database may have hit the limit first) */
        ASSERT(check_jsonl(tpath_buf("full.jsonl"), NULL) >= 0); /* no partial line */
    rc = sh(&out, "%s --resume", args);
    ASSERT_MSG(rc == 0, "%s", out);
    free(out);
    char **a, **b;
    int na = check_jsonl(tpath_buf("ref.jsonl"), &a), nb = check_jsonl(tpath_buf("full.jsonl"), &b);
    ASSERT_MSG(same_lines(a, na, b, nb), "%d vs %d", na, nb);
    free_lines(b, nb);

    /* the dataset's disk is full (the store elsewhere): clear error, nothing marked done */
    snprintf(args, sizeof args,
             "%s gen %s --endpoint %s --model-name m --chunk-tokens 48 --curate 4 --no-near-dedup --progress off "
             "--max-concurrent 3 --db %s/devfull.db",
             g_exe, corpus, s.url, g_tmp);
    rc = sh(&out, "%s -o /dev/full", args);
    ASSERT_MSG(rc == 1 && strstr(out, "/dev/full") && strstr(out, "disk full") && strstr(out, "--resume"), "%s", out);
    free(out);
    rc = sh(&out, "%s -o %s/full2.jsonl --resume --report %s/full2.json", args, g_tmp, g_tmp);
    ASSERT_MSG(rc == 0, "%s", out);
    free(out);
    cJSON *rep = load_json(tpath_buf("full2.json"));
    ASSERT(jnum(rep, "cache", "hits") >= 1); /* replies computed before the failure were kept */
    cJSON_Delete(rep);
    nb = check_jsonl(tpath_buf("full2.jsonl"), &b);
    ASSERT_MSG(same_lines(a, na, b, nb), "%d vs %d", na, nb);
    free_lines(a, na);
    free_lines(b, nb);
    server_stop(&s);
}

static void test_dry_run_and_usage(void) {
    char *out;
    int rc = sh(&out, "cd %s && %s gen %s/examples/docs --dry-run -m %s --report %s/dry.json", g_tmp, g_exe,
                QF_SOURCE_DIR, g_model, g_tmp);
    ASSERT_MSG(rc == 0, "%s", out);
    ASSERT(strstr(out, "swarming.pdf") && strstr(out, "honey-faq.jsonl") && strstr(out, "tokens"));
    free(out);
    cJSON *rep = load_json(tpath_buf("dry.json"));
    ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(rep, "dry_run")));
    ASSERT(jnum(rep, "estimate", "chunks") >= 6 && jnum(rep, "estimate", "prompt_tokens") > 1000);
    cJSON_Delete(rep);

    rc = sh(&out, "%s gen %s/examples/docs", g_exe, QF_SOURCE_DIR);
    ASSERT_EQ_INT(rc, 2);
    ASSERT(strstr(out, "-o OUT.jsonl"));
    free(out);
    rc = sh(&out, "%s gen %s/examples/docs -o %s/x.jsonl --endpoint http://a --ollama http://b", g_exe, QF_SOURCE_DIR,
            g_tmp);
    ASSERT_EQ_INT(rc, 2);
    free(out);
    rc = sh(&out, "%s gen %s/examples/docs -o %s/x.jsonl -m %s --kv-type q4_0", g_exe, QF_SOURCE_DIR, g_tmp, g_model);
    ASSERT_EQ_INT(rc, 2);
    ASSERT(strstr(out, "--kv-type"));
    free(out);
    rc = sh(&out, "%s gen %s/examples/docs -o %s/x.jsonl -m %s --preset nonsense", g_exe, QF_SOURCE_DIR, g_tmp, g_model);
    ASSERT_EQ_INT(rc, 1);
    ASSERT(strstr(out, "nonsense"));
    free(out);
    rc = sh(&out, "%s gen %s/no-such-folder -o %s/x.jsonl -m %s", g_exe, g_tmp, g_tmp, g_model);
    ASSERT_EQ_INT(rc, 1);
    ASSERT(strstr(out, "no-such-folder"));
    free(out);
    rc = sh(&out, "%s gen %s/examples/docs -o %s -m %s", g_exe, QF_SOURCE_DIR, g_tmp, g_model);
    ASSERT_EQ_INT(rc, 1);
    ASSERT(strstr(out, "folder"));
    free(out);
    rc = sh(&out, "%s gen --prompts-init %s/prompts", g_exe, g_tmp);
    ASSERT_EQ_INT(rc, 0);
    free(out);
    struct stat st;
    ASSERT(stat(tpath_buf("prompts/generate.txt"), &st) == 0);
}

static void test_no_network(void) {
    char *out;
    /* no model anywhere, the default model's host unreachable */
    int rc = sh(&out,
                "cd %s && env -u QFORGE_MODEL XDG_CACHE_HOME=%s/cache QFORGE_MODEL_URL=http://127.0.0.1:9/m.gguf "
                "%s gen %s/examples/docs -o %s/nonet.jsonl",
                g_tmp, g_tmp, g_exe, QF_SOURCE_DIR, g_tmp);
    ASSERT_EQ_INT(rc, 1);
    ASSERT_MSG(strstr(out, "no network") && strstr(out, "-m /path/to/model.gguf") && strstr(out, "QFORGE_MODEL=") &&
                   strstr(out, "--endpoint") && strstr(out, "--ollama"),
               "%s", out);
    free(out);
    struct stat st;
    ASSERT(stat(tpath_buf("cache/qforge/models/m.gguf"), &st) != 0);      /* nothing half-downloaded left */
    ASSERT(stat(tpath_buf("cache/qforge/models/m.gguf.part"), &st) != 0);
}

static void test_serve_endpoint(void) {
    char *out;
    int rc = sh(&out, "%s serve --help", g_exe);
    free(out);
    if (rc != 0) {
        fprintf(stderr, "note: `qforge serve` is not available in this build; skipped\n");
        return;
    }
    int port = 18000 + (int)(getpid() % 2000);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        int dn = open("/dev/null", 1);
        dup2(dn, 1);
        dup2(dn, 2);
        char p[16];
        snprintf(p, sizeof p, "%d", port);
        execl(g_exe, g_exe, "serve", "-m", g_model, "--port", p, (char *)NULL);
        _exit(127);
    }
    bool up = false;
    for (int i = 0; i < 100 && !up; i++) {
        usleep(100000);
        up = sh(NULL, "curl -sf http://127.0.0.1:%d/v1/models > /dev/null", port) == 0;
    }
    ASSERT_MSG(up, "qforge serve did not come up on port %d", port);
    rc = sh(&out,
            "%s gen %s/examples/docs/swarming.pdf -o %s/serve.jsonl --endpoint http://127.0.0.1:%d --pairs 1 "
            "--max-tokens 720 --min-answer 10 --chunk-tokens 1500 --report %s/serve.json --progress off",
            g_exe, QF_SOURCE_DIR, g_tmp, port, g_tmp);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    ASSERT_MSG(rc == 0, "%s", out);
    free(out);
    cJSON *rep = load_json(tpath_buf("serve.json"));
    ASSERT(jnum(rep, "requests", NULL) >= 1);
    ASSERT_EQ_INT(jnum(rep, "pairs", "accepted") + jnum(rep, "pairs", "duplicate") + jnum(rep, "failures_total", NULL),
                  jnum(rep, "chunks", "done"));
    cJSON_Delete(rep);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    g_exe = getenv("QF_QFORGE") ? getenv("QF_QFORGE") : QF_QFORGE_EXE;
    char *out;
    if (sh(&out, "%s gen --help", g_exe) != 0) {
        free(out);
        QF_SKIP("%s has no `gen` command yet", g_exe);
    }
    free(out);
    snprintf(g_tmp, sizeof g_tmp, "%s/test_gen.tmp", QF_BINARY_DIR);
    if (sh(NULL, "rm -rf %s && mkdir -p %s", g_tmp, g_tmp) != 0) return 1;
    snprintf(g_model, sizeof g_model, "%s/tiny.gguf", g_tmp);
    if (sh(&out, "%s model synth --arch llama --n-embd 64 --n-layer 2 --n-head 4 --n-head-kv 2 --n-ff 128 --type q8_0 -o %s",
           g_exe, g_model) != 0) {
        fprintf(stderr, "%s\n", out);
        return 1;
    }
    free(out);
    RUN_TEST(test_dry_run_and_usage);
    RUN_TEST(test_no_network);
    RUN_TEST(test_engine_examples);
    RUN_TEST(test_http_faults_curate);
    RUN_TEST(test_failures_recorded);
    RUN_TEST(test_identical_chunks_once);
    RUN_TEST(test_kill_resume);
    RUN_TEST(test_disk_full);
    RUN_TEST(test_serve_endpoint);
    TEST_MAIN_END();
}
