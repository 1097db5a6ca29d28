/* bench/server.c - `lorahub adapt --backend server` on a fleet of
 * llama-server processes: ONE server of 2 threads against TWO servers of 1
 * thread each on this machine (2 cores), the same CMA-ES search (population
 * 16, seed 7) on both, and how much of the run lorahub itself takes.
 *
 * The model is bench/llamacpp.c's random LLaMA (768 x 12, 124.7M parameters,
 * written once by tools/bench_gguf.py), as F16 GGUF. The modules are made
 * here by lorahub's own library, deterministically (seeded): M random PEFT
 * modules of rank 4 on q_proj and v_proj of every layer, which
 * `lorahub serve-cmd` converts to GGUF and loads at scale 0 (so the servers
 * are started by exactly the command a user would run). The examples are
 * random lowercase letters (the byte-level vocabulary: one letter, one
 * token). Everything goes under DIR/server (DIR: build/bench-llamacpp).
 *
 * Figures, per configuration, all measured in the same run:
 *   wall      the adapt run, from exec to exit (servers started and
 *             healthy before, stopped after)
 *   lorahub   its CPU time (user + system, wait4) over the wall time: the
 *             share of the machine lorahub itself takes (goal <= 2%)
 *   outside   the report's wall_seconds - backend_seconds over wall: time
 *             with no scoring call running (optimizer, composition,
 *             checkpoint, start-up), when no request can be in flight
 *   servers   their CPU time during the run (/proc/PID/stat) over
 *             threads x wall: how much of the machine the fleet got; the
 *             2 x 1 servers' CPU over 2 is the wall an idle machine would
 *             give, and lorahub's CPU over that the load-free fraction
 * The two fleets run in turn, --repeat times (default 2), so that a change
 * of the machine's load hits both; every run is printed, the ratio is that
 * of the best walls. The load of a shared machine decides the ratio: a
 * 2-thread server whose core is taken by another job stalls (its threads
 * wait for each other at every operation), 1-thread servers do not.
 * and the ratio of the two wall times. The two traces must be identical
 * (the server backend's promise: the fleet changes nothing). Load averages
 * before and after are printed: other jobs on the machine slow both.
 * Servers listen on 127.0.0.1 at free ports and are stopped by pid.
 *
 * Usage: server [--dir DIR] [--budget N] [--population N] [--modules M]
 *               [--examples E] [--input N] [--output N] [--repeat R]
 *               [--server-args ARGS]   (more llama-server options: "--poll 0")
 * Needs $LLAMA_BINDIR/llama-server and $LORAHUB (make bench sets both). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>

#include "adapt/optim/rng.h"
#include "bench_util.h"
#include "lib/adapter.h"
#include "lib/fsutil.h"
#include "lib/json.h"
#include "lib/peft.h"
#include "lib/strbuf.h"

#define PROG "server"
#define DIM 768
#define KV_DIM 256
#define LAYERS 12
#define RANK 4

typedef struct bench_opts {
    const char *dir;       /* the model's directory (bench/llamacpp.c's) */
    const char *server_args; /* more llama-server options ("--poll 0"), or "" */
    int budget, population, n_modules, n_examples, in_len, out_len, repeat;
} bench_opts;

static void die(const char *what)
{
    fprintf(stderr, "%s: %s\n", PROG, what);
    exit(1);
}

/* ---- inputs: modules and examples, made once ------------------------- */

/* Module k: rank-RANK LoRA on q_proj and v_proj of every layer, A and B
 * normal (A small like the base weights, B larger so that the weights
 * move the loss), seeded by k. */
static void write_module(const char *path, int k)
{
    lh_target_shape sh[2 * LAYERS];
    char names[2 * LAYERS][64];
    for (int l = 0; l < LAYERS; l++)
        for (int v = 0; v < 2; v++) {
            int t = 2 * l + v;
            snprintf(names[t], sizeof names[t], "model.layers.%d.self_attn.%s_proj", l,
                     v ? "v" : "q");
            sh[t] = (lh_target_shape){names[t], RANK, DIM, v ? KV_DIM : DIM};
        }
    lh_adapter *a;
    lh_error err;
    if (lh_adapter_create(sh, 2 * LAYERS, &a, &err))
        bench_die(PROG, path, &err);
    lh_rng rng;
    lh_rng_seed(&rng, 1000 + (uint64_t)k);
    for (size_t t = 0; t < a->n_targets; t++) {
        lh_target *tg = &a->targets[t];
        for (int i = 0; i < tg->r * tg->d_in; i++)
            tg->A[i] = (float)(0.02 * lh_rng_normal(&rng));
        for (int i = 0; i < tg->d_out * tg->r; i++)
            tg->B[i] = (float)(0.1 * lh_rng_normal(&rng));
    }
    lh_peft_save_opts so = {.dtype = LH_F32, .force = 1};
    if (lh_peft_save(a, path, &so, &err))
        bench_die(PROG, path, &err);
    lh_adapter_free(a);
}

/* E examples of random letters, input in_len and output out_len letters. */
static void write_examples(const char *path, const bench_opts *o)
{
    lh_rng rng;
    lh_rng_seed(&rng, 20261207);
    lh_sb sb;
    lh_sb_init(&sb);
    for (int e = 0; e < o->n_examples; e++) {
        lh_sb_append(&sb, "{\"input\": \"");
        for (int i = 0; i < o->in_len + o->out_len; i++) {
            if (i == o->in_len)
                lh_sb_append(&sb, "\", \"output\": \"");
            char c = (char)('a' + (int)(26 * lh_rng_uniform(&rng)));
            lh_sb_append_n(&sb, &c, 1);
        }
        lh_sb_append(&sb, "\"}\n");
    }
    lh_error err;
    if (lh_sb_failed(&sb) || lh_write_file_atomic(path, sb.buf, sb.len, &err))
        die("cannot write the examples");
    lh_sb_release(&sb);
}

static void make_inputs(const char *work, const bench_opts *o)
{
    char path[1200];
    mkdir(work, 0777);
    snprintf(path, sizeof path, "%s/modules", work);
    mkdir(path, 0777);
    for (int k = 0; k < o->n_modules; k++) {
        snprintf(path, sizeof path, "%s/modules/m%02d/adapter_config.json", work, k);
        if (lh_path_exists(path))
            continue;
        snprintf(path, sizeof path, "%s/modules/m%02d", work, k);
        write_module(path, k);
    }
    snprintf(path, sizeof path, "%s/examples.jsonl", work);
    write_examples(path, o);
}

/* ---- processes ------------------------------------------------------- */

/* argv run to its end with stdout into out (NULL: /dev/null) and stderr into
 * err_path; its status, and its rusage in *ru. */
static int run_wait(char *const argv[], const char *out, const char *err_path, struct rusage *ru)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen(out ? out : "/dev/null", "w", stdout) || !freopen(err_path, "w", stderr))
            _exit(127);
        execv(argv[0], argv);
        _exit(127);
    }
    int status = -1;
    struct rusage r;
    if (pid < 0 || wait4(pid, &status, 0, ru ? ru : &r) < 0)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* A free loopback port (the kernel's pick; free again when we close it). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &n) < 0)
        die("cannot find a free port");
    close(fd);
    return ntohs(a.sin_port);
}

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    return size * n;
}

/* GET url/health answers 200 (the model is loaded). */
static int healthy(int port)
{
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/health", port);
    CURL *h = curl_easy_init();
    if (!h)
        return 0;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 2000L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    long code = 0;
    if (curl_easy_perform(h) == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(h);
    return code == 200;
}

typedef struct server {
    pid_t pid;
    int port;
    double cpu0;     /* its CPU seconds when the run began */
} server;

/* CPU seconds (user + system) of a running process, from /proc. */
static double proc_cpu(pid_t pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the name may hold spaces: fields after it */
    unsigned long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* `sh -c "exec CMD --port P -t T ..."`: CMD is serve-cmd's line (quoted for sh). */
static server start_server(const char *cmd, int threads, const char *extra, const char *log)
{
    server s = {0, free_port(), 0};
    lh_sb sb;
    lh_sb_init(&sb);
    lh_sb_appendf(&sb, "exec %s --host 127.0.0.1 --port %d -t %d -tb %d -c 512 --no-webui %s", cmd,
                  s.port, threads, threads, extra);
    if (lh_sb_failed(&sb))
        die("out of memory");
    fflush(stdout);
    s.pid = fork();
    if (s.pid == 0) {
        if (!freopen("/dev/null", "r", stdin) || !freopen(log, "w", stdout) ||
            !freopen(log, "a", stderr))
            _exit(127);
        execl("/bin/sh", "sh", "-c", sb.buf, (char *)NULL);
        _exit(127);
    }
    lh_sb_release(&sb);
    if (s.pid < 0)
        die("cannot fork");
    return s;
}

static void stop_server(server *s)
{
    if (s->pid <= 0)
        return;
    kill(s->pid, SIGTERM);
    int status;
    for (int i = 0; i < 100; i++) { /* 10 s, then SIGKILL */
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            s->pid = 0;
            return;
        }
        usleep(100000);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, &status, 0);
    s->pid = 0;
}

static server fleet[8];
static int fleet_n;

static void stop_fleet(void)
{
    for (int i = 0; i < fleet_n; i++)
        stop_server(&fleet[i]);
    fleet_n = 0;
}

static void on_signal(int sig)
{
    for (int i = 0; i < fleet_n; i++)
        if (fleet[i].pid > 0)
            kill(fleet[i].pid, SIGKILL);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* n servers of t threads each, healthy within 120 s. */
static void start_fleet(const char *cmd, int n, int threads, const char *extra, const char *work)
{
    for (int i = 0; i < n; i++) {
        char log[1200];
        snprintf(log, sizeof log, "%s/server-%dx%d-%d.log", work, n, threads, i);
        fleet[fleet_n++] = start_server(cmd, threads, extra, log);
    }
    for (int i = 0; i < n; i++) {
        int k = 0, status;
        while (!healthy(fleet[i].port)) {
            if (++k > 1200 || waitpid(fleet[i].pid, &status, WNOHANG) == fleet[i].pid) {
                fleet[i].pid = 0;
                stop_fleet();
                fprintf(stderr, "%s: llama-server did not start (see %s/server-%dx%d-%d.log)\n",
                        PROG, work, n, threads, i);
                exit(1);
            }
            usleep(100000);
        }
    }
}

/* ---- one configuration ----------------------------------------------- */

typedef struct figures {
    double wall, lorahub_cpu, report_wall, backend_s, servers_cpu, loss;
    int threads;
} figures;

static double load_average(void)
{
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1)
            l = -1;
        fclose(f);
    }
    return l;
}

static double report_number(const lh_json *r, const char *key)
{
    double v = 0;
    if (!lh_json_as_number(lh_json_get(r, key), &v)) {
        fprintf(stderr, "%s: the report has no %s\n", PROG, key);
        exit(1);
    }
    return v;
}

/* The adapt run on the fleet now up; its trace into tag.tsv. */
static figures run_adapt(const char *lorahub, const char *work, const char *tag,
                         const bench_opts *o)
{
    char mods[1200], ex[1200], trace[1200], report[1200], err[1200], budget[16], pop[16];
    snprintf(mods, sizeof mods, "%s/modules", work);
    snprintf(ex, sizeof ex, "%s/examples.jsonl", work);
    snprintf(trace, sizeof trace, "%s/%s.tsv", work, tag);
    snprintf(report, sizeof report, "%s/%s.json", work, tag);
    snprintf(err, sizeof err, "%s/%s.err", work, tag);
    snprintf(budget, sizeof budget, "%d", o->budget);
    snprintf(pop, sizeof pop, "%d", o->population);
    char urls[8][64];
    char *argv[64];
    int n = 0;
    const char *fixed[] = {lorahub, "adapt", "-q", "--modules", mods, "--examples", ex,
                           "--method", "cat", "--select", "search", "--preselect", "0",
                           "--optimizer", "cmaes", "--population", pop, "--budget", budget,
                           "--seed", "7", "--trace", trace, "--report", report, "--no-plot", "--force",
                           NULL};
    for (int i = 0; fixed[i]; i++)
        argv[n++] = (char *)fixed[i];
    for (int i = 0; i < fleet_n; i++) {
        snprintf(urls[i], sizeof urls[i], "http://127.0.0.1:%d", fleet[i].port);
        argv[n++] = "--server";
        argv[n++] = urls[i];
    }
    argv[n] = NULL;
    figures f = {0};
    for (int i = 0; i < fleet_n; i++)
        fleet[i].cpu0 = proc_cpu(fleet[i].pid);
    struct rusage ru;
    double t0 = bench_now();
    int rc = run_wait(argv, NULL, err, &ru);
    f.wall = bench_now() - t0;
    for (int i = 0; i < fleet_n; i++)
        f.servers_cpu += proc_cpu(fleet[i].pid) - fleet[i].cpu0;
    if (rc != 0) {
        stop_fleet();
        fprintf(stderr, "%s: lorahub adapt failed (status %d, see %s)\n", PROG, rc, err);
        exit(1);
    }
    f.lorahub_cpu = (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
                    (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
    lh_json *r;
    lh_error e;
    if (lh_json_parse_file(report, &r, &e))
        bench_die(PROG, report, &e);
    f.report_wall = report_number(r, "wall_seconds");
    f.backend_s = report_number(r, "backend_seconds");
    f.loss = report_number(r, "best_loss");
    lh_json_free(r);
    return f;
}

/* One run on n servers of t threads. */
static figures measure(const char *cmd, const char *lorahub, const char *work, int n, int t,
                       const bench_opts *o)
{
    char tag[32];
    snprintf(tag, sizeof tag, "run-%dx%d", n, t);
    start_fleet(cmd, n, t, o->server_args, work);
    figures f = run_adapt(lorahub, work, tag, o);
    stop_fleet();
    f.threads = n * t;
    return f;
}

/* The traces without their last column (milliseconds) are equal. */
static int same_trace(const char *a, const char *b)
{
    char *ta = NULL, *tb = NULL;
    size_t na, nb;
    lh_error e;
    if (lh_read_file(a, &ta, &na, &e) || lh_read_file(b, &tb, &nb, &e))
        bench_die(PROG, "trace", &e);
    int same = 1;
    char *sa, *sb;
    char *la = strtok_r(ta, "\n", &sa), *lb = strtok_r(tb, "\n", &sb);
    for (; same && la && lb; la = strtok_r(NULL, "\n", &sa), lb = strtok_r(NULL, "\n", &sb)) {
        char *ca = strrchr(la, '\t'), *cb = strrchr(lb, '\t');
        same = ca && cb && ca - la == cb - lb && !strncmp(la, lb, (size_t)(ca - la));
    }
    same = same && !la && !lb;
    free(ta);
    free(tb);
    return same;
}

/* requests: (budget + the re-score) x examples, one request each */
static void print_figures(const char *label, const figures *f, const bench_opts *o)
{
    double requests = (double)(o->budget + 1) * o->n_examples;
    printf("%-22s wall %7.2f s  lorahub CPU %5.2f s (%5.2f%%, %.2f ms/request)  "
           "outside scoring %5.2f%%  servers' CPU %6.1f s (%4.1f%% of %d cores)  best loss %.6f\n",
           label, f->wall, f->lorahub_cpu, 100 * f->lorahub_cpu / f->wall,
           1e3 * f->lorahub_cpu / requests, 100 * (f->report_wall - f->backend_s) / f->wall,
           f->servers_cpu, 100 * f->servers_cpu / (f->threads * f->wall), f->threads, f->loss);
    fflush(stdout);
}

/* The two fleets in turn, o->repeat times (a change of the machine's load
 * then hits both), every run printed; the lowest wall of each into one, two. */
static void measure_both(const char *cmd, const char *lorahub, const char *work,
                         const bench_opts *o, figures *one, figures *two)
{
    for (int r = 0; r < o->repeat; r++) {
        figures a = measure(cmd, lorahub, work, 1, 2, o);
        print_figures("1 server x 2 threads", &a, o);
        figures b = measure(cmd, lorahub, work, 2, 1, o);
        print_figures("2 servers x 1 thread", &b, o);
        if (r == 0 || a.wall < one->wall)
            *one = a;
        if (r == 0 || b.wall < two->wall)
            *two = b;
    }
}

/* ---- main ------------------------------------------------------------ */

/* serve-cmd's command line for the modules, without its --port. */
static char *serve_command(const char *lorahub, const char *bin, const char *work,
                           const char *model)
{
    char mods[1200], gguf[1200], out[1200], err[1200];
    snprintf(mods, sizeof mods, "%s/modules", work);
    snprintf(gguf, sizeof gguf, "%s/gguf", work);
    snprintf(out, sizeof out, "%s/serve-cmd.txt", work);
    snprintf(err, sizeof err, "%s/serve-cmd.err", work);
    char *argv[] = {(char *)lorahub, "serve-cmd", "--modules", mods, "--base-gguf", (char *)model,
                    "--gguf-dir", gguf, "--port", "1", "--llama-server", (char *)bin, NULL};
    if (run_wait(argv, out, err, NULL) != 0) {
        fprintf(stderr, "%s: lorahub serve-cmd failed (see %s)\n", PROG, err);
        exit(1);
    }
    char *text = NULL;
    size_t len;
    lh_error e;
    if (lh_read_file(out, &text, &len, &e))
        bench_die(PROG, out, &e);
    char *port = strstr(text, " --port 1 ");
    char *nl = strchr(text, '\n');
    if (!port || !nl)
        die("serve-cmd printed no --port");
    *nl = '\0';
    memmove(port, port + 9, strlen(port + 9) + 1); /* " --port 1" out */
    return text;
}

static void parse_args(int argc, char **argv, bench_opts *o)
{
    *o = (bench_opts){"build/bench-llamacpp", "", 48, 16, 6, 4, 24, 6, 2};
    for (int i = 1; i < argc; i++) {
        int *v = NULL;
        if (!strcmp(argv[i], "--dir") && i + 1 < argc) {
            o->dir = argv[++i];
            continue;
        }
        if (!strcmp(argv[i], "--server-args") && i + 1 < argc) {
            o->server_args = argv[++i];
            continue;
        }
        if (!strcmp(argv[i], "--budget")) v = &o->budget;
        else if (!strcmp(argv[i], "--population")) v = &o->population;
        else if (!strcmp(argv[i], "--modules")) v = &o->n_modules;
        else if (!strcmp(argv[i], "--examples")) v = &o->n_examples;
        else if (!strcmp(argv[i], "--input")) v = &o->in_len;
        else if (!strcmp(argv[i], "--output")) v = &o->out_len;
        else if (!strcmp(argv[i], "--repeat")) v = &o->repeat;
        if (!v || i + 1 >= argc || (*v = atoi(argv[++i])) < 1) {
            fprintf(stderr, "usage: server [--dir DIR] [--budget N] [--population N] "
                            "[--modules M] [--examples E] [--input N] [--output N] [--repeat R] "
                            "[--server-args ARGS]\n");
            exit(2);
        }
    }
}

int main(int argc, char **argv)
{
    bench_opts o;
    parse_args(argc, argv, &o);
    const char *bindir = getenv("LLAMA_BINDIR"), *lorahub = getenv("LORAHUB");
    char bin[1024];
    snprintf(bin, sizeof bin, "%s/llama-server", bindir ? bindir : "");
    if (!bindir || !*bindir || access(bin, X_OK) != 0 || !lorahub || access(lorahub, X_OK) != 0) {
        printf("server: skipped (no llama-server in $LLAMA_BINDIR, or no $LORAHUB: "
               "sh tools/install-llamacpp.sh, then make LLAMA_PREFIX=build/llamacpp bench)\n");
        return 0;
    }
    bench_ensure_gguf_models(PROG, o.dir);
    char work[1100], model[1100];
    snprintf(work, sizeof work, "%s/server", o.dir);
    snprintf(model, sizeof model, "%s/f16.gguf", o.dir);
    make_inputs(work, &o);
    char *cmd = serve_command(lorahub, bin, work, model);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    setenv("OPENBLAS_NUM_THREADS", "1", 1);
    printf("server: f16.gguf (124.7M), %d modules of rank %d, %d examples (%d + %d letters), "
           "CMA-ES population %d, budget %d, %d run%s of each%s%s; load average %.2f before\n",
           o.n_modules, RANK, o.n_examples, o.in_len, o.out_len, o.population, o.budget,
           o.repeat, o.repeat > 1 ? "s" : "", *o.server_args ? ", servers with " : "",
           o.server_args, load_average());
    figures one = {0}, two = {0};
    measure_both(cmd, lorahub, work, &o, &one, &two);
    char ta[1200], tb[1200];
    snprintf(ta, sizeof ta, "%s/run-1x2.tsv", work);
    snprintf(tb, sizeof tb, "%s/run-2x1.tsv", work);
    int same = same_trace(ta, tb);
    printf("  load average after: %.2f\n", load_average());
    printf("  two 1-thread servers / one 2-thread server: %.2fx the speed (best walls)\n",
           one.wall / two.wall);
    printf("  lorahub CPU / wall: %.2f%% and %.2f%% (goal <= 2%%)\n",
           100 * one.lorahub_cpu / one.wall, 100 * two.lorahub_cpu / two.wall);
    /* The wall of 2 x 1 if the servers had both cores to themselves: their
     * CPU time over 2. Not inflated by other jobs, unlike the wall. */
    printf("  lorahub CPU / (2 x 1 servers' CPU / 2 cores): %.2f%% (goal <= 2%%, the wall of an "
           "idle machine)\n", 100 * two.lorahub_cpu / (two.servers_cpu / 2));
    printf("  same trace on both fleets: %s\n", same ? "yes" : "NO");
    curl_global_cleanup();
    free(cmd);
    return same ? 0 : 1;
}
