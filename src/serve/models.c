/* models.c - load on first use, keep-alive, least-recently-used unloading.
 *
 * The manager keeps a list of entries, one per model that is loading or
 * loaded. Invariants (under mu): an entry in the list is LOADING or READY;
 * a READY entry with refs > 0 is never unloaded; entries count towards
 * max_loaded from the moment their load starts, so concurrent first uses
 * of different models cannot overshoot the limit; the memory in use is the
 * sum of the file sizes (+ kv bytes once known) of the listed entries.
 *
 * Slow work - reading the model, creating and freeing engines (freeing
 * joins the scheduler thread and delivers final events) - happens outside
 * the lock. A load leaves the entry LOADING in the list; other requests for
 * the same name wait on the condition variable. A failed load takes the
 * entry out of the list and hands the error to its waiters; the last one
 * out frees it.
 */
#include "serve/models.h"

#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"
#include "serve/serve_int.h"

typedef enum ent_state { ENT_LOADING = 0, ENT_READY, ENT_FAILED } ent_state;

struct qf_models_entry {
    char name[256];
    char path[4096];
    int64_t size;
    size_t kv_bytes;
    qf_model *model;
    qf_engine *engine;
    qf_chat_tmpl chat;
    ent_state state;
    qf_err load_err;
    int refs, waiters;
    double keep_alive_s; /* < 0 forever */
    double last_used;    /* monotonic seconds */
    bool unload_pending;
    struct qf_models_entry *next;
};

struct qf_models {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *model_path, *models_dir, *chat_template;
    int max_loaded;
    double keep_alive_s;
    size_t budget;
    qf_engine_params ep;
    qf_models_entry *head;
};

/* ---- helpers ---- */

static size_t available_memory(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (f) {
        char line[256];
        unsigned long long kb = 0;
        bool found = false;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
                found = true;
                break;
            }
        fclose(f);
        if (found) return (size_t)kb * 1024;
    }
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    return pages > 0 && psz > 0 ? (size_t)pages * (size_t)psz : (size_t)8 << 30;
}

static bool ends_with_gguf(const char *s, size_t *stem_len) {
    size_t n = strlen(s);
    if (n <= 5 || strcmp(s + n - 5, ".gguf") != 0) return false;
    *stem_len = n - 5;
    return true;
}

/* Fill f from path; false when it is not a readable regular file or the
 * stem does not fit. */
static bool file_info(const char *path, qf_model_file *f) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return false;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t stem = strlen(base);
    size_t sl;
    if (ends_with_gguf(base, &sl)) stem = sl;
    if (stem == 0 || stem >= sizeof f->name || strlen(path) >= sizeof f->path) return false;
    memcpy(f->name, base, stem);
    f->name[stem] = 0;
    snprintf(f->path, sizeof f->path, "%s", path);
    f->size = (int64_t)st.st_size;
    f->mtime = (int64_t)st.st_mtime;
    return true;
}

/* "name:latest" -> "name" into buf. */
static const char *norm_name(const char *name, char *buf, size_t cap) {
    snprintf(buf, cap, "%s", name ? name : "");
    size_t n = strlen(buf);
    if (n > 7 && !strcmp(buf + n - 7, ":latest")) buf[n - 7] = 0;
    return buf;
}

static int cmp_file(const void *a, const void *b) {
    return strcmp(((const qf_model_file *)a)->name, ((const qf_model_file *)b)->name);
}

/* ---- lifecycle ---- */

qf_models *qf_models_new(const qf_models_params *p, qf_err *err) {
    if (!p || (!p->model_path && !p->models_dir)) {
        QF_ERR_SET(err, QF_ERR_INVALID,
                   "serve: no model: give a model file (-m) or a folder (--models-dir)");
        return NULL;
    }
    if (p->model_path) {
        qf_model_file f;
        if (!file_info(p->model_path, &f)) {
            QF_ERR_SET(err, QF_ERR_IO, "%s: not a readable model file", p->model_path);
            return NULL;
        }
    }
    if (p->models_dir) {
        DIR *d = opendir(p->models_dir);
        if (!d) {
            QF_ERR_SET(err, QF_ERR_IO, "%s: cannot open the models folder", p->models_dir);
            return NULL;
        }
        closedir(d);
    }
    if (p->chat_template && qf_chat_from_name(p->chat_template) == QF_CHAT_UNKNOWN) {
        QF_ERR_SET(err, QF_ERR_INVALID, "serve: unknown chat template '%s' (one of: %s)",
                   p->chat_template, qf_chat_names());
        return NULL;
    }
    qf_models *mm = qf_calloc(1, sizeof *mm);
    if (!mm) goto nomem;
    pthread_mutex_init(&mm->mu, NULL);
    pthread_cond_init(&mm->cv, NULL);
    if (p->model_path && !(mm->model_path = qf_strdup(p->model_path))) goto nomem;
    if (p->models_dir && !(mm->models_dir = qf_strdup(p->models_dir))) goto nomem;
    if (p->chat_template && !(mm->chat_template = qf_strdup(p->chat_template))) goto nomem;
    mm->max_loaded = p->max_loaded > 0 ? p->max_loaded : 1;
    mm->keep_alive_s = p->keep_alive_s;
    mm->budget = p->mem_budget ? p->mem_budget : available_memory();
    mm->ep = p->engine;
    return mm;
nomem:
    qf_models_free(mm);
    QF_ERR_SET(err, QF_ERR_NOMEM, "serve: out of memory");
    return NULL;
}

static void unload_entry(qf_models_entry *e) {
    if (!e) return;
    if (e->engine) qf_info("serve: unloading model %s", e->name);
    qf_engine_free(e->engine);
    qf_model_free(e->model);
    qf_free(e);
}

static void unlink_entry(qf_models *mm, qf_models_entry *e) {
    for (qf_models_entry **pp = &mm->head; *pp; pp = &(*pp)->next)
        if (*pp == e) {
            *pp = e->next;
            e->next = NULL;
            return;
        }
}

void qf_models_free(qf_models *mm) {
    if (!mm) return;
    while (mm->head) {
        qf_models_entry *e = mm->head;
        mm->head = e->next;
        unload_entry(e);
    }
    pthread_mutex_destroy(&mm->mu);
    pthread_cond_destroy(&mm->cv);
    qf_free(mm->model_path);
    qf_free(mm->models_dir);
    qf_free(mm->chat_template);
    qf_free(mm);
}

/* ---- listing ---- */

qf_status qf_models_list(qf_models *mm, qf_model_file **out, int *n, qf_err *err) {
    *out = NULL;
    *n = 0;
    int cap = 16, cnt = 0;
    qf_model_file *v = qf_malloc((size_t)cap * sizeof *v);
    if (!v) return QF_ERR_SET(err, QF_ERR_NOMEM, "serve: out of memory");
    if (mm->model_path && file_info(mm->model_path, &v[0])) cnt = 1;
    int first_dir = cnt;
    if (mm->models_dir) {
        DIR *d = opendir(mm->models_dir);
        struct dirent *de;
        while (d && (de = readdir(d)) != NULL) {
            size_t sl;
            if (de->d_name[0] == '.' || !ends_with_gguf(de->d_name, &sl)) continue;
            if (cnt == cap) {
                qf_model_file *nv = qf_realloc(v, (size_t)cap * 2 * sizeof *v);
                if (!nv) {
                    closedir(d);
                    qf_free(v);
                    return QF_ERR_SET(err, QF_ERR_NOMEM, "serve: out of memory");
                }
                v = nv;
                cap *= 2;
            }
            char path[4096];
            if (snprintf(path, sizeof path, "%s/%s", mm->models_dir, de->d_name) >=
                (int)sizeof path)
                continue;
            if (!file_info(path, &v[cnt])) continue;
            if (first_dir == 1 && !strcmp(v[cnt].name, v[0].name)) continue; /* hidden by -m */
            cnt++;
        }
        if (d) closedir(d);
    }
    qsort(v + first_dir, (size_t)(cnt - first_dir), sizeof *v, cmp_file);
    *out = v;
    *n = cnt;
    return QF_OK;
}

qf_status qf_models_find(qf_models *mm, const char *name, qf_model_file *out, qf_err *err) {
    char nb[256];
    norm_name(name, nb, sizeof nb);
    qf_model_file *v;
    int n;
    qf_status st = qf_models_list(mm, &v, &n, err);
    if (st) return st;
    for (int i = 0; i < n; i++)
        if (!strcmp(v[i].name, nb)) {
            *out = v[i];
            qf_free(v);
            return QF_OK;
        }
    qf_free(v);
    return QF_ERR_SET(err, QF_ERR_NOT_FOUND, "model '%s' not found", name ? name : "");
}

const char *qf_models_default(qf_models *mm, char *buf, size_t cap) {
    qf_model_file *v;
    int n;
    if (qf_models_list(mm, &v, &n, NULL)) return NULL;
    const char *r = NULL;
    if (n == 1) {
        snprintf(buf, cap, "%s", v[0].name);
        r = buf;
    }
    qf_free(v);
    return r;
}

/* ---- acquire / release ---- */

static qf_models_entry *find_entry(qf_models *mm, const char *name) {
    for (qf_models_entry *e = mm->head; e; e = e->next)
        if (!strcmp(e->name, name)) return e;
    return NULL;
}

static size_t used_bytes(qf_models *mm, const qf_models_entry *except) {
    size_t u = 0;
    for (qf_models_entry *e = mm->head; e; e = e->next)
        if (e != except) u += (size_t)e->size + e->kv_bytes;
    return u;
}

static void touch(qf_models *mm, qf_models_entry *e, double keep_alive_s) {
    if (!isnan(keep_alive_s)) e->keep_alive_s = keep_alive_s;
    e->last_used = qf_now_s();
    (void)mm;
}

#define MIB(x) ((double)(x) / (1024.0 * 1024.0))

qf_models_entry *qf_models_acquire(qf_models *mm, const char *name, double keep_alive_s,
                                   double *load_s, qf_err *err) {
    if (load_s) *load_s = 0;
    if (!mm || !name) {
        QF_ERR_SET(err, QF_ERR_INVALID, "serve: no model name");
        return NULL;
    }
    char nb[256];
    norm_name(name, nb, sizeof nb);
    qf_model_file file;
    bool have_file = false;
    qf_models_entry *victims = NULL, *e;
    pthread_mutex_lock(&mm->mu);
    for (;;) {
        e = find_entry(mm, nb);
        if (e && e->state == ENT_READY) {
            e->refs++;
            touch(mm, e, keep_alive_s);
            e->unload_pending = false;
            pthread_mutex_unlock(&mm->mu);
            return e;
        }
        if (e) { /* loading: wait for it */
            e->waiters++;
            while (e->state == ENT_LOADING)
                pthread_cond_wait(&mm->cv, &mm->mu);
            e->waiters--;
            if (e->state == ENT_FAILED) {
                if (err) *err = e->load_err;
                if (e->waiters == 0) qf_free(e);
                pthread_mutex_unlock(&mm->mu);
                return NULL;
            }
            continue;
        }
        if (!have_file) { /* scan the folder without the lock, then look again */
            pthread_mutex_unlock(&mm->mu);
            if (qf_models_find(mm, name, &file, err)) return NULL;
            have_file = true;
            pthread_mutex_lock(&mm->mu);
            continue;
        }
        break;
    }
    /* Make room: unload least recently used idle models. */
    int count = 0;
    for (qf_models_entry *x = mm->head; x; x = x->next)
        count++;
    while (count >= mm->max_loaded) {
        qf_models_entry *lru = NULL;
        for (qf_models_entry *x = mm->head; x; x = x->next)
            if (x->state == ENT_READY && x->refs == 0 && x->waiters == 0 &&
                (!lru || x->last_used < lru->last_used))
                lru = x;
        if (!lru) {
            pthread_mutex_unlock(&mm->mu);
            QF_ERR_SET(
                err, QF_ERR_BUSY,
                "cannot load model '%s': %d model(s) loaded (--max-loaded %d) and all are in use",
                nb, count, mm->max_loaded);
            goto free_victims;
        }
        unlink_entry(mm, lru);
        lru->next = victims;
        victims = lru;
        count--;
    }
    size_t used = used_bytes(mm, NULL);
    size_t left = mm->budget > used ? mm->budget - used : 0;
    if ((size_t)file.size > left) {
        pthread_mutex_unlock(&mm->mu);
        QF_ERR_SET(err, QF_ERR_RANGE,
                   "cannot load model '%s': its file is %.1f MiB but only %.1f MiB of the %.1f MiB "
                   "memory budget is left (%.1f MiB used by loaded models)",
                   nb, MIB(file.size), MIB(left), MIB(mm->budget), MIB(used));
        goto free_victims;
    }
    e = qf_calloc(1, sizeof *e);
    if (!e) {
        pthread_mutex_unlock(&mm->mu);
        QF_ERR_SET(err, QF_ERR_NOMEM, "serve: out of memory");
        goto free_victims;
    }
    snprintf(e->name, sizeof e->name, "%s", file.name);
    snprintf(e->path, sizeof e->path, "%s", file.path);
    e->size = file.size;
    e->state = ENT_LOADING;
    e->keep_alive_s = isnan(keep_alive_s) ? mm->keep_alive_s : keep_alive_s;
    e->next = mm->head;
    mm->head = e;
    pthread_mutex_unlock(&mm->mu);

    /* Victims first, so their memory is back before the new model maps. */
    while (victims) {
        qf_models_entry *v = victims;
        victims = v->next;
        unload_entry(v);
    }
    double t0 = qf_now_s();
    qf_err lerr = {0};
    qf_model *m = qf_model_load(e->path, NULL, &lerr);
    qf_engine *eng = NULL;
    qf_chat_tmpl chat = QF_CHAT_UNKNOWN;
    if (m) {
        chat = qf_chat_resolve(qf_tok_chat_template(m->tok), mm->chat_template, &lerr);
        if (chat == QF_CHAT_UNKNOWN) chat = QF_CHAT_CHATML;
        qf_engine_params ep = mm->ep;
        ep.mem_budget = left > 0 ? left : 1;
        eng = qf_engine_new(m, &ep, &lerr);
    }
    pthread_mutex_lock(&mm->mu);
    if (!eng) {
        if (!lerr.code) QF_ERR_SET(&lerr, QF_ERR_INTERNAL, "cannot load model '%s'", e->name);
        qf_model_free(m);
        unlink_entry(mm, e);
        e->state = ENT_FAILED;
        e->load_err = lerr;
        if (err) *err = lerr;
        pthread_cond_broadcast(&mm->cv);
        if (e->waiters == 0) qf_free(e);
        pthread_mutex_unlock(&mm->mu);
        return NULL;
    }
    qf_engine_stats stats;
    qf_engine_get_stats(eng, &stats);
    e->model = m;
    e->engine = eng;
    e->chat = chat;
    e->kv_bytes = stats.kv_bytes;
    e->state = ENT_READY;
    e->refs = 1;
    touch(mm, e, NAN);
    pthread_cond_broadcast(&mm->cv);
    pthread_mutex_unlock(&mm->mu);
    double dt = qf_now_s() - t0;
    if (load_s) *load_s = dt;
    qf_info("serve: loaded model %s (%.1f MiB, kv %.1f MiB, chat template %s) in %.2f s", e->name,
            MIB(e->size), MIB(e->kv_bytes), qf_chat_name(chat), dt);
    return e;

free_victims:
    while (victims) {
        qf_models_entry *v = victims;
        victims = v->next;
        unload_entry(v);
    }
    return NULL;
}

void qf_models_release(qf_models *mm, qf_models_entry *e) {
    if (!mm || !e) return;
    pthread_mutex_lock(&mm->mu);
    QF_ASSERT(e->refs > 0);
    e->refs--;
    e->last_used = qf_now_s();
    /* Never free an entry a waiter may still look at (see acquire). */
    bool drop = e->refs == 0 && e->waiters == 0 && (e->keep_alive_s == 0 || e->unload_pending);
    if (drop) unlink_entry(mm, e);
    pthread_mutex_unlock(&mm->mu);
    if (drop) unload_entry(e);
}

qf_engine *qf_models_engine(const qf_models_entry *e) {
    return e->engine;
}
const qf_model *qf_models_model(const qf_models_entry *e) {
    return e->model;
}
const char *qf_models_name(const qf_models_entry *e) {
    return e->name;
}
qf_chat_tmpl qf_models_chat(const qf_models_entry *e) {
    return e->chat;
}

qf_status qf_models_unload(qf_models *mm, const char *name) {
    char nb[256];
    norm_name(name, nb, sizeof nb);
    pthread_mutex_lock(&mm->mu);
    qf_models_entry *e = find_entry(mm, nb);
    if (!e) {
        pthread_mutex_unlock(&mm->mu);
        return QF_ERR_NOT_FOUND;
    }
    bool drop = e->state == ENT_READY && e->refs == 0 && e->waiters == 0;
    if (drop)
        unlink_entry(mm, e);
    else
        e->unload_pending = true;
    pthread_mutex_unlock(&mm->mu);
    if (drop) unload_entry(e);
    return QF_OK;
}

int qf_models_expire(qf_models *mm, double now_s) {
    qf_models_entry *victims = NULL;
    int n = 0;
    pthread_mutex_lock(&mm->mu);
    for (qf_models_entry *e = mm->head, *next; e; e = next) {
        next = e->next;
        if (e->state == ENT_READY && e->refs == 0 && e->waiters == 0 && e->keep_alive_s >= 0 &&
            now_s - e->last_used >= e->keep_alive_s) {
            unlink_entry(mm, e);
            e->next = victims;
            victims = e;
            n++;
        }
    }
    pthread_mutex_unlock(&mm->mu);
    while (victims) {
        qf_models_entry *v = victims;
        victims = v->next;
        unload_entry(v);
    }
    return n;
}

int qf_models_loaded(qf_models *mm, qf_models_loaded_info *out, int cap) {
    int n = 0;
    double now = qf_now_s();
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double wall = (double)ts.tv_sec + ts.tv_nsec * 1e-9;
    pthread_mutex_lock(&mm->mu);
    for (qf_models_entry *e = mm->head; e; e = e->next) {
        if (e->state != ENT_READY) continue;
        if (n < cap) {
            qf_models_loaded_info *o = &out[n];
            memset(o, 0, sizeof *o);
            snprintf(o->name, sizeof o->name, "%s", e->name);
            o->size = e->size;
            o->kv_bytes = e->kv_bytes;
            o->refs = e->refs;
            if (e->keep_alive_s < 0)
                o->expires_at = -1;
            else if (e->refs > 0)
                o->expires_at = wall + e->keep_alive_s;
            else
                o->expires_at = wall + (e->last_used + e->keep_alive_s - now);
            qf_engine_get_stats(e->engine, &o->stats);
        }
        n++;
    }
    pthread_mutex_unlock(&mm->mu);
    return n;
}

/* ---- keep-alive durations ---- */

qf_status qf_models_parse_duration(const char *s, double *out_s) {
    return serve_parse_duration(s, out_s);
}
