/* config.h - the qforge config file: engine settings that `qforge tune
 * --autotune` writes and `gen`, `serve` and `bench` read.
 *
 * Format: YAML, one flat mapping of scalar values (comments allowed):
 *
 *   # written by qforge tune --autotune ...
 *   version: 1
 *   threads: 2          # compute threads            1..1024
 *   parallel: 16        # sequences decoded at once  1..256
 *   batch: 256          # tokens per engine step     1..1048576
 *   ctx: 4096           # positions per sequence     64..16777216
 *   kv_type: f16        # f16, q8_0 or f32
 *   model: "/models/x.gguf"   # informational: the model it was tuned on
 *   tokens_per_s: 41.2        # informational: the measured best
 *
 * Every key is optional; an unset key leaves the command's built-in default.
 * Precedence in the commands: command-line flags, then environment
 * variables (serve), then this file, then built-in defaults.
 *
 * Location: `--config FILE`, else the default path
 * $XDG_CONFIG_HOME/qforge/config.yaml, else ~/.config/qforge/config.yaml,
 * read only when it exists.
 *
 * Thread-safety: no shared state.
 */
#ifndef QF_TUNE_CONFIG_H
#define QF_TUNE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "quant/quant.h"

typedef struct qf_config {
    int threads;      /* 0 = unset */
    int32_t parallel; /* 0 = unset */
    int32_t batch;    /* 0 = unset */
    int32_t ctx;      /* 0 = unset */
    bool has_kv_type;
    qf_type kv_type;
    char model[1024];    /* informational; "" = unset */
    double tokens_per_s; /* informational; 0 = unset */
    char path[1024];     /* the file it was loaded from ("" = none) */
} qf_config;

void qf_config_init(qf_config *c); /* everything unset */

/* Parse YAML text; name is used in messages. Errors (the message starts
 * with "name:line:" and names the key): QF_ERR_FORMAT (YAML syntax, not a
 * mapping of scalars, duplicate key), QF_ERR_INVALID (unknown key, value
 * not of its type or out of range, unsupported version). */
qf_status qf_config_parse(const char *text, size_t len, const char *name, qf_config *out /* out */,
                          qf_err *err);

/* Read and parse a file (QF_ERR_IO when it cannot be read). */
qf_status qf_config_load(const char *path, qf_config *out /* out */, qf_err *err);

/* Write c as YAML (set keys only) to path, atomically (a temporary file
 * renamed over it), creating the parent folder and its parent if missing.
 * comment: lines written as "# ..." at the top (may hold newlines); NULL
 * for none. QF_ERR_INVALID when a value is out of range, QF_ERR_IO. */
qf_status qf_config_save(const char *path, const qf_config *c, const char *comment, qf_err *err);

/* The default path (malloc'ed, caller frees with qf_free); NULL when
 * neither XDG_CONFIG_HOME nor HOME is set. */
char *qf_config_default_path(void);

/* What a command uses: path when given (it must exist), else the default
 * path when use_default and a file is there, else nothing. *found tells
 * whether a file was read (out->path then names it). */
qf_status qf_config_resolve(const char *path, bool use_default, qf_config *out /* out */,
                            bool *found /* out */, qf_err *err);

#endif
