/* WasmEdge's socket extension, second generation: the plain names with V2 signatures
 * (sock_accept(fd, flags, *fd), sock_recv_from with a port out-pointer, sock_getlocaladdr
 * and sock_getpeeraddr taking the 128-byte address form) and the `_v2` names that take the
 * 128-byte form for bind, connect and send_to. A command per argv[1]. */
#define WASMEDGE_V2
#include "wasmedge_sockets.h"

/* The 128-byte form: a little-endian u16 family, then the address bytes. */
static wasi_address storage(uint8_t buf[128], const char *ipv4_text) {
    memset(buf, 0, 128);
    buf[0] = AF_INET4_;
    ipv4(buf + 2, ipv4_text);
    wasi_address addr = {buf, 128};
    return addr;
}

static void print_storage(const char *what, int32_t fd, int peer) {
    uint8_t buf[128];
    memset(buf, 0xee, sizeof buf);
    wasi_address addr = {buf, 128};
    uint32_t port = 0;
    int32_t err = peer ? sock_getpeeraddr(fd, &addr, &port) : sock_getlocaladdr(fd, &addr, &port);
    if (err != 0) {
        report(what, err);
        return;
    }
    printf("%s family=%u address=%u.%u.%u.%u port=%u\n", what, buf[0] | (buf[1] << 8), buf[2],
           buf[3], buf[4], buf[5], port);
}

static int server(uint32_t port) {
    int32_t fd = open_socket(AF_INET4_, SOCK_STREAM_);
    uint8_t buf[128];
    wasi_address addr = storage(buf, "127.0.0.1");
    if (report("bind_v2", sock_bind_v2(fd, &addr, (int32_t)port)) != 0) return 1;
    if (report("listen", sock_listen(fd, 16)) != 0) return 1;
    print_storage("local", fd, 0);
    int32_t conn = -1;
    if (report("accept", sock_accept(fd, __WASI_FDFLAGS_NONBLOCK, &conn)) != 0) return 1;
    printf("accepted_nonblock=%d\n", (fcntl(conn, F_GETFL) & O_NONBLOCK) != 0);
    print_storage("peer", conn, 1);
    /* Non-blocking: wait for the request with poll_oneoff first. */
    poll_one(conn, 0, 5000, 0);
    char text[64] = {0};
    wasi_iovec iov = {(uint8_t *)text, sizeof text - 1};
    uint32_t n = 0;
    uint16_t roflags = 0;
    report("recv", sock_recv(conn, &iov, 1, 0, &n, &roflags));
    printf("request=%s\n", text);
    send_text(conn, "pong");
    /* After the peer closes: readable, with the hang-up flag, and no error. */
    poll_one(conn, 0, 5000, 0);
    report("recv_eof", sock_recv(conn, &iov, 1, 0, &n, &roflags));
    printf("eof_len=%u\n", n);
    return 0;
}

static int udp(const char *ip, uint32_t port, const char *message) {
    int32_t fd = open_socket(AF_INET4_, SOCK_DGRAM_);
    uint8_t to[128];
    wasi_address to_addr = storage(to, ip);
    wasi_iovec si = {(uint8_t *)message, (uint32_t)strlen(message)};
    uint32_t sent = 0;
    if (report("send_to_v2", sock_send_to_v2(fd, &si, 1, &to_addr, (int32_t)port, 0, &sent)) != 0)
        return 1;
    char text[64] = {0};
    uint8_t from[128];
    memset(from, 0xee, sizeof from);
    wasi_address from_addr = {from, 128};
    wasi_iovec ri = {(uint8_t *)text, sizeof text - 1};
    uint32_t from_port = 0, n = 0;
    uint16_t roflags = 0;
    report("recv_from", sock_recv_from(fd, &ri, 1, &from_addr, 0, &from_port, &n, &roflags));
    printf("datagram=%s len=%u family=%u address=%u.%u.%u.%u\n", text, n, from[0] | (from[1] << 8),
           from[2], from[3], from[4], from[5]);
    /* WasmEdge writes this port as a u16 in network byte order into the u32 the guest gave. */
    print_hex("port_bytes", (uint8_t *)&from_port, 4);
    return 0;
}

static int client(const char *ip, uint32_t port) {
    int32_t fd = open_socket(AF_INET4_, SOCK_STREAM_);
    uint8_t buf[128];
    wasi_address addr = storage(buf, ip);
    if (report("connect_v2", sock_connect_v2(fd, &addr, (int32_t)port)) != 0) return 1;
    print_storage("peer", fd, 1);
    /* V2 getlocaladdr takes only the 128-byte form. */
    uint8_t small[16];
    wasi_address wrong = {small, 16};
    uint32_t p = 0;
    report("local_16_bytes", sock_getlocaladdr(fd, &wrong, &p));
    send_text(fd, "hi");
    recv_text(fd, 2);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "server")) return server(port_arg(argv[2]));
    if (argc == 5 && !strcmp(argv[1], "udp")) return udp(argv[2], port_arg(argv[3]), argv[4]);
    if (argc == 4 && !strcmp(argv[1], "client")) return client(argv[2], port_arg(argv[3]));
    fprintf(stderr, "usage: wasmedge-v2 server PORT | udp IP PORT MESSAGE | client IP PORT\n");
    return 2;
}
