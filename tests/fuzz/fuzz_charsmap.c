/* tests/fuzz/fuzz_charsmap.c - libFuzzer target for sentencepiece's
 * precompiled_charsmap reader (model/tokenizer/charsmap.c), the untrusted
 * table inside T5-style tokenizer.json files.
 *
 * Input: a 1-byte text length, the text (made valid UTF-8), then the raw
 * table. Oracle beyond "no crash": a table that loads normalizes the text,
 * and a few fixed ones, into valid UTF-8 (later stages rely on it). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/tokenizer/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void b64(const uint8_t *b, size_t n, lh_sb *out)
{
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)b[i] << 16 | (i + 1 < n ? (uint32_t)b[i + 1] << 8 : 0) | (i + 2 < n ? b[i + 2] : 0);
        char q[4] = {A[v >> 18], A[(v >> 12) & 63], i + 1 < n ? A[(v >> 6) & 63] : '=', i + 2 < n ? A[v & 63] : '='};
        lh_sb_append_n(out, q, 4);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    size_t tl = data[0];
    if (tl > size - 1) tl = size - 1;
    lh_sb text, enc, out;
    lh_sb_init(&text); lh_sb_init(&enc); lh_sb_init(&out);
    tk_utf8_lossy(&text, data + 1, tl);
    b64(data + 1 + tl, size - 1 - tl, &enc);
    struct lh_tokenizer t;
    memset(&t, 0, sizeof t);
    t.path = "fuzz.json";
    tk_charsmap *m = NULL;
    lh_error err = {0};
    if (tk_charsmap_parse(&t, enc.buf ? enc.buf : "", enc.len, &m, &err) == LH_OK) {
        static const char *const fixed[] = {"Hello, world!", "\xEF\xBC\xA8\xEF\xBD\x85 \xEF\xAC\x81", "a\tb\r\nc",
                                            "\xF0\x9F\x98\x80\xCC\x81"};
        for (size_t k = 0; k < 5; k++) {
            const char *s = k < 4 ? fixed[k] : (text.buf ? text.buf : "");
            size_t n = k < 4 ? strlen(s) : text.len, bad;
            out.len = 0;
            tk_charsmap_normalize(m, s, n, &out);
            if (out.len && !tk_utf8_valid(out.buf, out.len, &bad)) abort();
        }
        tk_charsmap_free(m);
    } else if (!strstr(err.msg, "fuzz.json")) {
        abort(); /* a refusal names the file */
    }
    lh_sb_release(&text); lh_sb_release(&enc); lh_sb_release(&out);
    return 0;
}
