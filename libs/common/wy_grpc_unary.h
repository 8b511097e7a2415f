/* wy_grpc_unary — the client side of a unary call as one gRPC C core batch, written once
 * for wy_grpc's channels and for the raw C core ceiling of `make bench`
 * (tools/wy-corebench.c), which must run the same batch without wy_grpc around it.
 * Internal to libs/common and its benches: it includes the C core headers that
 * wy_grpc.h keeps out of the public API. */
#ifndef WY_GRPC_UNARY_H
#define WY_GRPC_UNARY_H

#include <grpc/grpc.h>
#include <string.h>

/* Fills ops[0..5]: send the initial metadata md[0..n_md) (md may be NULL when n_md is 0),
 * the request send and the half-close; receive the initial metadata into *init_md, the
 * response into *recv (NULL when the server sent none), the trailing metadata, the status
 * and its details. Every pointer must stay valid until the batch completes; the caller
 * owns all of them. Returns the number of ops (6). */
static inline size_t wy_grpc_unary_ops(grpc_op ops[6], grpc_metadata *md, size_t n_md,
                                       grpc_byte_buffer *send, grpc_metadata_array *init_md,
                                       grpc_byte_buffer **recv, grpc_metadata_array *trailing_md,
                                       grpc_status_code *status, grpc_slice *details)
{
    memset(ops, 0, 6 * sizeof *ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = n_md;
    ops[0].data.send_initial_metadata.metadata = md;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = init_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = trailing_md;
    ops[5].data.recv_status_on_client.status = status;
    ops[5].data.recv_status_on_client.status_details = details;
    return 6;
}

#endif
