/* Unit tests for wy_pb_strings_ok: a string with an embedded NUL, at any depth, makes the
 * message malformed; everything else protobuf-c accepts stays accepted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "wy_pb.h"
#include "lobby.pb-c.h"

/* Encodes ClientMessage{request_id 7, hello{access_token = tok[0..toklen), client_version
 * "t/1"}} by hand, so the token may hold any bytes. Returns the length. */
static size_t encode_hello(uint8_t *out, const char *tok, size_t toklen)
{
    uint8_t hello[256];
    size_t h = 0;
    hello[h++] = 0x0a; /* field 1, length-delimited */
    hello[h++] = (uint8_t)toklen;
    memcpy(hello + h, tok, toklen);
    h += toklen;
    hello[h++] = 0x12; /* field 2 */
    hello[h++] = 3;
    memcpy(hello + h, "t/1", 3);
    h += 3;
    size_t n = 0;
    out[n++] = 0x08; /* request_id = 7 */
    out[n++] = 7;
    out[n++] = 0x52; /* field 10 (hello), length-delimited */
    out[n++] = (uint8_t)h;
    memcpy(out + n, hello, h);
    return n + h;
}

static void test_clean_message_accepted(void **state)
{
    (void)state;
    uint8_t buf[300];
    size_t n = encode_hello(buf, "abc.def.ghi", 11);
    Wyvern__Lobby__ClientMessage *m = wyvern__lobby__client_message__unpack(NULL, n, buf);
    assert_non_null(m);
    assert_string_equal(m->hello->access_token, "abc.def.ghi");
    wyvern__lobby__client_message__free_unpacked(m, NULL);
    assert_true(wy_pb_strings_ok(&wyvern__lobby__client_message__descriptor, buf, n));
    /* The empty message and one packed by protobuf-c itself. */
    assert_true(wy_pb_strings_ok(&wyvern__lobby__client_message__descriptor, NULL, 0));
    Wyvern__Lobby__ClientMessage cm = WYVERN__LOBBY__CLIENT_MESSAGE__INIT;
    Wyvern__Lobby__GetPresence gp = WYVERN__LOBBY__GET_PRESENCE__INIT;
    char *ids[] = {"a", "b"};
    gp.n_account_ids = 2;
    gp.account_ids = ids;
    cm.body_case = WYVERN__LOBBY__CLIENT_MESSAGE__BODY_GET_PRESENCE;
    cm.get_presence = &gp;
    cm.request_id = 300;
    size_t len = wyvern__lobby__client_message__pack(&cm, buf);
    assert_true(wy_pb_strings_ok(&wyvern__lobby__client_message__descriptor, buf, len));
}

/* The lobby bug: protobuf-c decodes "tok\0junk" to "tok"; the check refuses it. */
static void test_nul_in_nested_string_refused(void **state)
{
    (void)state;
    uint8_t buf[300];
    size_t n = encode_hello(buf, "abc.def.ghi\0junk", 16);
    Wyvern__Lobby__ClientMessage *m = wyvern__lobby__client_message__unpack(NULL, n, buf);
    assert_non_null(m);                                   /* protobuf-c alone accepts it ... */
    assert_int_equal(strlen(m->hello->access_token), 11); /* ... and truncates */
    wyvern__lobby__client_message__free_unpacked(m, NULL);
    assert_false(wy_pb_strings_ok(&wyvern__lobby__client_message__descriptor, buf, n));
    /* A NUL as the first or last byte too. */
    n = encode_hello(buf, "\0abc", 4);
    assert_false(wy_pb_strings_ok(&wyvern__lobby__client_message__descriptor, buf, n));
    n = encode_hello(buf, "abc\0", 4);
    assert_false(wy_pb_strings_ok(&wyvern__lobby__client_message__descriptor, buf, n));
}

/* Bytes fields and unknown fields may hold NUL: only `string` fields are checked. */
static void test_nul_outside_strings_accepted(void **state)
{
    (void)state;
    /* Unknown field 99 (length-delimited) with a NUL, then request_id. */
    const uint8_t buf[] = {0x9a, 0x06, 3, 'a', 0, 'b', 0x08, 1};
    assert_true(wy_pb_strings_ok(&wyvern__lobby__client_message__descriptor, buf, sizeof buf));
}

static void test_malformed_refused(void **state)
{
    (void)state;
    const ProtobufCMessageDescriptor *d = &wyvern__lobby__client_message__descriptor;
    const uint8_t truncated_len[] = {0x52, 10, 0x0a}; /* hello says 10 bytes, has 1 */
    const uint8_t truncated_varint[] = {0x08, 0x80};  /* varint never ends */
    const uint8_t group[] = {0x0b, 0x0c};             /* start/end group */
    const uint8_t fixed64_short[] = {0x09, 1, 2, 3};  /* 64-bit with 3 bytes */
    assert_false(wy_pb_strings_ok(d, truncated_len, sizeof truncated_len));
    assert_false(wy_pb_strings_ok(d, truncated_varint, sizeof truncated_varint));
    assert_false(wy_pb_strings_ok(d, group, sizeof group));
    assert_false(wy_pb_strings_ok(d, fixed64_short, sizeof fixed64_short));
    assert_false(wy_pb_strings_ok(NULL, group, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clean_message_accepted),
        cmocka_unit_test(test_nul_in_nested_string_refused),
        cmocka_unit_test(test_nul_outside_strings_accepted),
        cmocka_unit_test(test_malformed_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
