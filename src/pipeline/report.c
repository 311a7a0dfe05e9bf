/* report.c - progress line and final report of `qforge gen`.
 *
 * The ETA extrapolates the chunk completion rate since the start over the
 * chunks left (chunks resumed from an earlier run are excluded from the
 * rate); while the total is not known yet (documents still being chunked)
 * it is shown as "?". tokens/s is the generated-token rate over the last
 * few seconds.
 *
 * Metrics mirror the report's counters into a qf_metrics registry (see
 * report.h for the names); gen.c renders it into the job database about
 * once a second and into the final report.
 */
#include "pipeline/report.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/mem.h"

void qf_report_init(qf_gen_report *r) { memset(r, 0, sizeof *r); }

void qf_report_deinit(qf_gen_report *r) {
    if (!r) return;
    qf_free(r->failures);
    qf_free(r->metrics_json);
    for (int i = 0; i < r->n_skipped; i++) {
        qf_free(r->skipped_path[i]);
        qf_free(r->skipped_reason[i]);
    }
    qf_free(r->skipped_path);
    qf_free(r->skipped_reason);
    memset(r, 0, sizeof *r);
}

void qf_report_add_failure(qf_gen_report *r, const char *reason, int64_t n) {
    for (int i = 0; i < r->n_failures; i++) {
        if (!strcmp(r->failures[i].reason, reason)) {
            r->failures[i].n += n;
            return;
        }
    }
    qf_reason_count *v = qf_realloc(r->failures, (size_t)(r->n_failures + 1) * sizeof *v);
    if (!v) return;
    r->failures = v;
    snprintf(v[r->n_failures].reason, sizeof v->reason, "%s", reason);
    v[r->n_failures].n = n;
    r->n_failures++;
}

void qf_report_add_skipped(qf_gen_report *r, const char *path, const char *reason) {
    char **p = qf_realloc(r->skipped_path, (size_t)(r->n_skipped + 1) * sizeof *p);
    if (!p) return;
    r->skipped_path = p;
    char **q = qf_realloc(r->skipped_reason, (size_t)(r->n_skipped + 1) * sizeof *q);
    if (!q) return;
    r->skipped_reason = q;
    p[r->n_skipped] = qf_strdup(path);
    q[r->n_skipped] = qf_strdup(reason);
    if (!p[r->n_skipped] || !q[r->n_skipped]) {
        qf_free(p[r->n_skipped]);
        qf_free(q[r->n_skipped]);
        return;
    }
    r->n_skipped++;
}

int64_t qf_report_failures_total(const qf_gen_report *r) {
    int64_t n = 0;
    for (int i = 0; i < r->n_failures; i++) n += r->failures[i].n;
    return n;
}

static double docs_per_s(const qf_gen_report *r) {
    int64_t d = r->docs_done - r->docs_resumed;
    return r->wall_s > 0 ? (double)d / r->wall_s : 0;
}

static double hit_rate(const qf_gen_report *r) {
    return r->cache_lookups ? (double)r->cache_hits / (double)r->cache_lookups : 0;
}

void qf_report_print(const qf_gen_report *r, FILE *f) {
    if (r->dry_run) {
        fprintf(f,
                "dry run: %lld documents (%lld skipped), %lld chunks; would send about %lld prompt tokens and "
                "generate about %lld tokens\n",
                (long long)r->docs_total, (long long)r->docs_skipped, (long long)r->est_chunks,
                (long long)r->est_prompt_tokens, (long long)r->est_output_tokens);
        return;
    }
    fprintf(f, "\n%s: %lld documents in %.1f s (%.3f documents/s)%s\n", r->interrupted ? "interrupted" : "done",
            (long long)(r->docs_done - r->docs_resumed), r->wall_s, docs_per_s(r),
            r->docs_resumed ? "" : "");
    if (r->docs_resumed || r->chunks_resumed)
        fprintf(f, "  resumed:    %lld documents and %lld chunks already done before\n", (long long)r->docs_resumed,
                (long long)r->chunks_resumed);
    fprintf(f, "  pairs:      %lld written, %lld rejected by curation, %lld duplicates dropped\n",
            (long long)r->pairs_accepted, (long long)r->pairs_rejected, (long long)r->pairs_duplicate);
    int64_t nf = qf_report_failures_total(r);
    fprintf(f, "  failures:   %lld", (long long)nf);
    for (int i = 0; i < r->n_failures; i++)
        fprintf(f, "%s%s %lld", i ? ", " : " (", r->failures[i].reason, (long long)r->failures[i].n);
    fprintf(f, "%s\n", r->n_failures ? ")" : "");
    fprintf(f, "  tokens:     %lld in (%lld from the prefix cache), %lld out; %lld model requests\n",
            (long long)r->tokens_in, (long long)r->tokens_prefix_cached, (long long)r->tokens_out,
            (long long)r->requests);
    fprintf(f, "  cache:      %lld of %lld responses from the job cache (%.0f%%", (long long)r->cache_hits,
            (long long)r->cache_lookups, 100 * hit_rate(r));
    if (r->cache_shared) fprintf(f, "; %lld shared with an identical request in flight", (long long)r->cache_shared);
    fprintf(f, ")\n");
    fprintf(f, "  stages:     ingest %.2f s (all workers), generate %.2f s, curate %.2f s, write %.2f s\n",
            r->stage_s[QF_STAGE_INGEST], r->stage_s[QF_STAGE_GENERATE], r->stage_s[QF_STAGE_CURATE],
            r->stage_s[QF_STAGE_WRITE]);
    if (r->n_skipped) {
        fprintf(f, "  skipped:    %d files\n", r->n_skipped);
        for (int i = 0; i < r->n_skipped && i < 20; i++)
            fprintf(f, "              %s: %s\n", r->skipped_path[i], r->skipped_reason[i]);
        if (r->n_skipped > 20) fprintf(f, "              ... (%d more in --report)\n", r->n_skipped - 20);
    }
}

char *qf_report_json(const qf_gen_report *r) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddNumberToObject(o, "wall_s", r->wall_s);
    cJSON_AddNumberToObject(o, "docs_per_s", docs_per_s(r));
    cJSON *d = cJSON_AddObjectToObject(o, "documents");
    cJSON_AddNumberToObject(d, "total", (double)r->docs_total);
    cJSON_AddNumberToObject(d, "processed", (double)(r->docs_done - r->docs_resumed));
    cJSON_AddNumberToObject(d, "resumed", (double)r->docs_resumed);
    cJSON_AddNumberToObject(d, "skipped", (double)r->docs_skipped);
    cJSON *c = cJSON_AddObjectToObject(o, "chunks");
    cJSON_AddNumberToObject(c, "total", (double)r->chunks_total);
    cJSON_AddNumberToObject(c, "done", (double)r->chunks_done);
    cJSON_AddNumberToObject(c, "resumed", (double)r->chunks_resumed);
    cJSON *p = cJSON_AddObjectToObject(o, "pairs");
    cJSON_AddNumberToObject(p, "accepted", (double)r->pairs_accepted);
    cJSON_AddNumberToObject(p, "rejected", (double)r->pairs_rejected);
    cJSON_AddNumberToObject(p, "duplicate", (double)r->pairs_duplicate);
    cJSON *fl = cJSON_AddObjectToObject(o, "failures");
    for (int i = 0; i < r->n_failures; i++) cJSON_AddNumberToObject(fl, r->failures[i].reason, (double)r->failures[i].n);
    cJSON_AddNumberToObject(o, "failures_total", (double)qf_report_failures_total(r));
    cJSON *t = cJSON_AddObjectToObject(o, "tokens");
    cJSON_AddNumberToObject(t, "in", (double)r->tokens_in);
    cJSON_AddNumberToObject(t, "out", (double)r->tokens_out);
    cJSON_AddNumberToObject(t, "prefix_cached", (double)r->tokens_prefix_cached);
    cJSON *ca = cJSON_AddObjectToObject(o, "cache");
    cJSON_AddNumberToObject(ca, "lookups", (double)r->cache_lookups);
    cJSON_AddNumberToObject(ca, "hits", (double)r->cache_hits);
    cJSON_AddNumberToObject(ca, "shared", (double)r->cache_shared);
    cJSON_AddNumberToObject(ca, "hit_rate", hit_rate(r));
    cJSON_AddNumberToObject(o, "requests", (double)r->requests);
    cJSON *s = cJSON_AddObjectToObject(o, "stages_s");
    cJSON_AddNumberToObject(s, "ingest", r->stage_s[QF_STAGE_INGEST]);
    cJSON_AddNumberToObject(s, "generate", r->stage_s[QF_STAGE_GENERATE]);
    cJSON_AddNumberToObject(s, "curate", r->stage_s[QF_STAGE_CURATE]);
    cJSON_AddNumberToObject(s, "write", r->stage_s[QF_STAGE_WRITE]);
    cJSON *sk = cJSON_AddArrayToObject(o, "skipped_files");
    for (int i = 0; i < r->n_skipped; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "path", r->skipped_path[i]);
        cJSON_AddStringToObject(e, "reason", r->skipped_reason[i]);
        cJSON_AddItemToArray(sk, e);
    }
    cJSON_AddStringToObject(o, "model", r->model);
    cJSON_AddStringToObject(o, "backend", r->backend);
    cJSON_AddBoolToObject(o, "interrupted", r->interrupted);
    cJSON_AddBoolToObject(o, "dry_run", r->dry_run);
    if (r->dry_run) {
        cJSON *e = cJSON_AddObjectToObject(o, "estimate");
        cJSON_AddNumberToObject(e, "chunks", (double)r->est_chunks);
        cJSON_AddNumberToObject(e, "prompt_tokens", (double)r->est_prompt_tokens);
        cJSON_AddNumberToObject(e, "output_tokens", (double)r->est_output_tokens);
    }
    if (r->metrics_json) {
        cJSON *m = cJSON_Parse(r->metrics_json);
        if (!m) {
            cJSON_Delete(o);
            return NULL;
        }
        cJSON_AddItemToObject(o, "metrics", m);
    }
    char *js = cJSON_Print(o);
    cJSON_Delete(o);
    if (!js) return NULL;
    char *out = qf_strdup(js);
    cJSON_free(js);
    return out;
}

qf_status qf_report_write_json(const qf_gen_report *r, const char *path, qf_err *err) {
    char *js = qf_report_json(r);
    if (!js) return QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory writing the report");
    FILE *f = fopen(path, "wb");
    if (!f) {
        qf_free(js);
        return QF_ERR_SET(err, QF_ERR_IO, "%s: %s", path, strerror(errno));
    }
    bool ok = fputs(js, f) >= 0 && fputc('\n', f) != EOF;
    if (fclose(f) != 0) ok = false;
    qf_free(js);
    if (!ok) return QF_ERR_SET(err, QF_ERR_IO, "%s: write failed", path);
    return QF_OK;
}

/* ---- metrics ---- */

qf_status qf_report_metrics_declare(qf_metrics *m, qf_err *err) {
    static const struct {
        const char *name;
        qf_metric_kind kind;
        const char *help;
    } d[] = {
        {"qforge_gen_documents_total", QF_METRIC_GAUGE, "Documents in the job's inputs"},
        {"qforge_gen_documents_done", QF_METRIC_GAUGE, "Documents finished (resumed and skipped included)"},
        {"qforge_gen_documents_skipped", QF_METRIC_GAUGE, "Documents that could not be read"},
        {"qforge_gen_chunks_total", QF_METRIC_GAUGE, "Chunks of the documents chunked so far"},
        {"qforge_gen_chunks_total_final", QF_METRIC_GAUGE,
         "1 once every document is chunked (qforge_gen_chunks_total is final)"},
        {"qforge_gen_chunks_done", QF_METRIC_GAUGE, "Chunks finished and committed (resumed included)"},
        {"qforge_gen_chunks_in_flight", QF_METRIC_GAUGE, "Chunks being generated now"},
        {"qforge_gen_pairs_total", QF_METRIC_COUNTER, "Question-answer pairs by outcome"},
        {"qforge_prompt_tokens_total", QF_METRIC_COUNTER, "Prompt tokens the model processed"},
        {"qforge_generated_tokens_total", QF_METRIC_COUNTER, "Generated tokens"},
        {"qforge_gen_prefix_cached_tokens_total", QF_METRIC_COUNTER,
         "Prompt tokens served from the engine's prefix cache"},
        {"qforge_gen_requests_total", QF_METRIC_COUNTER, "Completions computed by the model (cache hits excluded)"},
        {"qforge_gen_cache_hits_total", QF_METRIC_COUNTER, "Responses found in the job's response cache"},
        {"qforge_gen_cache_misses_total", QF_METRIC_COUNTER, "Responses not in the response cache"},
        {"qforge_gen_failures_total", QF_METRIC_COUNTER, "Requests that gave no pairs, by reason"},
        {"qforge_gen_cache_hit_ratio", QF_METRIC_GAUGE, "Response cache hits / lookups"},
        {"qforge_tokens_per_second", QF_METRIC_GAUGE,
         "Generated tokens per second (last second while running; the run's average when it ended)"},
        {"qforge_gen_documents_per_second", QF_METRIC_GAUGE, "Documents processed per second of this run"},
        {"qforge_gen_elapsed_seconds", QF_METRIC_GAUGE, "Seconds since this run started"},
        {"qforge_gen_eta_seconds", QF_METRIC_GAUGE, "Estimated seconds left (absent while unknown)"},
    };
    for (size_t i = 0; i < sizeof d / sizeof *d; i++) {
        qf_status st = qf_metrics_declare(m, d[i].name, d[i].kind, d[i].help, NULL, 0);
        if (st != QF_OK) return QF_ERR_SET(err, st, "gen metrics: cannot declare %s", d[i].name);
    }
    return QF_OK;
}

double qf_report_eta_s(const qf_gen_report *r, double elapsed_s) {
    int64_t done_new = r->chunks_done - r->chunks_resumed;
    int64_t left = r->chunks_total - r->chunks_done;
    if (!r->chunks_total_known || done_new <= 0 || elapsed_s <= 0) return -1;
    if (left < 0) left = 0;
    return elapsed_s / (double)done_new * (double)left;
}

void qf_report_metrics_update(qf_metrics *m, const qf_gen_report *r, const qf_gen_live *live) {
    if (!m || !r) return;
    char lb[96];
    qf_metrics_set(m, "qforge_gen_documents_total", NULL, (double)r->docs_total);
    qf_metrics_set(m, "qforge_gen_documents_done", NULL, (double)r->docs_done);
    qf_metrics_set(m, "qforge_gen_documents_skipped", NULL, (double)r->docs_skipped);
    qf_metrics_set(m, "qforge_gen_chunks_total", NULL, (double)r->chunks_total);
    qf_metrics_set(m, "qforge_gen_chunks_total_final", NULL, r->chunks_total_known ? 1 : 0);
    qf_metrics_set(m, "qforge_gen_chunks_done", NULL, (double)r->chunks_done);
    qf_metrics_set(m, "qforge_gen_chunks_in_flight", NULL, live ? (double)live->chunks_in_flight : 0);
    const char *st[3] = {"accepted", "rejected", "duplicate"};
    int64_t pv[3] = {r->pairs_accepted, r->pairs_rejected, r->pairs_duplicate};
    for (int i = 0; i < 3; i++)
        qf_metrics_set(m, "qforge_gen_pairs_total", qf_metrics_labels(lb, sizeof lb, "status", st[i], (const char *)NULL),
                       (double)pv[i]);
    qf_metrics_set(m, "qforge_prompt_tokens_total", NULL, (double)r->tokens_in);
    qf_metrics_set(m, "qforge_generated_tokens_total", NULL, (double)r->tokens_out);
    qf_metrics_set(m, "qforge_gen_prefix_cached_tokens_total", NULL, (double)r->tokens_prefix_cached);
    qf_metrics_set(m, "qforge_gen_requests_total", NULL, (double)r->requests);
    qf_metrics_set(m, "qforge_gen_cache_hits_total", NULL, (double)r->cache_hits);
    qf_metrics_set(m, "qforge_gen_cache_misses_total", NULL, (double)(r->cache_lookups - r->cache_hits));
    for (int i = 0; i < r->n_failures; i++)
        qf_metrics_set(m, "qforge_gen_failures_total",
                       qf_metrics_labels(lb, sizeof lb, "reason", r->failures[i].reason, (const char *)NULL),
                       (double)r->failures[i].n);
    qf_metrics_set(m, "qforge_gen_cache_hit_ratio", NULL, hit_rate(r));
    double tps = live ? live->tokens_per_s : 0;
    qf_metrics_set(m, "qforge_tokens_per_second", NULL, isfinite(tps) && tps > 0 ? tps : 0);
    qf_metrics_set(m, "qforge_gen_documents_per_second", NULL, docs_per_s(r));
    qf_metrics_set(m, "qforge_gen_elapsed_seconds", NULL, r->wall_s);
    if (live && live->eta_s >= 0 && isfinite(live->eta_s)) qf_metrics_set(m, "qforge_gen_eta_seconds", NULL, live->eta_s);
}

/* ---- progress ---- */

void qf_progress_init(qf_progress *p, FILE *f, int mode) {
    memset(p, 0, sizeof *p);
    p->f = f;
    p->enabled = mode >= 0 && f;
    p->tty = mode == 1 || (mode == 0 && f && isatty(fileno(f)));
    p->t0 = p->last = p->last_tok_t = qf_now_s();
}

static void fmt_eta(double s, char *buf, size_t cap) {
    if (s < 0 || s > 99 * 3600) snprintf(buf, cap, "?");
    else if (s >= 3600) snprintf(buf, cap, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
    else snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)s % 60);
}

void qf_progress_update(qf_progress *p, const qf_gen_report *r, bool force) {
    if (!p->enabled) return;
    double now = qf_now_s();
    double every = p->tty ? 0.2 : 10.0;
    if (!force && now - p->last < every) return;
    p->last = now;
    if (now - p->last_tok_t >= 2.0 || p->tok_rate == 0) {
        double dt = now - p->last_tok_t;
        if (dt > 0.5) {
            p->tok_rate = (double)(r->tokens_out - p->last_tok) / dt;
            p->last_tok = r->tokens_out;
            p->last_tok_t = now;
        }
    }
    double eta_s = qf_report_eta_s(r, now - p->t0);
    char eta[32];
    if (eta_s < 0) snprintf(eta, sizeof eta, "?");
    else fmt_eta(eta_s, eta, sizeof eta);
    char line[320];
    int pct = r->chunks_total ? (int)(100 * r->chunks_done / r->chunks_total) : 0;
    char bar[22];
    int fill = pct / 5;
    for (int i = 0; i < 20; i++) bar[i] = i < fill ? '#' : '.';
    bar[20] = 0;
    double hr = r->cache_lookups ? 100.0 * (double)r->cache_hits / (double)r->cache_lookups : 0;
    int n = snprintf(line, sizeof line,
                     "[%s] %3d%% docs %lld/%lld  chunks %lld/%lld%s  pairs %lld  fail %lld  %.0f tok/s  cache %.0f%%  ETA %s",
                     bar, pct, (long long)r->docs_done, (long long)r->docs_total, (long long)r->chunks_done,
                     (long long)r->chunks_total, r->chunks_total_known ? "" : "+", (long long)r->pairs_accepted,
                     (long long)qf_report_failures_total(r), p->tok_rate, hr, eta);
    if (n < 0) return;
    if (p->tty) {
        fprintf(p->f, "\r%s", line);
        for (int i = n; i < p->width; i++) fputc(' ', p->f);
        p->width = n;
    } else {
        fprintf(p->f, "qforge gen: %s\n", line);
    }
    fflush(p->f);
}

void qf_progress_clear(qf_progress *p) {
    if (!p->enabled || !p->tty || !p->width) return;
    fputc('\r', p->f);
    for (int i = 0; i < p->width; i++) fputc(' ', p->f);
    fputc('\r', p->f);
    fflush(p->f);
    p->width = 0;
}
