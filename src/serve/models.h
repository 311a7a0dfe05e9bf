/* models.h - the server's model manager: which GGUF files can be served,
 * which are loaded, and when they are unloaded.
 *
 * Names: a model's name is its file name without ".gguf" (the file given
 * with model_path, or any *.gguf directly inside models_dir). A requested
 * name may carry Ollama's ":latest" tag, which is ignored.
 *
 * Loading happens on first use (qf_models_acquire): the GGUF is loaded and
 * one engine is created for it with the given engine parameters. Several
 * requests for a model that is still loading wait for the one load. A
 * loaded model is held by every request that acquired it (reference
 * count) and is never unloaded while held. When no request holds it, it
 * stays loaded until its keep-alive runs out (qf_models_expire unloads it),
 * then is unloaded; keep-alive < 0 keeps it forever, 0 unloads it as soon
 * as the last holder releases it. A request may set the model's keep-alive
 * (Ollama's keep_alive), which then holds for that model from the release.
 *
 * Capacity: at most max_loaded models are loaded; loading one more unloads
 * the least recently used model nobody holds (QF_ERR_BUSY when all are
 * held). Memory: a model whose file alone does not fit what is left of the
 * memory budget is refused before loading (QF_ERR_RANGE, message with the
 * numbers); the engine is then given the remaining budget, which it checks
 * for weights + kv cache + scratch (QF_ERR_RANGE again, its message).
 *
 * Thread-safety: every function may be called from any thread.
 */
#ifndef QF_MODELS_H
#define QF_MODELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "engine/engine.h"
#include "tok/chat.h"

typedef struct qf_models_params {
    const char *model_path;    /* a single GGUF file, or NULL */
    const char *models_dir;    /* a folder of GGUF files, or NULL; at least one of the two */
    int max_loaded;            /* models loaded at once; 0 = 1 */
    double keep_alive_s;       /* default keep-alive; < 0 forever */
    size_t mem_budget;         /* bytes for all loaded models; 0 = available memory at start */
    qf_engine_params engine;   /* for every engine (mem_budget is set per load) */
    const char *chat_template; /* family name overriding the models' templates, or NULL */
} qf_models_params;

/* A servable model file. */
typedef struct qf_model_file {
    char name[256]; /* file stem */
    char path[4096];
    int64_t size;  /* bytes */
    int64_t mtime; /* seconds since the epoch */
} qf_model_file;

/* A loaded model (borrowed from the manager between acquire and release). */
typedef struct qf_models_entry qf_models_entry;

/* A snapshot of one loaded model, for /api/ps and /metrics. */
typedef struct qf_models_loaded_info {
    char name[256];
    int64_t size; /* file bytes */
    size_t kv_bytes;
    int refs;          /* requests holding it now */
    double expires_at; /* wall-clock seconds since the epoch; < 0: never (or held) */
    qf_engine_stats stats;
} qf_models_loaded_info;

typedef struct qf_models qf_models;

/* Copies the strings of p. Checks that model_path exists (QF_ERR_IO) and
 * that models_dir is a readable folder (QF_ERR_IO); QF_ERR_INVALID when
 * both are NULL or chat_template names no known family. Loads nothing. */
qf_models *qf_models_new(const qf_models_params *p, qf_err *err);
/* Unloads every model (their engines deliver final CANCELLED events for
 * requests still running). NULL is a no-op. The caller makes sure nobody
 * holds an entry any more. */
void qf_models_free(qf_models *mm);

/* Servable models, sorted by name (the folder is rescanned each call; a
 * name given by model_path comes first and hides a same-named file of the
 * folder). *out is malloc'ed (free with qf_free), *n its length. */
qf_status qf_models_list(qf_models *mm, qf_model_file **out /* out */, int *n /* out */,
                         qf_err *err);

/* Look up one name (":latest" ignored). QF_ERR_NOT_FOUND with a message
 * naming the model when there is none. */
qf_status qf_models_find(qf_models *mm, const char *name, qf_model_file *out /* out */,
                         qf_err *err);

/* The only servable model's name, when there is exactly one (for requests
 * without a model); NULL otherwise. Writes into buf (cap bytes). */
const char *qf_models_default(qf_models *mm, char *buf, size_t cap);

/* Load (if needed) and hold a model. keep_alive_s: NAN = leave the model's
 * keep-alive as it is, otherwise set it. load_s (may be NULL) receives the
 * seconds spent loading (0 when it was loaded). Errors: QF_ERR_NOT_FOUND
 * (no such model), QF_ERR_BUSY (max_loaded reached and all held), QF_ERR_RANGE
 * (memory budget), and whatever the model load or engine creation reports. */
qf_models_entry *qf_models_acquire(qf_models *mm, const char *name, double keep_alive_s,
                                   double *load_s /* out */, qf_err *err);
/* Drop a hold; with keep-alive 0 and no other holder the model is unloaded
 * here. NULL is a no-op. */
void qf_models_release(qf_models *mm, qf_models_entry *e);

/* Borrowed views of a held entry (valid until release). */
qf_engine *qf_models_engine(const qf_models_entry *e);
const qf_model *qf_models_model(const qf_models_entry *e);
const char *qf_models_name(const qf_models_entry *e);
qf_chat_tmpl qf_models_chat(const qf_models_entry *e);

/* Unload a model now if nobody holds it, else mark it to unload when the
 * last holder releases it. QF_ERR_NOT_FOUND when it is not loaded. */
qf_status qf_models_unload(qf_models *mm, const char *name);

/* Unload the models whose keep-alive has run out at monotonic time now_s
 * (qf_now_s()). Returns how many were unloaded. */
int qf_models_expire(qf_models *mm, double now_s);

/* Snapshot of the loaded models (at most cap); returns the number loaded. */
int qf_models_loaded(qf_models *mm, qf_models_loaded_info *out, int cap);

/* Parse a keep-alive as Ollama accepts it: a number of seconds, or a Go
 * duration string ("5m", "1h30m", "10s", "500ms", "-1", "0"); negative means
 * forever. QF_ERR_INVALID for anything else. */
qf_status qf_models_parse_duration(const char *s, double *out_s /* out */);

#endif
