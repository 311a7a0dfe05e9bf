/* fetch.h - the default model: where it is cached and how it is downloaded.
 *
 * `qforge gen` without -m, --endpoint, --ollama or $QFORGE_MODEL uses a
 * small instruct model, downloaded once into the cache folder
 * ($XDG_CACHE_HOME/qforge/models, else ~/.cache/qforge/models) with a
 * progress bar, written to NAME.part and renamed into place only after its
 * SHA-256 matched. The expected digest is QF_DEFAULT_MODEL_SHA256 (or
 * $QFORGE_MODEL_SHA256); where that is empty, the digest the server states
 * for the file (Hugging Face's X-Linked-Etag header) is required instead.
 * $QFORGE_MODEL_URL replaces the URL (tests use an unreachable one).
 *
 * Without network the download fails with QF_ERR_IO and a message that
 * says so and lists the ways to supply a model.
 * Thread-safety: one download at a time per destination.
 */
#ifndef QF_FETCH_H
#define QF_FETCH_H

#include <stdbool.h>
#include <stdio.h>

#include "base/err.h"

#define QF_DEFAULT_MODEL_URL \
    "https://huggingface.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF/resolve/main/qwen2.5-0.5b-instruct-q4_k_m.gguf"
#define QF_DEFAULT_MODEL_FILE "qwen2.5-0.5b-instruct-q4_k_m.gguf"
/* Pinned digest of the file above; empty: use the server's (see above). */
#define QF_DEFAULT_MODEL_SHA256 ""

/* $QFORGE_MODEL_URL or QF_DEFAULT_MODEL_URL. Borrowed. */
const char *qf_fetch_default_url(void);
/* Cache path of the default model (malloc'ed, qf_free); NULL when no
 * cache folder can be named (no HOME). */
char *qf_fetch_default_path(void);

/* Download url to dest (parent folders created). sha256_hex: expected
 * digest (64 hex) or NULL/"" (then the server's is required). progress:
 * draw a bar on log (a terminal) or a line per 10%. Errors: IO (network,
 * HTTP status, disk; "no network" spelled out when the host cannot be
 * reached), FORMAT (digest mismatch: the partial file is deleted). */
qf_status qf_fetch(const char *url, const char *dest, const char *sha256_hex, FILE *log, qf_err *err);

/* The text telling the user how to supply a model (static). */
const char *qf_fetch_help(void);

#endif
