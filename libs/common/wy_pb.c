/* wy_pb — checks on encoded protobuf messages (wy_pb.h). */
#include "wy_pb.h"

#include <string.h>

#define MAX_DEPTH 32

/* Reads a varint at *p (< end); false when truncated or over 10 bytes. */
static bool varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (*p >= end)
            return false;
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return true;
        }
    }
    return false;
}

static bool check(const ProtobufCMessageDescriptor *desc, const uint8_t *p, const uint8_t *end,
                  int depth)
{
    if (depth > MAX_DEPTH)
        return false;
    while (p < end) {
        uint64_t key, n;
        if (!varint(&p, end, &key))
            return false;
        switch (key & 7) {
        case 0: /* varint */
            if (!varint(&p, end, &n))
                return false;
            break;
        case 1: /* 64-bit */
            if (end - p < 8)
                return false;
            p += 8;
            break;
        case 5: /* 32-bit */
            if (end - p < 4)
                return false;
            p += 4;
            break;
        case 2: { /* length-delimited */
            if (!varint(&p, end, &n) || n > (uint64_t)(end - p))
                return false;
            const ProtobufCFieldDescriptor *f =
                key >> 3 <= UINT32_MAX
                    ? protobuf_c_message_descriptor_get_field(desc, (unsigned)(key >> 3))
                    : NULL;
            if (f && f->type == PROTOBUF_C_TYPE_STRING && memchr(p, 0, (size_t)n))
                return false;
            if (f && f->type == PROTOBUF_C_TYPE_MESSAGE &&
                !check(f->descriptor, p, p + n, depth + 1))
                return false;
            p += n;
            break;
        }
        default: /* groups (3, 4) are not used by proto3; 6, 7 do not exist */
            return false;
        }
    }
    return true;
}

bool wy_pb_strings_ok(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len)
{
    if (!desc || (!buf && len))
        return false;
    return check(desc, buf, buf + len, 0);
}
