/* test_tune_place.c - thread placement: pool threads on their cpus, thread
 * 0 bound where the regions run (not where the pool was made), and the
 * role placement of base/cpu.h on this machine's core kinds.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "base/cpu.h"
#include "base/pool.h"
#include "qf_test.h"

static bool affinity_of_self(cpu_set_t *set) {
    CPU_ZERO(set);
    return pthread_getaffinity_np(pthread_self(), sizeof *set, set) == 0;
}

static bool only_cpu(const cpu_set_t *set, int cpu) {
    return CPU_COUNT(set) == 1 && CPU_ISSET(cpu, set);
}

/* Can this process bind a thread to cpu? (a container cpuset may refuse) */
static void *probe_main(void *arg) {
    int cpu = *(int *)arg;
    *(int *)arg = qf_cpu_pin_self(cpu) ? 1 : 0;
    return NULL;
}

static bool can_pin(int cpu) {
    pthread_t t;
    int v = cpu;
    if (pthread_create(&t, NULL, probe_main, &v) != 0) return false;
    pthread_join(t, NULL);
    return v == 1;
}

typedef struct seen {
    atomic_int ok[8];
    int cpus[8];
} seen;

static void record(void *ctx, int ith, int nth) {
    seen *s = ctx;
    (void)nth;
    cpu_set_t set;
    if (affinity_of_self(&set) && only_cpu(&set, s->cpus[ith]) && sched_getcpu() == s->cpus[ith])
        atomic_store(&s->ok[ith], 1);
}

typedef struct runner {
    qf_pool *pool;
    seen *s;
    bool pinned0;
} runner;

static void *runner_main(void *arg) {
    runner *r = arg;
    qf_pool_run(r->pool, record, r->s);
    cpu_set_t set;
    r->pinned0 = affinity_of_self(&set) && only_cpu(&set, r->s->cpus[0]);
    return NULL;
}

static void test_pool_pins(void) {
    const qf_cpu_topo *t = qf_cpu_topo_get();
    if (t->n_logical < 2 || !t->perf_cpus || t->n_perf < 2) {
        fprintf(stderr, "  (one cpu or unknown cpu ids: nothing to pin)\n");
        return;
    }
    seen s = {0};
    s.cpus[0] = t->perf_cpus[1]; /* reversed, so a no-op pin cannot pass */
    s.cpus[1] = t->perf_cpus[0];
    if (!can_pin(s.cpus[0]) || !can_pin(s.cpus[1])) {
        fprintf(stderr, "  (affinity refused here: skipped)\n");
        return;
    }
    cpu_set_t before, after;
    ASSERT(affinity_of_self(&before));
    qf_err err = {0};
    qf_pool *pool = qf_pool_new(2, s.cpus, &err);
    ASSERT(pool);
    /* the creating thread is left alone */
    ASSERT(affinity_of_self(&after));
    ASSERT(CPU_EQUAL(&before, &after));
    /* regions run from another thread: that thread becomes thread 0 on cpus[0] */
    runner r = {pool, &s, false};
    pthread_t th;
    ASSERT_EQ_INT(pthread_create(&th, NULL, runner_main, &r), 0);
    pthread_join(th, NULL);
    ASSERT(r.pinned0);
    ASSERT_EQ_INT(atomic_load(&s.ok[0]), 1);
    ASSERT_EQ_INT(atomic_load(&s.ok[1]), 1);
    ASSERT(affinity_of_self(&after));
    ASSERT(CPU_EQUAL(&before, &after)); /* still untouched */
    qf_pool_free(pool);
    /* no cpus: nobody is bound */
    pool = qf_pool_new(2, NULL, &err);
    ASSERT(pool);
    seen s2 = {0};
    s2.cpus[0] = s2.cpus[1] = -1;
    qf_pool_run(pool, record, &s2);
    ASSERT(affinity_of_self(&after));
    ASSERT(CPU_EQUAL(&before, &after));
    qf_pool_free(pool);
}

static void *place_main(void *arg) {
    qf_thread_role role = (qf_thread_role) * (int *)arg;
    cpu_set_t before, after;
    affinity_of_self(&before);
    bool applied = qf_cpu_place_self(role);
    affinity_of_self(&after);
    const qf_cpu_topo *t = qf_cpu_topo_get();
    int ok;
    if (t->n_eff == 0) {
        ok = !applied && CPU_EQUAL(&before, &after); /* one core kind: left alone */
    } else if (!applied) {
        ok = CPU_EQUAL(&before, &after);
    } else {
        const int *cpus = role == QF_THREAD_COMPUTE ? t->perf_cpus : t->eff_cpus;
        int n = role == QF_THREAD_COMPUTE ? t->n_perf : t->n_eff;
        ok = CPU_COUNT(&after) == n;
        for (int i = 0; i < n; i++)
            ok &= CPU_ISSET(cpus[i], &after) != 0;
    }
    *(int *)arg = ok;
    return NULL;
}

static void test_place_roles(void) {
    qf_thread_role roles[] = {QF_THREAD_COMPUTE, QF_THREAD_IO, QF_THREAD_BACKGROUND};
    for (int i = 0; i < 3; i++) {
        int v = (int)roles[i];
        pthread_t th;
        ASSERT_EQ_INT(pthread_create(&th, NULL, place_main, &v), 0);
        pthread_join(th, NULL);
        ASSERT_MSG(v == 1, "role %d", i);
    }
    ASSERT(!qf_cpu_pin_self(-1));
}

int main(void) {
    RUN_TEST(test_pool_pins);
    RUN_TEST(test_place_roles);
    TEST_MAIN_END();
}
