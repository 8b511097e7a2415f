/* Linked into ThreadSanitizer builds only (Makefile: SAN with "thread"): tells
 * TSan about the one synchronisation gRPC C core gives its users, which TSan
 * cannot see because the Debian libgrpc is not instrumented: everything a
 * thread did before handing a tag to gRPC (grpc_call_start_batch,
 * grpc_server_request_call, grpc_server_request_registered_call,
 * grpc_server_shutdown_and_notify) happens before
 * whatever the thread that receives the same tag back from
 * grpc_completion_queue_next does. Without this edge, every hand-off of a
 * call between the loop and the completion-queue thread reads as a race on
 * our own memory.
 *
 * The functions below interpose on libgrpc's (the executable's definitions
 * win at dynamic link), annotate, and call the library's own through
 * dlsym(RTLD_NEXT). Nothing is suppressed: races in our code that do not go
 * through a tag are still reported. */
#include <dlfcn.h>
#include <grpc/grpc.h>
#include <stdio.h>
#include <stdlib.h>

void __tsan_acquire(void *addr);
void __tsan_release(void *addr);

typedef grpc_call_error (*start_batch_fn)(grpc_call *, const grpc_op *, size_t, void *, void *);
typedef grpc_call_error (*request_call_fn)(grpc_server *, grpc_call **, grpc_call_details *,
                                           grpc_metadata_array *, grpc_completion_queue *,
                                           grpc_completion_queue *, void *);
typedef grpc_call_error (*request_registered_fn)(grpc_server *, void *, grpc_call **,
                                                 gpr_timespec *, grpc_metadata_array *,
                                                 grpc_byte_buffer **, grpc_completion_queue *,
                                                 grpc_completion_queue *, void *);
typedef void (*shutdown_fn)(grpc_server *, grpc_completion_queue *, void *);
typedef grpc_event (*next_fn)(grpc_completion_queue *, gpr_timespec, void *);

/* Resolved once before main, so no thread races on them. */
static start_batch_fn real_start_batch;
static request_call_fn real_request_call;
static request_registered_fn real_request_registered;
static shutdown_fn real_shutdown;
static next_fn real_next;

static void *lookup(const char *name)
{
    void *f = dlsym(RTLD_NEXT, name);
    if (!f) {
        fprintf(stderr, "tsan grpc shim: %s not found\n", name);
        abort();
    }
    return f;
}

__attribute__((constructor)) static void resolve(void)
{
    real_start_batch = (start_batch_fn)lookup("grpc_call_start_batch");
    real_request_call = (request_call_fn)lookup("grpc_server_request_call");
    real_request_registered = (request_registered_fn)lookup("grpc_server_request_registered_call");
    real_shutdown = (shutdown_fn)lookup("grpc_server_shutdown_and_notify");
    real_next = (next_fn)lookup("grpc_completion_queue_next");
}

grpc_call_error grpc_call_start_batch(grpc_call *call, const grpc_op *ops, size_t nops, void *tag,
                                      void *reserved)
{
    __tsan_release(tag);
    return real_start_batch(call, ops, nops, tag, reserved);
}

grpc_call_error grpc_server_request_call(grpc_server *server, grpc_call **call,
                                         grpc_call_details *details,
                                         grpc_metadata_array *request_metadata,
                                         grpc_completion_queue *cq_bound_to_call,
                                         grpc_completion_queue *cq_for_notification, void *tag)
{
    __tsan_release(tag);
    return real_request_call(server, call, details, request_metadata, cq_bound_to_call,
                             cq_for_notification, tag);
}

grpc_call_error grpc_server_request_registered_call(
    grpc_server *server, void *registered_method, grpc_call **call, gpr_timespec *deadline,
    grpc_metadata_array *request_metadata, grpc_byte_buffer **optional_payload,
    grpc_completion_queue *cq_bound_to_call, grpc_completion_queue *cq_for_notification, void *tag)
{
    __tsan_release(tag);
    return real_request_registered(server, registered_method, call, deadline, request_metadata,
                                   optional_payload, cq_bound_to_call, cq_for_notification, tag);
}

void grpc_server_shutdown_and_notify(grpc_server *server, grpc_completion_queue *cq, void *tag)
{
    __tsan_release(tag);
    real_shutdown(server, cq, tag);
}

grpc_event grpc_completion_queue_next(grpc_completion_queue *cq, gpr_timespec deadline,
                                      void *reserved)
{
    grpc_event ev = real_next(cq, deadline, reserved);
    if (ev.type == GRPC_OP_COMPLETE)
        __tsan_acquire(ev.tag);
    return ev;
}
