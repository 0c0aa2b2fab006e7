/* WasmEdge's socket extension, first generation (the plain names with V1 signatures:
 * sock_accept(fd, *fd), sock_recv_from with 7 parameters, sock_getlocaladdr and
 * sock_getpeeraddr with an address-type out-pointer). A command per argv[1]; each prints
 * what it got, one `name=value` per line. */
#include "wasmedge_sockets.h"

static wasi_address v4(uint8_t bytes[4], const char *text) {
    ipv4(bytes, text);
    wasi_address addr = {bytes, 4};
    return addr;
}

static void print_endpoint(const char *what, int32_t fd, int peer) {
    uint8_t bytes[16] = {0};
    wasi_address addr = {bytes, 16};
    uint32_t type = 0, port = 0;
    int32_t err = peer ? sock_getpeeraddr(fd, &addr, &type, &port)
                       : sock_getlocaladdr(fd, &addr, &type, &port);
    if (err != 0) {
        report(what, err);
        return;
    }
    printf("%s=%u.%u.%u.%u:%u type=%u\n", what, bytes[0], bytes[1], bytes[2], bytes[3], port,
           type);
}

static int client(const char *ip, uint32_t port, const char *message) {
    int32_t fd = open_socket(AF_INET4_, SOCK_STREAM_);
    printf("fd_in_socket_range=%d\n", fd >= (1 << 24));
    uint8_t bytes[4];
    wasi_address addr = v4(bytes, ip);
    if (report("connect", sock_connect(fd, &addr, (int32_t)port)) != 0) return 1;
    __wasi_fdstat_t stat;
    report("fdstat", __wasi_fd_fdstat_get(fd, &stat));
    printf("filetype=%u nonblock=%u\n", stat.fs_filetype,
           (stat.fs_flags & __WASI_FDFLAGS_NONBLOCK) != 0);
    send_text(fd, message);
    report("shutdown", sock_shutdown(fd, __WASI_SDFLAGS_WR));
    recv_text(fd, (uint32_t)strlen(message));
    print_endpoint("peer", fd, 1);
    uint8_t local[16];
    wasi_address laddr = {local, 16};
    uint32_t type = 0, lport = 0;
    report("local", sock_getlocaladdr(fd, &laddr, &type, &lport));
    printf("local_type=%u local_port_nonzero=%d\n", type, lport != 0);
    report("close", close(fd) == 0 ? 0 : errno);
    return 0;
}

static int server(uint32_t port) {
    int32_t fd = open_socket(AF_INET4_, SOCK_STREAM_);
    int32_t one = 1;
    report("reuseaddr", sock_setsockopt(fd, 0, SO_REUSEADDR_, &one, sizeof one));
    uint8_t bytes[4];
    wasi_address addr = v4(bytes, "0.0.0.0");
    if (report("bind", sock_bind(fd, &addr, (int32_t)port)) != 0) return 1;
    if (report("listen", sock_listen(fd, 16)) != 0) return 1;
    print_endpoint("local", fd, 0);
    printf("acceptconn=%d\n", get_int_option(fd, SO_ACCEPTCONN_));
    int32_t conn = -1;
    if (report("accept", sock_accept(fd, &conn)) != 0) return 1;
    int flags = fcntl(conn, F_GETFL);
    printf("accepted_nonblock=%d\n", (flags & O_NONBLOCK) != 0);
    char buf[64] = {0};
    wasi_iovec iov = {(uint8_t *)buf, sizeof buf - 1};
    uint32_t n = 0;
    uint16_t roflags = 0;
    report("recv", sock_recv(conn, &iov, 1, 0, &n, &roflags));
    printf("request=%s\n", buf);
    for (uint32_t i = 0; i < n / 2; i++) {
        char c = buf[i];
        buf[i] = buf[n - 1 - i];
        buf[n - 1 - i] = c;
    }
    /* fd_write on a socket is a send. */
    ssize_t written = write(conn, buf, n);
    printf("written=%zd\n", written);
    report("close_conn", close(conn) == 0 ? 0 : errno);
    report("close_listener", close(fd) == 0 ? 0 : errno);
    return 0;
}

static int nonblocking_connect(uint32_t port, int edge) {
    int32_t fd = open_socket(AF_INET4_, SOCK_STREAM_);
    report("setfl", fcntl(fd, F_SETFL, O_NONBLOCK) == 0 ? 0 : errno);
    printf("nonblock=%d\n", (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0);
    uint8_t bytes[4];
    wasi_address addr = v4(bytes, "127.0.0.1");
    int32_t err = sock_connect(fd, &addr, (int32_t)port);
    /* Loopback may connect at once; anything else must be INPROGRESS. */
    printf("connect_inprogress_or_done=%d\n", err == __WASI_ERRNO_INPROGRESS || err == 0);
    poll_one(fd, 1, 5000, edge);
    printf("so_error=%d\n", get_int_option(fd, SO_ERROR_));
    return 0;
}

static int udp(const char *ip, uint32_t port, const char *message) {
    int32_t fd = open_socket(AF_INET4_, SOCK_DGRAM_);
    uint8_t bytes[4];
    wasi_address addr = v4(bytes, ip);
    wasi_iovec si = {(uint8_t *)message, (uint32_t)strlen(message)};
    uint32_t sent = 0;
    if (report("send_to", sock_send_to(fd, &si, 1, &addr, (int32_t)port, 0, &sent)) != 0) return 1;
    printf("sent=%u\n", sent);
    char buf[64] = {0};
    uint8_t from[4] = {0};
    wasi_address from_addr = {from, 4};
    wasi_iovec ri = {(uint8_t *)buf, sizeof buf - 1};
    uint32_t n = 0;
    uint16_t roflags = 0;
    report("recv_from", sock_recv_from(fd, &ri, 1, &from_addr, 0, &n, &roflags));
    printf("datagram=%s from=%u.%u.%u.%u truncated=%u\n", buf, from[0], from[1], from[2],
           from[3], roflags);
    /* A datagram larger than the buffer is cut, and says so. */
    if (report("send_to_again", sock_send_to(fd, &si, 1, &addr, (int32_t)port, 0, &sent)) != 0)
        return 1;
    char small[2];
    wasi_iovec tiny = {(uint8_t *)small, sizeof small};
    report("recv_small", sock_recv_from(fd, &tiny, 1, &from_addr, 0, &n, &roflags));
    printf("small_len=%u truncated=%u\n", n, roflags);
    return 0;
}

static int sockopts(void) {
    int32_t fd = open_socket(AF_INET4_, SOCK_STREAM_);
    printf("type=%d acceptconn=%d error=%d\n", get_int_option(fd, SO_TYPE_),
           get_int_option(fd, SO_ACCEPTCONN_), get_int_option(fd, SO_ERROR_));
    int64_t timeout[2] = {1, 500000};
    report("set_rcvtimeo", sock_setsockopt(fd, 0, SO_RCVTIMEO_, timeout, sizeof timeout));
    int64_t back[2] = {0, 0};
    uint32_t size = sizeof back;
    report("get_rcvtimeo", sock_getsockopt(fd, 0, SO_RCVTIMEO_, back, &size));
    printf("rcvtimeo=%lld.%06lld size=%u\n", (long long)back[0], (long long)back[1], size);
    int32_t value = 1;
    report("bad_level", sock_setsockopt(fd, 1, SO_REUSEADDR_, &value, sizeof value));
    report("set_type", sock_setsockopt(fd, 0, SO_TYPE_, &value, sizeof value));
    report("short_int", sock_setsockopt(fd, 0, SO_REUSEADDR_, &value, 2));
    return 0;
}

static int accept_with_timeout(uint32_t port) {
    int32_t fd = open_socket(AF_INET4_, SOCK_STREAM_);
    uint8_t bytes[4];
    wasi_address addr = v4(bytes, "127.0.0.1");
    if (report("bind", sock_bind(fd, &addr, (int32_t)port)) != 0) return 1;
    if (report("listen", sock_listen(fd, 4)) != 0) return 1;
    int64_t timeout[2] = {0, 200000};
    report("set_rcvtimeo", sock_setsockopt(fd, 0, SO_RCVTIMEO_, timeout, sizeof timeout));
    int32_t conn = -1;
    report("accept", sock_accept(fd, &conn));
    return 0;
}

/* The denials and refusals: each prints the errno the guest saw. */
static int attempt(int argc, char **argv) {
    const char *what = argv[1];
    if (!strcmp(what, "connect") && argc == 4) {
        int32_t fd = open_socket(AF_INET4_, SOCK_STREAM_);
        uint8_t bytes[4];
        wasi_address addr = v4(bytes, argv[2]);
        report("connect", sock_connect(fd, &addr, (int32_t)port_arg(argv[3])));
    } else if (!strcmp(what, "connect-name") && argc == 4) {
        uint8_t first[6];
        if (lookup(argv[2], argv[3], AF_INET4_, 4, first) != 0) return 0;
        int32_t fd = open_socket(AF_INET4_, SOCK_STREAM_);
        wasi_address addr = {first + 2, 4};
        report("connect", sock_connect(fd, &addr, (first[0] << 8) | first[1]));
    } else if (!strcmp(what, "udp-send") && argc == 4) {
        int32_t fd = open_socket(AF_INET4_, SOCK_DGRAM_);
        uint8_t bytes[4];
        wasi_address addr = v4(bytes, argv[2]);
        wasi_iovec si = {(uint8_t *)"x", 1};
        uint32_t sent = 0;
        report("send_to", sock_send_to(fd, &si, 1, &addr, (int32_t)port_arg(argv[3]), 0, &sent));
    } else if (!strcmp(what, "bind") && argc == 4) {
        int32_t fd = open_socket(AF_INET4_, SOCK_STREAM_);
        uint8_t bytes[4];
        wasi_address addr = v4(bytes, argv[2]);
        if (report("bind", sock_bind(fd, &addr, (int32_t)port_arg(argv[3]))) == 0) {
            report("listen", sock_listen(fd, 4));
            print_endpoint("local", fd, 0);
        }
    } else if (!strcmp(what, "unix")) {
        int32_t fd = -1;
        report("open", sock_open(AF_UNIX_, SOCK_STREAM_, &fd));
    } else if (!strcmp(what, "bindtodevice")) {
        int32_t fd = open_socket(AF_INET4_, SOCK_STREAM_);
        report("bindtodevice", sock_setsockopt(fd, 0, SO_BINDTODEVICE_, "lo", 3));
    } else if (!strcmp(what, "misaligned")) {
        static int32_t slots[2];
        report("open", sock_open(AF_INET4_, SOCK_STREAM_, (int32_t *)((char *)slots + 1)));
    } else if (!strcmp(what, "limit") && argc == 3) {
        int32_t fd = -1, err = 0;
        unsigned opened = 0, want = (unsigned)port_arg(argv[2]);
        while (opened <= want && (err = sock_open(AF_INET4_, SOCK_STREAM_, &fd)) == 0) opened++;
        printf("opened=%u err=%d\n", opened, err);
    } else {
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 5 && !strcmp(argv[1], "client")) return client(argv[2], port_arg(argv[3]), argv[4]);
    if (argc == 3 && !strcmp(argv[1], "server")) return server(port_arg(argv[2]));
    if (argc == 3 && !strcmp(argv[1], "nonblock")) return nonblocking_connect(port_arg(argv[2]), 0);
    if (argc == 3 && !strcmp(argv[1], "nonblock-epoll")) return nonblocking_connect(port_arg(argv[2]), 1);
    if (argc >= 4 && !strcmp(argv[1], "lookup")) {
        lookup(argv[2], argv[3], argc > 4 ? atoi(argv[4]) : AF_INET4_, 8, NULL);
        return 0;
    }
    if (argc == 5 && !strcmp(argv[1], "udp")) return udp(argv[2], port_arg(argv[3]), argv[4]);
    if (argc == 2 && !strcmp(argv[1], "sockopts")) return sockopts();
    if (argc == 3 && !strcmp(argv[1], "accept-timeout")) return accept_with_timeout(port_arg(argv[2]));
    if (argc >= 2 && attempt(argc, argv) == 0) return 0;
    fprintf(stderr, "usage: wasmedge-v1 client|server|nonblock|nonblock-epoll|lookup|udp|sockopts|accept-timeout|connect|connect-name|udp-send|bind|unix|bindtodevice|misaligned|limit ...\n");
    return 2;
}
