/* alert_cmd.c - runs the alert command (--alert-cmd) off the sampler's
 * thread.
 *
 * A bounded queue of JSON payloads feeds one helper thread. For each it
 * spawns `/bin/sh -c CMD` with posix_spawn (fork + exec without copying the
 * page tables of a process that may map a 70 GB model, and safe in a
 * threaded program), the payload on a pipe as stdin, in a new process
 * group so that a timeout can kill the shell and whatever it started.
 * The write end is non-blocking and bounded by the same deadline, so a
 * command that never reads cannot hold the thread. SIGPIPE is blocked on
 * this thread (a command that exits without reading gives EPIPE, not a
 * dead server) and reset to default in the child, which also gets an empty
 * signal mask: it must not inherit the server's ignored SIGPIPE.
 *
 * Invariants: `busy` is true exactly while a command runs; the queue holds
 * at most QUEUE_CAP payloads, owned by the runner.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/cpu.h"
#include "base/log.h"
#include "base/mem.h"
#include "monitor/monitor_int.h"

extern char **environ;

#define QUEUE_CAP 16

typedef struct job {
    char *json;
    char name[32], state[16];
} job;

struct alert_runner {
    pthread_mutex_t mu;
    pthread_cond_t cv;   /* queue non-empty or quit (runner waits) */
    pthread_cond_t idle; /* queue empty and not busy (alert_runner_wait) */
    char *cmd;
    double timeout_s;
    job q[QUEUE_CAP];
    int head, n;
    bool busy, quit;
    pthread_t th;
    qf_alerts_cmd_stats st;
};

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Environment for the child: ours minus any inherited QFORGE_ALERT*, plus
 * the two variables of this alert. Pointers into env_a/env_b and environ;
 * the array is qf_free'd by the caller. */
static char **child_env(const char *env_a, const char *env_b) {
    size_t n = 0;
    for (char **e = environ; e && *e; e++)
        n++;
    char **envp = qf_malloc((n + 3) * sizeof *envp);
    if (!envp) return NULL;
    size_t k = 0;
    for (char **e = environ; e && *e; e++)
        if (strncmp(*e, "QFORGE_ALERT=", 13) != 0 && strncmp(*e, "QFORGE_ALERT_STATE=", 19) != 0)
            envp[k++] = *e;
    envp[k++] = (char *)env_a;
    envp[k++] = (char *)env_b;
    envp[k] = NULL;
    return envp;
}

/* Write all of buf to fd (non-blocking) before the deadline; false when the
 * command closed its stdin early or the deadline passed. */
static bool write_all(int fd, const char *buf, size_t len, double deadline) {
    size_t off = 0;
    while (off < len) {
        ssize_t k = write(fd, buf + off, len - off);
        if (k > 0) {
            off += (size_t)k;
            continue;
        }
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && errno != EAGAIN) return false; /* EPIPE: it stopped reading */
        double left = deadline - qf_now_s();
        if (left <= 0) return false;
        struct pollfd p = {fd, POLLOUT, 0};
        poll(&p, 1, (int)fmin(left * 1000 + 1, 1000));
    }
    return true;
}

static void run_one(alert_runner *r, job *j) {
    char env_a[64], env_b[64];
    snprintf(env_a, sizeof env_a, "QFORGE_ALERT=%s", j->name);
    snprintf(env_b, sizeof env_b, "QFORGE_ALERT_STATE=%s", j->state);
    char **envp = child_env(env_a, env_b);
    int fds[2] = {-1, -1};
    bool files_ok = false, attr_ok = false;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, dflt;
    char *argv[] = {"sh", "-c", r->cmd, NULL};
    int rc = -1;
    pid_t pid = -1;
    if (envp && pipe2(fds, O_CLOEXEC) == 0) {
        files_ok = posix_spawn_file_actions_init(&fa) == 0;
        attr_ok = posix_spawnattr_init(&at) == 0;
    }
    if (files_ok && attr_ok) {
        sigemptyset(&none);
        sigemptyset(&dflt);
        sigaddset(&dflt, SIGPIPE);
        posix_spawn_file_actions_adddup2(&fa, fds[0], 0); /* dup2 clears CLOEXEC on 0 */
        posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                          POSIX_SPAWN_SETSIGDEF);
        posix_spawnattr_setpgroup(&at, 0);
        posix_spawnattr_setsigmask(&at, &none);
        posix_spawnattr_setsigdefault(&at, &dflt);
        rc = posix_spawn(&pid, "/bin/sh", &fa, &at, argv, envp);
    }
    if (files_ok) posix_spawn_file_actions_destroy(&fa);
    if (attr_ok) posix_spawnattr_destroy(&at);
    qf_free(envp);
    if (fds[0] >= 0) close(fds[0]);
    if (rc != 0) {
        if (fds[1] >= 0) close(fds[1]);
        qf_warn("alert command for %s: cannot start /bin/sh: %s", j->name,
                rc > 0 ? strerror(rc) : "out of resources");
        pthread_mutex_lock(&r->mu);
        r->st.failed++;
        pthread_mutex_unlock(&r->mu);
        return;
    }
    pthread_mutex_lock(&r->mu);
    r->st.started++;
    pthread_mutex_unlock(&r->mu);

    double deadline = qf_now_s() + r->timeout_s;
    fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) | O_NONBLOCK);
    size_t len = strlen(j->json);
    bool wrote = write_all(fds[1], j->json, len, deadline) && write_all(fds[1], "\n", 1, deadline);
    close(fds[1]);
    (void)wrote; /* a command may ignore its stdin; its exit status decides */

    int status = 0;
    bool done = false, timed_out = false, reaped = true;
    while (!done) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) {
            done = true;
        } else if (w < 0 && errno != EINTR) {
            done = true; /* ECHILD: SIGCHLD ignored by the host program */
            reaped = false;
        } else if (qf_now_s() >= deadline) {
            kill(-pid, SIGKILL); /* its process group: the shell and children */
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
            }
            done = timed_out = true;
        } else {
            sleep_ms(10);
        }
    }
    pthread_mutex_lock(&r->mu);
    if (timed_out) {
        r->st.timed_out++;
        r->st.failed++;
    } else if (reaped && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        r->st.failed++;
    }
    pthread_mutex_unlock(&r->mu);
    if (timed_out)
        qf_warn("alert command for %s %s: killed after %.1f s", j->name, j->state, r->timeout_s);
    else if (reaped && WIFEXITED(status) && WEXITSTATUS(status) != 0)
        qf_warn("alert command for %s %s: exit status %d", j->name, j->state, WEXITSTATUS(status));
    else if (reaped && WIFSIGNALED(status))
        qf_warn("alert command for %s %s: killed by signal %d", j->name, j->state, WTERMSIG(status));
}

static void *runner_main(void *arg) {
    alert_runner *r = arg;
    qf_cpu_place_self(QF_THREAD_BACKGROUND);
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, NULL);
    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (!r->quit && r->n == 0)
            pthread_cond_wait(&r->cv, &r->mu);
        if (r->quit) break;
        job j = r->q[r->head];
        r->head = (r->head + 1) % QUEUE_CAP;
        r->n--;
        r->busy = true;
        pthread_mutex_unlock(&r->mu);
        run_one(r, &j);
        qf_free(j.json);
        /* an EPIPE left a SIGPIPE pending on this thread: take it */
        struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_set, NULL, &zero) > 0) {
        }
        pthread_mutex_lock(&r->mu);
        r->busy = false;
        if (r->n == 0) pthread_cond_broadcast(&r->idle);
    }
    /* quitting: drop what is still queued */
    while (r->n > 0) {
        qf_free(r->q[r->head].json);
        r->head = (r->head + 1) % QUEUE_CAP;
        r->n--;
        r->st.dropped++;
    }
    pthread_cond_broadcast(&r->idle);
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

alert_runner *alert_runner_new(const char *cmd, double timeout_s, qf_err *err) {
    alert_runner *r = qf_calloc(1, sizeof *r);
    if (!r || !(r->cmd = qf_strdup(cmd))) {
        qf_free(r);
        QF_ERR_SET(err, QF_ERR_NOMEM, "alert command: out of memory");
        return NULL;
    }
    r->timeout_s = timeout_s > 0 ? timeout_s : 10;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    pthread_cond_init(&r->idle, NULL);
    if (pthread_create(&r->th, NULL, runner_main, r) != 0) {
        pthread_mutex_destroy(&r->mu);
        pthread_cond_destroy(&r->cv);
        pthread_cond_destroy(&r->idle);
        qf_free(r->cmd);
        qf_free(r);
        QF_ERR_SET(err, QF_ERR_INTERNAL, "alert command: cannot start its thread");
        return NULL;
    }
    return r;
}

void alert_runner_free(alert_runner *r) {
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    r->quit = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->th, NULL);
    if (r->st.dropped) qf_debug("alert command: %llu queued runs dropped at shutdown",
                                (unsigned long long)r->st.dropped);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    pthread_cond_destroy(&r->idle);
    qf_free(r->cmd);
    qf_free(r);
}

void alert_runner_push(alert_runner *r, const char *json, const char *name, const char *state) {
    char *copy = qf_strdup(json);
    pthread_mutex_lock(&r->mu);
    if (!copy || r->n == QUEUE_CAP || r->quit) {
        const char *why = !copy ? "out of memory" : r->quit ? "stopping" : "16 runs already waiting";
        r->st.dropped++;
        pthread_mutex_unlock(&r->mu);
        qf_free(copy);
        qf_warn("alert command: %s %s not run (%s)", name, state, why);
        return;
    }
    job *j = &r->q[(r->head + r->n) % QUEUE_CAP];
    j->json = copy;
    snprintf(j->name, sizeof j->name, "%s", name);
    snprintf(j->state, sizeof j->state, "%s", state);
    r->n++;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

qf_status alert_runner_wait(alert_runner *r, double timeout_s) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double end = (double)ts.tv_sec + ts.tv_nsec * 1e-9 + (timeout_s > 0 ? timeout_s : 0);
    ts.tv_sec = (time_t)end;
    ts.tv_nsec = (long)((end - (double)ts.tv_sec) * 1e9);
    qf_status st = QF_OK;
    pthread_mutex_lock(&r->mu);
    while ((r->n > 0 || r->busy) && !r->quit) {
        if (pthread_cond_timedwait(&r->idle, &r->mu, &ts) == ETIMEDOUT) {
            st = (r->n > 0 || r->busy) ? QF_ERR_TIMEOUT : QF_OK;
            break;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return st;
}

void alert_runner_stats(alert_runner *r, qf_alerts_cmd_stats *out) {
    pthread_mutex_lock(&r->mu);
    *out = r->st;
    pthread_mutex_unlock(&r->mu);
}
