/* preset.c - YAML presets with libyaml's event parser.
 *
 * The event stream is walked with a small state machine: document ->
 * top-level mapping -> key `processing` -> its mapping of scalar values.
 * Other top-level values (scalars, sequences, mappings) are skipped by
 * depth counting. Numbers are parsed strictly (whole string, in range).
 */
#include "pipeline/preset.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "base/log.h"
#include "base/mem.h"

static const qf_preset k_speed = {12, 4, 0.3f, 1, 3, 100};
static const qf_preset k_quality = {6, 1, 0.7f, 3, 8, 200};

qf_status qf_preset_builtin(const char *name, qf_preset *out) {
    if (!strcmp(name, "speed")) *out = k_speed;
    else if (!strcmp(name, "quality")) *out = k_quality;
    else return QF_ERR_NOT_FOUND;
    return QF_OK;
}

typedef struct key_def {
    const char *name;
    double lo, hi;
    bool is_float;
    size_t off;
} key_def;

static const key_def k_keys[] = {
    {"workers", 1, 1024, false, offsetof(qf_preset, workers)},
    {"max_concurrent_requests", 1, 4096, false, offsetof(qf_preset, max_concurrent_requests)},
    {"temperature", 0, 2, true, offsetof(qf_preset, temperature)},
    {"generation_passes", 1, 100, false, offsetof(qf_preset, generation_passes)},
    {"qa_pairs_per_chunk", 1, 100, false, offsetof(qf_preset, qa_pairs_per_chunk)},
    {"min_answer_length", 0, 100000, false, offsetof(qf_preset, min_answer_length)},
};

static qf_status set_key(qf_preset *p, const char *key, const char *val, const char *name, size_t line,
                         qf_err *err) {
    for (size_t i = 0; i < sizeof k_keys / sizeof k_keys[0]; i++) {
        const key_def *k = &k_keys[i];
        if (strcmp(k->name, key)) continue;
        char *end;
        errno = 0;
        double v = strtod(val, &end);
        if (errno || end == val || *end || isnan(v) || v < k->lo || v > k->hi || (!k->is_float && v != floor(v)))
            return QF_ERR_SET(err, QF_ERR_INVALID, "%s:%zu: processing.%s: '%s' is not %s in %g..%g", name, line, key,
                              val, k->is_float ? "a number" : "an integer", k->lo, k->hi);
        if (k->is_float) *(float *)((char *)p + k->off) = (float)v;
        else *(int32_t *)((char *)p + k->off) = (int32_t)v;
        return QF_OK;
    }
    return QF_ERR_SET(err, QF_ERR_INVALID,
                      "%s:%zu: unknown key processing.%s (known: workers, max_concurrent_requests, temperature, "
                      "generation_passes, qa_pairs_per_chunk, min_answer_length)",
                      name, line, key);
}

qf_status qf_preset_parse(const char *yaml, size_t len, const char *name, qf_preset *out, qf_err *err) {
    qf_preset p = k_speed;
    yaml_parser_t ps;
    if (!yaml_parser_initialize(&ps)) return QF_ERR_SET(err, QF_ERR_NOMEM, "%s: out of memory", name);
    yaml_parser_set_input_string(&ps, (const unsigned char *)yaml, len);
    enum { S_TOP, S_TOPMAP_KEY, S_TOPMAP_VAL, S_PROC_KEY, S_PROC_VAL, S_SKIP } state = S_TOP;
    int skip_depth = 0, after_skip = S_TOPMAP_KEY;
    char key[128] = "";
    qf_status st = QF_OK;
    bool seen_proc = false, done = false;
    while (!done && st == QF_OK) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&ps, &ev)) {
            st = QF_ERR_SET(err, QF_ERR_FORMAT, "%s:%zu: YAML error: %s", name, ps.problem_mark.line + 1,
                            ps.problem ? ps.problem : "syntax");
            break;
        }
        size_t line = ev.start_mark.line + 1;
        yaml_event_type_t t = ev.type;
        const char *sv = t == YAML_SCALAR_EVENT ? (const char *)ev.data.scalar.value : NULL;
        switch (state) {
        case S_TOP:
            if (t == YAML_MAPPING_START_EVENT) state = S_TOPMAP_KEY;
            else if (t == YAML_STREAM_END_EVENT) done = true;
            else if (t == YAML_SCALAR_EVENT || t == YAML_SEQUENCE_START_EVENT)
                st = QF_ERR_SET(err, QF_ERR_FORMAT, "%s:%zu: expected a mapping with a 'processing' key", name, line);
            break;
        case S_TOPMAP_KEY:
            if (t == YAML_MAPPING_END_EVENT) state = S_TOP;
            else if (t == YAML_SCALAR_EVENT) {
                snprintf(key, sizeof key, "%s", sv);
                state = S_TOPMAP_VAL;
            } else st = QF_ERR_SET(err, QF_ERR_FORMAT, "%s:%zu: expected a key", name, line);
            break;
        case S_TOPMAP_VAL:
            if (!strcmp(key, "processing")) {
                if (t == YAML_MAPPING_START_EVENT) {
                    seen_proc = true;
                    state = S_PROC_KEY;
                } else if (t == YAML_SCALAR_EVENT && !sv[0]) { /* "processing:" with nothing */
                    state = S_TOPMAP_KEY;
                } else st = QF_ERR_SET(err, QF_ERR_FORMAT, "%s:%zu: 'processing' must be a mapping", name, line);
            } else {
                qf_warn("%s:%zu: key '%s' ignored (only 'processing' is read)", name, line, key);
                if (t == YAML_MAPPING_START_EVENT || t == YAML_SEQUENCE_START_EVENT) {
                    state = S_SKIP;
                    skip_depth = 1;
                    after_skip = S_TOPMAP_KEY;
                } else state = S_TOPMAP_KEY;
            }
            break;
        case S_PROC_KEY:
            if (t == YAML_MAPPING_END_EVENT) state = S_TOPMAP_KEY;
            else if (t == YAML_SCALAR_EVENT) {
                snprintf(key, sizeof key, "%s", sv);
                state = S_PROC_VAL;
            } else st = QF_ERR_SET(err, QF_ERR_FORMAT, "%s:%zu: expected a key under 'processing'", name, line);
            break;
        case S_PROC_VAL:
            if (t == YAML_SCALAR_EVENT) {
                st = set_key(&p, key, sv, name, line, err);
                state = S_PROC_KEY;
            } else st = QF_ERR_SET(err, QF_ERR_FORMAT, "%s:%zu: processing.%s must be a number", name, line, key);
            break;
        case S_SKIP:
            if (t == YAML_MAPPING_START_EVENT || t == YAML_SEQUENCE_START_EVENT) skip_depth++;
            else if (t == YAML_MAPPING_END_EVENT || t == YAML_SEQUENCE_END_EVENT) {
                if (--skip_depth == 0) state = after_skip;
            }
            break;
        }
        if (t == YAML_STREAM_END_EVENT) done = true;
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&ps);
    if (st != QF_OK) return st;
    if (!seen_proc) qf_warn("%s: no 'processing' mapping: using the speed preset's values", name);
    *out = p;
    return QF_OK;
}

qf_status qf_preset_resolve(const char *arg, qf_preset *out, qf_err *err) {
    if (qf_preset_builtin(arg, out) == QF_OK) return QF_OK;
    FILE *f = fopen(arg, "rb");
    if (!f)
        return QF_ERR_SET(err, QF_ERR_IO, "%s: not a built-in preset (speed, quality) and cannot be read: %s", arg,
                          strerror(errno));
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 > cap) {
            if (cap > (1u << 20)) {
                fclose(f);
                qf_free(buf);
                return QF_ERR_SET(err, QF_ERR_RANGE, "%s: preset file larger than 1 MiB", arg);
            }
            cap = cap ? cap * 2 : 8192;
            char *nb = qf_realloc(buf, cap);
            if (!nb) {
                fclose(f);
                qf_free(buf);
                return QF_ERR_SET(err, QF_ERR_NOMEM, "%s: out of memory", arg);
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        qf_free(buf);
        return QF_ERR_SET(err, QF_ERR_IO, "%s: read error", arg);
    }
    qf_status st = qf_preset_parse(buf ? buf : "", n, arg, out, err);
    qf_free(buf);
    return st;
}
