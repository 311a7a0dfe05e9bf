/* cmd_model.c - `qforge model info|synth`. */
#include <stdio.h>
#include <string.h>

#include "base/cpu.h"
#include "cli/cli.h"
#include "engine/engine.h"
#include "model/model.h"
#include "model/synth.h"
#include "tok/chat.h"

static const char *k_usage =
    "usage: qforge model info MODEL [--ctx N] [--parallel P] [--kv-type f16|f32|q8_0]\n"
    "       qforge model synth --arch ARCH --n-embd E --n-layer L --n-head H --n-head-kv K --n-ff F\n"
    "                          [--head-dim D] [--ctx N] [--vocab-from GGUF] [--type T] [--seed S] -o OUT.gguf\n"
    "\n"
    "info   architecture, sizes, tensor types, tokenizer, and the memory needed at a context\n"
    "synth  write a random-weight model of any shape (for tests and benchmarks; its text is meaningless)\n"
    "       ARCH: llama, qwen2, qwen3; TYPE: a file type such as f16, q8_0, q4_0, q4_k_m (default f16)\n";

static void human(char *buf, size_t cap, double bytes) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (bytes >= 1024 && i < 4) {
        bytes /= 1024;
        i++;
    }
    snprintf(buf, cap, "%.2f %s", bytes, u[i]);
}

static int info(int argc, char **argv) {
    const char *path = NULL;
    long long n_ctx = 0, parallel = 1;
    qf_type kv_type = QF_TYPE_F16;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--ctx") || !strcmp(a, "-c")) {
            if (!(v = cli_value(argc, argv, &i)) || !cli_parse_int(v, 1, 1 << 24, &n_ctx))
                return cli_usage_error(k_usage, "model info: bad value for %s", a);
        } else if (!strcmp(a, "--parallel")) {
            if (!(v = cli_value(argc, argv, &i)) || !cli_parse_int(v, 1, 4096, &parallel))
                return cli_usage_error(k_usage, "model info: bad value for %s", a);
        } else if (!strcmp(a, "--kv-type")) {
            if (!cli_parse_kv_type(cli_value(argc, argv, &i), &kv_type))
                return cli_usage_error(k_usage, "model info: --kv-type is f16, q8_0 or f32");
        } else if (a[0] == '-') {
            return cli_usage_error(k_usage, "model info: unknown option '%s'", a);
        } else if (!path) {
            path = a;
        } else {
            return cli_usage_error(k_usage, "model info: one MODEL only");
        }
    }
    if (!path) return cli_usage_error(k_usage, "model info: MODEL is required");
    qf_err err = {0};
    qf_model *m = qf_model_load(path, NULL, &err);
    if (!m) return cli_fail(&err);
    const qf_hparams *hp = &m->hp;
    if (!n_ctx) n_ctx = hp->n_ctx_train;
    char b1[32], b2[32], b3[32], b4[32];
    printf("model:         %s\n", path);
    printf("name:          %s\n", m->name);
    printf("architecture:  %s\n", hp->arch_name);
    printf("layers:        %d\n", hp->n_layer);
    printf("embedding:     %d\n", hp->n_embd);
    printf("heads:         %d (kv %d, head dim %d/%d)\n", hp->n_head, hp->n_head_kv, hp->head_dim, hp->head_dim_v);
    printf("ffn:           %d\n", hp->n_ff);
    printf("vocab:         %d\n", hp->n_vocab);
    printf("context:       %d trained\n", hp->n_ctx_train);
    printf("rope:          %s, base %g, dims %d%s%s\n", hp->rope_kind == QF_ROPE_NEOX ? "neox" : "norm",
           hp->rope_base, hp->n_rot, m->rope_freqs ? ", llama3 frequency factors" : "",
           hp->rope_freq_scale != 1.0f ? ", linear scaling" : "");
    printf("output:        %s\n", hp->tied_output ? "tied to token_embd" : "separate");
    /* tensor types: count and bytes per type */
    size_t bytes[QF_TYPE_COUNT_MAX] = {0};
    int count[QF_TYPE_COUNT_MAX] = {0};
    for (int64_t i = 0; i < qf_gguf_n_tensors(m->gguf); i++) {
        const qf_gguf_tensor *t = qf_gguf_tensor_at(m->gguf, i);
        if (t->type < QF_TYPE_COUNT_MAX) {
            bytes[t->type] += t->size;
            count[t->type]++;
        }
    }
    printf("tensor types: ");
    for (int t = 0; t < QF_TYPE_COUNT_MAX; t++)
        if (count[t]) {
            human(b1, sizeof b1, (double)bytes[t]);
            printf(" %s x%d (%s)", qf_type_get((uint32_t)t) ? qf_type_get((uint32_t)t)->name : "?", count[t], b1);
        }
    printf("\n");
    const qf_tok *tok = m->tok;
    const char *kinds[] = {"spm", "bpe", "wpm"};
    qf_chat_tmpl ct = qf_chat_detect(qf_tok_chat_template(tok));
    printf("tokenizer:     %s (pre %s), %d tokens, bos %d, eos %d, chat template %s\n",
           kinds[qf_tok_get_kind(tok)], qf_tok_pre_name(tok), qf_tok_n_vocab(tok), qf_tok_bos(tok), qf_tok_eos(tok),
           ct == QF_CHAT_UNKNOWN ? (qf_tok_chat_template(tok) ? "unrecognised (chatml used)" : "none (chatml used)")
                                 : qf_chat_name(ct));
    qf_engine_params ep = qf_engine_params_default();
    ep.n_ctx = (int32_t)n_ctx;
    ep.n_parallel = (int32_t)parallel;
    ep.kv_type = kv_type;
    qf_mem_plan plan;
    qf_err perr = {0};
    qf_engine_plan(m, &ep, &plan, &perr);
    human(b1, sizeof b1, (double)plan.weights);
    human(b2, sizeof b2, (double)plan.kv);
    human(b3, sizeof b3, (double)plan.scratch);
    human(b4, sizeof b4, (double)(plan.weights + plan.kv + plan.scratch + plan.reserve));
    printf("memory at ctx %lld x %lld sequences (kv %s): weights %s (mapped), kv cache %s, scratch %s, "
           "with reserve %s\n",
           n_ctx, parallel, qf_type_get(kv_type)->name, b1, b2, b3, b4);
    human(b1, sizeof b1, (double)plan.budget);
    human(b2, sizeof b2, (double)plan.available);
    printf("plan:          %s (budget %s, available now %s)\n", plan.fits ? "fits" : "DOES NOT FIT", b1, b2);
    if (!plan.fits) printf("               %s\n", perr.msg);
    qf_model_free(m);
    return QF_EXIT_OK;
}

static int synth(int argc, char **argv) {
    qf_synth_params p = {0};
    p.ftype = QF_FTYPE_F16;
    p.seed = 42;
    const char *out = NULL, *arch = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = cli_value(argc, argv, &i);
        long long n;
        if (!v) return cli_usage_error(k_usage, "model synth: %s needs a value", a);
        int32_t *dst = NULL;
        if (!strcmp(a, "--arch")) arch = v;
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) out = v;
        else if (!strcmp(a, "--vocab-from")) p.vocab_from = v;
        else if (!strcmp(a, "--type")) {
            if (!qf_ftype_from_name(v, &p.ftype))
                return cli_usage_error(k_usage, "model synth: unknown type '%s' (one of: %s)", v, qf_ftype_names());
        } else if (!strcmp(a, "--seed")) {
            if (!cli_parse_int(v, 0, INT64_MAX, &n)) return cli_usage_error(k_usage, "model synth: bad seed '%s'", v);
            p.seed = (uint64_t)n;
        } else if (!strcmp(a, "--n-embd")) dst = &p.n_embd;
        else if (!strcmp(a, "--n-layer")) dst = &p.n_layer;
        else if (!strcmp(a, "--n-head")) dst = &p.n_head;
        else if (!strcmp(a, "--n-head-kv")) dst = &p.n_head_kv;
        else if (!strcmp(a, "--n-ff")) dst = &p.n_ff;
        else if (!strcmp(a, "--head-dim")) dst = &p.head_dim;
        else if (!strcmp(a, "--ctx")) dst = &p.n_ctx;
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!cli_parse_int(v, 1, 1024, &n)) return cli_usage_error(k_usage, "model synth: bad thread count");
            p.n_threads = (int)n;
        } else return cli_usage_error(k_usage, "model synth: unknown option '%s'", a);
        if (dst) {
            if (!cli_parse_int(v, 1, 1 << 20, &n)) return cli_usage_error(k_usage, "model synth: bad value '%s' for %s", v, a);
            *dst = (int32_t)n;
        }
    }
    if (!arch) return cli_usage_error(k_usage, "model synth: --arch is required");
    int ai;
    for (ai = 0; ai < QF_ARCH_COUNT; ai++)
        if (!strcmp(arch, qf_arch_name((qf_arch)ai))) break;
    if (ai == QF_ARCH_COUNT) return cli_usage_error(k_usage, "model synth: unknown architecture '%s' (llama, qwen2, qwen3)", arch);
    p.arch = (qf_arch)ai;
    if (!p.n_embd || !p.n_layer || !p.n_head || !p.n_ff)
        return cli_usage_error(k_usage, "model synth: --n-embd, --n-layer, --n-head and --n-ff are required");
    if (!p.n_head_kv) p.n_head_kv = p.n_head;
    if (!out) return cli_usage_error(k_usage, "model synth: -o OUT.gguf is required");
    qf_err err = {0};
    if (qf_model_synth(&p, out, &err) != QF_OK) return cli_fail(&err);
    fprintf(stderr, "qforge: wrote %s (%s, random weights: its text is meaningless)\n", out, qf_ftype_name(p.ftype));
    return QF_EXIT_OK;
}

int cmd_model(int argc, char **argv) {
    if (argc < 2) return cli_usage_error(k_usage, "model: which tool? (info, synth)");
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fputs(k_usage, stdout);
        return QF_EXIT_OK;
    }
    if (!strcmp(argv[1], "info")) return info(argc - 1, argv + 1);
    if (!strcmp(argv[1], "synth")) return synth(argc - 1, argv + 1);
    return cli_usage_error(k_usage, "model: unknown tool '%s' (info, synth)", argv[1]);
}
