/* adapt/backend/native.h - the native backend's extras beyond the
 * lh_backend_i vtable, for `lorahub eval` and the tests. The ctx that
 * lh_backend_native.open returns is an nm_backend. */
#ifndef LH_NATIVE_H
#define LH_NATIVE_H

#include <stddef.h>
#include "backend.h"
#include "model/llama/llama.h"

extern const lh_backend_i lh_backend_native;

typedef struct nm_backend nm_backend;

void nm_backend_free(nm_backend *b);
const nm_model *nm_backend_model(const nm_backend *b);
/* 1 (default): candidates share the base matmuls; 0: one at a time. */
void nm_backend_set_batched(nm_backend *b, int batched);
/* Number of scored tokens (outputs + EOS) of ex under the backend's options. */
lh_status nm_backend_count_tokens(nm_backend *b, const lh_examples *ex, size_t *n_tokens,
                                  lh_error *err);
#endif
