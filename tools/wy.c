/* wy — the Wyvern command-line client (register, login, whoami, nickname, presence, lobby), built
 * on libs/client's blocking layer. Keeps each login in a credentials file (mode 0600). */
#include "client/wyc.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <dirent.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

/* Exit codes: stable, documented in --help and libs/client/README.md. */
enum {
    EX_OK = 0,
    EX_FAIL = 1,      /* unexpected failure */
    EX_USAGE = 2,     /* bad command line */
    EX_NETWORK = 3,   /* server unreachable, unavailable or too slow */
    EX_AUTH = 4,      /* wrong credentials, not logged in, session expired or revoked */
    EX_CONFLICT = 5,  /* taken (username, nickname), logged in elsewhere, profile in use */
    EX_INVALID = 6,   /* the server rejected the input (bad username, password, nickname) */
    EX_LIMIT = 7,     /* rate limited: retry later */
    EX_FORBIDDEN = 8, /* banned or not allowed */
    EX_KICKED = 9,    /* kicked from the lobby */
    EX_PROTOCOL = 10, /* unexpected answer from the server */
    EX_CREDS = 11,    /* credentials file unreadable, unsafe or unwritable */
};

static const char USAGE[] =
    "usage: wy [options] <command> [arguments]\n"
    "\n"
    "Commands:\n"
    "  register USERNAME            create an account (password asked, or --password-stdin,\n"
    "                               or WY_PASSWORD) and log in\n"
    "  login USERNAME               log in with a password\n"
    "  login --device ID            log in with a device id (creates the account once)\n"
    "  login --custom ID            custom id (needs WY_SERVER_KEY)\n"
    "  login --steam TICKET | --oidc ID_TOKEN\n"
    "  logout                       end the lobby session and revoke the login\n"
    "  whoami                       the logged-in account\n"
    "  nick set NICKNAME            set your nickname (connects to the lobby)\n"
    "  presence [NAME|ACCOUNT...]   who is online (default: yourself); a 36-char id is an\n"
    "                               account id, anything else a nickname\n"
    "  lobby [--for SECONDS]        stay in the lobby, print notices, kicks, friend requests\n"
    "                               and reconnects until Ctrl-C (or SECONDS)\n"
    "        [--follow CHANNEL[@SEQ]]  and that chat channel's messages after SEQ, in order\n"
    "  character list               your characters\n"
    "  character create NAME [CLASS]  a new character (class default: warrior)\n"
    "  character delete CHAR        delete one of yours (CHAR: its name or id)\n"
    "  friend request CHAR OTHER    CHAR (yours) asks OTHER (a character name or id)\n"
    "  friend accept|decline|remove CHAR OTHER\n"
    "  friend list CHAR             CHAR's friends and requests, with presence\n"
    "  play CHAR [--for SECONDS] [--map] [--say CHANNEL|@ACCOUNT TEXT]...\n"
    "                               enter the game with one of your characters (name or id):\n"
    "                               print the welcome (--map: a live ASCII map, arrows move)\n"
    "                               (game instance, zone, position), say each --say TEXT over\n"
    "                               the game connection (CHANNEL zone, world, party:<id>, ...;\n"
    "                               @ACCOUNT whispers), stay SECONDS printing chat (default 0;\n"
    "                               Ctrl-C ends it), then leave (the position is saved)\n"
    "  chat send CHANNEL TEXT       say TEXT in a channel (world, zone, party:<id>, ...)\n"
    "  chat send --to ACCOUNT TEXT  whisper (kept until their next login when offline)\n"
    "  chat history CHANNEL [--after SEQ] [--limit N]   a page of a channel's messages\n"
    "  chat create party|guild [NAME], chat join|leave CHANNEL,\n"
    "  chat invite|kick CHANNEL ACCOUNT\n"
    "  chat channels                your party and guild channels (id, name, role)\n"
    "  chat report CHANNEL SEQ [REASON]   report a message to the moderators\n"
    "  chat delete CHANNEL SEQ [REASON]   hide a message (your own, or any as a moderator)\n"
    "  Moderators (the moderator role in the access token, or chat's WY_CHAT_MODERATORS;\n"
    "  others get exit 8):\n"
    "  chat mute ACCOUNT DURATION [--channel CHANNEL] [--reason TEXT]\n"
    "                               mute an account (DURATION 30s, 10m, 24h, 7d; every channel\n"
    "                               unless --channel)\n"
    "  chat unmute ACCOUNT [--channel CHANNEL]   lift a mute\n"
    "  chat reports [--after ID] [--limit N] [--all]   reported messages, oldest first (open\n"
    "                               ones; --all with the resolved)\n"
    "  chat resolve REPORT_ID [NOTE]   close a report with a note\n"
    "\n"
    "Options:\n"
    "  --server HOST        auth at http://HOST:8080, lobby at ws://HOST:8081/v1/lobby\n"
    "                       (env WY_SERVER; default 127.0.0.1)\n"
    "  --auth-url URL       auth HTTP API (env WY_AUTH_URL)\n"
    "  --lobby-url URL      lobby WebSocket (env WY_LOBBY_URL)\n"
    "  --profile NAME       which saved login to use (default \"default\"); one file per\n"
    "                       profile, so several clients can run on one machine. Without\n"
    "                       --profile, `wy lobby` and `wy presence` use the first profile that\n"
    "                       is not in use by another wy and not logged in elsewhere.\n"
    "  --credentials FILE   use this credentials file (env WY_CREDENTIALS)\n"
    "  --password-stdin     read the password from the first line of stdin\n"
    "  --json               print one JSON object per line (for scripts)\n"
    "  --timeout MS         per request (default 10000)\n"
    "  -h, --help           this text\n"
    "\n"
    "Credentials: $WY_CREDENTIALS_DIR, else $XDG_CONFIG_HOME/wyvern, else ~/.config/wyvern;\n"
    "  <profile>.cred, mode 0600, holding the refresh token (rotated on use).\n"
    "\n"
    "Exit codes: 0 ok, 1 unexpected failure, 2 usage, 3 server unreachable/unavailable,\n"
    "  4 not authenticated (wrong password, not logged in, session revoked), 5 conflict (taken,\n"
    "  logged in elsewhere, profile in use), 6 input rejected, 7 rate limited, 8 banned or\n"
    "  forbidden, 9 kicked from the lobby, 10 protocol error, 11 credentials file problem.\n";

static struct {
    bool json;
    const char *profile;
    const char *cred_file;
    bool password_stdin;
    wyc_config_t cfg;
    char auth_buf[300], lobby_buf[300];
} opt;

static wyc_sync_t *g_sync;

/* ------------------------------------------------------------------ output */

static void json_out(json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT);
    printf("%s\n", s);
    fflush(stdout);
    free(s);
    json_decref(o);
}

static int exit_for(const wyc_error_t *e)
{
    if (e->code == WY_OK)
        return EX_OK;
    if (!strcmp(e->server_code, "KICKED"))
        return EX_KICKED;
    if (e->source == WYC_SRC_NETWORK)
        return EX_NETWORK;
    switch (e->code) {
    case WY_EUNAVAIL:
    case WY_ETIMEDOUT:
    case WY_EBUSY:
        return EX_NETWORK;
    case WY_EAUTH:
        return EX_AUTH;
    case WY_EEXIST:
    case WY_ESTATE:
        return e->source == WYC_SRC_CLIENT ? EX_AUTH : EX_CONFLICT;
    case WY_EINVAL:
    case WY_ETOOBIG:
    case WY_ENOTFOUND:
        return EX_INVALID;
    case WY_ELIMIT:
        return EX_LIMIT;
    case WY_EPERM:
        return EX_FORBIDDEN;
    case WY_EIO:
        return EX_PROTOCOL;
    default:
        return EX_FAIL;
    }
}

static json_t *err_json(const wyc_error_t *e)
{
    json_t *o = json_pack("{s:s, s:s, s:s}", "code", wy_errname(e->code), "source",
                          wyc_source_name(e->source), "message", e->message);
    if (e->server_code[0])
        json_object_set_new(o, "server_code", json_string(e->server_code));
    if (e->http_status)
        json_object_set_new(o, "http_status", json_integer(e->http_status));
    if (e->ws_close)
        json_object_set_new(o, "ws_close", json_integer(e->ws_close));
    return o;
}

/* Reports a failure of what; returns the exit code. */
static int fail(const char *what, const wyc_error_t *e)
{
    int ex = exit_for(e);
    if (opt.json) {
        json_out(json_pack("{s:b, s:s, s:o, s:i}", "ok", 0, "command", what, "error", err_json(e),
                           "exit", ex));
    } else {
        fprintf(stderr, "wy %s: %s", what, e->message);
        if (e->server_code[0])
            fprintf(stderr, " (%s)", e->server_code);
        fputc('\n', stderr);
        if (ex == EX_NETWORK)
            fprintf(stderr, "  is the server running? auth %s, lobby %s (see --server)\n",
                    opt.cfg.auth_url, opt.cfg.lobby_url);
        if (ex == EX_AUTH && e->source == WYC_SRC_CLIENT)
            fprintf(stderr, "  log in first: wy login USERNAME\n");
    }
    return ex;
}

static int fail_msg(const char *what, int ex, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail_msg(const char *what, int ex, const char *fmt, ...)
{
    char msg[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (opt.json)
        json_out(json_pack("{s:b, s:s, s:{s:s, s:s}, s:i}", "ok", 0, "command", what, "error",
                           "code", "CLIENT", "message", msg, "exit", ex));
    else
        fprintf(stderr, "wy %s: %s\n", what, msg);
    return ex;
}

/* ------------------------------------------------------------------ credentials */

static void cred_dir(char *out, size_t cap)
{
    const char *d = getenv("WY_CREDENTIALS_DIR");
    if (d && *d) {
        snprintf(out, cap, "%s", d);
        return;
    }
    const char *x = getenv("XDG_CONFIG_HOME");
    if (x && *x) {
        snprintf(out, cap, "%s/wyvern", x);
        return;
    }
    const char *h = getenv("HOME");
    snprintf(out, cap, "%s/.config/wyvern", h && *h ? h : ".");
}

static bool profile_ok(const char *p)
{
    if (!*p || strlen(p) > 64)
        return false;
    for (const char *q = p; *q; q++)
        if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') ||
              *q == '-' || *q == '_' || *q == '.') ||
            (q == p && *q == '.'))
            return false;
    return true;
}

typedef struct {
    char path[4200];
    char name[80];
    int lock_fd;
} profile_t;

static void profile_path(profile_t *p, const char *name)
{
    char dir[4096];
    cred_dir(dir, sizeof dir);
    snprintf(p->name, sizeof p->name, "%.64s", name);
    snprintf(p->path, sizeof p->path, "%.4000s/%.64s.cred", dir, name);
    p->lock_fd = -1;
}

/* Takes the profile's lock (one wy per profile: two would rotate one refresh token twice and
 * auth would revoke the session as stolen). WY_EBUSY if another wy holds it. */
static int profile_lock(profile_t *p)
{
    char lock[4300];
    const char *why = NULL;
    if (wyc_creds_prepare_dir(p->path, &why) != WY_OK)
        return WY_EIO; /* errno says why: reported by the caller */
    snprintf(lock, sizeof lock, "%s.lock", p->path);
    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return WY_EIO;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        return errno == EWOULDBLOCK ? WY_EBUSY : WY_EIO;
    }
    p->lock_fd = fd;
    return WY_OK;
}

static void profile_unlock(profile_t *p)
{
    if (p->lock_fd >= 0)
        close(p->lock_fd);
    p->lock_fd = -1;
}

static int save_session(const char *what, profile_t *p, const char *username)
{
    const wyc_session_t *s = wyc_session(wyc_sync_client(g_sync));
    wyc_creds_t c;
    memset(&c, 0, sizeof c);
    snprintf(c.auth_url, sizeof c.auth_url, "%s", opt.cfg.auth_url);
    snprintf(c.lobby_url, sizeof c.lobby_url, "%s", opt.cfg.lobby_url);
    if (username)
        snprintf(c.username, sizeof c.username, "%s", username);
    if (s)
        c.session = *s;
    const char *err = NULL;
    if (wyc_creds_save(p->path, &c, &err) != WY_OK)
        return fail_msg(what, EX_CREDS, "%s", err);
    return EX_OK;
}

/* Saves the rotated tokens, keeping the file's username. */
static int resave(const char *what, profile_t *p)
{
    wyc_creds_t old;
    const char *err = NULL;
    const char *user = NULL;
    if (wyc_creds_load(p->path, &old, &err) == WY_OK)
        user = old.username;
    return save_session(what, p, user);
}

/* Loads the profile and makes the client logged in (restores a valid access token or
 * refreshes). Returns EX_*. */
static int use_profile(const char *what, profile_t *p)
{
    wyc_creds_t c;
    const char *err = NULL;
    int rc = wyc_creds_load(p->path, &c, &err);
    if (rc == WY_ENOTFOUND || (rc == WY_OK && !c.session.refresh_token[0]))
        return fail_msg(what, EX_AUTH, "not logged in (profile %s): run wy login USERNAME%s%s",
                        p->name, strcmp(p->name, "default") ? " --profile " : "",
                        strcmp(p->name, "default") ? p->name : "");
    if (rc != WY_OK)
        return fail_msg(what, EX_CREDS, "%s", err);
    wyc_client_t *cl = wyc_sync_client(g_sync);
    int64_t now = (int64_t)time(NULL) * 1000;
    if (c.session.access_token[0] && c.session.access_expires_at_ms > now + 30000) {
        wyc_session_restore(cl, &c.session);
        return EX_OK;
    }
    wyc_error_t e;
    if (wyc_sync_resume(g_sync, c.session.refresh_token, &e) != WY_OK) {
        if (e.code == WY_EAUTH || e.code == WY_EPERM) {
            /* The login is dead: keep the username, drop the tokens. */
            memset(&c.session, 0, sizeof c.session);
            wyc_creds_save(p->path, &c, &err);
            snprintf(e.message + strlen(e.message), sizeof e.message - strlen(e.message),
                     ": log in again");
        }
        return fail(what, &e);
    }
    return save_session(what, p, c.username);
}

/* ------------------------------------------------------------------ passwords */

static int read_password(const char *what, char *out, size_t cap, bool confirm)
{
    const char *env = getenv("WY_PASSWORD");
    if (env && !opt.password_stdin) {
        snprintf(out, cap, "%s", env);
        return EX_OK;
    }
    bool tty = isatty(STDIN_FILENO) && !opt.password_stdin;
    for (int round = 0; round < (tty && confirm ? 2 : 1); round++) {
        char line[1024];
        struct termios old, quiet;
        if (tty) {
            fprintf(stderr, round ? "Repeat password: " : "Password: ");
            tcgetattr(STDIN_FILENO, &old);
            quiet = old;
            quiet.c_lflag &= ~(tcflag_t)ECHO;
            tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
        }
        char *r = fgets(line, sizeof line, stdin);
        if (tty) {
            tcsetattr(STDIN_FILENO, TCSANOW, &old);
            fputc('\n', stderr);
        }
        if (!r)
            return fail_msg(what, EX_USAGE, "no password given (stdin closed)");
        line[strcspn(line, "\r\n")] = 0;
        if (round == 0) {
            snprintf(out, cap, "%s", line);
        } else if (strcmp(out, line) != 0) {
            return fail_msg(what, EX_USAGE, "the passwords do not match");
        }
    }
    return EX_OK;
}

/* ------------------------------------------------------------------ commands */

static int print_login(const char *what, profile_t *p, const char *username)
{
    const wyc_session_t *s = wyc_session(wyc_sync_client(g_sync));
    if (opt.json) {
        json_t *o = json_pack("{s:b, s:s, s:s, s:s, s:s, s:b}", "ok", 1, "command", what,
                              "account_id", s->account_id, "session_id", s->session_id, "profile",
                              p->name, "created", s->created);
        if (username)
            json_object_set_new(o, "username", json_string(username));
        json_object_set_new(o, "credentials", json_string(p->path));
        json_out(o);
    } else {
        printf("%s %s (account %s)%s\n", !strcmp(what, "register") ? "Registered" : "Logged in as",
               username ? username : "device/custom login", s->account_id,
               s->created && strcmp(what, "register") ? ", new account" : "");
        printf("Credentials saved to %s (profile %s)\n", p->path, p->name);
    }
    return EX_OK;
}

static int cmd_register(profile_t *p, int argc, char **argv)
{
    if (argc != 1)
        return fail_msg("register", EX_USAGE, "usage: wy register USERNAME");
    char pw[1024];
    int ex = read_password("register", pw, sizeof pw, true);
    if (ex)
        return ex;
    wyc_error_t e;
    if (wyc_sync_register(g_sync, argv[0], pw, &e) != WY_OK)
        return fail("register", &e);
    if ((ex = save_session("register", p, argv[0])))
        return ex;
    return print_login("register", p, argv[0]);
}

static int cmd_login(profile_t *p, int argc, char **argv)
{
    wyc_credential_t cred;
    memset(&cred, 0, sizeof cred);
    char pw[1024];
    const char *user = NULL;
    if (argc == 2 && argv[0][0] == '-' && argv[0][1] == '-') {
        cred.method = wyc_method_parse(argv[0] + 2);
        cred.id = argv[1];
        if (!cred.method || cred.method == WYC_LOGIN_PASSWORD)
            return fail_msg("login", EX_USAGE, "unknown login method %s", argv[0]);
    } else if (argc == 1) {
        int ex = read_password("login", pw, sizeof pw, false);
        if (ex)
            return ex;
        cred.method = WYC_LOGIN_PASSWORD;
        cred.username = user = argv[0];
        cred.password = pw;
    } else {
        return fail_msg("login", EX_USAGE,
                        "usage: wy login USERNAME | --device ID | --custom ID | --steam TICKET "
                        "| --oidc ID_TOKEN");
    }
    wyc_error_t e;
    if (wyc_sync_login(g_sync, &cred, &e) != WY_OK)
        return fail("login", &e);
    int ex = save_session("login", p, user);
    if (ex)
        return ex;
    return print_login("login", p, user);
}

static int cmd_logout(profile_t *p)
{
    int ex = use_profile("logout", p);
    if (ex)
        return ex;
    wyc_error_t e;
    int rc = wyc_sync_logout(g_sync, &e);
    /* Forget the tokens whatever the answer: a failed logout leaves nothing usable here. */
    wyc_creds_t c;
    const char *err = NULL;
    if (wyc_creds_load(p->path, &c, &err) == WY_OK) {
        memset(&c.session, 0, sizeof c.session);
        wyc_creds_save(p->path, &c, &err);
    }
    if (rc != WY_OK && e.code != WY_EAUTH)
        return fail("logout", &e);
    if (opt.json)
        json_out(json_pack("{s:b, s:s, s:s}", "ok", 1, "command", "logout", "profile", p->name));
    else
        printf("Logged out (profile %s)\n", p->name);
    return EX_OK;
}

static int cmd_whoami(profile_t *p)
{
    int ex = use_profile("whoami", p);
    if (ex)
        return ex;
    wyc_account_t a;
    wyc_error_t e;
    if (wyc_sync_me(g_sync, &a, &e) != WY_OK)
        return fail("whoami", &e);
    if (opt.json) {
        json_out(json_pack("{s:b, s:s, s:s, s:s, s:s, s:I, s:b, s:s, s:s}", "ok", 1, "command",
                           "whoami", "account_id", a.account_id, "username", a.username,
                           "session_id", a.session_id, "created_at", (json_int_t)a.created_at,
                           "banned", a.banned, "login_methods", a.login_methods, "profile",
                           p->name));
    } else {
        printf("account   %s\nusername  %s\nlogins    %s\nsession   %s\nprofile   %s\n",
               a.account_id, a.username[0] ? a.username : "(none)", a.login_methods, a.session_id,
               p->name);
    }
    return EX_OK;
}

static void print_event(const wyc_event_t *ev)
{
    switch (ev->type) {
    case WYC_EV_WELCOME:
        if (opt.json)
            json_out(json_pack("{s:s, s:s, s:s, s:s, s:s, s:i}", "event", "welcome", "session_id",
                               ev->welcome.session_id, "account_id", ev->welcome.account_id,
                               "nickname", ev->welcome.nickname, "instance", ev->welcome.instance,
                               "reconnects", (int)ev->welcome.reconnects));
        else
            printf("%s lobby session %s on %s (nickname: %s)\n",
                   ev->welcome.reconnects ? "Reconnected:" : "Connected:", ev->welcome.session_id,
                   ev->welcome.instance,
                   ev->welcome.nickname[0] ? ev->welcome.nickname : "not set");
        break;
    case WYC_EV_NOTICE:
        if (opt.json)
            json_out(json_pack("{s:s, s:s, s:s, s:s, s:I}", "event", "notice", "id", ev->notice.id,
                               "kind", ev->notice.kind, "text", ev->notice.text, "at_ms",
                               (json_int_t)ev->notice.at_ms));
        else
            printf("[%s] %s\n", ev->notice.kind, ev->notice.text);
        break;
    case WYC_EV_KICKED:
        if (opt.json)
            json_out(json_pack("{s:s, s:s}", "event", "kicked", "reason", ev->reason));
        else
            printf("Kicked: %s\n", ev->reason);
        break;
    case WYC_EV_DISCONNECTED:
        if (opt.json)
            json_out(json_pack("{s:s, s:i, s:o}", "event", "disconnected", "reconnect_in_ms",
                               (int)ev->reconnect_in_ms, "error", err_json(&ev->error)));
        else
            printf("Disconnected (%s); reconnecting in %u ms\n", ev->error.message,
                   ev->reconnect_in_ms);
        break;
    case WYC_EV_CLOSED:
        if (opt.json)
            json_out(json_pack("{s:s, s:o}", "event", "closed", "error", err_json(&ev->error)));
        else
            printf("Lobby connection closed: %s\n", ev->error.message);
        break;
    case WYC_EV_AUTH_LOST:
        if (opt.json)
            json_out(json_pack("{s:s, s:o}", "event", "auth_lost", "error", err_json(&ev->error)));
        else
            printf("Login lost: %s\n", ev->error.message);
        break;
    case WYC_EV_TOKENS:
        if (opt.json)
            json_out(json_pack("{s:s}", "event", "tokens_refreshed"));
        break;
    case WYC_EV_FRIEND:
        if (opt.json)
            json_out(json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "event", "friend", "kind",
                               ev->friend.kind, "from_actor_id", ev->friend.from_actor_id,
                               "from_name", ev->friend.from_name, "to_actor_id",
                               ev->friend.to_actor_id, "to_name", ev->friend.to_name));
        else if (!strcmp(ev->friend.kind, "request"))
            printf("Friend request: %s asks %s\n", ev->friend.from_name, ev->friend.to_name);
        else
            printf("Friend: %s accepted %s\n", ev->friend.from_name, ev->friend.to_name);
        break;
    case WYC_EV_CHAT:
        if (opt.json)
            json_out(json_pack("{s:s, s:s, s:I, s:s, s:s, s:s, s:s, s:b}", "event", "chat",
                               "channel_id", ev->chat.channel_id, "seq", (json_int_t)ev->chat.seq,
                               "type", ev->chat.type, "sender_id", ev->chat.sender_id,
                               "sender_name", ev->chat.sender_name, "text", ev->chat.text,
                               "offline", ev->chat.offline));
        else
            printf("[%s #%llu] %s: %s\n", ev->chat.channel_id, (unsigned long long)ev->chat.seq,
                   ev->chat.sender_name[0] ? ev->chat.sender_name : ev->chat.sender_id,
                   ev->chat.text);
        break;
    }
    fflush(stdout);
}

/* Connects to the lobby; on failure reports and returns the exit code. */
static int lobby_up(const char *what, wyc_welcome_t *w)
{
    wyc_error_t e;
    if (wyc_sync_lobby_connect(g_sync, w, &e) != WY_OK)
        return fail(what, &e);
    return EX_OK;
}

static int cmd_nick(profile_t *p, int argc, char **argv)
{
    if (argc != 2 || strcmp(argv[0], "set") != 0)
        return fail_msg("nick", EX_USAGE, "usage: wy nick set NICKNAME");
    int ex = use_profile("nick", p);
    wyc_welcome_t w;
    if (ex || (ex = lobby_up("nick", &w)))
        return ex;
    char stored[256];
    int64_t next = 0;
    wyc_error_t e;
    if (wyc_sync_set_nickname(g_sync, argv[1], stored, sizeof stored, &next, &e) != WY_OK)
        return fail("nick", &e);
    if (opt.json)
        json_out(json_pack("{s:b, s:s, s:s, s:I}", "ok", 1, "command", "nick", "nickname", stored,
                           "next_change_at", (json_int_t)next));
    else
        printf("Nickname set: %s\n", stored);
    return EX_OK;
}

static bool looks_like_uuid(const char *s)
{
    if (strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !strchr("0123456789abcdefABCDEF", s[i]))
            return false;
    }
    return true;
}

static int cmd_presence(profile_t *p, int argc, char **argv)
{
    (void)p;
    wyc_welcome_t w;
    int ex = lobby_up("presence", &w);
    if (ex)
        return ex;
    const char *ids[WYC_PRESENCE_MAX], *nicks[WYC_PRESENCE_MAX];
    size_t ni = 0, nn = 0;
    if (argc == 0)
        ids[ni++] = w.account_id;
    if (argc > WYC_PRESENCE_MAX)
        return fail_msg("presence", EX_USAGE, "at most %d names at once", WYC_PRESENCE_MAX);
    for (int i = 0; i < argc; i++) {
        if (looks_like_uuid(argv[i]))
            ids[ni++] = argv[i];
        else
            nicks[nn++] = argv[i];
    }
    wyc_presence_t out[WYC_PRESENCE_MAX];
    size_t n = 0;
    wyc_error_t e;
    if (wyc_sync_presence(g_sync, ids, ni, nicks, nn, out, WYC_PRESENCE_MAX, &n, &e) != WY_OK)
        return fail("presence", &e);
    if (opt.json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++) {
            json_t *o = json_pack("{s:s, s:s, s:s}", "account_id", out[i].account_id, "nickname",
                                  out[i].nickname, "state", wyc_presence_name(out[i].state));
            if (out[i].zone[0]) /* in the game: where */
                json_object_set_new(o, "zone", json_string(out[i].zone));
            json_array_append_new(arr, o);
        }
        json_out(json_pack("{s:b, s:s, s:o}", "ok", 1, "command", "presence", "entries", arr));
    } else {
        for (size_t i = 0; i < n; i++) {
            const char *asked = i < ni ? ids[i] : nicks[i - ni];
            printf("%-20s %-8s %s%s%s\n", out[i].nickname[0] ? out[i].nickname : asked,
                   wyc_presence_name(out[i].state), out[i].account_id, out[i].zone[0] ? " " : "",
                   out[i].zone);
        }
    }
    return EX_OK;
}

/* "30s", "10m", "24h", "7d" -> ms (1 ms..10 years); false when malformed or out of range. */
static bool parse_duration_ms(const char *s, int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || v <= 0 || !end[0] || end[1])
        return false;
    int64_t unit = *end == 's'   ? 1000
                   : *end == 'm' ? 60000
                   : *end == 'h' ? 3600000
                   : *end == 'd' ? 86400000
                                 : 0;
    const int64_t max = (int64_t)10 * 365 * 86400000;
    if (!unit || v > max / unit)
        return false;
    *out = v * unit;
    return true;
}

static json_t *report_json(const wyc_chat_report_t *r)
{
    json_t *msg = json_null();
    if (r->has_message)
        msg = json_pack("{s:s, s:s, s:s, s:b, s:I}", "sender_id", r->message.sender_id,
                        "sender_name", r->message.sender_name, "text", r->message.text, "deleted",
                        r->message.deleted, "ts_ms", (json_int_t)r->message.ts_ms);
    return json_pack(
        "{s:I, s:s, s:I, s:s, s:s, s:I, s:o, s:I, s:s, s:s}", "report_id", (json_int_t)r->report_id,
        "channel_id", r->channel_id, "seq", (json_int_t)r->seq, "reporter_id", r->reporter_id,
        "reason", r->reason, "at_ms", (json_int_t)r->at_ms, "message", msg, "resolved_at_ms",
        (json_int_t)r->resolved_at_ms, "resolved_by", r->resolved_by, "resolution", r->resolution);
}

/* wy chat channels: the party and guild channels one is in. */
static int chat_channels(void)
{
    enum { CAP = 1024 }; /* more than one lobby frame holds */
    wyc_welcome_t w;
    wyc_error_t e;
    int ex = lobby_up("chat", &w);
    if (ex)
        return ex;
    wyc_chat_channel_t *chs = wy_calloc(CAP, sizeof *chs);
    size_t n = 0;
    if (wyc_sync_chat_channels(g_sync, chs, CAP, &n, &e) != WY_OK) {
        wy_free(chs);
        return fail("chat", &e);
    }
    if (opt.json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s, s:I}", "channel_id",
                                                 chs[i].channel_id, "kind", chs[i].kind, "name",
                                                 chs[i].name, "role", chs[i].role, "last_seq",
                                                 (json_int_t)chs[i].last_seq));
        json_out(json_pack("{s:b, s:s, s:s, s:o}", "ok", 1, "command", "chat", "op", "channels",
                           "channels", arr));
    } else {
        if (!n)
            printf("No party or guild channels.\n");
        for (size_t i = 0; i < n; i++)
            printf("%s  %s \"%s\"  %s  (last #%llu)\n", chs[i].channel_id, chs[i].kind, chs[i].name,
                   chs[i].role, (unsigned long long)chs[i].last_seq);
    }
    wy_free(chs);
    return EX_OK;
}

/* fail() of a chat request, with a hint when it needed the moderator role. */
static int chat_fail(const wyc_error_t *e)
{
    int ex = fail("chat", e);
    if (!opt.json && e->code == WY_EPERM && strstr(e->message, "only moderators"))
        fprintf(stderr, "  an operator grants the role (services/auth/README.md \"Roles\"); "
                        "then log in again for a token that carries it\n");
    return ex;
}

/* wy chat reports [--after ID] [--limit N] [--all] */
static int chat_reports(int argc, char **argv)
{
    uint64_t after = 0;
    uint32_t limit = 50;
    bool all = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--after") && i + 1 < argc)
            after = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--limit") && i + 1 < argc)
            limit = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--all"))
            all = true;
        else
            return fail_msg("chat", EX_USAGE,
                            "usage: wy chat reports [--after ID] [--limit N] [--all]");
    }
    if (limit == 0 || limit > 200)
        return fail_msg("chat", EX_USAGE, "--limit: 1..200");
    wyc_welcome_t w;
    wyc_error_t e;
    int ex = lobby_up("chat", &w);
    if (ex)
        return ex;
    wyc_chat_report_t *rs = wy_calloc(limit, sizeof *rs);
    size_t n = 0;
    bool more = false;
    if (wyc_sync_chat_reports(g_sync, after, limit, all, rs, limit, &n, &more, &e) != WY_OK) {
        wy_free(rs);
        return chat_fail(&e);
    }
    if (opt.json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(arr, report_json(&rs[i]));
        json_out(json_pack("{s:b, s:s, s:s, s:o, s:b}", "ok", 1, "command", "chat", "op", "reports",
                           "reports", arr, "more", more));
    } else {
        if (!n)
            printf("No %sreports.\n", all ? "" : "open ");
        for (size_t i = 0; i < n; i++) {
            const wyc_chat_report_t *r = &rs[i];
            const char *who = !r->has_message             ? "(message gone)"
                              : r->message.sender_name[0] ? r->message.sender_name
                                                          : r->message.sender_id;
            printf("report %lld: %s #%llu by %s: \"%s\" reported by %s: %s\n",
                   (long long)r->report_id, r->channel_id, (unsigned long long)r->seq, who,
                   !r->has_message      ? ""
                   : r->message.deleted ? "(deleted)"
                                        : r->message.text,
                   r->reporter_id, r->reason[0] ? r->reason : "(no reason)");
            if (r->resolved_at_ms)
                printf("  resolved by %s: %s\n", r->resolved_by, r->resolution);
        }
        if (more)
            printf("More: wy chat reports --after %lld%s\n", (long long)rs[n - 1].report_id,
                   all ? " --all" : "");
    }
    wy_free(rs);
    return EX_OK;
}

/* wy chat delete|report|mute|unmute|resolve ... */
static int chat_moderate(int argc, char **argv)
{
    static const char usage[] =
        "usage: wy chat delete CHANNEL SEQ [REASON] | report CHANNEL SEQ [REASON] | mute "
        "ACCOUNT DURATION [--channel CHANNEL] [--reason TEXT] | unmute ACCOUNT [--channel "
        "CHANNEL] | resolve REPORT_ID [NOTE] | reports [--after ID] [--limit N] [--all]";
    const char *op = argv[0];
    const char *channel = NULL, *reason = NULL;
    uint64_t num = 0;
    int64_t dur = 0;
    if (!strcmp(op, "delete") || !strcmp(op, "report")) {
        if (argc < 3 || argc > 4 || !(num = strtoull(argv[2], NULL, 10)))
            return fail_msg("chat", EX_USAGE, "%s", usage);
        channel = argv[1];
        reason = argc == 4 ? argv[3] : NULL;
    } else if (!strcmp(op, "resolve")) {
        if (argc < 2 || argc > 3 || !(num = strtoull(argv[1], NULL, 10)) || num > INT64_MAX)
            return fail_msg("chat", EX_USAGE, "%s", usage);
        reason = argc == 3 ? argv[2] : NULL;
    } else { /* mute, unmute */
        bool mute = !strcmp(op, "mute");
        int i = mute ? 3 : 2;
        if (argc < i)
            return fail_msg("chat", EX_USAGE, "%s", usage);
        if (mute && !parse_duration_ms(argv[2], &dur))
            return fail_msg("chat", EX_USAGE,
                            "DURATION: a number with s, m, h or d, up to 10 years (30s, 10m, 24h, "
                            "7d), not \"%.32s\"",
                            argv[2]);
        for (; i < argc; i++) {
            if (!strcmp(argv[i], "--channel") && i + 1 < argc)
                channel = argv[++i];
            else if (mute && !strcmp(argv[i], "--reason") && i + 1 < argc)
                reason = argv[++i];
            else
                return fail_msg("chat", EX_USAGE, "%s", usage);
        }
    }
    wyc_welcome_t w;
    wyc_error_t e;
    int ex = lobby_up("chat", &w);
    if (ex)
        return ex;
    wyc_chat_result_t *r = wy_calloc(1, sizeof *r);
    int rc;
    if (!strcmp(op, "delete"))
        rc = wyc_sync_chat_delete(g_sync, channel, num, reason, r, &e);
    else if (!strcmp(op, "report"))
        rc = wyc_sync_chat_report(g_sync, channel, num, reason, r, &e);
    else if (!strcmp(op, "resolve"))
        rc = wyc_sync_chat_resolve(g_sync, (int64_t)num, reason, r, &e);
    else
        rc = wyc_sync_chat_mute(g_sync, argv[1], channel, dur, reason, r, &e);
    if (rc != WY_OK) {
        wy_free(r);
        return chat_fail(&e);
    }
    if (opt.json) {
        json_t *o = json_pack("{s:b, s:s, s:s}", "ok", 1, "command", "chat", "op", op);
        if (!strcmp(op, "delete")) {
            json_object_set_new(o, "channel_id", json_string(r->channel_id));
            json_object_set_new(o, "seq", json_integer((json_int_t)r->seq));
        } else if (!strcmp(op, "mute") || !strcmp(op, "unmute")) {
            json_object_set_new(o, "account_id", json_string(argv[1]));
            json_object_set_new(o, "until_ms", json_integer((json_int_t)r->until_ms));
        } else if (!strcmp(op, "resolve")) {
            json_object_set_new(o, "report_id", json_integer((json_int_t)num));
        }
        json_out(o);
    } else if (!strcmp(op, "delete")) {
        printf("Deleted %s #%llu (tombstone #%llu)\n", channel, (unsigned long long)num,
               (unsigned long long)r->seq);
    } else if (!strcmp(op, "report")) {
        printf("Reported %s #%llu to the moderators\n", channel, (unsigned long long)num);
    } else if (!strcmp(op, "resolve")) {
        printf("Report %llu resolved\n", (unsigned long long)num);
    } else if (r->until_ms) {
        time_t t = (time_t)(r->until_ms / 1000);
        char when[64];
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", gmtime(&t));
        printf("Muted %s in %s until %s\n", argv[1],
               channel && *channel ? channel : "every channel", when);
    } else {
        printf("Unmuted %s in %s\n", argv[1], channel && *channel ? channel : "every channel");
    }
    wy_free(r);
    return EX_OK;
}

static int cmd_chat(profile_t *p, int argc, char **argv)
{
    (void)p;
    static const char usage[] =
        "usage: wy chat send CHANNEL TEXT | send --to ACCOUNT TEXT | history CHANNEL [--after "
        "SEQ] [--limit N] | create party|guild [NAME] | join|leave CHANNEL | invite|kick "
        "CHANNEL ACCOUNT | channels | delete|report CHANNEL SEQ [REASON] | mute ACCOUNT DURATION "
        "[--channel CHANNEL] [--reason TEXT] | unmute ACCOUNT [--channel CHANNEL] | reports "
        "[--after ID] [--limit N] [--all] | resolve REPORT_ID [NOTE]";
    if (argc >= 1 && !strcmp(argv[0], "reports"))
        return chat_reports(argc, argv);
    if (argc == 1 && !strcmp(argv[0], "channels"))
        return chat_channels();
    if (argc < 2)
        return fail_msg("chat", EX_USAGE, "%s", usage);
    const char *op = argv[0];
    if (!strcmp(op, "delete") || !strcmp(op, "report") || !strcmp(op, "mute") ||
        !strcmp(op, "unmute") || !strcmp(op, "resolve"))
        return chat_moderate(argc, argv);
    wyc_welcome_t w;
    wyc_error_t e;
    if (!strcmp(op, "history")) {
        uint64_t after = 0;
        uint32_t limit = 50;
        for (int i = 2; i < argc; i++) {
            if (!strcmp(argv[i], "--after") && i + 1 < argc)
                after = strtoull(argv[++i], NULL, 10);
            else if (!strcmp(argv[i], "--limit") && i + 1 < argc)
                limit = (uint32_t)strtoul(argv[++i], NULL, 10);
            else
                return fail_msg("chat", EX_USAGE, "%s", usage);
        }
        if (limit == 0 || limit > 200)
            return fail_msg("chat", EX_USAGE, "--limit: 1..200");
        int ex = lobby_up("chat", &w);
        if (ex)
            return ex;
        wyc_chat_message_t *msgs = wy_calloc(limit, sizeof *msgs);
        size_t n = 0;
        uint64_t last = 0;
        bool more = false;
        if (wyc_sync_chat_history(g_sync, argv[1], after, 0, after > 0, limit, msgs, limit, &n,
                                  &last, &more, &e) != WY_OK) {
            wy_free(msgs);
            return fail("chat", &e);
        }
        if (opt.json) {
            json_t *arr = json_array();
            for (size_t i = 0; i < n; i++)
                json_array_append_new(arr, json_pack("{s:I, s:s, s:s, s:s, s:s, s:I, s:b}", "seq",
                                                     (json_int_t)msgs[i].seq, "type", msgs[i].type,
                                                     "sender_id", msgs[i].sender_id, "sender_name",
                                                     msgs[i].sender_name, "text", msgs[i].text,
                                                     "ts_ms", (json_int_t)msgs[i].ts_ms, "deleted",
                                                     msgs[i].deleted));
            json_out(json_pack("{s:b, s:s, s:s, s:o, s:I, s:b}", "ok", 1, "command", "chat",
                               "channel_id", argv[1], "messages", arr, "last_seq", (json_int_t)last,
                               "more", more));
        } else {
            for (size_t i = 0; i < n; i++)
                printf("#%llu %s %s: %s\n", (unsigned long long)msgs[i].seq, msgs[i].type,
                       msgs[i].sender_name[0] ? msgs[i].sender_name : msgs[i].sender_id,
                       msgs[i].deleted ? "(deleted)" : msgs[i].text);
        }
        wy_free(msgs);
        return EX_OK;
    }
    const char *channel = argv[1], *arg = NULL, *text = NULL, *sop = op;
    if (!strcmp(op, "send") && argc == 4 && !strcmp(argv[1], "--to")) {
        sop = "whisper";
        channel = NULL;
        arg = argv[2];
        text = argv[3];
    } else if (!strcmp(op, "send") && argc == 3) {
        text = argv[2];
    } else if ((!strcmp(op, "invite") || !strcmp(op, "kick")) && argc == 3) {
        arg = argv[2];
    } else if (!strcmp(op, "create") && argc <= 3) {
        arg = argc == 3 ? argv[2] : "";
    } else if ((strcmp(op, "join") && strcmp(op, "leave")) || argc != 2) {
        return fail_msg("chat", EX_USAGE, "%s", usage);
    }
    int ex = lobby_up("chat", &w);
    if (ex)
        return ex;
    wyc_chat_result_t *r = wy_calloc(1, sizeof *r);
    if (wyc_sync_chat(g_sync, sop, channel, arg, text, r, &e) != WY_OK) {
        wy_free(r);
        return fail("chat", &e);
    }
    if (opt.json)
        json_out(json_pack("{s:b, s:s, s:s, s:s, s:I, s:s, s:b, s:b}", "ok", 1, "command", "chat",
                           "op", op, "channel_id", r->channel_id, "seq", (json_int_t)r->seq, "text",
                           r->text, "masked", r->masked, "offline", r->offline));
    else if (!strcmp(op, "send"))
        printf("Sent to %s as #%llu%s%s\n", r->channel_id, (unsigned long long)r->seq,
               r->masked ? " (filtered words masked)" : "",
               r->offline ? " (offline: delivered at their next login)" : "");
    else
        printf("%s %s (#%llu)\n", op, r->channel_id, (unsigned long long)r->seq);
    wy_free(r);
    return EX_OK;
}

/* ------------------------------------------------------------------ characters, friends */

static json_t *character_json(const wyc_character_t *ch)
{
    return json_pack("{s:s, s:s, s:s, s:i, s:I, s:I, s:s, s:b}", "actor_id", ch->actor_id, "name",
                     ch->name, "class", ch->class_name, "level", (int)ch->level, "xp",
                     (json_int_t)ch->xp, "gold", (json_int_t)ch->gold, "zone", ch->zone, "deleted",
                     ch->deleted);
}

static void print_characters(const char *command, const wyc_character_t *cs, size_t n)
{
    if (opt.json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(arr, character_json(&cs[i]));
        json_out(json_pack("{s:b, s:s, s:o}", "ok", 1, "command", command, "characters", arr));
        return;
    }
    for (size_t i = 0; i < n; i++)
        printf("%-16s %-10s level %-3u %s%s\n", cs[i].name, cs[i].class_name, cs[i].level,
               cs[i].actor_id, cs[i].deleted ? " (deleted)" : "");
    if (n == 0)
        printf("No characters.\n");
}

/* One of the player's characters by id or name (case-insensitive) into id[37]. */
static int my_character(const char *what, const char *arg, char id[40])
{
    if (looks_like_uuid(arg)) {
        snprintf(id, 40, "%s", arg);
        return EX_OK;
    }
    wyc_character_t cs[WYC_CHARACTERS_MAX];
    size_t n = 0;
    wyc_error_t e;
    if (wyc_sync_characters(g_sync, cs, WYC_CHARACTERS_MAX, &n, &e) != WY_OK)
        return fail(what, &e);
    for (size_t i = 0; i < n; i++)
        if (!strcasecmp(cs[i].name, arg)) {
            snprintf(id, 40, "%s", cs[i].actor_id);
            return EX_OK;
        }
    return fail_msg(what, EX_INVALID, "you have no character named %s", arg);
}

static int cmd_character(profile_t *p, int argc, char **argv)
{
    (void)p;
    const char *sub = argc ? argv[0] : "";
    bool list = !strcmp(sub, "list") && argc == 1;
    bool create = !strcmp(sub, "create") && (argc == 2 || argc == 3);
    bool del = !strcmp(sub, "delete") && argc == 2;
    if (!list && !create && !del)
        return fail_msg("character", EX_USAGE,
                        "usage: wy character list | create NAME [CLASS] | delete CHAR");
    wyc_welcome_t w;
    int ex = lobby_up("character", &w);
    if (ex)
        return ex;
    wyc_error_t e;
    if (list) {
        wyc_character_t cs[WYC_CHARACTERS_MAX];
        size_t n = 0;
        if (wyc_sync_characters(g_sync, cs, WYC_CHARACTERS_MAX, &n, &e) != WY_OK)
            return fail("character", &e);
        print_characters("character list", cs, n);
        return EX_OK;
    }
    wyc_character_t ch;
    if (create) {
        if (wyc_sync_character_create(g_sync, argv[1], argc == 3 ? argv[2] : "warrior", &ch, &e) !=
            WY_OK)
            return fail("character", &e);
        print_characters("character create", &ch, 1);
        return EX_OK;
    }
    char id[40];
    if ((ex = my_character("character", argv[1], id)))
        return ex;
    if (wyc_sync_character_delete(g_sync, id, &ch, &e) != WY_OK)
        return fail("character", &e);
    print_characters("character delete", &ch, 1);
    return EX_OK;
}

static int cmd_friend(profile_t *p, int argc, char **argv)
{
    (void)p;
    static const char *const OPS[] = {"request", "accept", "decline", "remove"};
    const char *sub = argc ? argv[0] : "";
    int op = -1;
    for (int i = 0; i < 4; i++)
        if (!strcmp(sub, OPS[i]) && argc == 3)
            op = i;
    bool list = !strcmp(sub, "list") && argc == 2;
    if (op < 0 && !list)
        return fail_msg("friend", EX_USAGE,
                        "usage: wy friend request|accept|decline|remove CHAR OTHER | list CHAR");
    wyc_welcome_t w;
    int ex = lobby_up("friend", &w);
    char id[40];
    if (ex || (ex = my_character("friend", argv[1], id)))
        return ex;
    wyc_friend_t fs[WYC_FRIENDS_MAX];
    size_t n = 0;
    wyc_error_t e;
    int rc = list ? wyc_sync_friends(g_sync, id, fs, WYC_FRIENDS_MAX, &n, &e)
                  : wyc_sync_friend(g_sync, (wyc_friend_op_t)op, id, argv[2], fs, WYC_FRIENDS_MAX,
                                    &n, &e);
    if (rc != WY_OK)
        return fail("friend", &e);
    if (opt.json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(
                arr, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "actor_id", fs[i].actor_id, "name",
                               fs[i].name, "account_id", fs[i].account_id, "status",
                               wyc_friend_status_name(fs[i].status), "presence",
                               wyc_presence_name(fs[i].presence), "zone", fs[i].zone));
        json_out(json_pack("{s:b, s:s, s:s, s:o}", "ok", 1, "command", "friend", "op", sub,
                           "friends", arr));
        return EX_OK;
    }
    for (size_t i = 0; i < n; i++)
        printf("%-16s %-10s %-8s %s%s%s\n", fs[i].name, wyc_friend_status_name(fs[i].status),
               wyc_presence_name(fs[i].presence), fs[i].actor_id, fs[i].zone[0] ? " " : "",
               fs[i].zone);
    if (n == 0)
        printf("No friends yet.\n");
    return EX_OK;
}

static void on_signal(int sig)
{
    (void)sig;
    if (g_sync)
        wyc_sync_interrupt(g_sync);
}

static int cmd_lobby(profile_t *p, int argc, char **argv)
{
    long for_s = 0;
    const char *follow[8];
    int nfollow = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--for") && i + 1 < argc)
            for_s = strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--follow") && i + 1 < argc && nfollow < 8)
            follow[nfollow++] = argv[++i];
        else
            return fail_msg("lobby", EX_USAGE,
                            "usage: wy lobby [--for SECONDS] [--follow CHANNEL[@SEQ]]...");
    }
    wyc_welcome_t w;
    int ex = lobby_up("lobby", &w);
    if (ex)
        return ex;
    /* Followed channels print in seq order after SEQ (default 0), gaps filled from history. */
    for (int i = 0; i < nfollow; i++) {
        char ch[WYC_CHAT_CHANNEL_MAX];
        snprintf(ch, sizeof ch, "%s", follow[i]);
        char *at = strrchr(ch, '@');
        uint64_t seq = 0;
        if (at) {
            *at = '\0';
            seq = strtoull(at + 1, NULL, 10);
        }
        if (wyc_chat_follow(wyc_sync_client(g_sync), ch, seq) != WY_OK)
            return fail_msg("lobby", EX_USAGE, "--follow: bad channel \"%s\"", follow[i]);
    }
    wyc_event_t first;
    memset(&first, 0, sizeof first);
    first.type = WYC_EV_WELCOME;
    first.welcome = w;
    print_event(&first);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    uint64_t end = for_s > 0 ? wy_now_ms() + (uint64_t)for_s * 1000 : 0;
    for (;;) {
        uint64_t now = wy_now_ms();
        if (end && now >= end)
            break;
        wyc_event_t ev;
        int rc = wyc_sync_next_event(g_sync, end ? (uint32_t)(end - now) : 0, &ev);
        if (rc == WY_ECANCELED)
            break;
        if (rc != WY_OK)
            continue;
        if (ev.type == WYC_EV_TOKENS) {
            if ((ex = resave("lobby", p)))
                return ex;
        }
        print_event(&ev);
        if (ev.type == WYC_EV_CLOSED) {
            if (!strcmp(ev.error.server_code, "KICKED") || ev.error.ws_close == 4002)
                return EX_KICKED;
            return exit_for(&ev.error) ? exit_for(&ev.error) : EX_FAIL;
        }
    }
    wyc_lobby_close(wyc_sync_client(g_sync));
    return EX_OK;
}

/* `wy play --map`: a terminal view of the player's surroundings, redrawn 10 times a second
 * (ANSI escapes only: works under tmux): one character per 4 m, '@' the player, 'P' other
 * players, 'n' NPCs, the view circle dotted. Arrow keys run that way, space stops, w toggles
 * walk/run, q quits (the player leaves). */
#define MAP_W     61
#define MAP_H     31
#define MAP_SCALE 4.0

static void map_draw(wyc_game_t *g, const wyc_game_welcome_t *w, int mode)
{
    static wyc_entity_t ents[1024];
    size_t n = wyc_game_entities(g, ents, WY_ARRAY_LEN(ents));
    if (n > WY_ARRAY_LEN(ents))
        n = WY_ARRAY_LEN(ents);
    uint32_t self = wyc_game_self(g);
    double cx = w->x, cy = w->y;
    for (size_t i = 0; i < n; i++)
        if (ents[i].id == self) {
            cx = ents[i].x;
            cy = ents[i].y;
        }
    char grid[MAP_H][MAP_W + 1];
    for (int r = 0; r < MAP_H; r++) {
        for (int c = 0; c < MAP_W; c++) {
            double dx = (c - MAP_W / 2) * MAP_SCALE, dy = (r - MAP_H / 2) * MAP_SCALE;
            double d = sqrt(dx * dx + dy * dy);
            grid[r][c] = fabs(d - 64) < MAP_SCALE / 2 ? '.' : ' ';
        }
        grid[r][MAP_W] = 0;
    }
    for (size_t i = 0; i < n; i++) {
        int c = (int)lround((ents[i].x - cx) / MAP_SCALE) + MAP_W / 2;
        int r = (int)lround((ents[i].y - cy) / MAP_SCALE) + MAP_H / 2;
        if (c < 0 || c >= MAP_W || r < 0 || r >= MAP_H)
            continue;
        grid[r][c] = ents[i].id == self ? '@' : ents[i].kind == 2 ? 'n' : 'P';
    }
    printf("\033[H\033[2J%s (%s) at (%.1f, %.1f)  %s  %zu visible\r\n", w->zone_id, w->instance_id,
           cx, cy, mode == 2 ? "run" : "walk", n);
    for (int r = 0; r < MAP_H; r++)
        printf("|%s|\r\n", grid[r]);
    printf("arrows: move  space: stop  w: walk/run  q: quit\r\n");
    fflush(stdout);
}

static void map_loop(const wyc_game_welcome_t *w)
{
    wyc_game_t *g = wyc_sync_game(g_sync);
    struct termios saved, raw;
    bool tty = tcgetattr(STDIN_FILENO, &saved) == 0;
    if (tty) {
        raw = saved;
        raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
        raw.c_cc[VMIN] = 0;
        raw.c_cc[VTIME] = 0;
        tcsetattr(STDIN_FILENO, TCSANOW, &raw);
    }
    int mode = 2;
    uint64_t next_draw = 0;
    for (;;) {
        wyc_event_t ev;
        if (wyc_sync_next_event(g_sync, 20, &ev) == WY_ECANCELED || !(g = wyc_sync_game(g_sync)))
            break;
        unsigned char k[8];
        struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
        ssize_t r =
            poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLIN) ? read(STDIN_FILENO, k, sizeof k) : 0;
        bool quit = false;
        for (ssize_t i = 0; i < r; i++) {
            if (k[i] == 'q') {
                quit = true;
            } else if (k[i] == ' ') {
                wyc_game_move(g, 0, 0);
            } else if (k[i] == 'w') {
                mode = mode == 2 ? 1 : 2;
            } else if (k[i] == 27 && i + 2 < r && k[i + 1] == '[') {
                double heading = k[i + 2] == 'A'   ? 270
                                 : k[i + 2] == 'B' ? 90
                                 : k[i + 2] == 'C' ? 0
                                                   : 180;
                wyc_game_move(g, mode, heading);
                i += 2;
            }
        }
        if (quit)
            break;
        if (wy_now_ms() >= next_draw) {
            map_draw(g, w, mode);
            next_draw = wy_now_ms() + 100;
        }
    }
    if (tty)
        tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    printf("\r\n");
}

static int cmd_play(profile_t *p, int argc, char **argv)
{
    (void)p;
    long for_s = 0;
    bool map = false;
    enum { SAYS_MAX = 16 };
    const char *say_to[SAYS_MAX], *say_text[SAYS_MAX];
    int nsay = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--map")) {
            map = true;
        } else if (!strcmp(argv[i], "--for") && i + 1 < argc) {
            for_s = strtol(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--say") && i + 2 < argc && nsay < SAYS_MAX) {
            say_to[nsay] = argv[++i];
            say_text[nsay++] = argv[++i];
        } else {
            argc = 0;
            break;
        }
    }
    if (argc < 1)
        return fail_msg("play", EX_USAGE,
                        "usage: wy play CHARACTER [--for SECONDS] [--map] [--say CHANNEL|@ACCOUNT "
                        "TEXT]...");
    wyc_welcome_t lw;
    int ex = lobby_up("play", &lw);
    if (ex)
        return ex;
    char id[40];
    if ((ex = my_character("play", argv[0], id)))
        return ex;
    wyc_entry_t en;
    wyc_error_t e;
    if (wyc_sync_enter_game(g_sync, id, &en, &e) != WY_OK)
        return fail("play", &e);
    wyc_game_welcome_t w;
    if (wyc_sync_game_join(g_sync, &en, &w, &e) != WY_OK)
        return fail("play", &e);
    if (opt.json)
        json_out(json_pack("{s:b, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:i, s:f, s:f}", "ok", 1,
                           "command", "play", "event", "welcome", "character_id", w.character_id,
                           "game_id", w.game_id, "zone_id", w.zone_id, "instance_id", w.instance_id,
                           "entity_id", (json_int_t)w.entity_id, "tick_rate", (int)w.tick_rate, "x",
                           w.x, "y", w.y));
    else
        printf("welcome: character %s, entity %llu, zone %s (%s), game %s, tick %u Hz, at "
               "(%.2f, %.2f)\n",
               w.character_id, (unsigned long long)w.entity_id, w.zone_id, w.instance_id, w.game_id,
               w.tick_rate, w.x, w.y);
    fflush(stdout);
    /* Chat from the game connection: CHANNEL ("zone", "world", "party:<id>", ...) or @ACCOUNT. */
    for (int i = 0; i < nsay; i++) {
        bool whisper = say_to[i][0] == '@';
        wyc_chat_result_t *r = wy_calloc(1, sizeof *r);
        int rc = wyc_sync_game_chat_send(g_sync, whisper ? NULL : say_to[i],
                                         whisper ? say_to[i] + 1 : NULL, say_text[i], r, &e);
        if (rc != WY_OK) {
            wy_free(r);
            (void)wyc_sync_game_leave(g_sync, NULL, NULL, NULL);
            return fail("play", &e);
        }
        if (opt.json)
            json_out(json_pack("{s:b, s:s, s:s, s:s, s:I, s:s, s:b, s:b}", "ok", 1, "command",
                               "play", "event", "chat_sent", "channel_id", r->channel_id, "seq",
                               (json_int_t)r->seq, "text", r->text, "masked", r->masked, "offline",
                               r->offline));
        else
            printf("Sent to %s as #%llu%s\n", r->channel_id, (unsigned long long)r->seq,
                   r->masked ? " (filtered words masked)" : "");
        fflush(stdout);
        wy_free(r);
    }
    if (map) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        map_loop(&w);
    } else if (for_s > 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        uint64_t end = wy_now_ms() + (uint64_t)for_s * 1000;
        for (uint64_t now = wy_now_ms(); now < end; now = wy_now_ms()) {
            wyc_event_t ev;
            int rc = wyc_sync_next_event(g_sync, (uint32_t)(end - now), &ev);
            if (rc == WY_ECANCELED)
                break;
            if (rc == WY_OK && ev.type == WYC_EV_CHAT) /* chat pushed by the game (or lobby) */
                print_event(&ev);
        }
    }
    double x = 0, y = 0;
    if (wyc_sync_game_leave(g_sync, &x, &y, &e) != WY_OK)
        return fail("play", &e);
    if (opt.json)
        json_out(json_pack("{s:b, s:s, s:s, s:f, s:f}", "ok", 1, "command", "play", "event", "left",
                           "x", x, "y", y));
    else
        printf("left: position (%.2f, %.2f) saved\n", x, y);
    wyc_lobby_close(wyc_sync_client(g_sync));
    return EX_OK;
}

/* ------------------------------------------------------------------ profile choice */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Profiles to try, in order: "default" first, then the others by name. Returns a count. */
static int list_profiles(char names[][80], int cap)
{
    char dir[4096];
    cred_dir(dir, sizeof dir);
    int n = 0;
    snprintf(names[n++], 80, "default");
    DIR *d = opendir(dir);
    if (!d)
        return n;
    char *found[256] = {0};
    int nf = 0;
    struct dirent *de;
    while ((de = readdir(d)) && nf < 256) {
        size_t l = strlen(de->d_name);
        if (l > 5 && !strcmp(de->d_name + l - 5, ".cred") && l - 5 < 80) {
            char *s = wy_strndup(de->d_name, l - 5);
            if (strcmp(s, "default") != 0 && profile_ok(s))
                found[nf++] = s;
            else
                wy_free(s);
        }
    }
    closedir(d);
    qsort(found, (size_t)nf, sizeof found[0], cmp_str);
    for (int i = 0; i < nf; i++) {
        if (n < cap)
            snprintf(names[n++], 80, "%s", found[i]);
        wy_free(found[i]);
    }
    return n;
}

static int new_sync(void)
{
    const char *err = NULL;
    if (g_sync)
        wyc_sync_free(g_sync);
    g_sync = NULL;
    if (wyc_sync_new(&opt.cfg, &g_sync, &err) != WY_OK)
        return fail_msg("config", EX_USAGE, "%s", err);
    return EX_OK;
}

/* wy lobby / wy presence without --profile: the first profile that is logged in, not in use by
 * another wy, and (lobby) not refused as logged in elsewhere. */
static int run_any_profile(const char *cmd, int argc, char **argv)
{
    char names[64][80];
    int n = list_profiles(names, 64);
    int last = EX_AUTH;
    bool tried = false;
    for (int i = 0; i < n; i++) {
        profile_t p = {0};
        profile_path(&p, names[i]);
        if (access(p.path, F_OK) != 0)
            continue;
        if (profile_lock(&p) != WY_OK) {
            if (!opt.json)
                fprintf(stderr, "wy %s: profile %s is in use by another wy; trying the next\n", cmd,
                        p.name);
            last = EX_CONFLICT;
            continue;
        }
        tried = true;
        int ex = new_sync();
        if (!ex)
            ex = use_profile(cmd, &p);
        if (!ex)
            ex = !strcmp(cmd, "lobby") ? cmd_lobby(&p, argc, argv) : cmd_presence(&p, argc, argv);
        profile_unlock(&p);
        /* Logged in elsewhere (reject-new) or a dead login: the next profile may do. */
        if (ex != EX_CONFLICT && ex != EX_AUTH)
            return ex;
        last = ex;
        if (!opt.json)
            fprintf(stderr, "wy %s: profile %s cannot be used; trying the next\n", cmd, p.name);
    }
    if (!tried && last == EX_AUTH)
        return fail_msg(cmd, EX_AUTH, "not logged in: run wy login USERNAME");
    if (last == EX_CONFLICT)
        return fail_msg(cmd, EX_CONFLICT,
                        "every saved login is in use or logged in elsewhere: log in with another "
                        "--profile");
    return last;
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    wyc_config_from_env(&opt.cfg);
    opt.cred_file = getenv("WY_CREDENTIALS");
    static const struct option LONG[] = {
        {"server", required_argument, NULL, 's'},
        {"auth-url", required_argument, NULL, 'a'},
        {"lobby-url", required_argument, NULL, 'l'},
        {"profile", required_argument, NULL, 'p'},
        {"credentials", required_argument, NULL, 'c'},
        {"password-stdin", no_argument, NULL, 'P'},
        {"json", no_argument, NULL, 'j'},
        {"timeout", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    /* Options stop at the command, so `wy login --device ID` keeps its own flags. */
    int c;
    while ((c = getopt_long(argc, argv, "+h", LONG, NULL)) != -1) {
        switch (c) {
        case 's':
            snprintf(opt.auth_buf, sizeof opt.auth_buf, "http://%s:8080", optarg);
            snprintf(opt.lobby_buf, sizeof opt.lobby_buf, "ws://%s:8081/v1/lobby", optarg);
            opt.cfg.auth_url = opt.auth_buf;
            opt.cfg.lobby_url = opt.lobby_buf;
            break;
        case 'a':
            opt.cfg.auth_url = optarg;
            break;
        case 'l':
            opt.cfg.lobby_url = optarg;
            break;
        case 'p':
            opt.profile = optarg;
            break;
        case 'c':
            opt.cred_file = optarg;
            break;
        case 'P':
            opt.password_stdin = true;
            break;
        case 'j':
            opt.json = true;
            break;
        case 't':
            opt.cfg.timeout_ms = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'h':
            fputs(USAGE, stdout);
            return EX_OK;
        default:
            fputs(USAGE, stderr);
            return EX_USAGE;
        }
    }
    /* Trailing global flags after the command (wy whoami --json) are accepted too. */
    int n = 0;
    char *rest[256];
    for (int i = optind; i < argc && n < 256; i++) {
        if (!strcmp(argv[i], "--json"))
            opt.json = true;
        else if (!strcmp(argv[i], "--password-stdin"))
            opt.password_stdin = true;
        else if (!strcmp(argv[i], "--profile") && i + 1 < argc)
            opt.profile = argv[++i];
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(USAGE, stdout);
            return EX_OK;
        } else
            rest[n++] = argv[i];
    }
    if (n == 0) {
        fputs(USAGE, stderr);
        return EX_USAGE;
    }
    const char *cmd = rest[0];
    static const char *const CMDS[] = {"register", "login",     "logout", "whoami",
                                       "nick",     "presence",  "lobby",  "play",
                                       "chat",     "character", "friend"};
    bool known = false;
    for (size_t i = 0; i < WY_ARRAY_LEN(CMDS); i++)
        known |= !strcmp(cmd, CMDS[i]);
    if (!known) {
        fprintf(stderr, "wy: unknown command \"%s\"\n\n%s", cmd, USAGE);
        return EX_USAGE;
    }
    if (opt.profile && !profile_ok(opt.profile))
        return fail_msg(cmd, EX_USAGE, "--profile: use letters, digits, '-', '_' and '.'");
    signal(SIGPIPE, SIG_IGN);

    int ex;
    if (!opt.profile && !opt.cred_file && (!strcmp(cmd, "lobby") || !strcmp(cmd, "presence"))) {
        ex = run_any_profile(cmd, n - 1, rest + 1);
    } else {
        profile_t p = {0};
        profile_path(&p, opt.profile ? opt.profile : "default");
        if (opt.cred_file) {
            snprintf(p.path, sizeof p.path, "%s", opt.cred_file);
            snprintf(p.name, sizeof p.name, "%s", opt.profile ? opt.profile : "(file)");
        }
        int rc = profile_lock(&p);
        if (rc == WY_EBUSY)
            return fail_msg(cmd, EX_CONFLICT,
                            "profile %s is in use by another wy (wy lobby?): use --profile NAME "
                            "for a second client",
                            p.name);
        if (rc != WY_OK)
            return fail_msg(cmd, EX_CREDS, "cannot lock %s.lock: %s", p.path, strerror(errno));
        ex = new_sync();
        if (!ex) {
            if (!strcmp(cmd, "register"))
                ex = cmd_register(&p, n - 1, rest + 1);
            else if (!strcmp(cmd, "login"))
                ex = cmd_login(&p, n - 1, rest + 1);
            else if (!strcmp(cmd, "logout"))
                ex = cmd_logout(&p);
            else if (!strcmp(cmd, "whoami"))
                ex = cmd_whoami(&p);
            else {
                ex = use_profile(cmd, &p);
                if (!ex) {
                    if (!strcmp(cmd, "nick"))
                        ex = cmd_nick(&p, n - 1, rest + 1);
                    else if (!strcmp(cmd, "presence"))
                        ex = cmd_presence(&p, n - 1, rest + 1);
                    else if (!strcmp(cmd, "play"))
                        ex = cmd_play(&p, n - 1, rest + 1);
                    else if (!strcmp(cmd, "chat"))
                        ex = cmd_chat(&p, n - 1, rest + 1);
                    else if (!strcmp(cmd, "character"))
                        ex = cmd_character(&p, n - 1, rest + 1);
                    else if (!strcmp(cmd, "friend"))
                        ex = cmd_friend(&p, n - 1, rest + 1);
                    else
                        ex = cmd_lobby(&p, n - 1, rest + 1);
                }
            }
            /* Whatever happened, the newest refresh token must reach the file. */
            if (wyc_session(wyc_sync_client(g_sync)) && strcmp(cmd, "logout") != 0) {
                int sx = resave(cmd, &p);
                if (!ex)
                    ex = sx;
            }
        }
        profile_unlock(&p);
    }
    if (g_sync)
        wyc_sync_free(g_sync);
    return ex;
}
