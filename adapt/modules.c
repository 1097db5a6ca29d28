/* adapt/modules.c - the modules a search weighs: discovery in a directory
 * or from a list, the seeded draw of --pick, loading (see modules.h). */
#include "modules.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/fsutil.h"
#include "lib/gguf.h"
#include "lib/strbuf.h"
#include "adapt/optim/rng.h"

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void lh_module_set_free(lh_module_set *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        lh_adapter_free(s->mods[i]);
    free(s->mods);
    free(s);
}

/* Choose which of paths[0..n) to load: all, or pick drawn with the seed.
 * Returns a malloc'd index array [*n_out]. */
static size_t *draw(size_t n, int pick, uint64_t seed, size_t *n_out)
{
    size_t *idx = malloc((n ? n : 1) * sizeof *idx);
    if (!idx)
        return NULL;
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    size_t k = n;
    if (pick > 0 && (size_t)pick < n) {
        lh_rng rng;
        lh_rng_seed(&rng, seed);
        k = (size_t)pick;
        for (size_t i = 0; i < k; i++) {
            size_t j = i + (size_t)(lh_rng_uniform(&rng) * (double)(n - i));
            if (j >= n)
                j = n - 1;
            size_t t = idx[i];
            idx[i] = idx[j];
            idx[j] = t;
        }
    }
    *n_out = k;
    return idx;
}

static lh_status load_set(char **paths, size_t n, int pick, uint64_t seed, int sort_drawn,
                          const lh_gguf_arch *base, lh_module_set **out, lh_error *err)
{
    size_t k;
    size_t *idx = draw(n, pick, seed, &k);
    if (!idx)
        return lh_error_set(err, LH_ERR_NOMEM, "modules: out of memory");
    if (sort_drawn || k < n) {
        /* Sorting indices of a name-sorted list sorts by name. For a list,
         * drawn modules are put back in list order. */
        for (size_t i = 1; i < k; i++)
            for (size_t j = i; j > 0 && idx[j - 1] > idx[j]; j--) {
                size_t t = idx[j];
                idx[j] = idx[j - 1];
                idx[j - 1] = t;
            }
    }
    lh_module_set *s = calloc(1, sizeof *s);
    if (!s || !(s->mods = calloc(k ? k : 1, sizeof *s->mods))) {
        free(s);
        free(idx);
        return lh_error_set(err, LH_ERR_NOMEM, "modules: out of memory");
    }
    s->n_available = n;
    for (size_t i = 0; i < k; i++) {
        lh_status st = lh_gguf_load_module(paths[idx[i]], base, &s->mods[s->n], err);
        if (st != LH_OK) {
            free(idx);
            lh_module_set_free(s);
            return st;
        }
        s->n++;
    }
    /* The report maps module name -> weight, so names must be distinct. */
    for (size_t i = 0; i < s->n; i++)
        for (size_t j = i + 1; j < s->n; j++)
            if (s->mods[i]->name && s->mods[j]->name && !strcmp(s->mods[i]->name, s->mods[j]->name)) {
                lh_status st = lh_error_set(err, LH_ERR_ARG, "two modules are named '%s': '%s' and '%s'",
                                            s->mods[i]->name, paths[idx[i]], paths[idx[j]]);
                free(idx);
                lh_module_set_free(s);
                return st;
            }
    free(idx);
    *out = s;
    return LH_OK;
}

static lh_status from_dir(const char *dir, int pick, uint64_t seed, const lh_gguf_arch *base,
                          lh_module_set **out, lh_error *err)
{
    *out = NULL;
    DIR *d = opendir(dir);
    if (!d)
        return lh_error_errno(err, errno == ENOENT ? LH_ERR_NOT_FOUND : LH_ERR_IO, errno,
                              "cannot open module directory '%s'", dir);
    char **paths = NULL;
    size_t n = 0, cap = 0;
    lh_status st = LH_OK;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char *p = lh_path_join(dir, e->d_name);
        if (!p) {
            st = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", dir);
            break;
        }
        int take = 0;
        if (lh_is_dir(p)) {
            char *cfg = lh_path_join(p, "adapter_config.json");
            take = cfg && lh_path_exists(cfg);
            free(cfg);
        } else if (lh_str_ends_with(e->d_name, ".safetensors") ||
                   lh_str_ends_with(e->d_name, ".gguf")) {
            take = 1;
        }
        if (!take) {
            free(p);
            continue;
        }
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 32;
            char **np = realloc(paths, nc * sizeof *np);
            if (!np) {
                free(p);
                st = lh_error_set(err, LH_ERR_NOMEM, "%s: out of memory", dir);
                break;
            }
            paths = np;
            cap = nc;
        }
        paths[n++] = p;
    }
    closedir(d);
    if (st == LH_OK && n == 0)
        st = lh_error_set(err, LH_ERR_NOT_FOUND,
                          "'%s' holds no modules (PEFT directories, .safetensors or .gguf "
                          "files)", dir);
    if (st == LH_OK) {
        qsort(paths, n, sizeof *paths, cmp_str);
        st = load_set(paths, n, pick, seed, 1, base, out, err);
    }
    for (size_t i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
    return st;
}

lh_status lh_modules_from_dir(const char *dir, int pick, uint64_t seed, lh_module_set **out,
                              lh_error *err)
{
    return from_dir(dir, pick, seed, NULL, out, err);
}

lh_status lh_modules_from_list_base(const char *const *paths, size_t n, int pick, uint64_t seed,
                                    const lh_gguf_arch *base, lh_module_set **out, lh_error *err)
{
    *out = NULL;
    if (n == 0)
        return lh_error_set(err, LH_ERR_ARG, "the module list is empty");
    return load_set((char **)paths, n, pick, seed, 0, base, out, err);
}

lh_status lh_modules_from_list(const char *const *paths, size_t n, int pick, uint64_t seed,
                               lh_module_set **out, lh_error *err)
{
    return lh_modules_from_list_base(paths, n, pick, seed, NULL, out, err);
}

static char *resolve(const char *p, const char *base_dir)
{
    if (!base_dir || p[0] == '/' || !strcmp(p, "-"))
        return strdup(p);
    return lh_path_join(base_dir, p);
}

static char *dir_of(const char *path)
{
    char *dir = strdup(path);
    char *slash = dir ? strrchr(dir, '/') : NULL;
    if (slash)
        *slash = '\0';
    else if (dir)
        strcpy(dir, ".");
    return dir;
}

/* Split src on sep into trimmed items resolved against dir; skip empty
 * items, and '#' comments when comments is set. */
static lh_status split_paths(const char *src, const char *sep, int comments, const char *dir,
                             char ***out, size_t *n_out, lh_error *err)
{
    char **list = NULL;
    size_t n = 0, cap = 0;
    lh_status st = LH_OK;
    for (const char *p = src; *p && st == LH_OK;) {
        size_t len = strcspn(p, sep);
        char *item = strndup(p, len);
        p += len;
        if (*p)
            p++;
        if (!item)
            return lh_error_set(err, LH_ERR_NOMEM, "modules: out of memory");
        char *s = item, *e = item + strlen(item);
        while (*s == ' ' || *s == '\t' || *s == '\r')
            s++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
            *--e = '\0';
        if (*s && !(comments && *s == '#')) {
            if (n == cap) {
                size_t nc = cap ? cap * 2 : 16;
                char **nl = realloc(list, nc * sizeof *nl);
                if (nl) {
                    list = nl;
                    cap = nc;
                }
            }
            char *r = n < cap ? resolve(s, dir) : NULL;
            if (r)
                list[n++] = r;
            else
                st = lh_error_set(err, LH_ERR_NOMEM, "modules: out of memory");
        }
        free(item);
    }
    *out = list;
    *n_out = n;
    return st;
}

/* "a,b,c" or a list file into paths [*n]. */
static lh_status list_paths(const char *spec, const char *base_dir, char ***out, size_t *n,
                            lh_error *err)
{
    *out = NULL;
    *n = 0;
    if (strchr(spec, ','))
        return split_paths(spec, ",", 0, base_dir, out, n, err);
    char *path = resolve(spec, base_dir);
    char *text = NULL, *list_dir = path ? dir_of(path) : NULL;
    size_t len;
    lh_status st = list_dir ? lh_read_file(path, &text, &len, err)
                            : lh_error_set(err, LH_ERR_NOMEM, "modules: out of memory");
    if (st == LH_OK)
        st = split_paths(text, "\n", 1, list_dir, out, n, err);
    free(text);
    free(list_dir);
    free(path);
    return st;
}

lh_status lh_modules_from_spec_base(const char *spec, const char *base_dir, int pick,
                                    uint64_t seed, const lh_gguf_arch *base, lh_module_set **out,
                                    lh_error *err)
{
    *out = NULL;
    char *p = resolve(spec, base_dir);
    if (!p)
        return lh_error_set(err, LH_ERR_NOMEM, "modules: out of memory");
    lh_status st;
    if (lh_is_dir(p)) {
        st = from_dir(p, pick, seed, base, out, err);
    } else if (!strchr(spec, ',') &&
               (lh_str_ends_with(p, ".safetensors") || lh_str_ends_with(p, ".bin") ||
                lh_str_ends_with(p, ".gguf"))) {
        const char *one[1] = {p};
        st = lh_modules_from_list_base(one, 1, pick, seed, base, out, err);
    } else {
        char **list;
        size_t n;
        st = list_paths(spec, base_dir, &list, &n, err);
        if (st == LH_OK && n == 0)
            st = lh_error_set(err, LH_ERR_ARG, "the module list '%s' names no modules", spec);
        if (st == LH_OK)
            st = lh_modules_from_list_base((const char *const *)list, n, pick, seed, base, out,
                                           err);
        for (size_t i = 0; i < n; i++)
            free(list[i]);
        free(list);
    }
    free(p);
    return st;
}

lh_status lh_modules_from_spec(const char *spec, const char *base_dir, int pick, uint64_t seed,
                               lh_module_set **out, lh_error *err)
{
    return lh_modules_from_spec_base(spec, base_dir, pick, seed, NULL, out, err);
}
