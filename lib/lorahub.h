/* lib/lorahub.h - INTERNAL: the lib/ headers in one include, for the CLI,
 * the tests and the tools, which use the internals. Never installed; a
 * program outside the tree includes <lorahub.h> (include/lorahub.h), the
 * public API. New code should include the lib/ header it needs. */
#ifndef LH_LIB_LORAHUB_H
#define LH_LIB_LORAHUB_H

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
