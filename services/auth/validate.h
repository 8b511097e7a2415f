/* wy-auth input rules: usernames, passwords, device and custom ids. Pure functions,
 * any thread; the HTTP layer turns a failure into 400 with the returned code. */
#ifndef AUTH_VALIDATE_H
#define AUTH_VALIDATE_H

#include "wy_core.h"

#define AUTH_USERNAME_MIN       3
#define AUTH_USERNAME_MAX       24
#define AUTH_PASSWORD_MIN       8
#define AUTH_PASSWORD_MAX       128 /* code points */
#define AUTH_PASSWORD_MAX_B     512 /* bytes, bound before any Unicode work */
#define AUTH_EXTERNAL_ID_MIN    8
#define AUTH_EXTERNAL_ID_MAX    128
#define AUTH_REFRESH_TOKEN_LEN  43 /* base64url of 32 bytes */
#define AUTH_REFRESH_FAMILY_LEN 78 /* base64url of 58 bytes: a token carrying its family */

/* Validates a username as typed. On WY_OK, *key gets its identity key (NFKC + case fold:
 * what uniqueness is checked on) and *display its NFC form (what is shown); both new
 * strings, caller frees. On WY_EINVAL, *why says which rule failed (static). */
int auth_validate_username(const char *username, char **key, char **display, const char **why);

/* Validates a new password. On WY_OK, *norm gets its NFKC form (what is hashed, so the
 * same password typed on another keyboard or IME still matches); caller frees. username_key
 * (may be NULL) is refused as a password. On WY_EINVAL, *why is a static message. */
int auth_validate_password(const char *password, const char *username_key, char **norm,
                           const char **why);

/* NFKC form of a password presented at login, without the strength rules (old passwords
 * keep working when rules change). Returns WY_OK or WY_EINVAL (not UTF-8 / too long). */
int auth_password_normalize(const char *password, char **norm);

/* Device ids and custom ids: 8..128 characters of [A-Za-z0-9._:-]. */
int auth_validate_external_id(const char *id, const char **why);

/* A refresh token as issued: exactly 43 (stored) or 78 (carrying its family) base64url
 * characters. */
bool auth_refresh_token_well_formed(const char *tok);

/* A UUID in canonical text form (36 chars, lower or upper hex). */
bool auth_uuid_well_formed(const char *s);

#endif
