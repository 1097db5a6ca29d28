/* lib/torchzip.h - torch.save zip checkpoints (adapter_model.bin,
 * pytorch_model.bin), read without running any code.
 *
 * A torch.save file (torch >= 1.6) is a zip archive of stored entries under
 * one top folder: <top>/data.pkl (a pickle of the state dict),
 * <top>/data/<key> (the raw little-endian bytes of each storage),
 * <top>/byteorder, <top>/version. The reader:
 *   - zip: finds the end of central directory (and the Zip64 record),
 *     walks the central directory, refuses compressed or encrypted entries
 *     by name, takes each entry's data offset from its local header, and
 *     checks every size and offset against the file;
 *   - pickle: a stack machine for the opcodes torch writes (protocol 2) that
 *     executes nothing: GLOBAL resolves only an allow-list (OrderedDict,
 *     _rebuild_tensor_v2, _rebuild_parameter, _rebuild_from_type_v2, the
 *     torch.*Storage classes) to tags, REDUCE builds a node from a tag, and
 *     any other global or opcode is refused by name;
 *   - tensors: a persistent id names a storage (data/<key>, its dtype and
 *     element count, checked against the entry's size); each tensor is a
 *     contiguous view of one storage (strides checked, offset + numel within
 *     the storage), so shared storages and views with offsets work.
 * The pre-1.6 legacy format (a bare pickle stream) is refused with a message
 * saying how to re-save the file.
 *
 * The result is an lh_safetensors (lib/safetensors.h) whose tensors point
 * into the file's mapping: lh_st_find, lh_st_read_f32, lh_st_f32_view and
 * lh_st_free work on it unchanged. Its begin/end are absolute file offsets
 * of each tensor's bytes (end - begin is the byte size, as in safetensors);
 * tensors of a shared storage may overlap. It has no metadata. */
#ifndef LH_TORCHZIP_H
#define LH_TORCHZIP_H

#include <stddef.h>

#include "safetensors.h"
#include "status.h"

/* Open and validate a torch.save zip file (mmap, read-only). */
lh_status lh_torch_open(const char *path, lh_safetensors **out, lh_error *err);

/* Validate an in-memory torch zip (not copied: it must outlive the result).
 * origin names it in error messages. Used by the tests and the fuzzer. */
lh_status lh_torch_parse(const void *buf, size_t size, const char *origin,
                         lh_safetensors **out, lh_error *err);

/* What the first bytes of a file say it is. */
typedef enum lh_tensor_file_kind {
    LH_TENSORS_SAFETENSORS, /* anything else: left to the safetensors reader */
    LH_TENSORS_TORCH_ZIP,   /* "PK\3\4" */
    LH_TENSORS_TORCH_LEGACY /* a pickle starting with torch's legacy magic number */
} lh_tensor_file_kind;

lh_tensor_file_kind lh_tensor_file_sniff(const void *head, size_t n);

/* The one-line switch for loaders: a safetensors file or a torch zip,
 * recognised by its first bytes (never by its name), opened into the same
 * lh_safetensors. A legacy torch file is refused with a clear message. */
lh_status lh_tensors_open(const char *path, lh_safetensors **out, lh_error *err);

#endif
