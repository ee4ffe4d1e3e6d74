/*
 * toxpeer: a libtoxcore (c-toxcore 0.2.18) test peer for tuntox's interop tests.
 *
 * Driven over stdin, one command per line; reports events as lines on stdout
 * (flushed after each line); diagnostics go to stderr. The Rust side is
 * tests/support/toxpeer.rs, which documents the line protocol for test writers.
 *
 * Options:
 *   --save FILE          load the identity from FILE if it exists (TOX_SAVE format)
 *   --save-out FILE      write tox_get_savedata to FILE after tox_new and on `save`
 *   --nospam HEX8        tox_self_set_nospam (the 8 hex digits appear as-is in the address)
 *   --udp on|off         UDP enabled (default on)
 *   --ports A:B          UDP start and end port (default: libtoxcore's 33445:33545)
 *   --bootstrap H:P:KEY  tox_bootstrap (repeatable)
 *   --tcp-relay H:P:KEY  tox_add_tcp_relay (repeatable)
 *   --accept any|MSG     accept friend requests (any message, or exactly MSG)
 *   --echo               send every custom lossless and lossy packet back
 *   --quiet-packets      count packets instead of printing each one
 *   --interval-ms N      longest sleep between tox_iterate calls (default 5)
 *   --exit-after-start   print the startup lines and exit
 *   --log                libtoxcore's log on stderr (Debian's build logs little)
 * Always: IPv6 off, LAN discovery off, no TCP server, hole punching on.
 *
 * Startup lines: address HEX76, public_key HEX64, dht_id HEX64, udp_port N.
 * Commands: add HEX76 MESSAGE..., addhex HEX76 MSGHEX, add_norequest HEX64, lossless N HEX,
 *   lossy N HEX, flood COUNT SIZE lossless|lossy N, save, status, quit. End of stdin acts as quit.
 * Events: self_connection none|tcp|udp, friend_request HEX64 MSGHEX,
 *   friend_added N HEX64, friend_connection N none|tcp|udp, lossless N HEX,
 *   lossy N HEX, saved FILE, counts k=v..., flood_done COUNT lossless|lossy,
 *   error WHAT [detail|code=C] (C is the Tox_Err_* value).
 * Keys and addresses print as uppercase hex, payloads as lowercase hex.
 * Lossless packets (sent or echoed) that libtoxcore refuses with SENDQ are
 * queued in order and retried every loop (up to 1024; beyond that
 * `error lossless code=7`), so a burst is delivered whole; `held` in the
 * counts says how many had to wait. Lossy packets are sent once.
 *
 * `flood COUNT SIZE lossless|lossy N` (for benchmarks) sends COUNT packets of
 * SIZE bytes (1 to TOX_MAX_CUSTOM_PACKET_SIZE) to friend N as fast as
 * libtoxcore accepts them: up to FLOOD_BATCH per loop, and on SENDQ it
 * iterates and retries. Packet i is [id][i as 4 bytes big-endian][i + k for
 * byte k], id 160 (lossless) or 200 (lossy), cut to SIZE. It counts in
 * lossless_tx or lossy_tx, prints `flood_done COUNT KIND` once all were
 * accepted, and stops at any other error with `error flood code=C sent=K`.
 * One flood at a time; it runs beside other commands.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <tox/tox.h>

#define MAX_NODES 16
#define LINE_BUF (64 * 1024)
#define SEND_QUEUE 1024

struct node {
    char host[TOX_MAX_HOSTNAME_LENGTH + 1];
    uint16_t port;
    uint8_t key[TOX_PUBLIC_KEY_SIZE];
};

static struct {
    const char *save_in;
    const char *save_out;
    bool has_nospam;
    uint32_t nospam;
    bool udp;
    uint16_t start_port;
    uint16_t end_port;
    struct node bootstrap[MAX_NODES];
    int n_bootstrap;
    struct node relays[MAX_NODES];
    int n_relays;
    const char *accept;
    bool echo;
    bool quiet;
    int interval_ms;
    bool exit_after_start;
    bool log;
} opt = {.udp = true, .interval_ms = 5};

static struct {
    unsigned long long lossless_rx, lossy_rx, lossless_tx, lossy_tx;
    unsigned long long lossless_rx_bytes, lossy_rx_bytes;
    unsigned long long tx_errors, queue_dropped, friend_requests;
    /* Lossless packets libtoxcore refused with SENDQ at first, which then
     * waited in the queue below: its rate control held them back. */
    unsigned long long held;
} counts;

/* Lossless packets (sent or echoed) that libtoxcore refused with SENDQ wait
 * here, in order, and are retried on every loop. */
static struct {
    uint32_t friend_number;
    size_t length;
    uint8_t data[TOX_MAX_CUSTOM_PACKET_SIZE];
} send_queue[SEND_QUEUE];
static size_t queue_head, queue_len;

/* Packets a `flood` sends before the loop iterates once. */
#define FLOOD_BATCH 256

/* The `flood` in progress, if any. */
static struct {
    bool active;
    bool lossless;
    uint32_t friend_number;
    size_t size;
    unsigned long long total, sent;
} flood;

__attribute__((format(printf, 1, 2))) static void emit(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

static void usage(const char *why)
{
    fprintf(stderr,
            "toxpeer: %s\n"
            "usage: toxpeer [--save FILE] [--save-out FILE] [--nospam HEX8] [--udp on|off]\n"
            "               [--ports A:B] [--bootstrap HOST:PORT:KEY]... [--tcp-relay HOST:PORT:KEY]...\n"
            "               [--accept any|MSG] [--echo] [--quiet-packets] [--interval-ms N]\n"
            "               [--exit-after-start] [--log]\n",
            why);
    exit(2);
}

/* Allocates the hex form of data (upper or lower case); the caller frees it. */
static char *to_hex(const uint8_t *data, size_t length, bool upper)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char *out = malloc(2 * length + 1);
    if (out == NULL) {
        perror("toxpeer: malloc");
        exit(1);
    }
    for (size_t i = 0; i < length; i++) {
        out[2 * i] = digits[data[i] >> 4];
        out[2 * i + 1] = digits[data[i] & 15];
    }
    out[2 * length] = '\0';
    return out;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Decodes exactly strlen(hex)/2 bytes into out; returns the length, or -1 on
 * an odd length, a bad digit, or more than max bytes. */
static long from_hex(const char *hex, uint8_t *out, size_t max)
{
    size_t n = strlen(hex);
    if (n % 2 != 0 || n / 2 > max) {
        return -1;
    }
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hex_digit(hex[2 * i]);
        int lo = hex_digit(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return -1;
        }
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return (long)(n / 2);
}

static bool parse_u16(const char *s, uint16_t *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v > 65535) {
        return false;
    }
    *out = (uint16_t)v;
    return true;
}

/* HOST:PORT:KEY, split from the right so that the host may hold colons. */
static void parse_node(const char *arg, struct node *node)
{
    char buf[512];
    if (strlen(arg) >= sizeof buf) {
        usage("node argument too long");
    }
    strcpy(buf, arg);
    char *key = strrchr(buf, ':');
    if (key == NULL) {
        usage("node must be HOST:PORT:KEY");
    }
    *key++ = '\0';
    char *port = strrchr(buf, ':');
    if (port == NULL) {
        usage("node must be HOST:PORT:KEY");
    }
    *port++ = '\0';
    if (strlen(buf) == 0 || strlen(buf) > TOX_MAX_HOSTNAME_LENGTH) {
        usage("bad node host");
    }
    strcpy(node->host, buf);
    if (!parse_u16(port, &node->port)) {
        usage("bad node port");
    }
    if (strlen(key) != 2 * TOX_PUBLIC_KEY_SIZE || from_hex(key, node->key, TOX_PUBLIC_KEY_SIZE) < 0) {
        usage("node key must be 64 hex digits");
    }
}

static void parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        const char *v = has_value ? argv[i + 1] : NULL;
#define NEED_VALUE()                                                                                                   \
    do {                                                                                                               \
        if (!has_value) {                                                                                              \
            usage("option needs a value");                                                                            \
        }                                                                                                              \
        i++;                                                                                                           \
    } while (0)
        if (strcmp(a, "--save") == 0) {
            NEED_VALUE();
            opt.save_in = v;
        } else if (strcmp(a, "--save-out") == 0) {
            NEED_VALUE();
            opt.save_out = v;
        } else if (strcmp(a, "--nospam") == 0) {
            NEED_VALUE();
            uint8_t b[4];
            if (strlen(v) != 8 || from_hex(v, b, 4) != 4) {
                usage("--nospam needs 8 hex digits");
            }
            opt.has_nospam = true;
            opt.nospam = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
        } else if (strcmp(a, "--udp") == 0) {
            NEED_VALUE();
            if (strcmp(v, "on") == 0) {
                opt.udp = true;
            } else if (strcmp(v, "off") == 0) {
                opt.udp = false;
            } else {
                usage("--udp takes on or off");
            }
        } else if (strcmp(a, "--ports") == 0) {
            NEED_VALUE();
            char buf[32];
            if (strlen(v) >= sizeof buf) {
                usage("--ports takes A:B");
            }
            strcpy(buf, v);
            char *colon = strchr(buf, ':');
            if (colon == NULL) {
                usage("--ports takes A:B");
            }
            *colon = '\0';
            if (!parse_u16(buf, &opt.start_port) || !parse_u16(colon + 1, &opt.end_port)) {
                usage("--ports takes A:B");
            }
        } else if (strcmp(a, "--bootstrap") == 0) {
            NEED_VALUE();
            if (opt.n_bootstrap == MAX_NODES) {
                usage("too many --bootstrap");
            }
            parse_node(v, &opt.bootstrap[opt.n_bootstrap++]);
        } else if (strcmp(a, "--tcp-relay") == 0) {
            NEED_VALUE();
            if (opt.n_relays == MAX_NODES) {
                usage("too many --tcp-relay");
            }
            parse_node(v, &opt.relays[opt.n_relays++]);
        } else if (strcmp(a, "--accept") == 0) {
            NEED_VALUE();
            opt.accept = v;
        } else if (strcmp(a, "--echo") == 0) {
            opt.echo = true;
        } else if (strcmp(a, "--quiet-packets") == 0) {
            opt.quiet = true;
        } else if (strcmp(a, "--interval-ms") == 0) {
            NEED_VALUE();
            uint16_t ms;
            if (!parse_u16(v, &ms)) {
                usage("--interval-ms takes a number");
            }
            opt.interval_ms = ms;
        } else if (strcmp(a, "--exit-after-start") == 0) {
            opt.exit_after_start = true;
        } else if (strcmp(a, "--log") == 0) {
            opt.log = true;
        } else {
            usage("unknown option");
        }
#undef NEED_VALUE
    }
}

static const char *connection_name(Tox_Connection c)
{
    switch (c) {
    case TOX_CONNECTION_NONE:
        return "none";
    case TOX_CONNECTION_TCP:
        return "tcp";
    case TOX_CONNECTION_UDP:
        return "udp";
    }
    return "unknown";
}

/* Reads a whole file into a malloc'd buffer. Returns false and sets errno on failure. */
static bool read_file(const char *path, uint8_t **data, size_t *length)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return false;
    }
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    if (buf == NULL) {
        fclose(f);
        return false;
    }
    for (;;) {
        if (len == cap) {
            cap *= 2;
            uint8_t *grown = realloc(buf, cap);
            if (grown == NULL) {
                free(buf);
                fclose(f);
                return false;
            }
            buf = grown;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            break;
        }
    }
    bool ok = !ferror(f);
    fclose(f);
    if (!ok) {
        free(buf);
        return false;
    }
    *data = buf;
    *length = len;
    return true;
}

/* Writes the savedata to path through a temporary file and a rename. */
static bool write_save(const Tox *tox, const char *path)
{
    size_t size = tox_get_savedata_size(tox);
    uint8_t *data = malloc(size);
    if (data == NULL) {
        return false;
    }
    tox_get_savedata(tox, data);
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid()) >= (int)sizeof tmp) {
        free(data);
        return false;
    }
    FILE *f = fopen(tmp, "wb");
    bool ok = f != NULL;
    if (ok) {
        ok = fwrite(data, 1, size, f) == size;
        ok = fclose(f) == 0 && ok;
    }
    free(data);
    if (ok) {
        ok = rename(tmp, path) == 0;
    }
    if (!ok) {
        fprintf(stderr, "toxpeer: writing %s: %s\n", path, strerror(errno));
        unlink(tmp);
    }
    return ok;
}

static void log_cb(Tox *tox, Tox_Log_Level level, const char *file, uint32_t line, const char *func,
                   const char *message, void *user_data)
{
    (void)tox;
    (void)user_data;
    fprintf(stderr, "log %d %s:%u %s: %s\n", (int)level, file, line, func, message);
}

static void self_connection_cb(Tox *tox, Tox_Connection status, void *user_data)
{
    (void)tox;
    (void)user_data;
    emit("self_connection %s", connection_name(status));
}

static void friend_request_cb(Tox *tox, const uint8_t *public_key, const uint8_t *message, size_t length,
                              void *user_data)
{
    (void)user_data;
    counts.friend_requests++;
    char *pk = to_hex(public_key, TOX_PUBLIC_KEY_SIZE, true);
    char *msg = to_hex(message, length, false);
    emit("friend_request %s %s", pk, msg);
    free(msg);
    if (opt.accept != NULL &&
        (strcmp(opt.accept, "any") == 0 ||
         (strlen(opt.accept) == length && memcmp(opt.accept, message, length) == 0))) {
        Tox_Err_Friend_Add err;
        uint32_t num = tox_friend_add_norequest(tox, public_key, &err);
        if (err == TOX_ERR_FRIEND_ADD_OK) {
            emit("friend_added %u %s", num, pk);
        } else {
            emit("error friend_add_norequest code=%d", (int)err);
        }
    }
    free(pk);
}

static void friend_connection_cb(Tox *tox, uint32_t friend_number, Tox_Connection status, void *user_data)
{
    (void)tox;
    (void)user_data;
    emit("friend_connection %u %s", friend_number, connection_name(status));
}

/* Sends a lossless packet now, or queues it behind earlier refused ones; a
 * full queue drops it. Returns false on an error other than SENDQ. */
static bool send_lossless(Tox *tox, uint32_t friend_number, const uint8_t *data, size_t length,
                          Tox_Err_Friend_Custom_Packet *err)
{
    *err = TOX_ERR_FRIEND_CUSTOM_PACKET_OK;
    if (queue_len == 0) {
        tox_friend_send_lossless_packet(tox, friend_number, data, length, err);
        if (*err == TOX_ERR_FRIEND_CUSTOM_PACKET_OK) {
            counts.lossless_tx++;
            return true;
        }
        if (*err != TOX_ERR_FRIEND_CUSTOM_PACKET_SENDQ) {
            counts.tx_errors++;
            return false;
        }
    }
    if (queue_len == SEND_QUEUE || length > TOX_MAX_CUSTOM_PACKET_SIZE) {
        counts.queue_dropped++;
        return false;
    }
    size_t slot = (queue_head + queue_len) % SEND_QUEUE;
    counts.held++;
    send_queue[slot].friend_number = friend_number;
    send_queue[slot].length = length;
    memcpy(send_queue[slot].data, data, length);
    queue_len++;
    return true;
}

/* Sends queued lossless packets in order until libtoxcore's send queue is full. */
static void flush_send_queue(Tox *tox)
{
    while (queue_len > 0) {
        Tox_Err_Friend_Custom_Packet err;
        tox_friend_send_lossless_packet(tox, send_queue[queue_head].friend_number, send_queue[queue_head].data,
                                        send_queue[queue_head].length, &err);
        if (err == TOX_ERR_FRIEND_CUSTOM_PACKET_SENDQ) {
            return;
        }
        if (err == TOX_ERR_FRIEND_CUSTOM_PACKET_OK) {
            counts.lossless_tx++;
        } else {
            counts.tx_errors++;
            if (!opt.quiet) {
                emit("error queued_lossless code=%d", (int)err);
            }
        }
        queue_head = (queue_head + 1) % SEND_QUEUE;
        queue_len--;
    }
}

static void lossless_cb(Tox *tox, uint32_t friend_number, const uint8_t *data, size_t length, void *user_data)
{
    (void)user_data;
    counts.lossless_rx++;
    counts.lossless_rx_bytes += length;
    if (!opt.quiet) {
        char *hex = to_hex(data, length, false);
        emit("lossless %u %s", friend_number, hex);
        free(hex);
    }
    if (opt.echo) {
        Tox_Err_Friend_Custom_Packet err;
        if (!send_lossless(tox, friend_number, data, length, &err) && !opt.quiet) {
            emit("error echo_lossless code=%d", (int)err);
        }
    }
}

static void lossy_cb(Tox *tox, uint32_t friend_number, const uint8_t *data, size_t length, void *user_data)
{
    (void)user_data;
    counts.lossy_rx++;
    counts.lossy_rx_bytes += length;
    if (!opt.quiet) {
        char *hex = to_hex(data, length, false);
        emit("lossy %u %s", friend_number, hex);
        free(hex);
    }
    if (opt.echo) {
        Tox_Err_Friend_Custom_Packet err;
        tox_friend_send_lossy_packet(tox, friend_number, data, length, &err);
        if (err == TOX_ERR_FRIEND_CUSTOM_PACKET_OK) {
            counts.lossy_tx++;
        } else {
            counts.tx_errors++;
            if (!opt.quiet) {
                emit("error echo_lossy code=%d", (int)err);
            }
        }
    }
}

static void cmd_add(Tox *tox, char *args)
{
    char *space = strchr(args, ' ');
    const char *message = "";
    if (space != NULL) {
        *space = '\0';
        message = space + 1;
    }
    uint8_t address[TOX_ADDRESS_SIZE];
    if (strlen(args) != 2 * TOX_ADDRESS_SIZE || from_hex(args, address, sizeof address) < 0) {
        emit("error add bad_address");
        return;
    }
    Tox_Err_Friend_Add err;
    uint32_t num = tox_friend_add(tox, address, (const uint8_t *)message, strlen(message), &err);
    if (err != TOX_ERR_FRIEND_ADD_OK) {
        emit("error friend_add code=%d", (int)err);
        return;
    }
    char *pk = to_hex(address, TOX_PUBLIC_KEY_SIZE, true);
    emit("friend_added %u %s", num, pk);
    free(pk);
}

/* "addhex ADDRESS HEX": a friend request whose message is given in hex, so
 * that it may hold any byte (C tuntox sends its secret with a NUL). */
static void cmd_addhex(Tox *tox, char *args)
{
    char *space = strchr(args, ' ');
    if (space == NULL) {
        emit("error addhex usage");
        return;
    }
    *space = '\0';
    uint8_t address[TOX_ADDRESS_SIZE];
    if (strlen(args) != 2 * TOX_ADDRESS_SIZE || from_hex(args, address, sizeof address) < 0) {
        emit("error add bad_address");
        return;
    }
    static uint8_t message[2 * TOX_MAX_FRIEND_REQUEST_LENGTH];
    long length = from_hex(space + 1, message, sizeof message);
    if (length < 0) {
        emit("error addhex bad_hex");
        return;
    }
    Tox_Err_Friend_Add err;
    uint32_t num = tox_friend_add(tox, address, message, (size_t)length, &err);
    if (err != TOX_ERR_FRIEND_ADD_OK) {
        emit("error friend_add code=%d", (int)err);
        return;
    }
    char *pk = to_hex(address, TOX_PUBLIC_KEY_SIZE, true);
    emit("friend_added %u %s", num, pk);
    free(pk);
}

static void cmd_add_norequest(Tox *tox, const char *args)
{
    uint8_t public_key[TOX_PUBLIC_KEY_SIZE];
    if (strlen(args) != 2 * TOX_PUBLIC_KEY_SIZE || from_hex(args, public_key, sizeof public_key) < 0) {
        emit("error add_norequest bad_public_key");
        return;
    }
    Tox_Err_Friend_Add err;
    uint32_t num = tox_friend_add_norequest(tox, public_key, &err);
    if (err != TOX_ERR_FRIEND_ADD_OK) {
        emit("error friend_add_norequest code=%d", (int)err);
        return;
    }
    char *pk = to_hex(public_key, TOX_PUBLIC_KEY_SIZE, true);
    emit("friend_added %u %s", num, pk);
    free(pk);
}

static void cmd_packet(Tox *tox, char *args, bool lossless)
{
    const char *what = lossless ? "lossless" : "lossy";
    char *space = strchr(args, ' ');
    if (space == NULL) {
        emit("error %s usage", what);
        return;
    }
    *space = '\0';
    char *end;
    errno = 0;
    unsigned long friend_number = strtoul(args, &end, 10);
    if (errno != 0 || end == args || *end != '\0' || friend_number > UINT32_MAX) {
        emit("error %s bad_friend_number", what);
        return;
    }
    /* Larger than libtoxcore allows, so that tests can provoke TOO_LONG. */
    static uint8_t data[2 * TOX_MAX_CUSTOM_PACKET_SIZE];
    long length = from_hex(space + 1, data, sizeof data);
    if (length < 0) {
        emit("error %s bad_hex", what);
        return;
    }
    Tox_Err_Friend_Custom_Packet err;
    if (lossless) {
        if (!send_lossless(tox, (uint32_t)friend_number, data, (size_t)length, &err)) {
            emit("error lossless code=%d", (int)err);
        }
        return;
    }
    tox_friend_send_lossy_packet(tox, (uint32_t)friend_number, data, (size_t)length, &err);
    if (err != TOX_ERR_FRIEND_CUSTOM_PACKET_OK) {
        counts.tx_errors++;
        emit("error lossy code=%d", (int)err);
        return;
    }
    counts.lossy_tx++;
}

/* "flood COUNT SIZE lossless|lossy N": starts a flood (see the top comment). */
static void cmd_flood(char *args)
{
    char *words[4];
    int n_words = 0;
    for (char *w = strtok(args, " "); w != NULL; w = strtok(NULL, " ")) {
        if (n_words == 4) {
            emit("error flood usage");
            return;
        }
        words[n_words++] = w;
    }
    if (n_words != 4) {
        emit("error flood usage");
        return;
    }
    if (flood.active) {
        emit("error flood busy");
        return;
    }
    char *end;
    errno = 0;
    unsigned long long total = strtoull(words[0], &end, 10);
    if (errno != 0 || end == words[0] || *end != '\0' || total == 0) {
        emit("error flood bad_count");
        return;
    }
    errno = 0;
    unsigned long size = strtoul(words[1], &end, 10);
    if (errno != 0 || end == words[1] || *end != '\0' || size == 0 || size > TOX_MAX_CUSTOM_PACKET_SIZE) {
        emit("error flood bad_size");
        return;
    }
    bool lossless;
    if (strcmp(words[2], "lossless") == 0) {
        lossless = true;
    } else if (strcmp(words[2], "lossy") == 0) {
        lossless = false;
    } else {
        emit("error flood bad_kind");
        return;
    }
    errno = 0;
    unsigned long friend_number = strtoul(words[3], &end, 10);
    if (errno != 0 || end == words[3] || *end != '\0' || friend_number > UINT32_MAX) {
        emit("error flood bad_friend_number");
        return;
    }
    flood.active = true;
    flood.lossless = lossless;
    flood.friend_number = (uint32_t)friend_number;
    flood.size = size;
    flood.total = total;
    flood.sent = 0;
}

/* Sends the next packets of the flood, up to FLOOD_BATCH; returns true when
 * it should go on at once (libtoxcore took the whole batch), false when it
 * waits for the next iteration (SENDQ, earlier lossless packets still
 * queued) or is over. */
static bool flood_step(Tox *tox)
{
    if (!flood.active || (flood.lossless && queue_len > 0)) {
        return false;
    }
    static uint8_t packet[TOX_MAX_CUSTOM_PACKET_SIZE];
    for (int i = 0; i < FLOOD_BATCH && flood.sent < flood.total; i++) {
        uint32_t seq = (uint32_t)flood.sent;
        packet[0] = flood.lossless ? 160 : 200;
        for (size_t k = 1; k < flood.size; k++) {
            packet[k] = k <= 4 ? (uint8_t)(seq >> (8 * (4 - k))) : (uint8_t)(seq + k);
        }
        Tox_Err_Friend_Custom_Packet err;
        if (flood.lossless) {
            tox_friend_send_lossless_packet(tox, flood.friend_number, packet, flood.size, &err);
        } else {
            tox_friend_send_lossy_packet(tox, flood.friend_number, packet, flood.size, &err);
        }
        if (err == TOX_ERR_FRIEND_CUSTOM_PACKET_SENDQ) {
            return false;
        }
        if (err != TOX_ERR_FRIEND_CUSTOM_PACKET_OK) {
            counts.tx_errors++;
            flood.active = false;
            emit("error flood code=%d sent=%llu", (int)err, flood.sent);
            return false;
        }
        if (flood.lossless) {
            counts.lossless_tx++;
        } else {
            counts.lossy_tx++;
        }
        flood.sent++;
    }
    if (flood.sent == flood.total) {
        flood.active = false;
        emit("flood_done %llu %s", flood.total, flood.lossless ? "lossless" : "lossy");
        return false;
    }
    return true;
}

static void cmd_save(const Tox *tox)
{
    const char *path = opt.save_out != NULL ? opt.save_out : opt.save_in;
    if (path == NULL) {
        emit("error save no_file");
    } else if (!write_save(tox, path)) {
        emit("error save write_failed");
    } else {
        emit("saved %s", path);
    }
}

static void cmd_status(const Tox *tox)
{
    emit("counts lossless_rx=%llu lossy_rx=%llu lossless_tx=%llu lossy_tx=%llu lossless_rx_bytes=%llu "
         "lossy_rx_bytes=%llu tx_errors=%llu queued=%zu held=%llu queue_dropped=%llu friend_requests=%llu friends=%zu",
         counts.lossless_rx, counts.lossy_rx, counts.lossless_tx, counts.lossy_tx, counts.lossless_rx_bytes,
         counts.lossy_rx_bytes, counts.tx_errors, queue_len, counts.held, counts.queue_dropped,
         counts.friend_requests, tox_self_get_friend_list_size(tox));
}

/* Handles one command line; returns false on quit. */
static bool handle_command(Tox *tox, char *line)
{
    size_t n = strlen(line);
    while (n > 0 && line[n - 1] == '\r') {
        line[--n] = '\0';
    }
    if (n == 0) {
        return true;
    }
    char *args = strchr(line, ' ');
    if (args != NULL) {
        *args++ = '\0';
    } else {
        args = line + n;
    }
    if (strcmp(line, "add") == 0) {
        cmd_add(tox, args);
    } else if (strcmp(line, "addhex") == 0) {
        cmd_addhex(tox, args);
    } else if (strcmp(line, "add_norequest") == 0) {
        cmd_add_norequest(tox, args);
    } else if (strcmp(line, "lossless") == 0) {
        cmd_packet(tox, args, true);
    } else if (strcmp(line, "lossy") == 0) {
        cmd_packet(tox, args, false);
    } else if (strcmp(line, "flood") == 0) {
        cmd_flood(args);
    } else if (strcmp(line, "save") == 0) {
        cmd_save(tox);
    } else if (strcmp(line, "status") == 0) {
        cmd_status(tox);
    } else if (strcmp(line, "quit") == 0) {
        return false;
    } else {
        emit("error unknown_command %.40s", line);
    }
    return true;
}

static Tox *create_tox(void)
{
    Tox_Err_Options_New opt_err;
    struct Tox_Options *options = tox_options_new(&opt_err);
    if (options == NULL) {
        fprintf(stderr, "toxpeer: tox_options_new failed: %d\n", (int)opt_err);
        exit(1);
    }
    tox_options_set_ipv6_enabled(options, false);
    tox_options_set_udp_enabled(options, opt.udp);
    tox_options_set_local_discovery_enabled(options, false);
    tox_options_set_hole_punching_enabled(options, true);
    tox_options_set_tcp_port(options, 0);
    if (opt.start_port != 0 || opt.end_port != 0) {
        tox_options_set_start_port(options, opt.start_port);
        tox_options_set_end_port(options, opt.end_port);
    }
    if (opt.log) {
        tox_options_set_log_callback(options, log_cb);
    }

    uint8_t *save = NULL;
    size_t save_len = 0;
    if (opt.save_in != NULL) {
        if (read_file(opt.save_in, &save, &save_len)) {
            /* libtoxcore keeps the pointer, not a copy, until tox_new returns. */
            tox_options_set_savedata_type(options, TOX_SAVEDATA_TYPE_TOX_SAVE);
            tox_options_set_savedata_data(options, save, save_len);
        } else if (errno != ENOENT) {
            fprintf(stderr, "toxpeer: reading %s: %s\n", opt.save_in, strerror(errno));
            emit("error load_save read_failed");
            exit(1);
        }
    }

    Tox_Err_New err;
    Tox *tox = tox_new(options, &err);
    tox_options_free(options);
    free(save);
    if (tox == NULL || err != TOX_ERR_NEW_OK) {
        fprintf(stderr, "toxpeer: tox_new failed: %d\n", (int)err);
        emit("error tox_new code=%d", (int)err);
        if (tox != NULL) {
            tox_kill(tox);
        }
        exit(1);
    }
    return tox;
}

static void print_startup(const Tox *tox)
{
    uint8_t address[TOX_ADDRESS_SIZE];
    uint8_t key[TOX_PUBLIC_KEY_SIZE];
    char *hex;

    tox_self_get_address(tox, address);
    hex = to_hex(address, sizeof address, true);
    emit("address %s", hex);
    free(hex);

    tox_self_get_public_key(tox, key);
    hex = to_hex(key, sizeof key, true);
    emit("public_key %s", hex);
    free(hex);

    tox_self_get_dht_id(tox, key);
    hex = to_hex(key, sizeof key, true);
    emit("dht_id %s", hex);
    free(hex);

    Tox_Err_Get_Port port_err;
    uint16_t port = tox_self_get_udp_port(tox, &port_err);
    emit("udp_port %u", port_err == TOX_ERR_GET_PORT_OK ? (unsigned)port : 0U);
}

static void connect_nodes(Tox *tox)
{
    for (int i = 0; i < opt.n_bootstrap; i++) {
        const struct node *n = &opt.bootstrap[i];
        Tox_Err_Bootstrap err;
        if (!tox_bootstrap(tox, n->host, n->port, n->key, &err)) {
            emit("error bootstrap %s:%u code=%d", n->host, n->port, (int)err);
        }
    }
    for (int i = 0; i < opt.n_relays; i++) {
        const struct node *n = &opt.relays[i];
        Tox_Err_Bootstrap err;
        if (!tox_add_tcp_relay(tox, n->host, n->port, n->key, &err)) {
            emit("error tcp_relay %s:%u code=%d", n->host, n->port, (int)err);
        }
    }
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    Tox *tox = create_tox();

    if (opt.has_nospam) {
        tox_self_set_nospam(tox, opt.nospam);
    }
    if (opt.save_out != NULL && !write_save(tox, opt.save_out)) {
        emit("error save write_failed");
        tox_kill(tox);
        return 1;
    }
    print_startup(tox);
    if (opt.exit_after_start) {
        tox_kill(tox);
        return 0;
    }

    tox_callback_self_connection_status(tox, self_connection_cb);
    tox_callback_friend_request(tox, friend_request_cb);
    tox_callback_friend_connection_status(tox, friend_connection_cb);
    tox_callback_friend_lossless_packet(tox, lossless_cb);
    tox_callback_friend_lossy_packet(tox, lossy_cb);
    connect_nodes(tox);

    static char buf[LINE_BUF];
    size_t used = 0;
    bool discarding = false;
    bool running = true;
    bool flooding = false; /* the last flood step wants to go on at once */
    while (running) {
        int timeout = opt.interval_ms;
        uint32_t wanted = tox_iteration_interval(tox);
        if (wanted < (uint32_t)timeout) {
            timeout = (int)wanted;
        }
        if (flooding) {
            timeout = 0;
        }
        struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
        int ready = poll(&pfd, 1, timeout);
        if (ready < 0 && errno != EINTR) {
            perror("toxpeer: poll");
            break;
        }
        if (ready > 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
            ssize_t n = read(STDIN_FILENO, buf + used, sizeof buf - 1 - used);
            if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
                running = false; /* end of stdin: the test has gone */
            } else if (n > 0) {
                used += (size_t)n;
                buf[used] = '\0';
                char *start = buf;
                char *newline;
                while (running && (newline = strchr(start, '\n')) != NULL) {
                    *newline = '\0';
                    if (discarding) {
                        discarding = false; /* the tail of an overlong line */
                    } else {
                        running = handle_command(tox, start);
                    }
                    start = newline + 1;
                }
                used -= (size_t)(start - buf);
                memmove(buf, start, used);
                if (used == sizeof buf - 1) {
                    emit("error line_too_long");
                    used = 0;
                    discarding = true;
                }
            }
        }
        flush_send_queue(tox);
        flooding = flood_step(tox);
        tox_iterate(tox, NULL);
    }
    tox_kill(tox);
    return 0;
}
