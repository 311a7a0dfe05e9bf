/* session.c - a single sequence (id 0) over qf_fwd, or over the GPU
 * backend's qf_gpu_fwd when n_gpu_layers asks for it and a device can take
 * the model (with a partial offload the qf_fwd runs the first layers for
 * it). The kv bookkeeping is the same qf_kv either way. */
#include "model/session.h"

#include "backend/backend.h"
#include "base/cpu.h"
#include "base/log.h"
#include "base/mem.h"

struct qf_session {
    const qf_model *m;
    qf_pool *pool;
    qf_kv *kv;
    qf_fwd *fwd;     /* CPU path (or the first layers of a partial offload); NULL when gpu runs it all */
    qf_gpu_fwd *gpu; /* GPU path or NULL */
    int32_t n_ctx, n_batch, n_past;
    int32_t *pos, *seq;
    int8_t *want;
};

qf_session_params qf_session_params_default(void) {
    qf_session_params p = {0, 0, 0, QF_TYPE_F16, false, qf_gpu_layers_env()};
    return p;
}

qf_session *qf_session_new(const qf_model *m, const qf_session_params *p, qf_err *err) {
    qf_session_params d = qf_session_params_default();
    if (!p) p = &d;
    qf_session *s = qf_calloc(1, sizeof *s);
    if (!s) {
        QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory");
        return NULL;
    }
    s->m = m;
    s->n_ctx = p->n_ctx > 0 ? p->n_ctx : (m->hp.n_ctx_train < 4096 ? m->hp.n_ctx_train : 4096);
    s->n_batch = p->n_batch > 0 ? p->n_batch : 512;
    if (s->n_batch > s->n_ctx) s->n_batch = s->n_ctx;
    int nt = p->n_threads > 0 ? p->n_threads : qf_cpu_default_threads();
    const qf_cpu_topo *topo = qf_cpu_topo_get();
    /* pin only when there is a performance core for every thread */
    s->pool = qf_pool_new(nt, topo->perf_cpus && nt <= topo->n_perf ? topo->perf_cpus : NULL, err);
    if (!s->pool) goto fail;
    qf_kv_params kp = qf_model_kv_params(m, s->n_ctx, 1, p->kv_type, 16);
    s->kv = qf_kv_new(&kp, err);
    if (!s->kv) goto fail;
    if (p->n_gpu_layers && p->n_gpu_layers != QF_GPU_LAYERS_AUTO && p->exact) qf_info("session: exact (reference) math runs on the CPU; GPU layers ignored");
    else if (!p->exact) s->gpu = qf_gpu_fwd_try_new(m, &kp, s->n_batch, s->n_ctx, p->n_gpu_layers);
    if (!s->gpu || qf_gpu_fwd_cpu_layers(s->gpu) > 0) {
        /* the CPU runs the model, or its first layers (partial offload) */
        s->fwd = qf_fwd_new(m, s->kv, s->pool, s->n_batch, s->n_ctx, err);
        if (!s->fwd) goto fail;
        if (p->exact) qf_fwd_set_exact(s->fwd, true);
        if (s->gpu) qf_gpu_fwd_set_cpu(s->gpu, s->fwd);
    }
    s->pos = qf_calloc((size_t)s->n_batch, sizeof(int32_t));
    s->seq = qf_calloc((size_t)s->n_batch, sizeof(int32_t));
    s->want = qf_calloc((size_t)s->n_batch, 1);
    if (!s->pos || !s->seq || !s->want) {
        QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory");
        goto fail;
    }
    return s;
fail:
    qf_session_free(s);
    return NULL;
}

void qf_session_free(qf_session *s) {
    if (!s) return;
    qf_fwd_free(s->fwd);
    qf_gpu_fwd_free(s->gpu);
    qf_kv_free(s->kv);
    qf_pool_free(s->pool);
    qf_free(s->pos);
    qf_free(s->seq);
    qf_free(s->want);
    qf_free(s);
}

qf_status qf_session_eval(qf_session *s, const int32_t *tokens, int32_t n, qf_err *err) {
    if (n <= 0) return QF_ERR_SET(err, QF_ERR_INVALID, "nothing to evaluate");
    if ((int64_t)s->n_past + n > s->n_ctx)
        return QF_ERR_SET(err, QF_ERR_RANGE, "%d tokens do not fit the context: %d already used of %d",
                          n, s->n_past, s->n_ctx);
    for (int32_t done = 0; done < n;) {
        int32_t k = n - done < s->n_batch ? n - done : s->n_batch;
        for (int32_t i = 0; i < k; i++) {
            s->pos[i] = s->n_past + i;
            s->seq[i] = 0;
            s->want[i] = done + i == n - 1;
        }
        qf_batch b = {k, tokens + done, s->pos, s->seq, s->want};
        qf_status st = s->gpu ? qf_gpu_fwd_decode(s->gpu, s->kv, &b, err) : qf_fwd_decode(s->fwd, &b, err);
        if (st != QF_OK) return st;
        s->n_past += k;
        done += k;
    }
    return QF_OK;
}

const float *qf_session_logits(const qf_session *s) {
    return s->gpu ? qf_gpu_fwd_logits(s->gpu, 0) : qf_fwd_logits(s->fwd, 0);
}
int32_t qf_session_n_past(const qf_session *s) { return s->n_past; }
int32_t qf_session_n_ctx(const qf_session *s) { return s->n_ctx; }

void qf_session_rewind(qf_session *s, int32_t n_past) {
    if (n_past < 0) n_past = 0;
    if (n_past > s->n_past) return;
    s->n_past = n_past;
    qf_kv_seq_truncate(s->kv, 0, n_past);
}
