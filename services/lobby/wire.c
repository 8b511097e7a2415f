/* wy-lobby wire: client frames in, ServerMessage frames out, and closes that wait for the
 * frames sent before them. Every ServerMessage is built by send_message. */
#include "wire.h"
#include "state.h"
#include "wy_log.h"
#include "wy_pb.h"

#include <assert.h>
#include <string.h>

Wyvern__Lobby__Code lobby_code(int err)
{
    switch (err) {
    case WY_OK:
        return WYVERN__LOBBY__CODE__OK;
    case WY_EINVAL:
        return WYVERN__LOBBY__CODE__INVALID;
    case WY_ENOTFOUND:
        return WYVERN__LOBBY__CODE__NOT_FOUND;
    case WY_EEXIST:
        return WYVERN__LOBBY__CODE__ALREADY_EXISTS;
    case WY_EPERM:
        return WYVERN__LOBBY__CODE__FORBIDDEN;
    case WY_EAUTH:
        return WYVERN__LOBBY__CODE__UNAUTHENTICATED;
    case WY_ELIMIT:
        return WYVERN__LOBBY__CODE__RATE_LIMITED;
    case WY_ETOOBIG:
        return WYVERN__LOBBY__CODE__TOO_BIG;
    case WY_EBUSY:
    case WY_EUNAVAIL:
    case WY_ETIMEDOUT:
        return WYVERN__LOBBY__CODE__UNAVAILABLE;
    case WY_ESTATE:
        return WYVERN__LOBBY__CODE__CONFLICT;
    default:
        return WYVERN__LOBBY__CODE__INTERNAL;
    }
}

/* Builds {request_id, status, body} as one encoded WebSocket frame (the caller unrefs it).
 * status NULL: a push (README "Client protocol" 4); body NULL: no body. */
static wy_ws_frame_t *server_frame(uint32_t req, const Wyvern__Lobby__Status *status,
                                   Wyvern__Lobby__ServerMessage__BodyCase body_case,
                                   const ProtobufCMessage *body)
{
    Wyvern__Lobby__ServerMessage m = WYVERN__LOBBY__SERVER_MESSAGE__INIT;
    m.request_id = req;
    m.status = (Wyvern__Lobby__Status *)status;
    if (body) {
        const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(
            &wyvern__lobby__server_message__descriptor, (unsigned)body_case);
        assert(f && f->type == PROTOBUF_C_TYPE_MESSAGE && f->descriptor == body->descriptor);
        /* The oneof member is a pointer to the body's type at the field's offset. */
        const void *p = body;
        memcpy((char *)&m + f->offset, &p, sizeof p);
        m.body_case = body_case;
    }
    uint8_t *payload;
    wy_ws_frame_t *f =
        wy_ws_frame_alloc(true, wyvern__lobby__server_message__get_packed_size(&m), &payload);
    wyvern__lobby__server_message__pack(&m, payload);
    return f;
}

static void send_message(lobby_conn_t *c, uint32_t req, const Wyvern__Lobby__Status *status,
                         Wyvern__Lobby__ServerMessage__BodyCase body_case,
                         const ProtobufCMessage *body)
{
    if (!c->ws || c->state == LOBBY_ST_CLOSING)
        return;
    wy_ws_frame_t *f = server_frame(req, status, body_case, body);
    int rc = wy_ws_send_frame(c->ws, f);
    wy_ws_frame_unref(f);
    if (rc != WY_ETOOBIG)
        return; /* queued, or the connection is closing (the server logged why) */
    /* A reply over WY_LOBBY_MAX_MESSAGE: the client still gets an answer to its request
     * (a push has no request to answer: it is only logged). */
    wy_log_warn("lobby reply over the message size limit", "account", c->account, (char *)NULL);
    if (!req)
        return;
    Wyvern__Lobby__Status st = WYVERN__LOBBY__STATUS__INIT;
    st.code = WYVERN__LOBBY__CODE__TOO_BIG;
    st.message = "reply over the server's message size limit";
    f = server_frame(req, &st, WYVERN__LOBBY__SERVER_MESSAGE__BODY__NOT_SET, NULL);
    (void)wy_ws_send_frame(c->ws, f);
    wy_ws_frame_unref(f);
}

void lobby_reply(lobby_conn_t *c, uint32_t req, Wyvern__Lobby__ServerMessage__BodyCase body_case,
                 const ProtobufCMessage *body)
{
    Wyvern__Lobby__Status st = WYVERN__LOBBY__STATUS__INIT;
    send_message(c, req, &st, body_case, body);
}

void lobby_reply_status(lobby_conn_t *c, uint32_t req, Wyvern__Lobby__Code code,
                        const char *message)
{
    Wyvern__Lobby__Status st = WYVERN__LOBBY__STATUS__INIT;
    st.code = code;
    st.message = (char *)(message ? message : "");
    send_message(c, req, &st, WYVERN__LOBBY__SERVER_MESSAGE__BODY__NOT_SET, NULL);
}

void lobby_push(lobby_conn_t *c, Wyvern__Lobby__ServerMessage__BodyCase body_case,
                const ProtobufCMessage *body)
{
    send_message(c, 0, NULL, body_case, body);
}

void lobby_push_ready(lobby_t *lb, Wyvern__Lobby__ServerMessage__BodyCase body_case,
                      const ProtobufCMessage *body)
{
    wy_ws_conn_t **to = wy_malloc((lb->nconns ? lb->nconns : 1) * sizeof *to);
    size_t n = 0;
    wy_list_t *pos;
    wy_list_foreach(pos, &lb->conns)
    {
        lobby_conn_t *c = wy_container_of(pos, lobby_conn_t, node);
        if (n < lb->nconns && c->ws && c->state == LOBBY_ST_READY)
            to[n++] = c->ws;
    }
    if (n) {
        wy_ws_frame_t *f = server_frame(0, NULL, body_case, body);
        wy_ws_broadcast(f, to, n);
        wy_ws_frame_unref(f);
    }
    wy_free(to);
}

void lobby_observe(lobby_conn_t *c, const char *type, uint64_t start_ns, Wyvern__Lobby__Code code)
{
    if (!c->ws)
        return;
    wy_outcome_t o =
        code == WYVERN__LOBBY__CODE__OK ? WY_OUTCOME_OK
        : code == WYVERN__LOBBY__CODE__UNAVAILABLE || code == WYVERN__LOBBY__CODE__INTERNAL
            ? WY_OUTCOME_SERVER_ERROR
            : WY_OUTCOME_CLIENT_ERROR;
    wy_ws_observe(c->ws, type, start_ns, o);
}

Wyvern__Lobby__ClientMessage *lobby_decode(lobby_conn_t *c, bool is_binary, const uint8_t *data,
                                           size_t len)
{
    Wyvern__Lobby__ClientMessage *m =
        is_binary ? wyvern__lobby__client_message__unpack(NULL, len, data) : NULL;
    /* A string with an embedded NUL would be read up to the NUL (strlen): "token\0junk" as
     * "token". Refused as undecodable, as the gRPC server refuses it (wy_pb.h). */
    if (m && !wy_pb_strings_ok(&wyvern__lobby__client_message__descriptor, data, len)) {
        wyvern__lobby__client_message__free_unpacked(m, NULL);
        m = NULL;
    }
    if (!m) {
        wy_metric_inc(c->lb->m_bad_frames);
        lobby_reply_status(c, 0, WYVERN__LOBBY__CODE__INVALID,
                           is_binary ? "undecodable message" : "text frames are not accepted");
        lobby_conn_close(c, LOBBY_CLOSE_PROTOCOL,
                         is_binary ? "undecodable message" : "binary protobuf frames only");
    }
    return m;
}

/* ---------------------------------------------------------------- closes */

void lobby_conn_close(lobby_conn_t *c, int code, const char *reason)
{
    if (!c->ws || c->state == LOBBY_ST_CLOSING)
        return;
    c->state = LOBBY_ST_CLOSING;
    /* wy_ws_close holds the close frame back until the frames already queued (kicked, an
     * error status, logged_out) are out, bounded by the WebSocket close timeout. */
    (void)wy_ws_close(c->ws, code, reason);
}

void lobby_conn_kick(lobby_conn_t *c, const char *reason, int code)
{
    Wyvern__Lobby__Kicked k = WYVERN__LOBBY__KICKED__INIT;
    k.reason = (char *)reason;
    lobby_push(c, WYVERN__LOBBY__SERVER_MESSAGE__BODY_KICKED, &k.base);
    char r[LOBBY_REASON_MAX + 1];
    snprintf(r, sizeof r, "%s", reason);
    lobby_conn_close(c, code, r);
    wy_metric_inc(c->lb->m_kicks);
}

bool lobby_session_kick_local(lobby_t *lb, const char *sid, const char *reason, int code)
{
    lobby_conn_t *c = wy_map_get_str(lb->by_sid, sid);
    if (!c || !c->ws)
        return false;
    lobby_conn_kick(c, reason, code);
    return true;
}
