/* cmd_run.c - `qforge run`: prompt in, completion out, one sequence. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "base/clock.h"
#include "base/mem.h"
#include "cli/cli.h"
#include "model/session.h"
#include "sample/sample.h"
#include "tok/chat.h"

static const char *k_usage =
    "usage: qforge run -m MODEL (-p TEXT | --tokens 1,2,3) [options]\n"
    "\n"
    "  -m, --model FILE      GGUF model\n"
    "  -p, --prompt TEXT     prompt text (tokenized with the model's tokenizer, BOS added)\n"
    "      --tokens IDS      prompt as comma-separated token ids (used as given)\n"
    "      --chat            wrap the prompt as a user message in the model's chat template\n"
    "      --chat-template NAME  template family to use instead of the model's\n"
    "  -n N                  tokens to generate (default 128; 0: only evaluate the prompt)\n"
    "  -c, --ctx N           context length (default: min(model's, 4096))\n"
    "      --temp T          temperature (default 0.8; 0 = greedy)\n"
    "      --top-k K         (default 40)   --top-p P (default 0.95)   --min-p P (default 0.05)\n"
    "      --repeat-penalty R (default 1.0) --seed S\n"
    "  -t, --threads N       compute threads (default: performance cores)\n"
    "      --kv-type TYPE    f16 (default), q8_0 or f32\n"
    "  -ngl, --gpu-layers N  layers on the GPU: -1 = all, 0 = none, auto = what fits\n"
    "                        (default: $QFORGE_GPU_LAYERS, else auto with a GPU backend)\n"
    "      --ignore-eos      keep generating after an end-of-generation token\n"
    "      --ids             print generated token ids on one line instead of text\n"
    "      --logits-out FILE write the last prompt position's logits (float32 LE)\n";

typedef struct run_opts {
    const char *model, *prompt, *tokens, *logits_out, *chat_template;
    long long n_gen, n_ctx, threads, gpu_layers;
    bool ids, chat, ignore_eos;
    qf_type kv_type;
    qf_sample_params sp;
} run_opts;

static int parse(int argc, char **argv, run_opts *o) {
    memset(o, 0, sizeof *o);
    o->n_gen = 128;
    o->kv_type = QF_TYPE_F16;
    o->gpu_layers = qf_gpu_layers_env();
    o->sp = qf_sample_params_default();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        double d;
        long long n;
#define VAL() ((v = cli_value(argc, argv, &i)) != NULL)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(k_usage, stdout);
            return -1;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!VAL()) goto missing;
            o->model = v;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            if (!VAL()) goto missing;
            o->prompt = v;
        } else if (!strcmp(a, "--tokens")) {
            if (!VAL()) goto missing;
            o->tokens = v;
        } else if (!strcmp(a, "--logits-out")) {
            if (!VAL()) goto missing;
            o->logits_out = v;
        } else if (!strcmp(a, "--chat-template")) {
            if (!VAL()) goto missing;
            o->chat_template = v;
            o->chat = true;
        } else if (!strcmp(a, "--chat")) {
            o->chat = true;
        } else if (!strcmp(a, "--ids")) {
            o->ids = true;
        } else if (!strcmp(a, "--ignore-eos")) {
            o->ignore_eos = true;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            if (!VAL() || !cli_parse_int(v, 0, 1 << 24, &o->n_gen)) goto bad;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) {
            if (!VAL() || !cli_parse_int(v, 1, 1 << 24, &o->n_ctx)) goto bad;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!VAL() || !cli_parse_int(v, 1, 1024, &o->threads)) goto bad;
        } else if (!strcmp(a, "-ngl") || !strcmp(a, "--gpu-layers") || !strcmp(a, "--n-gpu-layers")) {
            if (!VAL() || !cli_parse_gpu_layers(v, &o->gpu_layers)) goto bad;
        } else if (!strcmp(a, "--temp")) {
            if (!VAL() || !cli_parse_float(v, 0, 100, &d)) goto bad;
            o->sp.temperature = (float)d;
        } else if (!strcmp(a, "--top-k")) {
            if (!VAL() || !cli_parse_int(v, 0, 1 << 24, &n)) goto bad;
            o->sp.top_k = (int32_t)n;
        } else if (!strcmp(a, "--top-p")) {
            if (!VAL() || !cli_parse_float(v, 0, 1, &d)) goto bad;
            o->sp.top_p = (float)d;
        } else if (!strcmp(a, "--min-p")) {
            if (!VAL() || !cli_parse_float(v, 0, 1, &d)) goto bad;
            o->sp.min_p = (float)d;
        } else if (!strcmp(a, "--repeat-penalty")) {
            if (!VAL() || !cli_parse_float(v, 0, 10, &d)) goto bad;
            o->sp.repeat_penalty = (float)d;
        } else if (!strcmp(a, "--seed")) {
            if (!VAL() || !cli_parse_int(v, 0, INT64_MAX, &n)) goto bad;
            o->sp.seed = (uint64_t)n;
        } else if (!strcmp(a, "--kv-type")) {
            if (!VAL()) goto missing;
            if (!cli_parse_kv_type(v, &o->kv_type)) goto bad;
        } else {
            return cli_usage_error(k_usage, "run: unknown option '%s'", a);
        }
        continue;
    missing:
        return cli_usage_error(k_usage, "run: option %s needs a value", a);
    bad:
        return cli_usage_error(k_usage, "run: bad value '%s' for %s", v ? v : "", a);
#undef VAL
    }
    if (!o->model) return cli_usage_error(k_usage, "run: -m MODEL is required");
    if (!o->prompt == !o->tokens) return cli_usage_error(k_usage, "run: give exactly one of -p TEXT or --tokens IDS");
    if (o->tokens && o->chat) return cli_usage_error(k_usage, "run: --chat needs -p TEXT");
    return 0;
}

/* Prompt tokens: ids as given, or the (chat-formatted) text tokenized. */
static int32_t *prompt_tokens(const run_opts *o, const qf_model *m, int32_t *n, qf_err *err) {
    if (o->tokens) {
        int32_t *ids;
        if (!cli_parse_int_list(o->tokens, &ids, n)) {
            QF_ERR_SET(err, QF_ERR_INVALID, "--tokens '%s': expected comma-separated integers", o->tokens);
            return NULL;
        }
        for (int32_t i = 0; i < *n; i++)
            if (ids[i] < 0 || ids[i] >= m->hp.n_vocab) {
                QF_ERR_SET(err, QF_ERR_INVALID, "--tokens: id %d is outside the vocabulary (0..%d)", ids[i],
                           m->hp.n_vocab - 1);
                qf_free(ids);
                return NULL;
            }
        return ids;
    }
    const char *text = o->prompt;
    char *formatted = NULL;
    if (o->chat) {
        qf_chat_tmpl t = qf_chat_resolve(qf_tok_chat_template(m->tok), o->chat_template, err);
        if (t == QF_CHAT_UNKNOWN) return NULL;
        qf_chat_msg msg = {"user", o->prompt};
        formatted = qf_chat_format(t, &msg, 1, true, err);
        if (!formatted) return NULL;
        text = formatted;
    }
    int32_t *ids = qf_tok_encode(m->tok, text, strlen(text), true, o->chat, n, err);
    qf_free(formatted);
    return ids;
}

static int write_logits(const char *path, const float *logits, int32_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(logits, sizeof(float), (size_t)n, f) != (size_t)n || fclose(f) != 0) {
        fprintf(stderr, "qforge: error: cannot write %s\n", path);
        if (f) fclose(f);
        return QF_EXIT_FAIL;
    }
    return QF_EXIT_OK;
}

int cmd_run(int argc, char **argv) {
    run_opts o;
    int rc = parse(argc, argv, &o);
    if (rc) return rc < 0 ? QF_EXIT_OK : rc;
    qf_err err = {0};
    qf_model *m = NULL;
    qf_session *s = NULL;
    qf_sampler *smp = NULL;
    int32_t *prompt = NULL, *hist = NULL;
    int32_t n_prompt = 0;
    rc = QF_EXIT_FAIL;

    double t0 = qf_now_s();
    m = qf_model_load(o.model, NULL, &err);
    if (!m) goto fail;
    prompt = prompt_tokens(&o, m, &n_prompt, &err);
    if (!prompt) goto fail;
    if (n_prompt == 0) {
        QF_ERR_SET(&err, QF_ERR_INVALID, "the prompt is empty");
        goto fail;
    }
    qf_session_params sp = qf_session_params_default();
    sp.n_ctx = (int32_t)o.n_ctx;
    sp.n_threads = (int)o.threads;
    sp.kv_type = o.kv_type;
    sp.n_gpu_layers = (int32_t)o.gpu_layers;
    s = qf_session_new(m, &sp, &err);
    if (!s) goto fail;
    int32_t n_ctx = qf_session_n_ctx(s);
    if (n_prompt > n_ctx) {
        QF_ERR_SET(&err, QF_ERR_RANGE, "the prompt is %d tokens, longer than the context of %d tokens (raise -c)",
                   n_prompt, n_ctx);
        goto fail;
    }
    double t1 = qf_now_s();
    if (qf_session_eval(s, prompt, n_prompt, &err) != QF_OK) goto fail;
    double t2 = qf_now_s();
    if (o.logits_out && write_logits(o.logits_out, qf_session_logits(s), m->hp.n_vocab) != QF_EXIT_OK) goto out;

    smp = qf_sampler_new(&o.sp, m->hp.n_vocab, &err);
    hist = qf_malloc(((size_t)n_prompt + (size_t)o.n_gen + 1) * sizeof *hist);
    float *scratch = qf_malloc((size_t)m->hp.n_vocab * sizeof(float));
    if (!smp || !hist || !scratch) {
        qf_free(scratch);
        if (!smp) goto fail;
        QF_ERR_SET(&err, QF_ERR_NOMEM, "out of memory");
        goto fail;
    }
    memcpy(hist, prompt, (size_t)n_prompt * sizeof *hist);
    int32_t n_hist = n_prompt, n_done = 0;
    char piece[256];
    for (; n_done < o.n_gen; n_done++) {
        if (qf_session_n_past(s) >= n_ctx) {
            fprintf(stderr, "\nqforge: context of %d tokens is full; stopping\n", n_ctx);
            break;
        }
        memcpy(scratch, qf_session_logits(s), (size_t)m->hp.n_vocab * sizeof(float));
        int32_t id = qf_sampler_sample(smp, scratch, hist, n_hist);
        hist[n_hist++] = id;
        if (!o.ignore_eos && qf_tok_is_eog(m->tok, id)) break;
        if (o.ids) {
            printf(n_done ? " %d" : "%d", id);
        } else {
            size_t len = qf_tok_piece(m->tok, id, false, piece, sizeof piece);
            fwrite(piece, 1, len < sizeof piece ? len : sizeof piece, stdout);
        }
        fflush(stdout);
        if (n_done + 1 < o.n_gen && qf_session_eval(s, &id, 1, &err) != QF_OK) {
            qf_free(scratch);
            goto fail;
        }
    }
    qf_free(scratch);
    putchar('\n');
    double t3 = qf_now_s();
    fprintf(stderr, "qforge: load %.2f s, prompt %d tokens %.1f tok/s, generated %d tokens %.1f tok/s\n", t1 - t0,
            n_prompt, n_prompt / (t2 - t1 > 0 ? t2 - t1 : 1e-9), n_done,
            n_done / (t3 - t2 > 0 ? t3 - t2 : 1e-9));
    rc = QF_EXIT_OK;
    goto out;
fail:
    rc = cli_fail(&err);
out:
    qf_free(prompt);
    qf_free(hist);
    qf_sampler_free(smp);
    qf_session_free(s);
    qf_model_free(m);
    return rc;
}
