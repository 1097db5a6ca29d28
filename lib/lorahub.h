/* lib/lorahub.h - the umbrella header of liblorahub.
 *
 * Stages: lib (formats, the in-memory adapter) -> compose (merge methods)
 * -> adapt (optimizers, search driver, backends). cmd/ is the CLI. */
#ifndef LORAHUB_H
#define LORAHUB_H

#include "status.h"
#include "dtype.h"
#include "strbuf.h"
#include "json.h"
#include "safetensors.h"
#include "fsutil.h"
#include "adapter.h"
#include "peft.h"
#include "mos.h"
#include "examples.h"

#endif
