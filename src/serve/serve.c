/* serve.c - the server object: options, metrics, the ticker thread, start
 * and orderly stop.
 *
 * The ticker wakes once a second to unload models whose keep-alive ran out,
 * to turn the generated-token counter into a tokens/s gauge (over the last
 * tick), and to sample: the system sampler (monitor/sys.h) publishes CPU,
 * memory and I/O into the registry, and one snapshot of system + engine +
 * request counters goes to the bottleneck detector (monitor/alert.h), whose
 * state is published as qforge_alert_* gauges. Gauges that mirror the
 * engines (queue, running sequences, kv use, prefix hits) are read from the
 * loaded engines when /metrics is scraped, so they are never stale. One
 * sample is taken before the ticker starts, so the first scrape already
 * has every family.
 *
 * Stop order matters: set `stopping` (waiting connections cancel their
 * generations within one wait period), stop MHD (joins the connection
 * threads), stop the ticker, then unload the models (their engines deliver
 * the last final events to jobs whose connections are gone).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/cpu.h"
#include "base/log.h"
#include "base/mem.h"
#include "serve/serve_int.h"

qf_serve_opts qf_serve_opts_default(void) {
    qf_serve_opts o;
    memset(&o, 0, sizeof o);
    o.host = "127.0.0.1";
    o.port = 1234;
    o.keep_alive_s = 300;
    o.timeout_s = 1800;
    o.max_body = (size_t)8 << 20;
    o.http_timeout_s = 60;
    o.max_connections = 256;
    o.max_loaded = 1;
    o.kv_type = QF_TYPE_F16;
    o.n_gpu_layers = qf_engine_params_default().n_gpu_layers;
    return o;
}

/* ---- metrics ---- */

static const double k_latency_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                           2.5,   5,    10,    30,   60,  120,  300, 600};
static const double k_ttft_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                        0.5,   1,      2.5,   5,    10,    30,   60};

static qf_status declare_metrics(qf_metrics *m) {
    struct {
        const char *name;
        qf_metric_kind kind;
        const char *help;
        const double *b;
        int nb;
    } d[] = {
        {"qforge_http_requests_total", QF_METRIC_COUNTER, "HTTP requests by endpoint and status",
         NULL, 0},
        {"qforge_http_request_duration_seconds", QF_METRIC_HISTOGRAM,
         "HTTP request latency by endpoint (until the response ended)", k_latency_buckets,
         (int)(sizeof k_latency_buckets / sizeof *k_latency_buckets)},
        {"qforge_time_to_first_token_seconds", QF_METRIC_HISTOGRAM,
         "Time from submit to the first generated token", k_ttft_buckets,
         (int)(sizeof k_ttft_buckets / sizeof *k_ttft_buckets)},
        {"qforge_generation_seconds", QF_METRIC_HISTOGRAM,
         "Time from submit to the end of generation", k_latency_buckets,
         (int)(sizeof k_latency_buckets / sizeof *k_latency_buckets)},
        {"qforge_queue_depth", QF_METRIC_GAUGE, "Requests waiting for a slot, all loaded models",
         NULL, 0},
        {"qforge_running_sequences", QF_METRIC_GAUGE,
         "Sequences being generated now, all loaded models", NULL, 0},
        {"qforge_prompt_tokens_total", QF_METRIC_COUNTER, "Prompt tokens of finished requests",
         NULL, 0},
        {"qforge_generated_tokens_total", QF_METRIC_COUNTER, "Generated tokens", NULL, 0},
        {"qforge_tokens_per_second", QF_METRIC_GAUGE,
         "Generated tokens per second over the last second", NULL, 0},
        {"qforge_requests_cancelled_total", QF_METRIC_COUNTER,
         "Generations cancelled (client gone, shutdown)", NULL, 0},
        {"qforge_kv_blocks_used", QF_METRIC_GAUGE, "KV cache blocks in use", NULL, 0},
        {"qforge_kv_blocks_total", QF_METRIC_GAUGE, "KV cache blocks in the pools", NULL, 0},
        {"qforge_kv_usage_ratio", QF_METRIC_GAUGE, "Fraction of KV cache blocks in use", NULL, 0},
        {"qforge_kv_bytes", QF_METRIC_GAUGE, "Bytes of the KV cache pools", NULL, 0},
        {"qforge_prefix_cache_hit_ratio", QF_METRIC_GAUGE,
         "Prompt tokens served from the prefix cache / prompt tokens (loaded models)", NULL, 0},
        {"qforge_models_loaded", QF_METRIC_GAUGE, "Models loaded now", NULL, 0},
        {"qforge_process_resident_memory_bytes", QF_METRIC_GAUGE,
         "Resident memory of the server process", NULL, 0},
        {"qforge_uptime_seconds", QF_METRIC_GAUGE, "Seconds since the server started", NULL, 0},
    };
    for (size_t i = 0; i < sizeof d / sizeof *d; i++) {
        qf_status st = qf_metrics_declare(m, d[i].name, d[i].kind, d[i].help, d[i].b, d[i].nb);
        if (st) return st;
    }
    return QF_OK;
}

static double rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long long size = 0, res = 0;
    int k = fscanf(f, "%llu %llu", &size, &res);
    fclose(f);
    return k == 2 ? (double)res * (double)sysconf(_SC_PAGESIZE) : 0;
}

static void refresh_gauges(struct qf_serve *s) {
    qf_models_loaded_info info[64];
    int n = qf_models_loaded(s->models, info, 64);
    if (n > 64) n = 64;
    double running = 0, queued = 0, used = 0, total = 0, bytes = 0, hit = 0, prompt = 0;
    for (int i = 0; i < n; i++) {
        const qf_engine_stats *st = &info[i].stats;
        running += st->running;
        queued += st->queued;
        used += (double)st->kv_blocks_used;
        total += (double)st->kv_blocks_total;
        bytes += (double)st->kv_bytes;
        hit += (double)st->prefix_hit_tokens;
        prompt += (double)st->prompt_tokens_total;
    }
    qf_metrics *m = s->metrics;
    qf_metrics_set(m, "qforge_running_sequences", NULL, running);
    qf_metrics_set(m, "qforge_queue_depth", NULL, queued);
    qf_metrics_set(m, "qforge_kv_blocks_used", NULL, used);
    qf_metrics_set(m, "qforge_kv_blocks_total", NULL, total);
    qf_metrics_set(m, "qforge_kv_usage_ratio", NULL, total > 0 ? used / total : 0);
    qf_metrics_set(m, "qforge_kv_bytes", NULL, bytes);
    qf_metrics_set(m, "qforge_prefix_cache_hit_ratio", NULL, prompt > 0 ? hit / prompt : 0);
    qf_metrics_set(m, "qforge_models_loaded", NULL, n);
    qf_metrics_set(m, "qforge_process_resident_memory_bytes", NULL, rss_bytes());
    qf_metrics_set(m, "qforge_uptime_seconds", NULL, qf_now_s() - s->t_start);
    qf_metrics_set(m, "qforge_generated_tokens_total", NULL, (double)atomic_load(&s->gen_tokens));
    qf_metrics_set(m, "qforge_prompt_tokens_total", NULL, (double)atomic_load(&s->prompt_tokens));
    qf_metrics_set(m, "qforge_requests_cancelled_total", NULL, (double)atomic_load(&s->cancelled));
    pthread_mutex_lock(&s->tick_mu);
    double rate = s->tok_rate;
    pthread_mutex_unlock(&s->tick_mu);
    qf_metrics_set(m, "qforge_tokens_per_second", NULL, rate);
}

enum MHD_Result serve_metrics_page(serve_conn *c) {
    refresh_gauges(c->srv);
    qf_alerts_to_metrics(c->srv->alerts, c->srv->metrics);
    size_t len;
    char *text = qf_metrics_render(c->srv->metrics, &len);
    if (!text) return serve_reply_error(c, 500, "out of memory", NULL, NULL);
    enum MHD_Result r =
        serve_reply(c, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, NULL);
    qf_free(text);
    return r;
}

enum MHD_Result serve_alerts_page(serve_conn *c) {
    size_t len;
    char *body = qf_alerts_json(c->srv->alerts, &len);
    if (!body) return serve_reply_error(c, 500, "out of memory", NULL, NULL);
    enum MHD_Result r = serve_reply(c, 200, "application/json", body, len, NULL);
    qf_free(body);
    return r;
}

void serve_note_generation(struct qf_serve *s, bool failed, double seconds) {
    atomic_fetch_add(&s->gen_requests, 1);
    if (failed) atomic_fetch_add(&s->gen_errors, 1);
    pthread_mutex_lock(&s->tick_mu);
    if (seconds > s->lat_max_tick) s->lat_max_tick = seconds;
    pthread_mutex_unlock(&s->tick_mu);
}

void serve_note_request(struct qf_serve *s, const char *route, int status, double seconds) {
    char labels[256], st[16];
    snprintf(st, sizeof st, "%d", status);
    qf_metrics_labels(labels, sizeof labels, "endpoint", route, "status", st, (const char *)NULL);
    qf_metrics_add(s->metrics, "qforge_http_requests_total", labels, 1);
    qf_metrics_labels(labels, sizeof labels, "endpoint", route, (const char *)NULL);
    qf_metrics_observe(s->metrics, "qforge_http_request_duration_seconds", labels, seconds);
}

/* ---- monitoring ---- */

/* One sample: system -> registry, system + engines + requests -> the
 * detector -> registry. Ticker thread only (and once before it starts). */
static void sample_tick(struct qf_serve *s) {
    qf_sys_sample smp;
    qf_alert_snapshot snap = qf_alert_snapshot_blank();
    if (s->sys && qf_sys_sample_now(s->sys, &smp) == QF_OK) {
        qf_sys_to_metrics(&smp, s->metrics);
        snap.mem_pressure = smp.mem_pressure;
        snap.n_cores = smp.n_cores;
        snap.core_util = smp.core_util;
    }
    qf_models_loaded_info info[64];
    int n = qf_models_loaded(s->models, info, 64);
    if (n > 64) n = 64;
    double hits = 0, total = 0;
    for (int i = 0; i < n; i++) {
        const qf_engine_stats *st = &info[i].stats;
        snap.steps += st->steps;
        snap.kv_wait_steps += st->kv_wait_steps;
        snap.cache_lookups += st->prefix_lookups;
        hits += (double)st->prefix_hit_tokens;
        total += (double)st->prompt_tokens_total;
    }
    snap.cache_hits = hits;
    snap.cache_total = total;
    snap.requests = atomic_load(&s->gen_requests);
    snap.errors = atomic_load(&s->gen_errors);
    pthread_mutex_lock(&s->tick_mu);
    snap.latency_max_s = s->lat_max_tick >= 0 ? s->lat_max_tick : NAN;
    s->lat_max_tick = -1;
    pthread_mutex_unlock(&s->tick_mu);
    snap.t = qf_now_s();
    qf_alerts_feed(s->alerts, &snap);
    qf_alerts_to_metrics(s->alerts, s->metrics);
}

/* --alert settings and --alert-cmd -> the detector; NULL + err. */
static qf_alerts *make_alerts(const qf_serve_opts *o, qf_err *err) {
    qf_alert_config c = qf_alert_config_default();
    for (int i = 0; i < o->n_alert_settings; i++) {
        const char *kv = o->alert_settings ? o->alert_settings[i] : NULL;
        if (qf_alert_config_set(&c, kv, err) != QF_OK) {
            qf_err_prefix(err, "serve: --alert");
            return NULL;
        }
    }
    qf_alerts *a = qf_alerts_new(&c, err);
    if (!a) return NULL;
    if (o->alert_cmd && o->alert_cmd[0] && qf_alerts_set_command(a, o->alert_cmd, err) != QF_OK) {
        qf_alerts_free(a);
        return NULL;
    }
    return a;
}

/* ---- ticker ---- */

static void *ticker_main(void *arg) {
    struct qf_serve *s = arg;
    qf_cpu_place_self(QF_THREAD_BACKGROUND); /* off the compute cores where there are others */
    uint64_t last_tokens = atomic_load(&s->gen_tokens);
    double last_t = qf_now_s();
    pthread_mutex_lock(&s->tick_mu);
    while (!atomic_load(&s->stopping)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&s->tick_cv, &s->tick_mu, &ts);
        if (atomic_load(&s->stopping)) break;
        double now = qf_now_s();
        uint64_t tok = atomic_load(&s->gen_tokens);
        if (now - last_t >= 0.5) {
            s->tok_rate = (double)(tok - last_tokens) / (now - last_t);
            last_tokens = tok;
            last_t = now;
        }
        pthread_mutex_unlock(&s->tick_mu);
        qf_models_expire(s->models, now);
        sample_tick(s);
        pthread_mutex_lock(&s->tick_mu);
    }
    pthread_mutex_unlock(&s->tick_mu);
    return NULL;
}

/* ---- lifecycle ---- */

static char *dup_opt(const char *s, bool *ok) {
    if (!s) return NULL;
    char *d = qf_strdup(s);
    if (!d) *ok = false;
    return d;
}

qf_serve *qf_serve_new(const qf_serve_opts *o, qf_err *err) {
    if (!o) {
        QF_ERR_SET(err, QF_ERR_INVALID, "serve: no options");
        return NULL;
    }
    if (o->port < 0 || o->port > 65535) {
        QF_ERR_SET(err, QF_ERR_INVALID, "serve: --port %d is out of range [0, 65535]", o->port);
        return NULL;
    }
    struct qf_serve *s = qf_calloc(1, sizeof *s);
    if (!s) {
        QF_ERR_SET(err, QF_ERR_NOMEM, "serve: out of memory");
        return NULL;
    }
    pthread_mutex_init(&s->tick_mu, NULL);
    pthread_cond_init(&s->tick_cv, NULL);
    s->o = *o;
    bool ok = true;
    s->s_host = dup_opt(o->host && o->host[0] ? o->host : "127.0.0.1", &ok);
    s->s_model = dup_opt(o->model_path, &ok);
    s->s_dir = dup_opt(o->models_dir, &ok);
    s->s_key = dup_opt(o->api_key && o->api_key[0] ? o->api_key : NULL, &ok);
    s->s_cors = dup_opt(o->cors_origin && o->cors_origin[0] ? o->cors_origin : NULL, &ok);
    s->s_tmpl = dup_opt(o->chat_template, &ok);
    s->s_alert_cmd = dup_opt(o->alert_cmd && o->alert_cmd[0] ? o->alert_cmd : NULL, &ok);
    s->o.host = s->s_host;
    s->o.model_path = s->s_model;
    s->o.models_dir = s->s_dir;
    s->o.api_key = s->s_key;
    s->o.cors_origin = s->s_cors;
    s->o.chat_template = s->s_tmpl;
    s->o.alert_cmd = s->s_alert_cmd;
    s->lat_max_tick = -1;
    if (!s->o.max_body) s->o.max_body = (size_t)8 << 20;
    if (s->o.http_timeout_s <= 0) s->o.http_timeout_s = 60;
    if (s->o.max_connections <= 0) s->o.max_connections = 256;
    if (s->o.timeout_s <= 0) s->o.timeout_s = 1800;
    s->t_start = qf_now_s();
    if (!ok) {
        QF_ERR_SET(err, QF_ERR_NOMEM, "serve: out of memory");
        goto fail;
    }
    s->metrics = qf_metrics_new(err);
    if (!s->metrics) goto fail;
    if (declare_metrics(s->metrics)) {
        QF_ERR_SET(err, QF_ERR_INTERNAL, "serve: cannot declare metrics");
        goto fail;
    }
    s->alerts = make_alerts(o, err);
    if (!s->alerts) goto fail;
    s->o.alert_settings = NULL; /* borrowed: used up */
    s->o.n_alert_settings = 0;
    s->sys = qf_sys_new(NULL, err);
    if (!s->sys) goto fail;
    qf_models_params mp;
    memset(&mp, 0, sizeof mp);
    mp.model_path = s->o.model_path;
    mp.models_dir = s->o.models_dir;
    mp.max_loaded = s->o.max_loaded;
    mp.keep_alive_s = s->o.keep_alive_s;
    mp.mem_budget = s->o.mem_budget;
    mp.chat_template = s->o.chat_template;
    mp.engine = qf_engine_params_default();
    if (s->o.n_ctx > 0) mp.engine.n_ctx = s->o.n_ctx;
    if (s->o.n_parallel > 0) mp.engine.n_parallel = s->o.n_parallel;
    if (s->o.max_queue > 0) mp.engine.max_queue = s->o.max_queue;
    if (s->o.n_batch > 0) mp.engine.n_batch = s->o.n_batch;
    if (s->o.n_threads > 0) mp.engine.n_threads = s->o.n_threads;
    mp.engine.kv_type = s->o.kv_type;
    mp.engine.n_gpu_layers = s->o.n_gpu_layers;
    mp.engine.timeout_s = s->o.timeout_s;
    s->models = qf_models_new(&mp, err);
    if (!s->models) goto fail;
    sample_tick(s); /* the first scrape sees every family */
    if (serve_http_start(s, err)) goto fail;
    if (pthread_create(&s->ticker, NULL, ticker_main, s) != 0) {
        QF_ERR_SET(err, QF_ERR_INTERNAL, "serve: cannot start the ticker thread");
        goto fail;
    }
    s->ticker_started = true;
    return s;
fail:
    qf_serve_free(s);
    return NULL;
}

int qf_serve_port(const qf_serve *s) {
    return s ? s->port : 0;
}

void qf_serve_free(qf_serve *s) {
    if (!s) return;
    atomic_store(&s->stopping, true);
    serve_http_stop(s);
    if (s->ticker_started) {
        pthread_mutex_lock(&s->tick_mu);
        pthread_cond_broadcast(&s->tick_cv);
        pthread_mutex_unlock(&s->tick_mu);
        pthread_join(s->ticker, NULL);
    }
    qf_models_free(s->models);
    qf_alerts_free(s->alerts); /* waits for a running alert command */
    qf_sys_free(s->sys);
    qf_metrics_free(s->metrics);
    pthread_mutex_destroy(&s->tick_mu);
    pthread_cond_destroy(&s->tick_cv);
    qf_free(s->s_host);
    qf_free(s->s_model);
    qf_free(s->s_dir);
    qf_free(s->s_key);
    qf_free(s->s_cors);
    qf_free(s->s_tmpl);
    qf_free(s->s_alert_cmd);
    qf_free(s);
}

qf_status qf_serve_run(const qf_serve_opts *o, volatile sig_atomic_t *stop, qf_err *err) {
    qf_serve *s = qf_serve_new(o, err);
    if (!s) return err ? err->code : QF_ERR_INTERNAL;
    qf_info("serve: listening on http://%s%s%s:%d/ (OpenAI: /v1, Ollama: /api, dashboard: /, "
            "metrics: /metrics)",
            strchr(s->o.host, ':') ? "[" : "", s->o.host, strchr(s->o.host, ':') ? "]" : "",
            s->port);
    while (!stop || !*stop) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    qf_info("serve: stopping");
    qf_serve_free(s);
    return QF_OK;
}
