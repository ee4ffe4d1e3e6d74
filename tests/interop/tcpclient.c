/*
 * Two c-toxcore 0.2.18 TCP relay clients (TCP_client.c, linked statically
 * from Debian's libtoxcore.a, whose internal functions the shared library
 * does not export) run a fixed scenario against a relay:
 *
 *   tcpclient HOST PORT RELAY_KEY_HEX
 *
 * 1. both connect and complete the handshake (c-toxcore pings the relay
 *    at once, and drops the connection if no pong comes within 10 s);
 * 2. each asks for a route to the other: routing responses, then connect
 *    notifications on both sides;
 * 3. data both ways (sizes 1 to 2000), checked byte for byte and in order;
 * 4. an out-of-band packet from A to B, naming A as the sender;
 * 5. both stay connected for 12 s (pongs arrive);
 * 6. A drops its route: B gets a disconnect notification.
 *
 * Prints one `ok STEP` line per step and exits 0, or prints `fail WHY` and
 * exits 1. Only loopback addresses inside the test's namespace are used.
 */
#include <sodium.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Declarations of the libtoxcore 0.2.18 internals used (ABI facts). */
typedef struct Logger Logger;
typedef struct Mono_Time Mono_Time;
typedef struct Random Random;
typedef struct Network Network;
typedef struct TCP_Client_Connection TCP_Client_Connection;
typedef struct { uint8_t value; } Family;
typedef struct {
    Family family;
    union {
        uint8_t v4[4];
        uint8_t v6[16];
        uint64_t align[2];
    } ip;
} Ip;
typedef struct {
    Ip ip;
    uint16_t port;
} IpPort;

Logger *logger_new(void);
Mono_Time *mono_time_new(void *callback, void *user_data);
void mono_time_update(Mono_Time *mono_time);
const Random *system_random(void);
const Network *system_network(void);
Family net_family_ipv4(void);
uint16_t net_htons(uint16_t hostshort);
bool addr_parse_ip(const char *address, Ip *to);
TCP_Client_Connection *new_TCP_connection(const Logger *, const Mono_Time *, const Random *, const Network *,
                                          const IpPort *, const uint8_t *, const uint8_t *, const uint8_t *,
                                          const void *proxy_info);
void do_TCP_connection(const Logger *, const Mono_Time *, TCP_Client_Connection *, void *userdata);
int tcp_con_status(const TCP_Client_Connection *con);
int send_routing_request(const Logger *, TCP_Client_Connection *, const uint8_t *public_key);
int send_disconnect_request(const Logger *, TCP_Client_Connection *, uint8_t con_id);
int send_data(const Logger *, TCP_Client_Connection *, uint8_t con_id, const uint8_t *data, uint16_t length);
int send_oob_packet(const Logger *, TCP_Client_Connection *, const uint8_t *public_key, const uint8_t *data,
                    uint16_t length);
typedef int routing_response_cb(void *object, uint8_t connection_id, const uint8_t *public_key);
typedef int routing_status_cb(void *object, uint32_t number, uint8_t connection_id, uint8_t status);
typedef int routing_data_cb(void *object, uint32_t number, uint8_t connection_id, const uint8_t *data,
                            uint16_t length, void *userdata);
typedef int oob_data_cb(void *object, const uint8_t *public_key, const uint8_t *data, uint16_t length,
                        void *userdata);
void routing_response_handler(TCP_Client_Connection *, routing_response_cb *, void *object);
void routing_status_handler(TCP_Client_Connection *, routing_status_cb *, void *object);
void routing_data_handler(TCP_Client_Connection *, routing_data_cb *, void *object);
void oob_data_handler(TCP_Client_Connection *, oob_data_cb *, void *object);

enum { CONFIRMED = 6, DISCONNECTED = 7 };

struct side {
    const char *name;
    uint8_t pk[32], sk[32];
    TCP_Client_Connection *con;
    int route_id;  /* slot of the routing response (connection id - 16), -1 before */
    int status;    /* last routing status: 0, 1 (peer offline) or 2 (online) */
    uint32_t next_expected;
    uint32_t data_count;
    uint8_t oob_from[32];
    int oob_len;
    uint8_t oob[1024];
};

static Logger *logger;
static Mono_Time *mono_time;
static struct side a = {.name = "a", .route_id = -1}, b = {.name = "b", .route_id = -1};

static void fail(const char *why)
{
    printf("fail %s\n", why);
    fflush(stdout);
    exit(1);
}

static int on_response(void *object, uint8_t connection_id, const uint8_t *public_key)
{
    struct side *s = object;
    struct side *other = s == &a ? &b : &a;
    if (memcmp(public_key, other->pk, 32) != 0) {
        fail("routing response names another key");
    }
    s->route_id = connection_id;
    return 0;
}

static int on_status(void *object, uint32_t number, uint8_t connection_id, uint8_t status)
{
    struct side *s = object;
    (void)number;
    if ((int)connection_id != s->route_id) {
        fail("status for an unknown connection");
    }
    s->status = status;
    return 0;
}

/* Packet k carries k in its first 4 bytes and is 1 + (k * 37) % 2000 long. */
static uint16_t packet_len(uint32_t k) { return (uint16_t)(1 + (k * 37) % 2000); }

static void make_packet(uint32_t k, uint8_t *out)
{
    uint16_t len = packet_len(k);
    for (uint16_t i = 0; i < len; i++) {
        out[i] = (uint8_t)(k * 7 + i);
    }
    if (len >= 4) {
        memcpy(out, &k, 4);
    }
}

static int on_data(void *object, uint32_t number, uint8_t connection_id, const uint8_t *data, uint16_t length,
                   void *userdata)
{
    struct side *s = object;
    uint8_t expected[2000];
    (void)number;
    (void)userdata;
    if ((int)connection_id != s->route_id) {
        fail("data on an unknown connection");
    }
    make_packet(s->next_expected, expected);
    if (length != packet_len(s->next_expected) || memcmp(data, expected, length) != 0) {
        printf("fail %s: data packet %u differs (got %u bytes)\n", s->name, s->next_expected, length);
        exit(1);
    }
    s->next_expected++;
    s->data_count++;
    return 0;
}

static int on_oob(void *object, const uint8_t *public_key, const uint8_t *data, uint16_t length, void *userdata)
{
    struct side *s = object;
    (void)userdata;
    memcpy(s->oob_from, public_key, 32);
    memcpy(s->oob, data, length);
    s->oob_len = length;
    return 0;
}

static void iterate(void)
{
    mono_time_update(mono_time);
    do_TCP_connection(logger, mono_time, a.con, NULL);
    do_TCP_connection(logger, mono_time, b.con, NULL);
    if (tcp_con_status(a.con) == DISCONNECTED || tcp_con_status(b.con) == DISCONNECTED) {
        fail("a client lost its connection to the relay");
    }
    usleep(1000);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

#define WAIT_FOR(cond, secs, why)                   \
    do {                                            \
        double until_ = now_s() + (secs);           \
        while (!(cond)) {                           \
            if (now_s() > until_) fail(why);        \
            iterate();                              \
        }                                           \
    } while (0)

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int main(int argc, char **argv)
{
    if (argc != 4 || strlen(argv[3]) != 64) {
        fprintf(stderr, "usage: tcpclient HOST PORT RELAY_KEY_HEX\n");
        return 2;
    }
    if (sodium_init() < 0) fail("sodium_init");
    uint8_t relay_pk[32];
    for (int i = 0; i < 32; i++) {
        int hi = hexval(argv[3][2 * i]), lo = hexval(argv[3][2 * i + 1]);
        if (hi < 0 || lo < 0) fail("bad key");
        relay_pk[i] = (uint8_t)(hi * 16 + lo);
    }
    IpPort relay;
    memset(&relay, 0, sizeof relay);
    if (!addr_parse_ip(argv[1], &relay.ip)) fail("bad host");
    relay.port = net_htons((uint16_t)atoi(argv[2]));

    logger = logger_new();
    mono_time = mono_time_new(NULL, NULL);
    struct side *sides[2] = {&a, &b};
    for (int i = 0; i < 2; i++) {
        struct side *s = sides[i];
        crypto_box_keypair(s->pk, s->sk);
        s->con = new_TCP_connection(logger, mono_time, system_random(), system_network(), &relay, relay_pk, s->pk,
                                    s->sk, NULL);
        if (s->con == NULL) fail("new_TCP_connection");
        routing_response_handler(s->con, on_response, s);
        routing_status_handler(s->con, on_status, s);
        routing_data_handler(s->con, on_data, s);
        oob_data_handler(s->con, on_oob, s);
    }
    WAIT_FOR(tcp_con_status(a.con) == CONFIRMED && tcp_con_status(b.con) == CONFIRMED, 10, "handshakes");
    printf("ok handshake\n");
    double connected_at = now_s();

    if (send_routing_request(logger, a.con, b.pk) != 1) fail("send_routing_request a");
    WAIT_FOR(a.route_id >= 0, 5, "a's routing response");
    if (send_routing_request(logger, b.con, a.pk) != 1) fail("send_routing_request b");
    WAIT_FOR(b.route_id >= 0 && a.status == 2 && b.status == 2, 5, "connect notifications");
    printf("ok linked %d %d\n", a.route_id, b.route_id);

    /* 500 packets each way, paced by what the client can write now. */
    uint32_t sent_a = 0, sent_b = 0;
    uint8_t packet[2000];
    double until = now_s() + 30;
    while (sent_a < 500 || sent_b < 500 || a.data_count < 500 || b.data_count < 500) {
        if (now_s() > until) fail("data both ways");
        if (sent_a < 500) {
            make_packet(sent_a, packet);
            if (send_data(logger, a.con, (uint8_t)a.route_id, packet, packet_len(sent_a)) == 1) sent_a++;
        }
        if (sent_b < 500) {
            make_packet(sent_b, packet);
            if (send_data(logger, b.con, (uint8_t)b.route_id, packet, packet_len(sent_b)) == 1) sent_b++;
        }
        iterate();
    }
    printf("ok data %u %u\n", a.data_count, b.data_count);

    const uint8_t oob[] = "out of band";
    if (send_oob_packet(logger, a.con, b.pk, oob, sizeof oob) != 1) fail("send_oob_packet");
    WAIT_FOR(b.oob_len > 0, 5, "the OOB packet");
    if (b.oob_len != (int)sizeof oob || memcmp(b.oob, oob, sizeof oob) != 0 || memcmp(b.oob_from, a.pk, 32) != 0) {
        fail("the OOB packet differs");
    }
    printf("ok oob\n");

    /* The clients' pings must be answered: stay 12 s past the handshake. */
    while (now_s() < connected_at + 12) {
        iterate();
    }
    printf("ok pongs\n");

    if (send_disconnect_request(logger, a.con, (uint8_t)a.route_id) != 1) fail("send_disconnect_request");
    WAIT_FOR(b.status == 1, 5, "the disconnect notification");
    printf("ok disconnect\n");
    fflush(stdout);
    return 0;
}
