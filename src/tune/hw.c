/* hw.c - hardware description: detection and the JSON form.
 *
 * Detection layers three sources: base/cpu.h (hwloc core kinds: the most
 * performant kind is "performance", every other kind "efficiency"; one
 * hardware thread per core counted), hwloc for the L2 above the first
 * performance core, the L3 caches and NUMA nodes, and the OS file
 * (hw_linux.c / hw_macos.c) for memory and what the OS knows better. The
 * accelerator comes from the backend layer (qf_gpu_available), which does
 * not report the device memory: it stays 0 (unknown) when detected.
 *
 * The JSON parser is strict: every object's keys are checked against a
 * fixed list so that a typo is an error naming the key, not a silently
 * ignored setting.
 */
#include "tune/hw.h"

#include <ctype.h>
#include <errno.h>
#include <hwloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "backend/backend.h"
#include "base/cpu.h"
#include "base/mem.h"
#include "tune/tune_int.h"

/* ---- detection ---- */

static void caches_numa(qf_hw *hw, int first_perf_pu) {
    hwloc_topology_t topo;
    if (hwloc_topology_init(&topo) != 0) return;
    if (hwloc_topology_load(topo) != 0) {
        hwloc_topology_destroy(topo);
        return;
    }
    int n = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE);
    hw->n_numa = n > 0 ? n : 1;
    for (int i = 0; i < hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_L3CACHE); i++) {
        hwloc_obj_t c = hwloc_get_obj_by_type(topo, HWLOC_OBJ_L3CACHE, (unsigned)i);
        if (c && c->attr) hw->l3_bytes += (size_t)c->attr->cache.size;
    }
    /* the L2 above a performance core (hybrid parts differ per kind) */
    hwloc_obj_t pu =
        first_perf_pu >= 0 ? hwloc_get_pu_obj_by_os_index(topo, (unsigned)first_perf_pu) : NULL;
    if (!pu) pu = hwloc_get_obj_by_type(topo, HWLOC_OBJ_PU, 0);
    for (hwloc_obj_t o = pu; o; o = o->parent) {
        if (o->type == HWLOC_OBJ_L2CACHE && o->attr) {
            hw->l2_bytes = (size_t)o->attr->cache.size;
            break;
        }
    }
    hwloc_topology_destroy(topo);
}

qf_status qf_hw_detect(qf_hw *out, qf_err *err) {
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "detected");
    snprintf(out->os, sizeof out->os, "unknown");
    const qf_cpu_topo *t = qf_cpu_topo_get();
    out->n_logical = t->n_logical;
    out->n_perf = t->n_perf > 0 ? t->n_perf : 1;
    out->n_eff = t->n_eff;
    out->n_numa = 1;
    caches_numa(out, t->perf_cpus && t->n_perf > 0 ? t->perf_cpus[0] : -1);
    qf_tune_hw_os(out);
    if (!out->mem_total) { /* neither Linux nor macOS, or /proc unreadable */
        long pages = sysconf(_SC_PHYS_PAGES), avail = sysconf(_SC_AVPHYS_PAGES),
             psz = sysconf(_SC_PAGESIZE);
        if (pages > 0 && psz > 0) out->mem_total = (size_t)pages * (size_t)psz;
        if (avail > 0 && psz > 0) out->mem_available = (size_t)avail * (size_t)psz;
    }
    if (!out->mem_total) return QF_ERR_SET(err, QF_ERR_IO, "hardware: cannot read the memory size");
    if (out->n_logical < out->n_perf + out->n_eff) out->n_logical = out->n_perf + out->n_eff;
    out->gpu = qf_gpu_available(out->gpu_name, sizeof out->gpu_name);
    if (!out->gpu) out->gpu_name[0] = 0;
    return QF_OK;
}

/* ---- JSON ---- */

cJSON *qf_tune_hw_cjson(const qf_hw *hw) {
    cJSON *o = cJSON_CreateObject(), *c;
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "name", hw->name);
    cJSON_AddStringToObject(o, "os", hw->os);
    if ((c = cJSON_AddObjectToObject(o, "cores"))) {
        cJSON_AddNumberToObject(c, "performance", hw->n_perf);
        cJSON_AddNumberToObject(c, "efficiency", hw->n_eff);
        cJSON_AddNumberToObject(c, "logical", hw->n_logical);
    }
    if ((c = cJSON_AddObjectToObject(o, "cache"))) {
        cJSON_AddNumberToObject(c, "l2", (double)hw->l2_bytes);
        cJSON_AddNumberToObject(c, "l3", (double)hw->l3_bytes);
    }
    cJSON_AddNumberToObject(o, "numa_nodes", hw->n_numa);
    if ((c = cJSON_AddObjectToObject(o, "memory"))) {
        cJSON_AddNumberToObject(c, "total", (double)hw->mem_total);
        cJSON_AddNumberToObject(c, "available", (double)hw->mem_available);
        cJSON_AddBoolToObject(c, "unified", hw->unified);
    }
    if (!hw->gpu) {
        cJSON_AddNullToObject(o, "gpu");
    } else if ((c = cJSON_AddObjectToObject(o, "gpu"))) {
        cJSON_AddStringToObject(c, "name", hw->gpu_name);
        cJSON_AddNumberToObject(c, "memory", (double)hw->gpu_mem);
    }
    return o;
}

char *qf_hw_to_json(const qf_hw *hw) {
    cJSON *o = qf_tune_hw_cjson(hw);
    char *s = o ? cJSON_Print(o) : NULL;
    char *r = s ? qf_strdup(s) : NULL;
    free(s); /* cJSON's allocator is malloc */
    cJSON_Delete(o);
    return r;
}

/* Keys of obj must all be in allowed (NULL-terminated). */
static qf_status check_keys(const cJSON *obj, const char *const *allowed, const char *prefix,
                            const char *name, qf_err *err) {
    for (const cJSON *it = obj->child; it; it = it->next) {
        bool ok = false;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = !strcmp(it->string, *a);
        if (ok) continue;
        char known[256];
        size_t k = 0;
        known[0] = 0;
        for (const char *const *a = allowed; *a; a++)
            k += (size_t)snprintf(known + k, k < sizeof known ? sizeof known - k : 0, "%s%s",
                                  k ? ", " : "", *a);
        return QF_ERR_SET(err, QF_ERR_INVALID, "%s: unknown key '%s%s' (known at this level: %s)",
                          name, prefix, it->string, known);
    }
    return QF_OK;
}

/* A size: a non-negative integer number of bytes, or "16G" style text. */
static qf_status get_size(const cJSON *obj, const char *key, const char *path, size_t hi,
                          bool required, size_t *out, const char *name, qf_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) return QF_ERR_SET(err, QF_ERR_INVALID, "%s: %s is required", name, path);
        return QF_OK;
    }
    double b;
    if (cJSON_IsNumber(v)) {
        b = v->valuedouble;
        if (b != floor(b))
            return QF_ERR_SET(err, QF_ERR_INVALID, "%s: %s: %g is not a whole number of bytes",
                              name, path, b);
    } else if (cJSON_IsString(v)) {
        const char *s = v->valuestring;
        char *end;
        errno = 0;
        b = strtod(s, &end);
        double mul = 1;
        switch (toupper((unsigned char)*end)) {
        case 'K':
            mul = 1024.0, end++;
            break;
        case 'M':
            mul = QF_MIB, end++;
            break;
        case 'G':
            mul = QF_GIB, end++;
            break;
        case 'T':
            mul = QF_GIB * 1024.0, end++;
            break;
        default:
            break;
        }
        if (!strcasecmp(end, "iB") || !strcasecmp(end, "B")) end += strlen(end);
        if (end == s || *end || errno || !isfinite(b))
            return QF_ERR_SET(err, QF_ERR_INVALID,
                              "%s: %s: '%s' is not a size (bytes, or e.g. \"16G\")", name, path, s);
        b = floor(b * mul);
    } else {
        return QF_ERR_SET(err, QF_ERR_INVALID, "%s: %s: expected a size (bytes, or e.g. \"16G\")",
                          name, path);
    }
    if (b < 0 || b > (double)hi)
        return QF_ERR_SET(err, QF_ERR_INVALID, "%s: %s: %.0f bytes is out of range 0..%zu", name,
                          path, b, hi);
    *out = (size_t)b;
    return QF_OK;
}

static qf_status get_int(const cJSON *obj, const char *key, const char *path, int lo, int hi,
                         bool required, int *out, const char *name, qf_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) {
        if (required) return QF_ERR_SET(err, QF_ERR_INVALID, "%s: %s is required", name, path);
        return QF_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
        return QF_ERR_SET(err, QF_ERR_INVALID, "%s: %s: expected an integer", name, path);
    if (v->valuedouble < lo || v->valuedouble > hi)
        return QF_ERR_SET(err, QF_ERR_INVALID, "%s: %s: %g is not in %d..%d", name, path,
                          v->valuedouble, lo, hi);
    *out = (int)v->valuedouble;
    return QF_OK;
}

static qf_status get_str(const cJSON *obj, const char *key, const char *path, char *dst, size_t cap,
                         const char *name, qf_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) return QF_OK;
    if (!cJSON_IsString(v))
        return QF_ERR_SET(err, QF_ERR_INVALID, "%s: %s: expected a string", name, path);
    if (strlen(v->valuestring) >= cap)
        return QF_ERR_SET(err, QF_ERR_INVALID, "%s: %s: longer than %zu bytes", name, path,
                          cap - 1);
    memcpy(dst, v->valuestring, strlen(v->valuestring) + 1);
    return QF_OK;
}

static const cJSON *get_obj(const cJSON *obj, const char *key, bool required, const char *name,
                            qf_err *err, qf_status *st) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    *st = QF_OK;
    if (!v || (!required && cJSON_IsNull(v))) {
        if (required) *st = QF_ERR_SET(err, QF_ERR_INVALID, "%s: %s is required", name, key);
        return NULL;
    }
    if (!cJSON_IsObject(v))
        *st = QF_ERR_SET(err, QF_ERR_INVALID, "%s: %s: expected an object", name, key);
    return *st == QF_OK ? v : NULL;
}

#define QF_HW_MAX_BYTES ((size_t)1 << 50) /* 1 PiB: beyond is a typo */

qf_status qf_hw_parse(const char *json, const char *name, qf_hw *out, qf_err *err) {
    static const char *const k_top[] = {"name",       "os",     "cores", "cache",
                                        "numa_nodes", "memory", "gpu",   NULL};
    static const char *const k_cores[] = {"performance", "efficiency", "logical", NULL};
    static const char *const k_cache[] = {"l2", "l3", NULL};
    static const char *const k_mem[] = {"total", "available", "unified", NULL};
    static const char *const k_gpu[] = {"name", "memory", NULL};
    memset(out, 0, sizeof *out);
    cJSON *root = cJSON_Parse(json);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        return QF_ERR_SET(err, QF_ERR_FORMAT, "%s: not valid JSON (near '%.20s')", name,
                          at ? at : "");
    }
    qf_status st = QF_OK;
    const cJSON *c, *v;
    if (!cJSON_IsObject(root)) {
        st = QF_ERR_SET(err, QF_ERR_INVALID, "%s: expected a JSON object at the top", name);
        goto out;
    }
    if ((st = check_keys(root, k_top, "", name, err))) goto out;
    /* default name: the file stem */
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    snprintf(out->name, sizeof out->name, "%.*s", (int)strcspn(base, "."), base);
    snprintf(out->os, sizeof out->os, "unknown");
    if ((st = get_str(root, "name", "name", out->name, sizeof out->name, name, err))) goto out;
    if ((st = get_str(root, "os", "os", out->os, sizeof out->os, name, err))) goto out;

    if (!(c = get_obj(root, "cores", true, name, err, &st))) goto out;
    if ((st = check_keys(c, k_cores, "cores.", name, err))) goto out;
    if ((st = get_int(c, "performance", "cores.performance", 1, 4096, true, &out->n_perf, name,
                      err)))
        goto out;
    if ((st = get_int(c, "efficiency", "cores.efficiency", 0, 4096, false, &out->n_eff, name, err)))
        goto out;
    out->n_logical = out->n_perf + out->n_eff;
    if ((st = get_int(c, "logical", "cores.logical", out->n_perf + out->n_eff, 65536, false,
                      &out->n_logical, name, err)))
        goto out;

    if ((c = get_obj(root, "cache", false, name, err, &st))) {
        if ((st = check_keys(c, k_cache, "cache.", name, err))) goto out;
        if ((st = get_size(c, "l2", "cache.l2", QF_HW_MAX_BYTES, false, &out->l2_bytes, name, err)))
            goto out;
        if ((st = get_size(c, "l3", "cache.l3", QF_HW_MAX_BYTES, false, &out->l3_bytes, name, err)))
            goto out;
    } else if (st) {
        goto out;
    }
    out->n_numa = 1;
    if ((st = get_int(root, "numa_nodes", "numa_nodes", 1, 1024, false, &out->n_numa, name, err)))
        goto out;

    if (!(c = get_obj(root, "memory", true, name, err, &st))) goto out;
    if ((st = check_keys(c, k_mem, "memory.", name, err))) goto out;
    if ((st = get_size(c, "total", "memory.total", QF_HW_MAX_BYTES, true, &out->mem_total, name,
                       err)))
        goto out;
    if (out->mem_total < ((size_t)64 << 20)) {
        st = QF_ERR_SET(err, QF_ERR_INVALID, "%s: memory.total: %zu bytes is below 64 MiB", name,
                        out->mem_total);
        goto out;
    }
    if ((st = get_size(c, "available", "memory.available", out->mem_total, false,
                       &out->mem_available, name, err)))
        goto out;
    if ((v = cJSON_GetObjectItemCaseSensitive(c, "unified"))) {
        if (!cJSON_IsBool(v)) {
            st =
                QF_ERR_SET(err, QF_ERR_INVALID, "%s: memory.unified: expected true or false", name);
            goto out;
        }
        out->unified = cJSON_IsTrue(v);
    }

    if ((c = get_obj(root, "gpu", false, name, err, &st))) {
        if ((st = check_keys(c, k_gpu, "gpu.", name, err))) goto out;
        out->gpu = true;
        snprintf(out->gpu_name, sizeof out->gpu_name, "gpu");
        if ((st = get_str(c, "name", "gpu.name", out->gpu_name, sizeof out->gpu_name, name, err)))
            goto out;
        if ((st = get_size(c, "memory", "gpu.memory", QF_HW_MAX_BYTES, false, &out->gpu_mem, name,
                           err)))
            goto out;
    }
out:
    cJSON_Delete(root);
    return st;
}

qf_status qf_hw_load(const char *path, qf_hw *out, qf_err *err) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) return QF_ERR_SET(err, QF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 4096, n = 0, r;
    char *buf = qf_malloc(cap);
    while (buf && (r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (n + 1 == cap) {
            if (cap >= ((size_t)1 << 20)) { /* a description is a few hundred bytes */
                qf_free(buf);
                fclose(f);
                return QF_ERR_SET(err, QF_ERR_FORMAT,
                                  "%s: larger than 1 MiB: not a hardware description", path);
            }
            char *nb = qf_realloc(buf, cap * 2);
            if (!nb) qf_free(buf);
            buf = nb;
            cap *= 2;
        }
    }
    bool rd_err = ferror(f);
    fclose(f);
    if (!buf) return QF_ERR_SET(err, QF_ERR_NOMEM, "%s: out of memory", path);
    if (rd_err) {
        qf_free(buf);
        return QF_ERR_SET(err, QF_ERR_IO, "%s: read error", path);
    }
    buf[n] = 0;
    qf_status st = qf_hw_parse(buf, path, out, err);
    qf_free(buf);
    return st;
}
