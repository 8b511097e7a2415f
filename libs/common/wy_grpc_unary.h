/* wy_grpc_unary — the client side of a unary call as one gRPC C core batch, written once
 * for wy_grpc's channels and for the raw C core ceiling of `make bench`
 * (tools/wy-corebench.c), which must run the same batch without wy_grpc around it.
 * Internal to libs/common and its benches: it includes the C core headers that
 * wy_grpc.h keeps out of the public API. */
#ifndef WY_GRPC_UNARY_H
#define WY_GRPC_UNARY_H

#include <dlfcn.h>
#include <grpc/grpc.h>
#include <string.h>

/* Turn off abseil's mutex deadlock detection, as release builds of abseil have it. The
 * distribution's abseil is built without NDEBUG, so every absl::Mutex lock inside gRPC
 * (several per call and completion) also updated a process-wide lock-order graph under a
 * global lock: 5-9 % of each end's CPU per call in `perf` (GraphCycles::GetId,
 * Mutex::Lock), and a lock the CQ thread and the loop contend on. Looked up at run time
 * (the C++ symbol with Debian's and with upstream's inline namespace), so it does nothing
 * where the symbol is absent. Call before grpc_init; the raw C core ceiling of `make bench`
 * calls it too, so both sides of that comparison run the same library code. */
static inline void wy_grpc_absl_fast_mutex(void)
{
    static const char *const names[] = {
        "_ZN4absl7debian329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE",
        "_ZN4absl29SetMutexDeadlockDetectionModeENS_15OnDeadlockCycleE",
    };
    void *self = dlopen(NULL, RTLD_LAZY);
    if (!self)
        return;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        void (*set_mode)(int);                         /* absl::OnDeadlockCycle: kIgnore = 0 */
        *(void **)(&set_mode) = dlsym(self, names[i]); /* POSIX's way to a function pointer */
        if (set_mode) {
            set_mode(0);
            break;
        }
    }
    dlclose(self);
}

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
