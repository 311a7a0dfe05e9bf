/* test_sys.c - the system sampler on fake /proc trees (numbers worked out
 * by hand from the files written here), on missing and garbage files, and
 * once on the real /proc of this machine (ranges only); publishing to the
 * metrics registry, the GPU probe hook, allocation failures. */
#include <math.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/mem.h"
#include "monitor/sys.h"
#include "qf_test.h"

static char g_dir[] = "/tmp/qf_sys_XXXXXX";

static void put_file(const char *root, const char *rel, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    /* make parent folders (self/, pressure/) */
    for (char *p = path + strlen(root) + 1; (p = strchr(p, '/')) != NULL; p++) {
        *p = 0;
        mkdir(path, 0755);
        *p = '/';
    }
    if (!text) {
        unlink(path);
        return;
    }
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "cannot write %s\n", path);
        return;
    }
    fputs(text, f);
    fclose(f);
}

static void make_root(char *root, size_t cap, const char *name) {
    snprintf(root, cap, "%s/%s", g_dir, name);
    mkdir(root, 0755);
}

static const char *k_meminfo = "MemTotal:       16777216 kB\n"
                               "MemFree:         1000000 kB\n"
                               "MemAvailable:    4194304 kB\n"
                               "Buffers:           10000 kB\n"
                               "Cached:          2000000 kB\n";

static void test_fake_proc(void) {
    char root[256];
    make_root(root, sizeof root, "good");
    put_file(root, "stat",
             "cpu  300 0 100 600 0 0 0 0 0 0\n"
             "cpu0 100 0 50 350 0 0 0 0 0 0\n"
             "cpu1 200 0 50 250 0 0 0 0 0 0\n"
             "intr 12345 1 2 3\n"
             "ctxt 999\n");
    put_file(root, "meminfo", k_meminfo);
    put_file(root, "pressure/memory",
             "some avg10=12.50 avg60=3.00 avg300=1.00 total=123456\n"
             "full avg10=2.00 avg60=1.00 avg300=0.50 total=1234\n");
    put_file(root, "self/status", "Name:\tqforge\nVmPeak:\t  999999 kB\nVmRSS:\t  204800 kB\n");
    put_file(root, "self/io",
             "rchar: 1000\nwchar: 2000\nsyscr: 1\nsyscw: 2\nread_bytes: 4096\n"
             "write_bytes: 8192\ncancelled_write_bytes: 0\n");
    qf_sys *s = qf_sys_new(root, NULL);
    ASSERT(s);
    qf_sys_sample a;
    ASSERT_EQ_INT(qf_sys_sample_now(s, &a), QF_OK);
    ASSERT_EQ_INT(a.n_cores, 2);
    ASSERT(isnan(a.cpu_util)); /* no interval yet */
    ASSERT(isnan(a.core_util[0]) && isnan(a.core_util[1]));
    ASSERT_NEAR(a.interval, 0, 0);
    ASSERT_EQ_INT(a.mem_total, 16777216LL * 1024);
    ASSERT_EQ_INT(a.mem_available, 4194304LL * 1024);
    ASSERT_NEAR(a.mem_pressure, 0.125, 1e-12);
    ASSERT_EQ_INT(a.pressure_source, QF_SYS_PRESSURE_PSI);
    ASSERT_EQ_INT(a.rss, 204800LL * 1024);
    ASSERT_EQ_INT(a.io_read, 1000);
    ASSERT_EQ_INT(a.io_write, 2000);
    ASSERT_EQ_INT(a.io_storage_read, 4096);
    ASSERT_EQ_INT(a.io_storage_write, 8192);

    /* 100 ticks later: cpu0 busy +50 (user +30, system +10, irq +5,
     * steal +5) idle +40 iowait +10 -> 50/100; cpu1 busy +100 -> 1.0 */
    put_file(root, "stat",
             "cpu  0 0 0 0 0 0 0 0 0 0\n"
             "cpu0 130 0 60 390 10 5 0 5 0 0\n"
             "cpu1 250 20 80 250 0 0 0 0 0 0\n"
             "intr 12345 1 2 3\n");
    qf_sys_sample b;
    usleep(1000);
    ASSERT_EQ_INT(qf_sys_sample_now(s, &b), QF_OK);
    ASSERT(b.interval > 0);
    ASSERT_EQ_INT(b.n_cores, 2);
    ASSERT_NEAR(b.core_util[0], 0.5, 1e-12);
    ASSERT_NEAR(b.core_util[1], 1.0, 1e-12);
    ASSERT_NEAR(b.cpu_util, 150.0 / 200.0, 1e-12);

    /* no PSI: fall back to 1 - available/total = 1 - 4/16 */
    put_file(root, "pressure/memory", NULL);
    ASSERT_EQ_INT(qf_sys_sample_now(s, &b), QF_OK);
    ASSERT_NEAR(b.mem_pressure, 0.75, 1e-12);
    ASSERT_EQ_INT(b.pressure_source, QF_SYS_PRESSURE_AVAILABLE);
    /* the counters did not move: no interval to judge -> NaN, not 0 */
    ASSERT(isnan(b.core_util[0]));
    ASSERT(isnan(b.cpu_util));

    /* cpu0 offline, cpu1 advanced: core 0 unknown, core 1 judged alone */
    put_file(root, "stat", "cpu  0 0 0 0\ncpu1 300 20 80 300 0 0 0 0 0 0\n");
    ASSERT_EQ_INT(qf_sys_sample_now(s, &b), QF_OK);
    ASSERT_EQ_INT(b.n_cores, 2);
    ASSERT(isnan(b.core_util[0]));
    ASSERT_NEAR(b.core_util[1], 0.5, 1e-12);
    ASSERT_NEAR(b.cpu_util, 0.5, 1e-12);
    /* counters went backwards (a reset): unknown rather than negative */
    put_file(root, "stat", "cpu1 10 0 0 10\n");
    ASSERT_EQ_INT(qf_sys_sample_now(s, &b), QF_OK);
    ASSERT(isnan(b.core_util[1]));
    qf_sys_free(s);
}

static void test_garbage(void) {
    char root[256];
    make_root(root, sizeof root, "garbage");
    put_file(root, "stat",
             "cpu0 1 2\n"                  /* too few fields */
             "cpu1 a b c d\n"              /* not numbers */
             "cpu2 1 2 3 4 junk\n"         /* trailing junk */
             "cpu99999 1 2 3 4\n"          /* beyond the core limit */
             "cpu-1 1 2 3 4\n"             /* negative */
             "cpu3 18446744073709551615 18446744073709551615 1 1\n" /* overflow */
             "cpu4 10 0 10 80\n");         /* the one good line */
    put_file(root, "meminfo", "MemTotal: lots kB\nMemAvailable: -5 kB\n");
    put_file(root, "pressure/memory", "some avg10=abc avg60=1\n");
    put_file(root, "self/status", "VmRSS:\t  99999999999999999999 kB\n");
    put_file(root, "self/io", "rchar: 12\nwchar: x\nread_bytes: 5 MB\n");
    qf_sys *s = qf_sys_new(root, NULL);
    qf_sys_sample a;
    ASSERT_EQ_INT(qf_sys_sample_now(s, &a), QF_OK);
    ASSERT_EQ_INT(a.n_cores, 5); /* cpu4 is the highest good index */
    ASSERT_EQ_INT(a.mem_total, -1);
    ASSERT_EQ_INT(a.mem_available, -1);
    ASSERT(isnan(a.mem_pressure));
    ASSERT_EQ_INT(a.pressure_source, QF_SYS_PRESSURE_NONE);
    ASSERT_EQ_INT(a.rss, -1);
    ASSERT_EQ_INT(a.io_read, 12);
    ASSERT_EQ_INT(a.io_write, -1);
    ASSERT_EQ_INT(a.io_storage_read, -1);
    ASSERT_EQ_INT(a.io_storage_write, -1);
    put_file(root, "stat", "cpu4 20 0 10 90\n");
    ASSERT_EQ_INT(qf_sys_sample_now(s, &a), QF_OK);
    ASSERT_NEAR(a.core_util[4], 0.5, 1e-12);
    for (int i = 0; i < 4; i++)
        ASSERT(isnan(a.core_util[i]));

    /* PSI out of range falls back; meminfo without MemAvailable is
     * approximated from MemFree + Buffers + Cached */
    put_file(root, "pressure/memory", "some avg10=150.00 avg60=1 avg300=1 total=1\n");
    put_file(root, "meminfo", "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 50 kB\n");
    ASSERT_EQ_INT(qf_sys_sample_now(s, &a), QF_OK);
    ASSERT_EQ_INT(a.mem_available, 200 * 1024);
    ASSERT_NEAR(a.mem_pressure, 0.8, 1e-12);
    ASSERT_EQ_INT(a.pressure_source, QF_SYS_PRESSURE_AVAILABLE);
    /* binary junk and empty files */
    put_file(root, "stat", "\x01\x02\xff\xfe cpu0\n\n");
    put_file(root, "meminfo", "");
    put_file(root, "pressure/memory", "some\n");
    ASSERT_EQ_INT(qf_sys_sample_now(s, &a), QF_OK);
    ASSERT_EQ_INT(a.n_cores, 0);
    ASSERT(isnan(a.cpu_util));
    ASSERT(isnan(a.mem_pressure));
    qf_sys_free(s);
}

static void test_missing_root(void) {
    char root[256];
    snprintf(root, sizeof root, "%s/does/not/exist", g_dir);
    qf_sys *s = qf_sys_new(root, NULL);
    ASSERT(s);
    qf_sys_sample a;
    for (int k = 0; k < 2; k++) {
        ASSERT_EQ_INT(qf_sys_sample_now(s, &a), QF_OK);
        ASSERT_EQ_INT(a.n_cores, 0);
        ASSERT(isnan(a.cpu_util));
        ASSERT_EQ_INT(a.mem_total, -1);
        ASSERT_EQ_INT(a.rss, -1);
        ASSERT(isnan(a.mem_pressure));
        ASSERT_EQ_INT(a.io_read, -1);
    }
    ASSERT_EQ_INT(qf_sys_sample_now(NULL, &a), QF_ERR_INVALID);
    ASSERT_EQ_INT(qf_sys_sample_now(s, NULL), QF_ERR_INVALID);
    qf_sys_free(s);
    qf_sys_free(NULL);
    /* bad roots */
    qf_err err = {0};
    ASSERT(qf_sys_new("", &err) == NULL);
    ASSERT_EQ_INT(err.code, QF_ERR_INVALID);
    char *long_root = malloc(5000);
    memset(long_root, 'a', 4999);
    long_root[4999] = 0;
    ASSERT(qf_sys_new(long_root, NULL) == NULL);
    ASSERT_EQ_INT(qf_sys_set_root(long_root), QF_ERR_INVALID);
    free(long_root);
    ASSERT_EQ_INT(qf_sys_set_root(""), QF_ERR_INVALID);
}

static void test_set_root(void) {
    char root[256];
    make_root(root, sizeof root, "default");
    put_file(root, "meminfo", "MemTotal: 2048 kB\nMemAvailable: 512 kB\n");
    ASSERT_EQ_INT(qf_sys_set_root(root), QF_OK);
    qf_sys *s = qf_sys_new(NULL, NULL);
    ASSERT_EQ_INT(qf_sys_set_root(NULL), QF_OK); /* back to /proc for later samplers */
    ASSERT(s);
    qf_sys_sample a;
    qf_sys_sample_now(s, &a);
    ASSERT_EQ_INT(a.mem_total, 2048 * 1024);
    ASSERT_NEAR(a.mem_pressure, 0.75, 1e-12);
    qf_sys_free(s);
}

static void burn(double seconds) {
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    volatile double x = 0;
    do {
        for (int i = 0; i < 100000; i++)
            x += i * 0.5;
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) * 1e-9 < seconds);
}

static void test_real_proc(void) {
    if (access("/proc/stat", R_OK) != 0) return; /* not Linux: nothing to check here */
    qf_sys *s = qf_sys_new("/proc", NULL);
    qf_sys_sample a;
    ASSERT_EQ_INT(qf_sys_sample_now(s, &a), QF_OK);
    burn(0.3);
    ASSERT_EQ_INT(qf_sys_sample_now(s, &a), QF_OK);
    ASSERT(a.n_cores >= 1);
    /* /proc/stat lists online cores; an offline one leaves a gap */
    ASSERT(a.n_cores >= (int)fmin(sysconf(_SC_NPROCESSORS_ONLN), QF_SYS_MAX_CORES));
    ASSERT(a.n_cores <= (int)fmin(sysconf(_SC_NPROCESSORS_CONF), QF_SYS_MAX_CORES));
    ASSERT(a.cpu_util > 0 && a.cpu_util <= 1); /* we just burnt CPU */
    for (int i = 0; i < a.n_cores; i++)
        ASSERT(isnan(a.core_util[i]) || (a.core_util[i] >= 0 && a.core_util[i] <= 1));
    ASSERT(a.mem_total > 0);
    ASSERT(a.mem_available >= 0 && a.mem_available <= a.mem_total);
    ASSERT(a.rss > 0 && a.rss < a.mem_total);
    ASSERT(a.mem_pressure >= 0 && a.mem_pressure <= 1);
    ASSERT(a.pressure_source != QF_SYS_PRESSURE_NONE);
    ASSERT(a.io_read > 0); /* we read /proc files */
    qf_sys_free(s);
}

/* ---- metrics ---- */

static void fake_gpu(void *ud, qf_sys_sample *out) {
    int *mode = ud;
    if (*mode == 0) return; /* absent */
    out->gpu_present = true;
    snprintf(out->gpu_name, sizeof out->gpu_name, "Fake GPU");
    if (*mode == 2) { /* present, utilisation unknown (no NVML) */
        out->gpu_util = NAN;
        return;
    }
    out->gpu_util = 0.42;
    out->gpu_mem_used = 1 << 30;
    out->gpu_mem_total = 8LL << 30;
}

static bool has_line(const char *text, const char *line) {
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == 0)) return true;
    return false;
}

static void test_metrics(void) {
    char root[256];
    make_root(root, sizeof root, "metrics");
    put_file(root, "stat", "cpu0 100 0 0 100\ncpu1 100 0 0 100\n");
    put_file(root, "meminfo", k_meminfo);
    put_file(root, "pressure/memory", "some avg10=97.00 avg60=1 avg300=1 total=1\n");
    put_file(root, "self/status", "VmRSS: 1024 kB\n");
    put_file(root, "self/io", "rchar: 100\nwchar: 200\nread_bytes: 300\nwrite_bytes: 400\n");
    qf_sys *s = qf_sys_new(root, NULL);
    int mode = 1;
    qf_sys_set_gpu_probe(s, fake_gpu, &mode);
    qf_metrics *m = qf_metrics_new(NULL);
    qf_sys_sample a;
    qf_sys_sample_now(s, &a);
    ASSERT_EQ_INT(qf_sys_to_metrics(&a, m), QF_OK);
    char *t = qf_metrics_render(m, NULL);
    /* first sample: no per-core utilisation yet, the rest is there */
    ASSERT(!strstr(t, "qforge_cpu_core_utilization{"));
    ASSERT(has_line(t, "# TYPE qforge_cpu_core_utilization gauge"));
    ASSERT(has_line(t, "qforge_cpu_cores 2"));
    ASSERT(has_line(t, "qforge_process_rss_bytes 1048576"));
    ASSERT(has_line(t, "qforge_memory_total_bytes 17179869184"));
    ASSERT(has_line(t, "qforge_memory_available_bytes 4294967296"));
    ASSERT(has_line(t, "qforge_memory_pressure_ratio 0.96999999999999997"));
    ASSERT(has_line(t, "qforge_memory_pressure_source{source=\"psi\"} 1"));
    ASSERT(has_line(t, "# TYPE qforge_process_io_read_bytes_total counter"));
    ASSERT(has_line(t, "qforge_process_io_read_bytes_total 100"));
    ASSERT(has_line(t, "qforge_process_io_write_bytes_total 200"));
    ASSERT(has_line(t, "qforge_process_io_storage_read_bytes_total 300"));
    ASSERT(has_line(t, "qforge_process_io_storage_write_bytes_total 400"));
    ASSERT(has_line(t, "qforge_gpu_present 1"));
    ASSERT(has_line(t, "qforge_gpu_utilization 0.41999999999999998"));
    ASSERT(has_line(t, "qforge_gpu_memory_used_bytes 1073741824"));
    ASSERT(has_line(t, "qforge_gpu_memory_total_bytes 8589934592"));
    qf_free(t);

    /* second sample: per-core values; PSI gone -> source switches; the io
     * counters went backwards -> they keep their last value */
    put_file(root, "stat", "cpu0 150 0 0 150\ncpu1 200 0 0 100\n");
    put_file(root, "pressure/memory", NULL);
    put_file(root, "self/io", "rchar: 50\nwchar: 250\nread_bytes: 300\nwrite_bytes: 400\n");
    mode = 0;
    qf_sys_sample_now(s, &a);
    ASSERT_EQ_INT(qf_sys_to_metrics(&a, m), QF_OK);
    t = qf_metrics_render(m, NULL);
    ASSERT(has_line(t, "qforge_cpu_core_utilization{core=\"0\"} 0.5"));
    ASSERT(has_line(t, "qforge_cpu_core_utilization{core=\"1\"} 1"));
    ASSERT(has_line(t, "qforge_cpu_utilization 0.75"));
    ASSERT(has_line(t, "qforge_memory_pressure_ratio 0.75"));
    ASSERT(has_line(t, "qforge_memory_pressure_source{source=\"psi\"} 0"));
    ASSERT(has_line(t, "qforge_memory_pressure_source{source=\"available\"} 1"));
    ASSERT(!strstr(t, "source=\"macos\""));
    ASSERT(has_line(t, "qforge_process_io_read_bytes_total 100"));
    ASSERT(has_line(t, "qforge_process_io_write_bytes_total 250"));
    ASSERT(has_line(t, "qforge_gpu_present 0"));
    qf_free(t);
    qf_metrics_free(m);

    /* GPU present but utilisation unknown: present 1, no utilisation line */
    m = qf_metrics_new(NULL);
    mode = 2;
    qf_sys_sample_now(s, &a);
    ASSERT(a.gpu_present);
    ASSERT_STR_EQ(a.gpu_name, "Fake GPU");
    ASSERT_EQ_INT(qf_sys_to_metrics(&a, m), QF_OK);
    t = qf_metrics_render(m, NULL);
    ASSERT(has_line(t, "qforge_gpu_present 1"));
    ASSERT(!strstr(t, "\nqforge_gpu_utilization "));
    qf_free(t);
    /* a registry declared with a clashing kind: reported, others published */
    qf_metrics_free(m);
    m = qf_metrics_new(NULL);
    const double b[] = {1};
    qf_metrics_declare(m, "qforge_process_rss_bytes", QF_METRIC_HISTOGRAM, "", b, 1);
    ASSERT_EQ_INT(qf_sys_to_metrics(&a, m), QF_ERR_INVALID);
    ASSERT_NEAR(qf_metrics_get(m, "qforge_memory_total_bytes", NULL), 16777216.0 * 1024, 0);
    ASSERT_EQ_INT(qf_sys_to_metrics(NULL, m), QF_ERR_INVALID);
    ASSERT_EQ_INT(qf_sys_to_metrics(&a, NULL), QF_ERR_INVALID);
    qf_metrics_free(m);
    qf_sys_free(s);
}

/* Without a GPU backend device the default probe reports absent. */
static void test_gpu_default(void) {
    qf_sys *s = qf_sys_new(g_dir, NULL);
    qf_sys_sample a;
    qf_sys_sample_now(s, &a);
    if (!a.gpu_present) {
        ASSERT(isnan(a.gpu_util));
        ASSERT_EQ_INT(a.gpu_mem_total, -1);
    } else {
        ASSERT(a.gpu_name[0] != 0);
        ASSERT(isnan(a.gpu_util) || (a.gpu_util >= 0 && a.gpu_util <= 1));
    }
    qf_sys_free(s);
}

static void test_alloc_failures(void) {
    char root[256];
    make_root(root, sizeof root, "good");
    int ok = 0;
    for (long n = 0; n < 200 && !ok; n++) {
        qf_mem_fail_after(n);
        qf_sys *s = qf_sys_new(root, NULL);
        qf_metrics *m = qf_metrics_new(NULL);
        if (s && m) {
            qf_sys_sample a;
            qf_sys_sample_now(s, &a);
            qf_sys_sample_now(s, &a);
            ok = qf_sys_to_metrics(&a, m) == QF_OK;
        }
        qf_mem_fail_after(-1);
        qf_metrics_free(m);
        qf_sys_free(s);
    }
    ASSERT(ok);
}

int main(void) {
    if (!mkdtemp(g_dir)) return 1;
    RUN_TEST(test_fake_proc);
    RUN_TEST(test_garbage);
    RUN_TEST(test_missing_root);
    RUN_TEST(test_set_root);
    RUN_TEST(test_real_proc);
    RUN_TEST(test_metrics);
    RUN_TEST(test_gpu_default);
    RUN_TEST(test_alloc_failures);
    char rm[512];
    snprintf(rm, sizeof rm, "rm -rf '%s'", g_dir);
    if (system(rm) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    TEST_MAIN_END();
}
