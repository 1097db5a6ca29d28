/* tests/fuzz/fuzz_tokenizer.c - libFuzzer target for tokenizer.json (the
 * model, vocabulary and merges, normalizers, pre-tokenizers with their
 * regexes, decoders, added tokens).
 *
 * Oracle beyond "no crash": every refusal is one line; a tokenizer the
 * loader accepts encodes a few texts (the fuzz input itself among them) to
 * ids inside its vocabulary and decodes them again. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "model/tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void encode_decode(const lh_tokenizer *t, const char *text, int allow_special)
{
    int32_t *ids = NULL;
    size_t n = 0;
    lh_error err = {0};
    if (lh_tokenizer_encode(t, text, allow_special, &ids, &n, &err) != LH_OK) {
        if (!err.msg[0] || strchr(err.msg, '\n'))
            __builtin_trap();
        return;
    }
    int32_t vocab = lh_tokenizer_vocab_size(t);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab)
            __builtin_trap();
    char *back = NULL;
    if (lh_tokenizer_decode(t, ids, n, allow_special, &back, &err) != LH_OK &&
        (!err.msg[0] || strchr(err.msg, '\n')))
        __builtin_trap();
    free(back);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz_tokenizer", 0);
    if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size))
        __builtin_trap();
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    lh_tokenizer *t = NULL;
    lh_error err = {0};
    if (lh_tokenizer_load(path, &t, &err) != LH_OK) {
        if (!err.msg[0] || strchr(err.msg, '\n'))
            __builtin_trap();
        close(fd);
        return 0;
    }
    encode_decode(t, "Hello world, 12 apples! caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac  <s></s>", 1);
    encode_decode(t, " leading  and trailing ", 0);
    /* the input itself as text, up to 256 bytes and its first NUL */
    char text[257];
    size_t n = size < 256 ? size : 256;
    memcpy(text, data, n);
    text[n] = '\0';
    encode_decode(t, text, 1);
    lh_tokenizer_free(t);
    close(fd);
    return 0;
}
