/* provider.c - the provider interface's dispatch and shared bookkeeping.
 *
 * `pending` counts completions submitted and not yet handed out; the
 * implementations only see submit/wait, so the count is kept here, where
 * every completion passes exactly once in each direction.
 */
#include "pipeline/provider.h"

#include <string.h>

#include "base/mem.h"

void qf_presult_deinit(qf_presult *r) {
    if (!r) return;
    qf_free(r->text);
    r->text = NULL;
    r->len = 0;
}

qf_status qf_provider_submit(qf_provider *p, const qf_preq *r, qf_err *err) {
    qf_status st = p->vt->submit(p, r, err);
    if (st == QF_OK) {
        int32_t n = r->n > 0 ? r->n : 1;
        p->pending += n;
        p->stats.submitted += (uint64_t)n;
    }
    return st;
}

int qf_provider_wait(qf_provider *p, qf_presult *out, int cap, double timeout_s) {
    if (cap <= 0) return 0;
    int n = p->vt->wait(p, out, cap, timeout_s);
    for (int i = 0; i < n; i++) {
        p->pending--;
        if (out[i].status == QF_OK) p->stats.completed++;
        else p->stats.failed++;
        p->stats.tokens_in += (uint64_t)(out[i].tokens_in > 0 ? out[i].tokens_in : 0);
        p->stats.tokens_out += (uint64_t)(out[i].tokens_out > 0 ? out[i].tokens_out : 0);
        p->stats.tokens_cached += (uint64_t)(out[i].tokens_cached > 0 ? out[i].tokens_cached : 0);
    }
    return n;
}

int64_t qf_provider_pending(const qf_provider *p) { return p->pending; }

int32_t qf_provider_count_tokens(const qf_provider *p, const char *text, size_t len) {
    return p->vt->count_tokens ? p->vt->count_tokens(p, text, len) : -1;
}

int32_t qf_provider_n_ctx(const qf_provider *p) { return p->n_ctx; }
const char *qf_provider_model_id(const qf_provider *p) { return p->model_id; }
const char *qf_provider_model_name(const qf_provider *p) { return p->model_name; }

void qf_provider_get_stats(const qf_provider *p, qf_provider_stats *out) { *out = p->stats; }

void qf_provider_free(qf_provider *p) {
    if (p) p->vt->free(p);
}
