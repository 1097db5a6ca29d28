/* adapt/backend/exec.c - backend "exec": a child process speaking JSON lines.
 *
 * The child is started once with `sh -c CMD` in its own process group (so a
 * Ctrl-C at the terminal reaches lorahub, which then says bye, rather than
 * killing the child in the middle of a request). Requests and replies are
 * one JSON object per line on the child's stdin/stdout; its stderr is left
 * to the user. Candidate adapters are written as F32 PEFT directories into a
 * private mkdtemp directory that close removes. Protocol: lorahub-backend(7).
 *
 * Every wait is bounded: writes use a non-blocking pipe and poll(), reads
 * poll() in short slices so the caller's interrupt flag is seen, and a
 * request that outlives the timeout leaves the child marked broken (its
 * state is unknown), so close kills it instead of saying bye. */
#include "backend.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/fsutil.h"
#include "lib/json.h"
#include "lib/peft.h"
#include "lib/strbuf.h"
#include "lib/tempreg.h"

#define EXEC_PROTOCOL 1
#define EXEC_DEFAULT_TIMEOUT_S 300.0
#define EXEC_BYE_WAIT_S 3.0
#define EXEC_SLICE_MS 100
/* Generate replies carry text; anything longer than this is not a reply. */
#define EXEC_MAX_LINE ((size_t)256 << 20)

typedef struct exec_ctx {
    char *label;          /* "exec backend 'CMD'" (CMD shortened), prefixes every error */
    pid_t pid;            /* the child, also its process group id; 0 once reaped */
    int wstatus;          /* the child's status once reaped */
    int in_fd;            /* write end of the child's stdin, O_NONBLOCK */
    int out_fd;           /* read end of the child's stdout */
    double timeout_s;
    volatile sig_atomic_t *interrupt;
    char *tmpdir;         /* private mkdtemp directory, removed at close */
    char *rbuf;           /* [rcap] bytes read from the child; rlen of them unconsumed */
    size_t rlen, rcap;
    unsigned long seq;    /* names candidate directories uniquely per request */
    const lh_examples *ex_written; /* examples last written to ex_path */
    char *ex_path;
    char name[128];       /* the name the child gave in its hello reply */
    int broken;           /* protocol state unknown: kill at close, never reuse */
} exec_ctx;

static lh_status xfail(exec_ctx *c, lh_error *err, lh_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

static lh_status xfail(exec_ctx *c, lh_error *err, lh_status code, const char *fmt, ...)
{
    if (!err)
        return code;
    char msg[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lh_error_set(err, code, "%s: %s", c->label, msg);
    return code;
}

/* Reap the child if it has exited, waiting at most wait_s. Returns 1 when
 * reaped. What is left of its process group (a grandchild it started) is
 * killed first: the exited but unreaped child still holds the group id,
 * so it cannot have been reused. */
static int reap(exec_ctx *c, double wait_s)
{
    if (c->pid <= 0)
        return 1;
    double end = lh_monotonic_seconds() + wait_s;
    for (;;) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        int r = waitid(P_PID, (id_t)c->pid, &si, WEXITED | WNOHANG | WNOWAIT);
        if (r == 0 && si.si_pid == c->pid) {
            kill(-c->pid, SIGKILL);
            while (waitpid(c->pid, &c->wstatus, 0) < 0 && errno == EINTR)
                ;
            c->pid = 0;
            return 1;
        }
        if (r < 0 && errno == ECHILD) {
            c->pid = 0;
            return 1;
        }
        if (lh_monotonic_seconds() >= end)
            return 0;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* "SIGSEGV" for 11: the names users know (strsignal's text varies). */
static const char *signal_name(int sig, char *buf, size_t n)
{
    static const struct { int sig; const char *name; } names[] = {
        {SIGHUP, "SIGHUP"}, {SIGINT, "SIGINT"}, {SIGQUIT, "SIGQUIT"}, {SIGILL, "SIGILL"},
        {SIGTRAP, "SIGTRAP"}, {SIGABRT, "SIGABRT"}, {SIGBUS, "SIGBUS"}, {SIGFPE, "SIGFPE"},
        {SIGKILL, "SIGKILL"}, {SIGUSR1, "SIGUSR1"}, {SIGSEGV, "SIGSEGV"}, {SIGUSR2, "SIGUSR2"},
        {SIGPIPE, "SIGPIPE"}, {SIGALRM, "SIGALRM"}, {SIGTERM, "SIGTERM"}, {SIGXCPU, "SIGXCPU"},
        {SIGXFSZ, "SIGXFSZ"}, {SIGSYS, "SIGSYS"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].sig == sig)
            return names[i].name;
    snprintf(buf, n, "signal %d", sig);
    return buf;
}

/* Why the child stopped talking, for messages: "exited with status 3",
 * "was killed by SIGSEGV". */
static void describe_death(exec_ctx *c, char *buf, size_t n)
{
    if (!reap(c, 1.0)) {
        snprintf(buf, n, "closed its output");
        return;
    }
    if (WIFEXITED(c->wstatus)) {
        /* sh -c reports a command a signal killed as 128 + the signal */
        int st = WEXITSTATUS(c->wstatus);
        char num[32], sig[64] = "";
        if (st > 128 && st < 128 + 65)
            snprintf(sig, sizeof sig, " (killed by %s)", signal_name(st - 128, num, sizeof num));
        snprintf(buf, n, "exited with status %d%s", st,
                 st == 127 ? " (command not found?)" : sig);
    } else if (WIFSIGNALED(c->wstatus)) {
        char num[32];
        snprintf(buf, n, "was killed by %s", signal_name(WTERMSIG(c->wstatus), num, sizeof num));
    } else {
        snprintf(buf, n, "stopped");
    }
}

static lh_status died(exec_ctx *c, const char *op, lh_error *err)
{
    char why[128];
    describe_death(c, why, sizeof why);
    c->broken = 1;
    return xfail(c, err, LH_ERR_BACKEND, "%s before answering '%s'", why, op);
}

static int interrupted(const exec_ctx *c)
{
    return c->interrupt && *c->interrupt;
}

/* Write all of data, bounded by deadline. SIGPIPE is blocked around the
 * write so a dead child gives EPIPE instead of killing lorahub; a SIGPIPE
 * that this write raised is consumed before the mask is restored. */
static lh_status write_all(exec_ctx *c, const char *data, size_t len, double deadline,
                           const char *op, lh_error *err)
{
    sigset_t pipe_set, old_set, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
    sigpending(&pending);
    int was_pending = sigismember(&pending, SIGPIPE);
    lh_status st = LH_OK;
    int epipe = 0;
    while (len > 0) {
        ssize_t w = write(c->in_fd, data, len);
        if (w > 0) {
            data += w;
            len -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (interrupted(c)) {
                c->broken = 1;
                st = xfail(c, err, LH_ERR_INTERRUPTED, "interrupted while sending '%s'", op);
                break;
            }
            double left = deadline - lh_monotonic_seconds();
            if (left <= 0) {
                c->broken = 1;
                st = xfail(c, err, LH_ERR_TIMEOUT, "did not read the '%s' request within %g s",
                           op, c->timeout_s);
                break;
            }
            struct pollfd p = {c->in_fd, POLLOUT, 0};
            int ms = left * 1000 < EXEC_SLICE_MS ? (int)(left * 1000) + 1 : EXEC_SLICE_MS;
            poll(&p, 1, ms);
            continue;
        }
        if (w < 0 && errno == EPIPE) {
            epipe = 1;
            break;
        }
        c->broken = 1;
        st = lh_error_errno(err, LH_ERR_IO, errno, "%s: cannot send '%s'", c->label, op);
        break;
    }
    if (epipe && !was_pending) {
        struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &old_set, NULL);
    if (epipe)
        return died(c, op, err);
    return st;
}

/* Read one line (without its newline) into *line, valid until the next read. */
static lh_status read_line(exec_ctx *c, double deadline, const char *op, char **line,
                           size_t *len, lh_error *err)
{
    size_t scanned = 0;
    for (;;) {
        char *nl = c->rlen > scanned ? memchr(c->rbuf + scanned, '\n', c->rlen - scanned) : NULL;
        if (nl) {
            *nl = '\0';
            *line = c->rbuf;
            *len = (size_t)(nl - c->rbuf);
            return LH_OK;
        }
        scanned = c->rlen;
        if (c->rlen >= EXEC_MAX_LINE) {
            c->broken = 1;
            return xfail(c, err, LH_ERR_BACKEND, "answered '%s' with a line longer than %zu bytes",
                         op, EXEC_MAX_LINE);
        }
        if (interrupted(c)) {
            c->broken = 1;
            return xfail(c, err, LH_ERR_INTERRUPTED, "interrupted while waiting for '%s'", op);
        }
        double left = deadline - lh_monotonic_seconds();
        if (left <= 0) {
            c->broken = 1;
            return xfail(c, err, LH_ERR_TIMEOUT, "no answer to '%s' within %g s", op,
                         c->timeout_s);
        }
        struct pollfd p = {c->out_fd, POLLIN, 0};
        int ms = left * 1000 < EXEC_SLICE_MS ? (int)(left * 1000) + 1 : EXEC_SLICE_MS;
        int pr = poll(&p, 1, ms);
        if (pr < 0 && errno != EINTR) {
            c->broken = 1;
            return lh_error_errno(err, LH_ERR_IO, errno, "%s: poll", c->label);
        }
        if (pr <= 0)
            continue;
        if (c->rcap - c->rlen < 4096) {
            size_t ncap = c->rcap ? c->rcap * 2 : 65536;
            char *nb = realloc(c->rbuf, ncap);
            if (!nb)
                return xfail(c, err, LH_ERR_NOMEM, "out of memory reading '%s'", op);
            c->rbuf = nb;
            c->rcap = ncap;
        }
        ssize_t r = read(c->out_fd, c->rbuf + c->rlen, c->rcap - c->rlen - 1);
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (r < 0) {
            c->broken = 1;
            return lh_error_errno(err, LH_ERR_IO, errno, "%s: cannot read the answer to '%s'",
                                  c->label, op);
        }
        if (r == 0)
            return died(c, op, err);
        c->rlen += (size_t)r;
    }
}

static void consume_line(exec_ctx *c, size_t len)
{
    size_t used = len + 1;
    memmove(c->rbuf, c->rbuf + used, c->rlen - used);
    c->rlen -= used;
}

/* A short, printable excerpt of a bad reply for the error message. */
static void excerpt(const char *s, size_t len, char *buf, size_t n)
{
    size_t j = 0;
    for (size_t i = 0; i < len && j + 4 < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        buf[j++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
        if (i == 59 && len > 60) {
            memcpy(buf + j, "...", 3);
            j += 3;
            break;
        }
    }
    buf[j] = '\0';
}

/* s with control characters (C0, DEL, and C1 as UTF-8) written as \xNN,
 * so a backend's message cannot drive the user's terminal. */
static void printable(const char *s, char *buf, size_t n)
{
    size_t j = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && j + 5 < n; p++) {
        int c1 = p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f;
        if (*p < 0x20 || *p == 0x7f || c1) {
            j += (size_t)snprintf(buf + j, n - j, "\\x%02x", c1 ? p[1] : p[0]);
            p += c1;
        } else {
            buf[j++] = (char)*p;
        }
    }
    buf[j] = '\0';
}

/* Send one request line and parse the reply object; an {"ok":false} reply
 * becomes an error carrying the child's message. */
static lh_status request(exec_ctx *c, const char *req, size_t req_len, const char *op,
                         lh_json **reply, lh_error *err)
{
    *reply = NULL;
    if (c->broken)
        return xfail(c, err, LH_ERR_BACKEND, "not usable after an earlier failure");
    /* Nothing sent yet, so the conversation stays in step and close can
     * still say bye. */
    if (interrupted(c))
        return xfail(c, err, LH_ERR_INTERRUPTED, "interrupted before '%s'", op);
    double deadline = lh_monotonic_seconds() + c->timeout_s;
    lh_status st = write_all(c, req, req_len, deadline, op, err);
    if (st != LH_OK)
        return st;
    char *line = NULL;
    size_t len = 0;
    st = read_line(c, deadline, op, &line, &len, err);
    if (st != LH_OK)
        return st;
    lh_json *j = NULL;
    lh_error perr;
    lh_error_clear(&perr);
    st = lh_json_parse(line, len, NULL, &j, &perr);
    if (st != LH_OK || j->type != LH_JSON_OBJECT) {
        char ex[80];
        excerpt(line, len, ex, sizeof ex);
        lh_json_free(j);
        c->broken = 1;
        return xfail(c, err, LH_ERR_BACKEND, "answered '%s' with %s: '%s'", op,
                     st != LH_OK ? "something that is not JSON" : "JSON that is not an object",
                     ex);
    }
    consume_line(c, len);
    if (c->rlen > 0) {
        /* A second line already waiting would be read as the answer to the
         * next request: the conversation is out of step. */
        lh_json_free(j);
        c->broken = 1;
        return xfail(c, err, LH_ERR_BACKEND, "answered '%s' with more than one line", op);
    }
    int ok;
    if (!lh_json_as_bool(lh_json_get(j, "ok"), &ok)) {
        lh_json_free(j);
        c->broken = 1;
        return xfail(c, err, LH_ERR_BACKEND, "answer to '%s' lacks a boolean \"ok\"", op);
    }
    if (!ok) {
        const char *msg = NULL;
        if (!lh_json_as_string(lh_json_get(j, "error"), &msg))
            msg = "(no message)";
        lh_status code = !strcmp(msg, "unsupported") ? LH_ERR_UNSUPPORTED : LH_ERR_BACKEND;
        char safe[sizeof err->msg];
        printable(msg, safe, sizeof safe);
        if (code == LH_ERR_UNSUPPORTED)
            xfail(c, err, code, "'%s' is not supported", op);
        else
            xfail(c, err, code, "%s", safe);
        lh_json_free(j);
        return code;
    }
    *reply = j;
    return LH_OK;
}

static char *make_label(const char *cmd)
{
    lh_sb sb;
    lh_sb_init(&sb);
    lh_sb_append(&sb, "exec backend '");
    char safe[512];
    printable(cmd, safe, sizeof safe); /* the command is printed in every message */
    size_t n = strlen(safe);
    if (n > 120) {
        lh_sb_append_n(&sb, safe, 117);
        lh_sb_append(&sb, "...");
    } else {
        lh_sb_append(&sb, safe);
    }
    lh_sb_append(&sb, "'");
    if (lh_sb_failed(&sb)) {
        lh_sb_release(&sb);
        return NULL;
    }
    return lh_sb_detach(&sb);
}

static void exec_close(void *ctx)
{
    exec_ctx *c = ctx;
    if (!c)
        return;
    if (c->pid > 0) {
        if (!c->broken && c->in_fd >= 0) {
            static const char bye[] = "{\"op\":\"bye\"}\n";
            lh_error ignore;
            double saved = c->timeout_s;
            c->timeout_s = 1.0;
            /* The reply to bye is optional: the child may exit at once. */
            write_all(c, bye, sizeof bye - 1, lh_monotonic_seconds() + 1.0, "bye", &ignore);
            c->timeout_s = saved;
        }
        if (c->in_fd >= 0)
            close(c->in_fd);
        c->in_fd = -1;
        if (!reap(c, c->broken ? 0.0 : EXEC_BYE_WAIT_S)) {
            /* The child still exists (maybe as a zombie), so its process
             * group id cannot have been reused: killing the group is safe. */
            kill(-c->pid, SIGKILL);
            kill(c->pid, SIGKILL);
            while (waitpid(c->pid, &c->wstatus, 0) < 0 && errno == EINTR)
                ;
            c->pid = 0;
        }
    }
    if (c->in_fd >= 0)
        close(c->in_fd);
    if (c->out_fd >= 0)
        close(c->out_fd);
    if (c->tmpdir) {
        lh_temp_unregister(c->tmpdir);
        lh_rmtree(c->tmpdir);
    }
    free(c->tmpdir);
    free(c->ex_path);
    free(c->rbuf);
    free(c->label);
    free(c);
}

/* The settings exec reads: its command (required) and the reply timeout. */
static lh_status read_settings(const lh_backend_opts *o, const char **command, double *timeout_s,
                               lh_error *err)
{
    *command = lh_backend_param(o, "backend-cmd");
    const char *timeout_text = lh_backend_param(o, "backend-timeout");
    if (!*command || !**command)
        return lh_error_set(err, LH_ERR_ARG, "exec backend: no command given");
    *timeout_s = EXEC_DEFAULT_TIMEOUT_S;
    if (timeout_text) {
        char *end;
        double t = strtod(timeout_text, &end);
        /* 0 is refused rather than read as "no timeout": a hung child
         * would then hold the run forever. */
        if (end == timeout_text || *end || !(t > 0) || isinf(t))
            return lh_error_set(err, LH_ERR_ARG,
                                "exec backend: bad timeout '%s' (seconds, more than 0)",
                                timeout_text);
        *timeout_s = t;
    }
    return LH_OK;
}

static lh_status make_private_dir(exec_ctx *c, const char *parent, lh_error *err)
{
    if (!parent || !*parent)
        parent = getenv("TMPDIR");
    if (!parent || !*parent)
        parent = "/tmp";
    c->tmpdir = lh_path_join(parent, "lorahub-exec-XXXXXX");
    if (!c->tmpdir)
        return xfail(c, err, LH_ERR_NOMEM, "out of memory");
    if (!mkdtemp(c->tmpdir)) {
        lh_status st = lh_error_errno(err, LH_ERR_IO, errno,
                                      "%s: cannot create a temporary directory in '%s'", c->label,
                                      parent);
        free(c->tmpdir);
        c->tmpdir = NULL; /* nothing for close to remove */
        return st;
    }
    lh_temp_register(c->tmpdir); /* a signal handler may remove it */
    return LH_OK;
}

static void close_fds(int *fds, int n)
{
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

/* Start `sh -c command` in its own process group, its stdin and stdout on
 * two fresh pipes: c->in_fd (non-blocking) and c->out_fd. */
static lh_status spawn(exec_ctx *c, const char *command, lh_error *err)
{
    int fds[4] = {-1, -1, -1, -1}; /* to_child read, write; from_child read, write */
    if (pipe2(fds, O_CLOEXEC) < 0 || pipe2(fds + 2, O_CLOEXEC) < 0) {
        lh_status st = lh_error_errno(err, LH_ERR_IO, errno, "%s: pipe", c->label);
        close_fds(fds, 4);
        return st;
    }
    pid_t pid = fork();
    if (pid < 0) {
        lh_status st = lh_error_errno(err, LH_ERR_IO, errno, "%s: fork", c->label);
        close_fds(fds, 4);
        return st;
    }
    if (pid == 0) {
        /* Only async-signal-safe calls until exec. */
        setpgid(0, 0);
        if (dup2(fds[0], 0) < 0 || dup2(fds[3], 1) < 0)
            _exit(126);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
        /* Descriptors lorahub opened without O_CLOEXEC (module files,
         * outputs) are none of the child's business. */
        close_range(3, ~0U, 0);
#endif
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        execl("/bin/sh", "sh", "-c", command, (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid); /* also from the parent: whichever runs first wins the race */
    c->pid = pid;
    close(fds[0]);
    close(fds[3]);
    c->in_fd = fds[1];
    c->out_fd = fds[2];
    fcntl(c->in_fd, F_SETFL, fcntl(c->in_fd, F_GETFL) | O_NONBLOCK);
    return LH_OK;
}

/* hello: the child must speak our protocol; its name goes into describe. */
static lh_status handshake(exec_ctx *c, lh_error *err)
{
    static const char hello[] = "{\"op\":\"hello\",\"protocol\":1}\n";
    lh_json *reply;
    lh_status st = request(c, hello, sizeof hello - 1, "hello", &reply, err);
    if (st != LH_OK)
        return st;
    long long proto;
    if (!lh_json_as_int64(lh_json_get(reply, "protocol"), &proto) || proto != EXEC_PROTOCOL) {
        lh_json_free(reply);
        c->broken = 1;
        return xfail(c, err, LH_ERR_BACKEND, "speaks another protocol (lorahub speaks protocol %d)",
                     EXEC_PROTOCOL);
    }
    const char *name;
    if (lh_json_as_string(lh_json_get(reply, "name"), &name))
        printable(name, c->name, sizeof c->name);
    lh_json_free(reply);
    return LH_OK;
}

static lh_status exec_open(const lh_backend_opts *o, void **out, lh_error *err)
{
    *out = NULL;
    const char *command;
    double timeout_s;
    lh_status st = read_settings(o, &command, &timeout_s, err);
    if (st != LH_OK)
        return st;
    exec_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return lh_error_set(err, LH_ERR_NOMEM, "exec backend: out of memory");
    c->in_fd = c->out_fd = -1;
    c->timeout_s = timeout_s;
    c->interrupt = o->interrupt;
    c->label = make_label(command);
    if (!c->label)
        st = lh_error_set(err, LH_ERR_NOMEM, "exec backend: out of memory");
    if (st == LH_OK)
        st = make_private_dir(c, o->tmp_dir, err);
    if (st == LH_OK)
        st = spawn(c, command, err);
    if (st == LH_OK)
        st = handshake(c, err);
    if (st != LH_OK) {
        exec_close(c);
        return st;
    }
    *out = c;
    return LH_OK;
}

/* The examples as a file the child can read: always a JSONL copy lorahub
 * wrote in the temp dir (once per examples set), never the user's own file,
 * which may be YAML, a JSON list or a pipe the child cannot open, while
 * lorahub-backend(7) promises JSONL. */
static lh_status examples_path(exec_ctx *c, const lh_examples *ex, const char **path,
                               lh_error *err)
{
    if (c->ex_written != ex || !c->ex_path) {
        char name[64];
        snprintf(name, sizeof name, "examples-%lu.jsonl", ++c->seq);
        char *p = lh_path_join(c->tmpdir, name);
        if (!p)
            return xfail(c, err, LH_ERR_NOMEM, "out of memory");
        lh_status st = lh_examples_write_jsonl(ex, p, err);
        if (st != LH_OK) {
            free(p);
            return st;
        }
        if (c->ex_path)
            unlink(c->ex_path);
        free(c->ex_path);
        c->ex_path = p;
        c->ex_written = ex;
    }
    *path = c->ex_path;
    return LH_OK;
}

/* Write cand as an F32 PEFT directory; *dir is malloc'd ("null" stays NULL). */
static lh_status write_candidate(exec_ctx *c, const lh_adapter *cand, char **dir, lh_error *err)
{
    *dir = NULL;
    if (!cand)
        return LH_OK;
    char name[64];
    snprintf(name, sizeof name, "cand-%lu", ++c->seq);
    char *p = lh_path_join(c->tmpdir, name);
    if (!p)
        return xfail(c, err, LH_ERR_NOMEM, "out of memory");
    lh_peft_save_opts so = {LH_F32, 1, NULL};
    lh_status st = lh_peft_save(cand, p, &so, err);
    if (st != LH_OK) {
        lh_error_prefix(err, c->label);
        free(p);
        return st;
    }
    *dir = p;
    return LH_OK;
}

static void remove_dirs(char **dirs, int n)
{
    for (int i = 0; i < n; i++) {
        if (dirs[i])
            lh_rmtree(dirs[i]);
        free(dirs[i]);
    }
    free(dirs);
}

/* lorahub never writes a non-finite weight into a PEFT file (lh_peft_save
 * refuses it), so such a candidate cannot go to the child; its forward pass
 * would give NaN anyway, and the contract makes that a loss, not an error. */
static int has_finite_weights(const lh_adapter *a)
{
    for (size_t t = 0; t < a->n_targets; t++) {
        const lh_target *tg = &a->targets[t];
        size_t na = (size_t)tg->r * (size_t)tg->d_in, nb = (size_t)tg->d_out * (size_t)tg->r;
        for (size_t i = 0; i < na; i++)
            if (!isfinite(tg->A[i]))
                return 0;
        for (size_t i = 0; i < nb; i++) /* as written: the scale folded into B */
            if (!isfinite(tg->B[i] * tg->scale))
                return 0;
    }
    return 1;
}

/* A loss from a 'score' reply: a number, or null / "NaN" / "inf" for a
 * non-finite one. Returns 0 for anything else. */
static int reply_loss(const lh_json *v, double *loss)
{
    static const char *const non_finite[] = {"nan", "inf", "infinity", "-inf", "-infinity",
                                             "+inf", "+infinity", NULL};
    const char *s;
    if (lh_json_as_number(v, loss))
        return 1;
    if (v->type == LH_JSON_NULL) {
        *loss = NAN;
        return 1;
    }
    if (!lh_json_as_string(v, &s))
        return 0;
    for (size_t i = 0; non_finite[i]; i++)
        if (!strcasecmp(s, non_finite[i])) {
            *loss = strtod(s, NULL);
            return 1;
        }
    return 0;
}

/* The score request for the candidates in sent[n_sent] (indices into
 * cands); their directories go to dirs[n_sent]. */
static lh_status build_score_request(exec_ctx *c, const lh_adapter *const *cands,
                                     const int *sent, int n_sent, const char *ex_path,
                                     char **dirs, lh_sb *req, lh_error *err)
{
    lh_sb_append(req, "{\"op\":\"score\",\"examples\":");
    lh_sb_append_json_string(req, ex_path);
    lh_sb_append(req, ",\"adapters\":[");
    for (int j = 0; j < n_sent; j++) {
        lh_status st = write_candidate(c, cands[sent[j]], &dirs[j], err);
        if (st != LH_OK)
            return st;
        if (j)
            lh_sb_append(req, ",");
        if (dirs[j])
            lh_sb_append_json_string(req, dirs[j]);
        else
            lh_sb_append(req, "null");
    }
    lh_sb_append(req, "]}\n");
    return lh_sb_failed(req) ? xfail(c, err, LH_ERR_NOMEM, "out of memory") : LH_OK;
}

/* Fill loss[sent[j]] from the reply's "loss" array of n_sent numbers. */
static lh_status read_losses(exec_ctx *c, const lh_json *reply, const int *sent, int n_sent,
                             double *loss, lh_error *err)
{
    const lh_json *arr = lh_json_get(reply, "loss");
    if (!arr || arr->type != LH_JSON_ARRAY) {
        c->broken = 1;
        return xfail(c, err, LH_ERR_BACKEND, "answer to 'score' lacks a \"loss\" array");
    }
    if (arr->len != (size_t)n_sent) {
        c->broken = 1;
        return xfail(c, err, LH_ERR_BACKEND, "answered 'score' with %zu losses for %d adapter%s",
                     arr->len, n_sent, n_sent == 1 ? "" : "s");
    }
    for (int j = 0; j < n_sent; j++) {
        if (!reply_loss(arr->items[j], &loss[sent[j]]))
            return xfail(c, err, LH_ERR_BACKEND, "loss[%d] of its 'score' answer is not a number",
                         j);
        /* A cross-entropy is never below 0 (-inf included): a backend that
         * says so is broken, and the search would chase its bug. */
        if (loss[sent[j]] < 0)
            return xfail(c, err, LH_ERR_BACKEND,
                         "loss[%d] of its 'score' answer is %g: a loss is never negative", j,
                         loss[sent[j]]);
    }
    return LH_OK;
}

static lh_status exec_score(void *ctx, const lh_adapter *const *cands, int n,
                            const lh_examples *ex, double *loss, lh_error *err)
{
    exec_ctx *c = ctx;
    if (interrupted(c))
        return xfail(c, err, LH_ERR_INTERRUPTED, "interrupted before 'score'");
    const char *ex_path;
    lh_status st = examples_path(c, ex, &ex_path, err);
    if (st != LH_OK)
        return st;
    int *sent = malloc((size_t)n * sizeof *sent); /* [n_sent] indices into cands */
    char **dirs = calloc((size_t)n, sizeof *dirs); /* [n_sent] */
    if (!sent || !dirs) {
        free(sent);
        free(dirs);
        return xfail(c, err, LH_ERR_NOMEM, "out of memory");
    }
    int n_sent = 0;
    for (int i = 0; i < n; i++) {
        if (cands[i] && !has_finite_weights(cands[i]))
            loss[i] = NAN;
        else
            sent[n_sent++] = i;
    }
    lh_sb req;
    lh_sb_init(&req);
    lh_json *reply = NULL;
    if (n_sent > 0) {
        st = build_score_request(c, cands, sent, n_sent, ex_path, dirs, &req, err);
        if (st == LH_OK)
            st = request(c, req.buf, req.len, "score", &reply, err);
        if (st == LH_OK)
            st = read_losses(c, reply, sent, n_sent, loss, err);
    }
    lh_json_free(reply);
    lh_sb_release(&req);
    remove_dirs(dirs, n_sent);
    free(sent);
    return st;
}

static lh_status exec_generate(void *ctx, const lh_adapter *cand, const lh_examples *ex,
                               int max_new_tokens, char **outputs, lh_error *err)
{
    exec_ctx *c = ctx;
    for (size_t i = 0; i < ex->n; i++)
        outputs[i] = NULL;
    if (interrupted(c))
        return xfail(c, err, LH_ERR_INTERRUPTED, "interrupted before 'generate'");
    const char *ex_path;
    lh_status st = examples_path(c, ex, &ex_path, err);
    if (st != LH_OK)
        return st;
    char *dir = NULL;
    st = write_candidate(c, cand, &dir, err);
    if (st != LH_OK)
        return st;
    lh_sb req;
    lh_sb_init(&req);
    lh_sb_append(&req, "{\"op\":\"generate\",\"examples\":");
    lh_sb_append_json_string(&req, ex_path);
    lh_sb_append(&req, ",\"adapter\":");
    if (dir)
        lh_sb_append_json_string(&req, dir);
    else
        lh_sb_append(&req, "null");
    lh_sb_appendf(&req, ",\"max_new_tokens\":%d}\n", max_new_tokens);
    lh_json *reply = NULL;
    if (lh_sb_failed(&req))
        st = xfail(c, err, LH_ERR_NOMEM, "out of memory");
    else
        st = request(c, req.buf, req.len, "generate", &reply, err);
    lh_sb_release(&req);
    if (dir)
        lh_rmtree(dir);
    free(dir);
    if (st != LH_OK)
        return st;
    const lh_json *arr = lh_json_get(reply, "outputs");
    if (!arr || arr->type != LH_JSON_ARRAY || arr->len != ex->n) {
        lh_json_free(reply);
        c->broken = 1;
        return xfail(c, err, LH_ERR_BACKEND,
                     "answer to 'generate' lacks an \"outputs\" array of %zu strings", ex->n);
    }
    for (size_t i = 0; i < ex->n; i++) {
        const char *s;
        if (!lh_json_as_string(arr->items[i], &s) || !(outputs[i] = strdup(s))) {
            for (size_t k = 0; k < i; k++) {
                free(outputs[k]);
                outputs[k] = NULL;
            }
            lh_json_free(reply);
            return xfail(c, err, LH_ERR_BACKEND, "outputs[%zu] of its 'generate' answer is not a string", i);
        }
    }
    lh_json_free(reply);
    return LH_OK;
}

static void exec_describe(void *ctx, lh_backend_info *info)
{
    exec_ctx *c = ctx;
    info->identity[0] = '\0';
    snprintf(info->description, sizeof info->description, "exec: %s%s%s%s", c->label,
             c->name[0] ? " (" : "", c->name, c->name[0] ? ")" : "");
}

static const lh_backend_key exec_keys[] = {
    {"backend-cmd", 1, "CMD"},
    {"backend-timeout", 0, "SECONDS"},
    {NULL, 0, NULL},
};

const lh_backend_i lh_backend_exec = {
    .name = "exec",
    .summary = "a child process speaking JSON lines (lorahub-backend(7))",
    .keys = exec_keys,
    .open = exec_open,
    .score = exec_score,
    .generate = exec_generate,
    .describe = exec_describe,
    .close = exec_close,
};
