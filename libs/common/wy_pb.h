/* wy_pb — checks on encoded protobuf messages that protobuf-c does not make.
 *
 * protobuf-c decodes a `string` field into a NUL-terminated C string, so a string with an
 * embedded NUL byte ("token\0junk") decodes to its prefix and every reader (strlen) sees
 * only "token": one party may act on bytes another refused. Wyvern treats such a message
 * as malformed everywhere it decodes untrusted protobuf (the gRPC server, lobby's client
 * frames), so every service reads a string the same way: all of its bytes, or not at all.
 * Thread-safe (no state). */
#ifndef WY_PB_H
#define WY_PB_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* True when buf[0..len) is a well-formed encoding whose `string` fields, at any depth of
 * nested messages of desc (at most 32 levels), contain no NUL byte. False for a NUL in a
 * string, a malformed encoding, groups, or nesting deeper than 32. Call it on bytes that
 * protobuf_c_message_unpack accepted (it does not check everything unpack does). */
bool wy_pb_strings_ok(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len);

#endif
