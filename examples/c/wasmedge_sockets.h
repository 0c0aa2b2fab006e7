/* WasmEdge's socket extension, declared by hand as its guests declare it (no library), so
 * the fixtures pin the ABI byte for byte: wasmedge-v1.c imports the first generation under
 * the plain names, wasmedge-v2.c the second (define WASMEDGE_V2 first). Every import is in
 * the module `wasi_snapshot_preview1`; every argument is an i32; the result is a WASI errno.
 *
 * Shared helpers: a command table (argv[1] picks one), printing results one per line so the
 * tests in crates/capabilities/tests/wasmedge_sockets.rs can compare them exactly. */
#ifndef WEDGE_WASMEDGE_SOCKETS_H
#define WEDGE_WASMEDGE_SOCKETS_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <wasi/api.h>

#define IMPORT(name) __attribute__((import_module("wasi_snapshot_preview1"), import_name(name)))

/* __wasi_address_t: where the address bytes are (4 or 16 raw bytes; V2 also 128: a u16
 * family, then the bytes). */
typedef struct {
    uint8_t *buf;
    uint32_t len;
} wasi_address;

typedef struct {
    uint8_t *buf;
    uint32_t len;
} wasi_iovec;

/* The records sock_getaddrinfo fills (28 and 12 bytes, 4-aligned). */
typedef struct {
    uint8_t family;
    uint32_t sa_data_len;
    uint8_t *sa_data;
} wasi_sockaddr;

typedef struct {
    uint16_t ai_flags;
    uint8_t ai_family;
    uint8_t ai_socktype;
    uint8_t ai_protocol;
    uint32_t ai_addrlen;
    wasi_sockaddr *ai_addr;
    char *ai_canonname;
    uint32_t ai_canonname_len;
    void *ai_next;
} wasi_addrinfo;

_Static_assert(sizeof(wasi_address) == 8, "__wasi_address_t");
_Static_assert(sizeof(wasi_sockaddr) == 12, "__wasi_sockaddr_t");
_Static_assert(sizeof(wasi_addrinfo) == 28, "__wasi_addrinfo_t");

enum { AF_INET4_ = 1, AF_INET6_ = 2, AF_UNIX_ = 3 };
enum { SOCK_DGRAM_ = 1, SOCK_STREAM_ = 2 };
enum {
    SO_REUSEADDR_ = 0,
    SO_TYPE_ = 1,
    SO_ERROR_ = 2,
    SO_RCVTIMEO_ = 11,
    SO_ACCEPTCONN_ = 13,
    SO_BINDTODEVICE_ = 14,
};

/* The same in both generations. */
IMPORT("sock_open") int32_t sock_open(int32_t family, int32_t type, int32_t *fd);
IMPORT("sock_bind") int32_t sock_bind(int32_t fd, wasi_address *addr, int32_t port);
IMPORT("sock_listen") int32_t sock_listen(int32_t fd, int32_t backlog);
IMPORT("sock_connect") int32_t sock_connect(int32_t fd, wasi_address *addr, int32_t port);
IMPORT("sock_recv")
int32_t sock_recv(int32_t fd, wasi_iovec *ri, int32_t ri_len, int32_t flags, uint32_t *ro_len,
                  uint16_t *ro_flags);
IMPORT("sock_send")
int32_t sock_send(int32_t fd, const wasi_iovec *si, int32_t si_len, int32_t flags,
                  uint32_t *so_len);
IMPORT("sock_send_to")
int32_t sock_send_to(int32_t fd, const wasi_iovec *si, int32_t si_len, wasi_address *addr,
                     int32_t port, int32_t flags, uint32_t *so_len);
IMPORT("sock_shutdown") int32_t sock_shutdown(int32_t fd, int32_t how);
IMPORT("sock_getsockopt")
int32_t sock_getsockopt(int32_t fd, int32_t level, int32_t name, void *flag, uint32_t *size);
IMPORT("sock_setsockopt")
int32_t sock_setsockopt(int32_t fd, int32_t level, int32_t name, const void *flag,
                        uint32_t size);
IMPORT("sock_getaddrinfo")
int32_t sock_getaddrinfo(const char *node, uint32_t node_len, const char *service,
                         uint32_t service_len, const wasi_addrinfo *hints, wasi_addrinfo **res,
                         uint32_t max, uint32_t *res_len);
IMPORT("epoll_oneoff")
int32_t epoll_oneoff(const __wasi_subscription_t *in, __wasi_event_t *out, uint32_t n,
                     __wasi_size_t *nevents);

#ifdef WASMEDGE_V2
IMPORT("sock_accept") int32_t sock_accept(int32_t fd, int32_t flags, int32_t *new_fd);
IMPORT("sock_recv_from")
int32_t sock_recv_from(int32_t fd, wasi_iovec *ri, int32_t ri_len, wasi_address *addr,
                       int32_t flags, uint32_t *port, uint32_t *ro_len, uint16_t *ro_flags);
IMPORT("sock_getlocaladdr") int32_t sock_getlocaladdr(int32_t fd, wasi_address *addr, uint32_t *port);
IMPORT("sock_getpeeraddr") int32_t sock_getpeeraddr(int32_t fd, wasi_address *addr, uint32_t *port);
IMPORT("sock_bind_v2") int32_t sock_bind_v2(int32_t fd, wasi_address *addr, int32_t port);
IMPORT("sock_connect_v2") int32_t sock_connect_v2(int32_t fd, wasi_address *addr, int32_t port);
IMPORT("sock_send_to_v2")
int32_t sock_send_to_v2(int32_t fd, const wasi_iovec *si, int32_t si_len, wasi_address *addr,
                        int32_t port, int32_t flags, uint32_t *so_len);
#else
IMPORT("sock_accept") int32_t sock_accept(int32_t fd, int32_t *new_fd);
IMPORT("sock_recv_from")
int32_t sock_recv_from(int32_t fd, wasi_iovec *ri, int32_t ri_len, wasi_address *addr,
                       int32_t flags, uint32_t *ro_len, uint16_t *ro_flags);
IMPORT("sock_getlocaladdr")
int32_t sock_getlocaladdr(int32_t fd, wasi_address *addr, uint32_t *type, uint32_t *port);
IMPORT("sock_getpeeraddr")
int32_t sock_getpeeraddr(int32_t fd, wasi_address *addr, uint32_t *type, uint32_t *port);
#endif

/* A result line: the name, then the errno (0 = success). */
static inline int32_t report(const char *what, int32_t err) {
    printf("%s=%d\n", what, (int)err);
    return err;
}

static inline void ipv4(uint8_t out[4], const char *text) {
    unsigned a, b, c, d;
    if (sscanf(text, "%u.%u.%u.%u", &a, &b, &c, &d) != 4) {
        fprintf(stderr, "not an IPv4 address: %s\n", text);
        exit(2);
    }
    out[0] = (uint8_t)a;
    out[1] = (uint8_t)b;
    out[2] = (uint8_t)c;
    out[3] = (uint8_t)d;
}

static inline void print_hex(const char *what, const uint8_t *bytes, uint32_t len) {
    printf("%s=", what);
    for (uint32_t i = 0; i < len; i++) printf("%02x", bytes[i]);
    printf("\n");
}

static inline int32_t open_socket(int32_t family, int32_t type) {
    int32_t fd = -1;
    if (report("open", sock_open(family, type, &fd)) != 0) exit(1);
    return fd;
}

/* Sends all of `text` (one sock_send with two iovecs, split in the middle: the host must
 * gather them). */
static inline int32_t send_text(int32_t fd, const char *text) {
    uint32_t len = (uint32_t)strlen(text), half = len / 2, sent = 0;
    wasi_iovec iov[2] = {{(uint8_t *)text, half}, {(uint8_t *)text + half, len - half}};
    int32_t err = sock_send(fd, iov, 2, 0, &sent);
    printf("sent=%u\n", sent);
    return report("send", err);
}

/* Receives until `want` bytes came (or the peer closed) and prints them. */
static inline int32_t recv_text(int32_t fd, uint32_t want) {
    char buf[256] = {0};
    uint32_t got = 0;
    while (got < want && got < sizeof buf - 1) {
        wasi_iovec iov = {(uint8_t *)buf + got, (uint32_t)(sizeof buf - 1 - got)};
        uint32_t n = 0;
        uint16_t flags = 0;
        int32_t err = sock_recv(fd, &iov, 1, 0, &n, &flags);
        if (err != 0) return report("recv", err);
        if (n == 0) break;
        got += n;
    }
    printf("received=%s\n", buf);
    return 0;
}

static inline uint32_t port_arg(const char *text) { return (uint32_t)strtoul(text, NULL, 10); }

/* One poll of fd for `write` (or read), at most `ms`: prints the event as the tests read it. */
static inline int32_t poll_one(int32_t fd, int write, uint64_t ms, int edge) {
    __wasi_subscription_t subs[2];
    memset(subs, 0, sizeof subs);
    subs[0].userdata = 7;
    subs[0].u.tag = write ? __WASI_EVENTTYPE_FD_WRITE : __WASI_EVENTTYPE_FD_READ;
    subs[0].u.u.fd_read.file_descriptor = (uint32_t)fd;
    subs[1].userdata = 9;
    subs[1].u.tag = __WASI_EVENTTYPE_CLOCK;
    subs[1].u.u.clock.id = __WASI_CLOCKID_MONOTONIC;
    subs[1].u.u.clock.timeout = ms * 1000000ull;
    __wasi_event_t events[2];
    memset(events, 0xff, sizeof events);
    __wasi_size_t n = 0;
    int32_t err = edge ? epoll_oneoff(subs, events, 2, &n)
                       : (int32_t)__wasi_poll_oneoff(subs, events, 2, &n);
    report("poll", err);
    for (__wasi_size_t i = 0; i < n; i++) {
        printf("event userdata=%llu error=%u type=%u hangup=%u nbytes_nonzero=%u\n",
               (unsigned long long)events[i].userdata, events[i].error, events[i].type,
               events[i].fd_readwrite.flags & __WASI_EVENTRWFLAGS_FD_READWRITE_HANGUP,
               events[i].type == __WASI_EVENTTYPE_CLOCK ? 0 : events[i].fd_readwrite.nbytes > 0);
    }
    return err;
}

static inline int32_t get_int_option(int32_t fd, int32_t name) {
    int32_t value = -1;
    uint32_t size = sizeof value;
    int32_t err = sock_getsockopt(fd, 0, name, &value, &size);
    if (err != 0) return -1000 - err;
    return value;
}

/* getaddrinfo as wasmedge_wasi_socket calls it: the node and service with their NUL counted,
 * hints for IPv4 TCP, `max` records linked beforehand with 26-byte data buffers whose
 * sa_data_len says 14 (what that crate writes). Prints every answer; `first` (if given) gets
 * the first one's 6 leading sa_data bytes: the port big-endian, then the IPv4 address. */
static inline int32_t lookup(const char *node, const char *service, int family, uint32_t max,
                             uint8_t *first) {
    enum { MAX = 8 };
    static wasi_addrinfo records[MAX];
    static wasi_sockaddr addrs[MAX];
    static uint8_t data[MAX][26];
    static char canon[MAX][64];
    if (max > MAX) max = MAX;
    memset(records, 0, sizeof records);
    for (uint32_t i = 0; i < MAX; i++) {
        addrs[i].family = 0;
        addrs[i].sa_data_len = family == AF_INET6_ ? 26 : 14;
        addrs[i].sa_data = data[i];
        records[i].ai_addr = &addrs[i];
        records[i].ai_canonname = canon[i];
        records[i].ai_canonname_len = sizeof canon[i];
        records[i].ai_next = i + 1 < MAX ? &records[i + 1] : NULL;
    }
    wasi_addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = (uint8_t)family;
    hints.ai_socktype = SOCK_STREAM_;
    hints.ai_protocol = 1; /* TCP */
    wasi_addrinfo *res = records;
    uint32_t count = 0;
    int32_t err = sock_getaddrinfo(node, (uint32_t)strlen(node) + 1, service,
                                   (uint32_t)strlen(service) + 1, &hints, &res, max, &count);
    report("getaddrinfo", err);
    if (err != 0) return err;
    printf("count=%u\n", count);
    for (uint32_t i = 0; i < count; i++) {
        wasi_addrinfo *r = &records[i];
        printf("answer family=%u socktype=%u protocol=%u addrlen=%u sa_family=%u sa_data_len=%u\n",
               r->ai_family, r->ai_socktype, r->ai_protocol, r->ai_addrlen, r->ai_addr->family,
               r->ai_addr->sa_data_len);
        print_hex("sa_data", r->ai_addr->sa_data, r->ai_addr->sa_data_len);
    }
    if (first && count > 0) memcpy(first, records[0].ai_addr->sa_data, 6);
    return 0;
}

#endif
