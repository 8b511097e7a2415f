/* wy-keygen: writes a new Ed25519 signing key (PKCS#8 PEM) for wy-auth into a file created
 * with mode 0600. The file name without ".pem" is the key's kid in WY_AUTH_KEYS_DIR.
 *   wy-keygen <dir>/<kid>.pem      (refuses to overwrite an existing file) */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "wy_token.h"

int main(int argc, char **argv)
{
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: %s <dir>/<kid>.pem\n"
                        "Writes a new Ed25519 private key (mode 0600) for WY_AUTH_KEYS_DIR.\n",
                argc > 0 ? argv[0] : "wy-keygen");
        return 2;
    }
    char *pem = NULL;
    if (wy_token_generate_ed25519_pem(&pem) != WY_OK) {
        fprintf(stderr, "wy-keygen: cannot generate a key\n");
        return 1;
    }
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "wy-keygen: %s: %s\n", argv[1], strerror(errno));
        OPENSSL_cleanse(pem, strlen(pem));
        wy_free(pem);
        return 1;
    }
    size_t len = strlen(pem), off = 0;
    int rc = 0;
    while (off < len) {
        ssize_t n = write(fd, pem + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, "wy-keygen: %s: %s\n", argv[1], strerror(errno));
            rc = 1;
            break;
        }
        off += (size_t)n;
    }
    if (rc == 0 && fsync(fd) != 0)
        rc = 1;
    close(fd);
    OPENSSL_cleanse(pem, len);
    wy_free(pem);
    if (rc != 0)
        unlink(argv[1]);
    return rc;
}
