/*
 * sodium_kat: a reference oracle for tests/crypto_kat.rs.
 *
 * It calls the system libsodium (Debian's libsodium-dev) directly, with no
 * Rust in between, so the tests can compare our crypto facade against an
 * independent build of the library c-toxcore uses.
 *
 * Protocol: one command per line on stdin, arguments hex-encoded and
 * separated by single spaces; an empty byte string is written "-". For each
 * command exactly one line goes to stdout: the result in lowercase hex ("-"
 * when the result is empty), or "error" when libsodium refuses the input
 * (a failed beforenm or open) or the command is malformed.
 *
 *   scalarmult_base   <sk>                      -> pk (crypto_scalarmult_base)
 *   beforenm          <pk> <sk>                 -> k  (crypto_box_beforenm)
 *   easy_afternm      <k> <nonce> <msg>         -> mac||ct
 *   box_easy          <pk> <sk> <nonce> <msg>   -> mac||ct (no precomputation)
 *   open_easy_afternm <k> <nonce> <sealed>      -> msg
 *   sha256            <msg>                     -> digest
 *   sha512            <msg>                     -> digest
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ARGS 4

struct arg {
    unsigned char *bytes;
    size_t len;
};

/* Decodes one hex token ("-" is empty) into a fresh buffer. */
static int decode(const char *hex, struct arg *out)
{
    size_t hex_len = strlen(hex);
    size_t bin_len = 0;

    out->bytes = NULL;
    out->len = 0;
    if (strcmp(hex, "-") == 0) {
        out->bytes = malloc(1);
        return out->bytes != NULL ? 0 : -1;
    }
    if (hex_len == 0 || hex_len % 2 != 0) {
        return -1;
    }
    out->bytes = malloc(hex_len / 2);
    if (out->bytes == NULL) {
        return -1;
    }
    if (sodium_hex2bin(out->bytes, hex_len / 2, hex, hex_len, NULL, &bin_len, NULL) != 0 ||
        bin_len != hex_len / 2) {
        free(out->bytes);
        out->bytes = NULL;
        return -1;
    }
    out->len = bin_len;
    return 0;
}

static void print_hex(const unsigned char *bytes, size_t len)
{
    if (len == 0) {
        puts("-");
        return;
    }
    char *hex = malloc(len * 2 + 1);
    if (hex == NULL) {
        puts("error");
        return;
    }
    sodium_bin2hex(hex, len * 2 + 1, bytes, len);
    puts(hex);
    free(hex);
}

static int has_lengths(const struct arg *args, size_t argc, size_t want_argc,
                       const size_t *fixed)
{
    if (argc != want_argc) {
        return 0;
    }
    for (size_t i = 0; i < argc; i++) {
        if (fixed[i] != 0 && args[i].len != fixed[i]) {
            return 0;
        }
    }
    return 1;
}

/* Runs one command; returns 0 when a result was printed, -1 for "error". */
static int run(const char *cmd, const struct arg *a, size_t argc)
{
    static const size_t pk_sk[] = { crypto_box_PUBLICKEYBYTES, crypto_box_SECRETKEYBYTES };
    static const size_t sk[] = { crypto_box_SECRETKEYBYTES };
    static const size_t k_n_m[] = { crypto_box_BEFORENMBYTES, crypto_box_NONCEBYTES, 0 };
    static const size_t pk_sk_n_m[] = { crypto_box_PUBLICKEYBYTES, crypto_box_SECRETKEYBYTES,
                                        crypto_box_NONCEBYTES, 0 };
    static const size_t m[] = { 0 };

    if (strcmp(cmd, "scalarmult_base") == 0 && has_lengths(a, argc, 1, sk)) {
        unsigned char pk[crypto_scalarmult_BYTES];
        if (crypto_scalarmult_base(pk, a[0].bytes) != 0) {
            return -1;
        }
        print_hex(pk, sizeof pk);
        return 0;
    }
    if (strcmp(cmd, "beforenm") == 0 && has_lengths(a, argc, 2, pk_sk)) {
        unsigned char k[crypto_box_BEFORENMBYTES];
        if (crypto_box_beforenm(k, a[0].bytes, a[1].bytes) != 0) {
            return -1;
        }
        print_hex(k, sizeof k);
        return 0;
    }
    if (strcmp(cmd, "easy_afternm") == 0 && has_lengths(a, argc, 3, k_n_m)) {
        size_t len = a[2].len + crypto_box_MACBYTES;
        unsigned char *c = malloc(len);
        int rc = -1;
        if (c != NULL &&
            crypto_box_easy_afternm(c, a[2].bytes, a[2].len, a[1].bytes, a[0].bytes) == 0) {
            print_hex(c, len);
            rc = 0;
        }
        free(c);
        return rc;
    }
    if (strcmp(cmd, "box_easy") == 0 && has_lengths(a, argc, 4, pk_sk_n_m)) {
        size_t len = a[3].len + crypto_box_MACBYTES;
        unsigned char *c = malloc(len);
        int rc = -1;
        if (c != NULL &&
            crypto_box_easy(c, a[3].bytes, a[3].len, a[2].bytes, a[0].bytes, a[1].bytes) == 0) {
            print_hex(c, len);
            rc = 0;
        }
        free(c);
        return rc;
    }
    if (strcmp(cmd, "open_easy_afternm") == 0 && has_lengths(a, argc, 3, k_n_m)) {
        if (a[2].len < crypto_box_MACBYTES) {
            return -1;
        }
        size_t len = a[2].len - crypto_box_MACBYTES;
        unsigned char *m_out = malloc(len + 1);
        int rc = -1;
        if (m_out != NULL && crypto_box_open_easy_afternm(m_out, a[2].bytes, a[2].len,
                                                          a[1].bytes, a[0].bytes) == 0) {
            print_hex(m_out, len);
            rc = 0;
        }
        free(m_out);
        return rc;
    }
    if (strcmp(cmd, "sha256") == 0 && has_lengths(a, argc, 1, m)) {
        unsigned char h[crypto_hash_sha256_BYTES];
        crypto_hash_sha256(h, a[0].bytes, a[0].len);
        print_hex(h, sizeof h);
        return 0;
    }
    if (strcmp(cmd, "sha512") == 0 && has_lengths(a, argc, 1, m)) {
        unsigned char h[crypto_hash_sha512_BYTES];
        crypto_hash_sha512(h, a[0].bytes, a[0].len);
        print_hex(h, sizeof h);
        return 0;
    }
    return -1;
}

int main(void)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;

    if (sodium_init() < 0) {
        fputs("sodium_kat: sodium_init failed\n", stderr);
        return 1;
    }
    while ((got = getline(&line, &cap, stdin)) != -1) {
        struct arg args[MAX_ARGS];
        size_t argc = 0;
        int bad = 0;
        char *save = NULL;

        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) {
            line[--got] = '\0';
        }
        char *cmd = strtok_r(line, " ", &save);
        if (cmd == NULL) {
            puts("error");
            fflush(stdout);
            continue;
        }
        for (char *tok = strtok_r(NULL, " ", &save); tok != NULL;
             tok = strtok_r(NULL, " ", &save)) {
            if (argc == MAX_ARGS || decode(tok, &args[argc]) != 0) {
                bad = 1;
                break;
            }
            argc++;
        }
        if (bad || run(cmd, args, argc) != 0) {
            puts("error");
        }
        for (size_t i = 0; i < argc; i++) {
            free(args[i].bytes);
        }
        /* Line by line, so a caller may also talk to us interactively. */
        fflush(stdout);
    }
    free(line);
    return ferror(stdin) ? 1 : 0;
}
