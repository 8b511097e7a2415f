/* wy-auth input rules (see validate.h): identifiers people type go through wy_text. */
#include "validate.h"
#include "wy_text.h"

#include <string.h>

static const wy_text_rules_t username_rules = {
    .min_chars = AUTH_USERNAME_MIN,
    .max_chars = AUTH_USERNAME_MAX,
    .max_bytes = AUTH_USERNAME_MAX * 4,
    .classes = WY_TEXT_LETTER | WY_TEXT_MARK | WY_TEXT_DIGIT,
    .extra = "_-.",
    .first_alnum = true,
    .single_script = true,
};

static const wy_text_rules_t password_rules = {
    .min_chars = AUTH_PASSWORD_MIN,
    .max_chars = AUTH_PASSWORD_MAX,
    .max_bytes = AUTH_PASSWORD_MAX_B,
    .classes = WY_TEXT_LETTER | WY_TEXT_MARK | WY_TEXT_DIGIT | WY_TEXT_NUMBER | WY_TEXT_PUNCT |
               WY_TEXT_SYMBOL | WY_TEXT_SPACE,
};

int auth_validate_username(const char *username, char **key, char **display, const char **why)
{
    *key = *display = NULL;
    size_t len = strlen(username);
    if (len > AUTH_USERNAME_MAX * 4) {
        *why = "username must be 3 to 24 characters";
        return WY_EINVAL;
    }
    if (!wy_text_valid_utf8(username, len)) {
        *why = "username is not valid UTF-8";
        return WY_EINVAL;
    }
    char *k = NULL;
    if (wy_text_fold(username, len, &k) != WY_OK) {
        *why = "username is not valid UTF-8";
        return WY_EINVAL;
    }
    const char *w = NULL;
    if (wy_text_check(k, &username_rules, &w) != WY_OK) {
        if (!strcmp(w, "is too short") || !strcmp(w, "is too long"))
            *why = "username must be 3 to 24 characters";
        else if (!strcmp(w, "mixes letters of different scripts"))
            *why = "username mixes letters of different scripts (look-alike characters)";
        else if (!strcmp(w, "must start with a letter or a digit"))
            *why = "username must start with a letter or a digit";
        else
            *why = "username may contain only letters, digits, '_', '-' and '.'";
        wy_free(k);
        return WY_EINVAL;
    }
    char *d = NULL;
    if (wy_text_nfc(username, len, &d) != WY_OK) {
        wy_free(k);
        *why = "username is not valid UTF-8";
        return WY_EINVAL;
    }
    *key = k;
    *display = d;
    return WY_OK;
}

int auth_password_normalize(const char *password, char **norm)
{
    size_t len = strlen(password);
    *norm = NULL;
    if (len > AUTH_PASSWORD_MAX_B)
        return WY_EINVAL;
    return wy_text_nfkc(password, len, norm);
}

int auth_validate_password(const char *password, const char *username_key, char **norm,
                           const char **why)
{
    *norm = NULL;
    char *n = NULL;
    if (auth_password_normalize(password, &n) != WY_OK) {
        *why = "password is not valid UTF-8 or is too long";
        return WY_EINVAL;
    }
    const char *w = NULL;
    if (wy_text_check(n, &password_rules, &w) != WY_OK) {
        if (!strcmp(w, "is too short") || !strcmp(w, "is too long"))
            *why = "password must be 8 to 128 characters";
        else
            *why = "password contains a control character";
        wy_free(n);
        return WY_EINVAL;
    }
    /* Cheap strength floor: a password made of one repeated character, or equal to the
     * username, is the first thing guessed. */
    size_t pos = 0;
    uint32_t first = 0, cp;
    bool same = true;
    wy_text_next(n, &pos, &first);
    while (wy_text_next(n, &pos, &cp))
        if (cp != first)
            same = false;
    char *folded = NULL;
    bool is_name = false;
    if (username_key && wy_text_fold(n, strlen(n), &folded) == WY_OK)
        is_name = !strcmp(folded, username_key);
    wy_free(folded);
    if (same || is_name) {
        *why = same ? "password is too weak: one repeated character"
                    : "password is too weak: it equals the username";
        wy_free(n);
        return WY_EINVAL;
    }
    *norm = n;
    return WY_OK;
}

int auth_validate_external_id(const char *id, const char **why)
{
    size_t len = strlen(id);
    if (len < AUTH_EXTERNAL_ID_MIN || len > AUTH_EXTERNAL_ID_MAX) {
        *why = "id must be 8 to 128 characters";
        return WY_EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == ':' || c == '-';
        if (!ok) {
            *why = "id may contain only A-Z, a-z, 0-9, '.', '_', ':' and '-'";
            return WY_EINVAL;
        }
    }
    return WY_OK;
}

bool auth_refresh_token_well_formed(const char *tok)
{
    size_t len = strlen(tok);
    if (len != AUTH_REFRESH_TOKEN_LEN && len != AUTH_REFRESH_FAMILY_LEN)
        return false;
    for (const char *p = tok; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    return true;
}

bool auth_uuid_well_formed(const char *s)
{
    if (strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return false;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return false;
        }
    }
    return true;
}
