/* examples/embed.c - liblorahub from a program of your own: compose two
 * modules half and half, then score the base model, the first module and
 * the composition on few-shot examples with the native backend.
 *
 *   cc embed.c $(pkg-config --cflags --libs lorahub) -o embed
 *   ./embed [BASE_DIR MODULE1 MODULE2 EXAMPLES]      (run from the repository) */
#include <lorahub.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    const char *base = "examples/zoo/base", *examples = "examples/zoo/tasks/add1/fewshot.jsonl";
    const char *paths[2] = {"examples/zoo/modules/add1", "examples/zoo/modules/add3"};
    if (argc == 5) {
        base = argv[1], paths[0] = argv[2], paths[1] = argv[3], examples = argv[4];
    } else if (argc != 1) {
        fprintf(stderr, "usage: embed [BASE_DIR MODULE1 MODULE2 EXAMPLES]\n");
        return 2;
    }
    lh_error err = {0};
    lh_adapter *mods[2] = {NULL, NULL}, *composed = NULL;
    lh_examples *ex = NULL;
    lh_backend *backend = NULL;
    const double weights[2] = {0.5, 0.5};
    const char *settings[] = {"base", base, NULL};
    int rc = 1;

    if (lh_adapter_load(paths[0], &mods[0], &err) || lh_adapter_load(paths[1], &mods[1], &err) ||
        lh_adapter_compose("cat", (const lh_adapter *const *)mods, 2, weights, &composed, &err) ||
        lh_examples_load(examples, &ex, &err) ||
        lh_backend_new("native", settings, &backend, &err))
        goto out;
    const lh_adapter *cands[3] = {NULL, mods[0], composed}; /* NULL: the base model alone */
    double loss[3];
    /* score takes a whole population in one call; one candidate per call
     * here, as `lorahub eval` does, so tests/embed/run.sh can compare the
     * losses digit for digit (a batch may round its sums differently). */
    for (int i = 0; i < 3; i++)
        if (lh_backend_score(backend, &cands[i], 1, ex, &loss[i], &err))
            goto out;
    printf("liblorahub %s, %zu examples\n", lh_version_string(), lh_examples_count(ex));
    printf("base      loss %.6f\n", loss[0]);
    printf("%-9s loss %.6f\n", lh_adapter_name(mods[0]), loss[1]);
    printf("cat       loss %.6f  (0.5 %s + 0.5 %s, rank %d)\n", loss[2],
           lh_adapter_name(mods[0]), lh_adapter_name(mods[1]), lh_adapter_max_rank(composed));
    rc = 0;
out:
    if (rc)
        fprintf(stderr, "embed: %s\n", lh_error_message(&err));
    lh_backend_close(backend);
    lh_examples_free(ex);
    lh_adapter_free(composed);
    lh_adapter_free(mods[1]);
    lh_adapter_free(mods[0]);
    return rc;
}
