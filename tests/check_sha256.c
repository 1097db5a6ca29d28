/* tests/check_sha256.c - SHA-256 against the FIPS 180-4 / NIST example vectors. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "lib/sha256.h"

START_TEST(test_abc)
{
    char hex[65];
    lh_sha256_hex("abc", 3, hex);
    ck_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}
END_TEST

START_TEST(test_empty)
{
    char hex[65];
    lh_sha256_hex("", 0, hex);
    ck_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}
END_TEST

START_TEST(test_two_blocks)
{
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    char hex[65];
    lh_sha256_hex(m, strlen(m), hex);
    ck_assert_str_eq(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}
END_TEST

START_TEST(test_896_bits)
{
    const char *m = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
                    "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    char hex[65];
    lh_sha256_hex(m, strlen(m), hex);
    ck_assert_str_eq(hex, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}
END_TEST

/* One million 'a', fed in uneven pieces so the partial-block path is used. */
START_TEST(test_million_a)
{
    char *buf = malloc(1000000);
    ck_assert_ptr_nonnull(buf);
    memset(buf, 'a', 1000000);
    lh_sha256 s;
    uint8_t d[32];
    char hex[65];
    lh_sha256_init(&s);
    size_t off = 0, step = 1;
    while (off < 1000000) {
        size_t n = 1000000 - off < step ? 1000000 - off : step;
        lh_sha256_update(&s, buf + off, n);
        off += n;
        step = step * 3 % 1000 + 1;
    }
    lh_sha256_final(&s, d);
    lh_sha256_to_hex(d, hex);
    ck_assert_str_eq(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(buf);
}
END_TEST

/* Lengths around the padding boundary (55, 56, 63, 64 bytes) must agree
 * between one-shot and byte-by-byte hashing, and differ from each other. */
START_TEST(test_boundaries)
{
    char m[130];
    memset(m, 'x', sizeof m);
    char prev[65] = "";
    for (size_t n = 50; n < 130; n++) {
        char a[65], b[65];
        lh_sha256_hex(m, n, a);
        lh_sha256 s;
        uint8_t d[32];
        lh_sha256_init(&s);
        for (size_t i = 0; i < n; i++)
            lh_sha256_update(&s, m + i, 1);
        lh_sha256_final(&s, d);
        lh_sha256_to_hex(d, b);
        ck_assert_str_eq(a, b);
        ck_assert_str_ne(a, prev);
        memcpy(prev, a, sizeof a);
    }
}
END_TEST

static Suite *sha256_suite(void)
{
    Suite *s = suite_create("sha256");
    TCase *tc = tcase_create("fips180-4");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, test_abc);
    tcase_add_test(tc, test_empty);
    tcase_add_test(tc, test_two_blocks);
    tcase_add_test(tc, test_896_bits);
    tcase_add_test(tc, test_million_a);
    tcase_add_test(tc, test_boundaries);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(sha256_suite());
    srunner_run_all(sr, CK_NORMAL);
    int nf = srunner_ntests_failed(sr);
    srunner_free(sr);
    return nf ? EXIT_FAILURE : EXIT_SUCCESS;
}
