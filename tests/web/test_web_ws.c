/* SPDX-License-Identifier: MIT */
/*
 * rtdaq-web's hand-written pieces of the WebSocket handshake: SHA-1 (FIPS 180-4
 * test vectors, including messages that end at and across a block boundary),
 * base64 (RFC 4648 vectors) and the Sec-WebSocket-Accept of RFC 6455's example.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "web_internal.h"

static void hex(const uint8_t d[20], char out[41])
{
    for (int i = 0; i < 20; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void sha1_is(const void *msg, size_t len, const char *want)
{
    uint8_t d[20];
    char h[41];
    web_sha1(msg, len, d);
    hex(d, h);
    cr_assert_str_eq(h, want, "sha1 of %zu bytes", len);
}

Test(web_ws, sha1_matches_the_fips_vectors)
{
    sha1_is("", 0, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    sha1_is("abc", 3, "a9993e364706816aba3e25717850c26c9cd0d89d");
    /* 56 bytes: the length field no longer fits the first block. */
    sha1_is("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56,
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
    /* 112 bytes: two full blocks minus the padding's room. */
    sha1_is("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnop"
            "qrlmnopqrsmnopqrstnopqrstu",
            112, "a49b2446a02c645bf419f995b67091253a04a259");
    size_t n = 1000000;
    char *a = malloc(n);
    cr_assert_not_null(a);
    memset(a, 'a', n);
    sha1_is(a, n, "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
    free(a);
}

Test(web_ws, sha1_of_exactly_one_block_and_of_55_bytes)
{
    char m[64];
    memset(m, 'a', sizeof m);
    sha1_is(m, 64, "0098ba824b5c16427bd7a1122a5a442a25ec644d");
    sha1_is(m, 55, "c1c8bbdc22796e28c0e15163d20899b65621d65a");
}

Test(web_ws, base64_matches_rfc4648)
{
    static const char *const in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const out[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                                      "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        char b[16];
        size_t n = web_base64((const uint8_t *)in[i], strlen(in[i]), b);
        cr_assert_str_eq(b, out[i]);
        cr_assert_eq(n, strlen(out[i]));
    }
}

Test(web_ws, accept_key_is_rfc6455_example)
{
    char acc[29];
    web_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", acc);
    cr_assert_str_eq(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}
