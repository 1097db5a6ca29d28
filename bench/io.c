/* bench/io.c - safetensors read throughput against this machine's limits.
 *
 * Writes a ~1 GiB F32 file and a BF16 file of the same shapes into a temp
 * dir ($TMPDIR or /tmp), then measures in one run:
 *   memcpy      - RAM-to-RAM copy bandwidth (the ceiling for any conversion)
 *   read()      - reading the F32 file with read(), page cache warm: into a
 *                 4 MiB buffer that stays in cache (the ceiling for getting
 *                 file bytes into a process), and into one tensor-sized
 *                 16 MiB buffer (what a loader does: the bytes go to RAM)
 *   st F32 sum  - lh_st_open + summing every tensor through the zero-copy
 *                 F32 view (mmap: no copy, page faults instead)
 *   st F32 read - lh_st_open + lh_st_read_f32 of every tensor into one
 *                 tensor-sized buffer (pread, no conversion)
 *   st BF16     - the same on the BF16 file (pread in chunks + conversion)
 * Each figure is the best of several repetitions (the machine is shared).
 * Usage: io [MiB]   (default 1024: size of the F32 file) */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench_util.h"
#include "lib/fsutil.h"
#include "lib/safetensors.h"

#define DIM 2048 /* tensors are [DIM, DIM]: 16 MiB in F32 */
#define REPS 3

static volatile double sink;

/* Sum with independent accumulators so the loop is memory-bound, not bound
 * by the latency of one dependent add chain. */
static double sum_f32(const float *x, size_t n)
{
    float acc[16] = { 0 };
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 16; k++)
            acc[k] += x[i + k];
    double s = 0;
    for (; i < n; i++)
        s += x[i];
    for (int k = 0; k < 16; k++)
        s += acc[k];
    return s;
}

static double bench_memcpy(size_t bytes)
{
    char *a = malloc(bytes), *b = malloc(bytes);
    if (!a || !b) {
        fprintf(stderr, "io: out of memory\n");
        exit(1);
    }
    memset(a, 1, bytes);
    memset(b, 2, bytes); /* fault both in before timing */
    double best = 1e9;
    for (int r = 0; r < REPS; r++) {
        double t = bench_now();
        memcpy(b, a, bytes);
        t = bench_now() - t;
        sink += b[bytes / 2 + r];
        if (t < best)
            best = t;
    }
    free(a);
    free(b);
    return bytes / best / 1e9;
}

/* read() the whole file through a buffer of cap bytes. */
static double bench_read(const char *path, size_t cap, size_t *file_bytes)
{
    char *buf = malloc(cap);
    memset(buf, 0, cap);
    double best = 1e9;
    for (int r = 0; r < REPS + 1; r++) { /* the first pass warms the cache */
        int fd = open(path, O_RDONLY);
        if (fd < 0) {
            perror(path);
            exit(1);
        }
        size_t total = 0;
        double t = bench_now();
        for (;;) {
            ssize_t n = read(fd, buf, cap);
            if (n <= 0)
                break;
            sink += buf[n - 1];
            total += (size_t)n;
        }
        t = bench_now() - t;
        close(fd);
        *file_bytes = total;
        if (r > 0 && t < best)
            best = t;
    }
    free(buf);
    return *file_bytes / best / 1e9;
}

static double bench_st_f32(const char *path, size_t file_bytes)
{
    double best = 1e9;
    lh_error err = { 0 };
    for (int r = 0; r < REPS; r++) {
        double t = bench_now();
        lh_safetensors *st;
        if (lh_st_open(path, &st, &err))
            bench_die("io", "open", &err);
        double s = 0;
        for (size_t i = 0; i < st->n_tensors; i++) {
            const float *v = lh_st_f32_view(&st->tensors[i]);
            if (!v) {
                fprintf(stderr, "io: no zero-copy view of '%s'\n", st->tensors[i].name);
                exit(1);
            }
            s += sum_f32(v, (size_t)st->tensors[i].numel);
        }
        lh_st_free(st);
        t = bench_now() - t;
        sink += s;
        if (t < best)
            best = t;
    }
    return file_bytes / best / 1e9;
}

/* Returns GB/s of F32 output written. */
static double bench_st_read(const char *path, size_t *out_bytes)
{
    double best = 1e9;
    lh_error err = { 0 };
    float *dst = malloc((size_t)DIM * DIM * sizeof *dst); /* [DIM, DIM] */
    memset(dst, 0, (size_t)DIM * DIM * sizeof *dst);
    for (int r = 0; r < REPS + 1; r++) { /* the first pass warms the cache */
        double t = bench_now();
        lh_safetensors *st;
        if (lh_st_open(path, &st, &err))
            bench_die("io", "open", &err);
        size_t total = 0;
        for (size_t i = 0; i < st->n_tensors; i++) {
            if (lh_st_read_f32(st, &st->tensors[i], dst, &err))
                bench_die("io", "read", &err);
            sink += dst[i];
            total += (size_t)st->tensors[i].numel * sizeof(float);
        }
        lh_st_free(st);
        t = bench_now() - t;
        *out_bytes = total;
        if (r > 0 && t < best)
            best = t;
    }
    free(dst);
    return *out_bytes / best / 1e9;
}

static char *write_file(const char *dir, const char *name, lh_dtype dt, int n_tensors,
                        const void *data)
{
    char *path = lh_path_join(dir, name);
    lh_st_entry *e = calloc((size_t)n_tensors, sizeof *e);
    char (*names)[32] = calloc((size_t)n_tensors, sizeof *names);
    for (int i = 0; i < n_tensors; i++) {
        snprintf(names[i], sizeof names[i], "model.layers.%d.weight", i);
        e[i] = (lh_st_entry){ .name = names[i], .dtype = dt, .ndim = 2, .shape = { DIM, DIM },
                              .data = data };
    }
    const char *mk[] = { "format" }, *mv[] = { "pt" };
    lh_error err = { 0 };
    if (lh_st_write(path, e, (size_t)n_tensors, mk, mv, 1, &err))
        bench_die("io", "write", &err);
    free(e);
    free(names);
    return path;
}

int main(int argc, char **argv)
{
    long mib = argc > 1 ? atol(argv[1]) : 1024;
    int n_tensors = (int)(mib / 16);
    if (n_tensors < 1)
        n_tensors = 1;
    char dir[4096];
    bench_tempdir(dir, sizeof dir, "io");
    size_t n = (size_t)DIM * DIM;
    float *f = malloc(n * sizeof *f);   /* [DIM, DIM] */
    uint16_t *h = malloc(n * sizeof *h); /* [DIM, DIM] */
    uint64_t s = 88172645463325252ull;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        f[i] = (float)((double)(s >> 11) / 9007199254740992.0 - 0.5);
    }
    lh_convert_from_f32(LH_BF16, f, h, n);
    double t = bench_now();
    char *pf = write_file(dir, "f32.safetensors", LH_F32, n_tensors, f);
    char *pb = write_file(dir, "bf16.safetensors", LH_BF16, n_tensors, h);
    t = bench_now() - t;
    free(f);
    free(h);

    size_t file_bytes = 0, bf16_out = 0;
    double mc = bench_memcpy((size_t)256 << 20);
    double rd = bench_read(pf, (size_t)4 << 20, &file_bytes);
    double rt = bench_read(pf, (size_t)DIM * DIM * sizeof(float), &file_bytes);
    double sf = bench_st_f32(pf, file_bytes);
    size_t f32_out = 0;
    double sr = bench_st_read(pf, &f32_out);
    double sb = bench_st_read(pb, &bf16_out);
    int64_t bf16_bytes = lh_file_size(pb);

    printf("io: %d tensors [%d,%d]: F32 file %.0f MiB, BF16 file %.0f MiB (written at %.2f GB/s incl. fsync)\n",
           n_tensors, DIM, DIM, file_bytes / 1048576.0, bf16_bytes / 1048576.0,
           (file_bytes + (double)bf16_bytes) / t / 1e9);
    printf("io: memcpy 256 MiB               %6.2f GB/s\n", mc);
    printf("io: read() 4 MiB buffer, warm    %6.2f GB/s  = %.2f x memcpy\n", rd, rd / mc);
    printf("io: read() 16 MiB buffer, warm   %6.2f GB/s  = %.2f x memcpy   (\"read16\")\n", rt,
           rt / mc);
    printf("io: lh_st_open + F32 view sum    %6.2f GB/s  = %.2f x read16, %.2f x memcpy\n", sf,
           sf / rt, sf / mc);
    printf("io: lh_st_open + F32 read_f32    %6.2f GB/s  = %.2f x read16, %.2f x memcpy\n", sr,
           sr / rt, sr / mc);
    printf("io: lh_st_open + BF16 read_f32   %6.2f GB/s of F32 out (%.2f GB/s in) = %.2f x read16, %.2f x memcpy\n",
           sb, sb / 2, sb / rt, sb / mc);
    unlink(pf);
    unlink(pb);
    lh_rmtree(dir);
    free(pf);
    free(pb);
    return 0;
}
