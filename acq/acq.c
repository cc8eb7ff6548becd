/* SPDX-License-Identifier: MIT */
/*
 * acq's io_uring event loop: one ring, one thread, no epoll and no thread per
 * client. TCP: a multishot accept and, per connection, a multishot receive
 * into a provided-buffer ring (registered by hand: liburing 2.3 lacks
 * io_uring_setup_buf_ring). UDP packets and UDP frame fragments: multishot
 * recvmsg into their own buffer rings, with MSG_TRUNC reported. The ring is
 * set up SINGLE_ISSUER | DEFER_TASKRUN so completions are only run when the
 * loop asks, in batches; every batch of CQEs is processed before buffers go
 * back and records are published (one ring publish per batch).
 */
#include "acq_internal.h"

#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rtd_util.h"

/* user_data: kind in the top byte, connection generation, connection index. */
enum { UD_ACCEPT = 1, UD_RECV = 2, UD_UDP = 3, UD_FRAG = 4, UD_CANCEL = 5 };
#define UD(kind, gen, idx) (((uint64_t)(kind) << 56) | ((uint64_t)((gen)&0xffffff) << 32) | (idx))

enum { BG_TCP = 0, BG_UDP = 1, BG_FRAG = 2 };

struct bufring {
    struct io_uring_buf_ring *br;
    uint8_t *bufs;
    uint32_t size, count, mask, adds;
    size_t ring_bytes;
    uint16_t bgid;
};

enum { CONN_FREE = 0, CONN_OPEN = 1, CONN_CLOSING = 2 };

struct conn {
    int fd;
    uint32_t gen;
    uint8_t state, armed, rearm;
    struct acq_stream st;
};

struct uring_loop {
    struct acq *a;
    struct io_uring ring;
    struct bufring tcp, udp, frag;
    int lfd, ufd, ffd;
    struct conn *conns;
    uint32_t *free_list, n_free, n_conns;
    uint32_t *rearm_list, n_rearm;
    int rearm_accept, rearm_udp, rearm_frag;
    struct msghdr msgh; /* template for recvmsg multishot: no name, no control */
};

static int bufring_setup(struct io_uring *ring, struct bufring *b, uint16_t bgid, uint32_t count,
                         uint32_t size)
{
    b->bgid = bgid;
    b->count = count;
    b->size = size;
    b->mask = (uint32_t)io_uring_buf_ring_mask(count);
    b->ring_bytes = count * sizeof(struct io_uring_buf);
    void *mem =
        mmap(NULL, b->ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (mem == MAP_FAILED)
        return -errno;
    b->br = mem;
    /* Populated now: faulting 32 MiB of fresh pages in, one at a time inside the kernel's
     * receive copies, cost the first seconds of a run a p99 of tens of ms. */
    b->bufs = mmap(NULL, (size_t)count * size, PROT_READ | PROT_WRITE,
                   MAP_ANONYMOUS | MAP_PRIVATE | MAP_POPULATE, -1, 0);
    if (b->bufs == MAP_FAILED) {
        b->bufs = NULL;
        return -errno;
    }
    struct io_uring_buf_reg reg = {
        .ring_addr = (uintptr_t)mem, .ring_entries = count, .bgid = bgid};
    int rc = io_uring_register_buf_ring(ring, &reg, 0);
    if (rc)
        return rc;
    io_uring_buf_ring_init(b->br);
    for (uint32_t i = 0; i < count; i++)
        io_uring_buf_ring_add(b->br, b->bufs + (size_t)i * size, size, (unsigned short)i,
                              (int)b->mask, (int)i);
    io_uring_buf_ring_advance(b->br, (int)count);
    return 0;
}

static void bufring_free(struct bufring *b)
{
    if (b->br)
        munmap(b->br, b->ring_bytes);
    if (b->bufs)
        munmap(b->bufs, (size_t)b->count * b->size);
}

/* Give a buffer back; made visible to the kernel in one store per batch. */
static inline void bufring_recycle(struct bufring *b, uint32_t bid)
{
    io_uring_buf_ring_add(b->br, b->bufs + (size_t)bid * b->size, b->size, (unsigned short)bid,
                          (int)b->mask, (int)b->adds++);
}

static inline void bufring_commit(struct bufring *b)
{
    if (b->adds) {
        io_uring_buf_ring_advance(b->br, (int)b->adds);
        b->adds = 0;
    }
}

/* The SQ is flushed when full, so an SQE is always available after one submit. */
__attribute__((returns_nonnull)) static struct io_uring_sqe *get_sqe(struct io_uring *ring)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    if (!sqe) {
        io_uring_submit(ring);
        sqe = io_uring_get_sqe(ring);
        if (!sqe)
            abort();
    }
    return sqe;
}

static void arm_accept(struct uring_loop *L)
{
    struct io_uring_sqe *sqe = get_sqe(&L->ring);
    io_uring_prep_multishot_accept(sqe, L->lfd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, UD(UD_ACCEPT, 0, 0));
}

static void arm_recv(struct uring_loop *L, uint32_t idx)
{
    struct conn *c = &L->conns[idx];
    struct io_uring_sqe *sqe = get_sqe(&L->ring);
    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BG_TCP;
    io_uring_sqe_set_data64(sqe, UD(UD_RECV, c->gen, idx));
    c->armed = 1;
}

static void arm_recvmsg(struct uring_loop *L, int fd, int kind, uint16_t bgid)
{
    struct io_uring_sqe *sqe = get_sqe(&L->ring);
    io_uring_prep_recvmsg_multishot(sqe, fd, &L->msgh, MSG_TRUNC);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = bgid;
    io_uring_sqe_set_data64(sqe, UD(kind, 0, 0));
}

static void conn_release(struct uring_loop *L, uint32_t idx)
{
    struct conn *c = &L->conns[idx];
    close(c->fd);
    c->fd = -1;
    c->state = CONN_FREE;
    c->rearm = 0; /* a pending re-arm in this batch belongs to the old connection */
    c->gen++;
    c->st.have = 0;
    L->free_list[L->n_free++] = idx;
    L->a->cnt[C_CLIENTS_ACTIVE]--;
}

/* Close one offending connection; others are unaffected. */
static void conn_kill(struct uring_loop *L, uint32_t idx)
{
    struct conn *c = &L->conns[idx];
    if (c->state != CONN_OPEN)
        return;
    c->state = CONN_CLOSING;
    c->st.have = 0;
    if (!c->armed) {
        conn_release(L, idx);
        return;
    }
    /* The multishot receive ends with res 0 after shutdown; the slot is freed then. */
    shutdown(c->fd, SHUT_RDWR);
}

static void on_accept(struct uring_loop *L, struct io_uring_cqe *cqe)
{
    struct acq *a = L->a;
    if (!(cqe->flags & IORING_CQE_F_MORE))
        L->rearm_accept = 1;
    if (cqe->res < 0) {
        if (cqe->res != -ECANCELED)
            rtd_log(RTD_LOG_WARN, "accept: %s", strerror(-cqe->res));
        return;
    }
    int fd = cqe->res;
    if (a->cnt[C_CLIENTS_ACTIVE] >= a->cfg->max_clients || !L->n_free) {
        close(fd);
        a->cnt[C_CLIENTS_REJECTED]++;
        return;
    }
    uint32_t idx = L->free_list[--L->n_free];
    struct conn *c = &L->conns[idx];
    c->fd = fd;
    c->state = CONN_OPEN;
    c->rearm = 0;
    acq_stream_init(a, &c->st);
    a->cnt[C_CLIENTS_ACTIVE]++;
    a->cnt[C_CLIENTS_ACCEPTED]++;
    arm_recv(L, idx);
}

static void on_recv(struct uring_loop *L, struct io_uring_cqe *cqe, uint32_t idx, uint32_t gen)
{
    struct acq *a = L->a;
    struct conn *c = &L->conns[idx];
    int res = cqe->res;
    if (cqe->flags & IORING_CQE_F_BUFFER) {
        uint32_t bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        if (res > 0 && c->state == CONN_OPEN && c->gen == (gen & 0xffffff) &&
            acq_parse_stream(a, &c->st, L->tcp.bufs + (size_t)bid * L->tcp.size, (size_t)res))
            conn_kill(L, idx);
        bufring_recycle(&L->tcp, bid);
    }
    if (cqe->flags & IORING_CQE_F_MORE)
        return;
    if ((gen & 0xffffff) != (c->gen & 0xffffff) || c->state == CONN_FREE)
        return;
    c->armed = 0;
    if (c->state == CONN_OPEN && (res > 0 || res == -ENOBUFS)) {
        /* The buffer ring ran dry (or the kernel ended the multishot): re-arm after
         * this batch has given its buffers back. */
        if (res == -ENOBUFS)
            a->cnt[C_IO_ENOBUFS]++;
        if (!c->rearm) {
            c->rearm = 1;
            L->rearm_list[L->n_rearm++] = idx;
        }
        return;
    }
    if (c->state == CONN_OPEN && c->st.have)
        a->cnt[C_CLIENTS_VANISHED]++;
    conn_release(L, idx);
}

static void on_dgram(struct uring_loop *L, struct io_uring_cqe *cqe, struct bufring *b, int kind)
{
    struct acq *a = L->a;
    if (cqe->flags & IORING_CQE_F_BUFFER) {
        uint32_t bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        uint8_t *buf = b->bufs + (size_t)bid * b->size;
        if (cqe->res > 0) {
            struct io_uring_recvmsg_out *o = io_uring_recvmsg_validate(buf, cqe->res, &L->msgh);
            if (o) {
                const uint8_t *p = io_uring_recvmsg_payload(o, &L->msgh);
                size_t n = io_uring_recvmsg_payload_length(o, cqe->res, &L->msgh);
                if (o->flags & MSG_TRUNC)
                    a->cnt[C_UDP_TRUNC]++;
                else if (kind == UD_UDP)
                    acq_parse_datagram(a, p, n);
                else
                    acq_frame_fragment(a, p, n);
            }
        }
        bufring_recycle(b, bid);
    }
    if (!(cqe->flags & IORING_CQE_F_MORE)) {
        if (cqe->res == -ENOBUFS)
            a->cnt[C_IO_ENOBUFS]++;
        else if (cqe->res < 0 && cqe->res != -ECANCELED)
            rtd_log(RTD_LOG_WARN, "udp receive: %s", strerror(-cqe->res));
        if (kind == UD_UDP)
            L->rearm_udp = 1;
        else
            L->rearm_frag = 1;
    }
}

static void after_batch(struct uring_loop *L)
{
    bufring_commit(&L->tcp);
    bufring_commit(&L->udp);
    bufring_commit(&L->frag);
    for (uint32_t i = 0; i < L->n_rearm; i++) {
        struct conn *c = &L->conns[L->rearm_list[i]];
        /* Cleared when the slot was released (and maybe reused) during this batch. */
        if (!c->rearm)
            continue;
        c->rearm = 0;
        if (c->state == CONN_OPEN)
            arm_recv(L, L->rearm_list[i]);
    }
    L->n_rearm = 0;
    if (L->rearm_accept && !*L->a->stop)
        arm_accept(L);
    if (L->rearm_udp)
        arm_recvmsg(L, L->ufd, UD_UDP, BG_UDP);
    if (L->rearm_frag)
        arm_recvmsg(L, L->ffd, UD_FRAG, BG_FRAG);
    L->rearm_accept = L->rearm_udp = L->rearm_frag = 0;
    acq_publish_packets(L->a);
}

static int uring_init(struct uring_loop *L)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
    p.cq_entries = 16384;
    int rc = io_uring_queue_init_params(4096, &L->ring, &p);
    if (rc == -EINVAL) { /* kernels before 6.1 */
        memset(&p, 0, sizeof p);
        p.flags = IORING_SETUP_CQSIZE;
        p.cq_entries = 16384;
        rc = io_uring_queue_init_params(4096, &L->ring, &p);
    }
    if (rc == -EPERM || rc == -ENOSYS) {
        rtd_log(RTD_LOG_ERR,
                "io_uring_queue_init: %s: io_uring is blocked here (container seccomp "
                "profiles such as Docker >= 25 and containerd block it). Allow io_uring "
                "in the profile, or run with --io epoll.",
                strerror(-rc));
        return rc;
    }
    if (rc) {
        rtd_log(RTD_LOG_ERR, "io_uring_queue_init: %s", strerror(-rc));
        return rc;
    }
    return 0;
}

static int uring_setup(struct uring_loop *L, struct acq *a)
{
    const struct rtd_acq_config *cfg = a->cfg;
    L->a = a;
    L->lfd = L->ufd = L->ffd = -1;
    int rc = uring_init(L);
    if (rc)
        return rc;
    L->msgh.msg_namelen = 0;
    L->msgh.msg_controllen = 0;
    if (cfg->packet_port > 0) {
        if ((rc = bufring_setup(&L->ring, &L->tcp, BG_TCP, cfg->recv_buf_count,
                                cfg->recv_buf_size)) ||
            (rc = bufring_setup(&L->ring, &L->udp, BG_UDP, 256, 65536 + 64))) {
            rtd_log(RTD_LOG_ERR, "register provided buffers: %s", strerror(-rc));
            return rc;
        }
        L->n_conns = cfg->max_clients + 64; /* a few spare to count rejects on */
        L->conns = calloc(L->n_conns, sizeof *L->conns);
        L->free_list = calloc(L->n_conns, sizeof *L->free_list);
        L->rearm_list = calloc(L->n_conns, sizeof *L->rearm_list);
        if (!L->conns || !L->free_list || !L->rearm_list)
            return -ENOMEM;
        for (uint32_t i = 0; i < L->n_conns; i++) {
            L->conns[i].fd = -1;
            L->free_list[L->n_free++] = L->n_conns - 1 - i;
        }
        if ((L->lfd = acq_tcp_listener(cfg)) < 0)
            return L->lfd;
        if ((L->ufd = acq_udp_socket(cfg, cfg->packet_port)) < 0)
            return L->ufd;
        arm_accept(L);
        arm_recvmsg(L, L->ufd, UD_UDP, BG_UDP);
    }
    if (cfg->source == RTD_SRC_UDP && cfg->frame_port > 0) {
        if ((rc = bufring_setup(&L->ring, &L->frag, BG_FRAG, 512, 65536 + 64))) {
            rtd_log(RTD_LOG_ERR, "register provided buffers: %s", strerror(-rc));
            return rc;
        }
        if ((L->ffd = acq_udp_socket(cfg, cfg->frame_port)) < 0)
            return L->ffd;
        arm_recvmsg(L, L->ffd, UD_FRAG, BG_FRAG);
    }
    io_uring_submit(&L->ring);
    return 0;
}

static void uring_teardown(struct uring_loop *L)
{
    for (uint32_t i = 0; L->conns && i < L->n_conns; i++) {
        if (L->conns[i].fd >= 0)
            close(L->conns[i].fd);
        acq_stream_free(&L->conns[i].st);
    }
    if (L->lfd >= 0)
        close(L->lfd);
    if (L->ufd >= 0)
        close(L->ufd);
    if (L->ffd >= 0)
        close(L->ffd);
    if (L->ring.ring_fd > 0)
        io_uring_queue_exit(&L->ring);
    bufring_free(&L->tcp);
    bufring_free(&L->udp);
    bufring_free(&L->frag);
    free(L->conns);
    free(L->free_list);
    free(L->rearm_list);
}

static int uring_loop_run(struct uring_loop *L)
{
    struct acq *a = L->a;
    const struct rtd_acq_config *cfg = a->cfg;
    uint64_t start = rtd_now_ns();
    uint64_t end = cfg->duration_s > 0 ? start + (uint64_t)(cfg->duration_s * 1e9) : UINT64_MAX;
    uint64_t next_hk = start + 100000000ull, next_sec = start + 1000000000ull, next_ctl = start;
    rtd_sd_ready();
    while (!*a->stop) {
        uint64_t now = rtd_now_ns();
        if (now >= end)
            break;
        uint64_t wait = acq_source_poll(a);
        now = rtd_now_ns();
        if (next_hk - now < wait || now >= next_hk)
            wait = now >= next_hk ? 0 : next_hk - now;
        if (next_ctl <= now)
            wait = 0;
        else if (next_ctl - now < wait)
            wait = next_ctl - now;
        if (end - now < wait)
            wait = end - now;
        struct __kernel_timespec ts = {.tv_sec = (long long)(wait / 1000000000ull),
                                       .tv_nsec = (long long)(wait % 1000000000ull)};
        struct io_uring_cqe *cqe;
        /* A zero timeout still enters the kernel, which runs deferred task work. */
        int rc = io_uring_submit_and_wait_timeout(&L->ring, &cqe, 1, &ts, NULL);
        if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
            rtd_log(RTD_LOG_ERR, "io_uring wait: %s", strerror(-rc));
            return rc;
        }
        a->now_real = rtd_realtime_ns();
        a->now_mono = rtd_now_ns();
        unsigned head, n = 0;
        io_uring_for_each_cqe(&L->ring, head, cqe)
        {
            n++;
            uint64_t ud = cqe->user_data;
            uint32_t kind = (uint32_t)(ud >> 56), gen = (uint32_t)(ud >> 32) & 0xffffff;
            uint32_t idx = (uint32_t)ud;
            switch (kind) {
            case UD_ACCEPT:
                on_accept(L, cqe);
                break;
            case UD_RECV:
                on_recv(L, cqe, idx, gen);
                break;
            case UD_UDP:
                on_dgram(L, cqe, &L->udp, UD_UDP);
                break;
            case UD_FRAG:
                on_dgram(L, cqe, &L->frag, UD_FRAG);
                break;
            default:
                break;
            }
        }
        if (n) {
            io_uring_cq_advance(&L->ring, n);
            a->cnt[C_IO_CQES] += n;
            a->cnt[C_IO_BATCHES]++;
        }
        after_batch(L);
        a->now_mono = 0;
        now = rtd_now_ns();
        if (now >= next_ctl) {
            acq_ctl_poll(a);
            next_ctl = now + ACQ_CTL_POLL_NS;
        }
        if (now >= next_hk) {
            int sec = now >= next_sec;
            if (sec)
                next_sec = now + 1000000000ull;
            acq_housekeeping(a, sec);
            next_hk = now + 100000000ull;
        }
    }
    return 0;
}

int rtd_acq_run(const struct rtd_acq_config *cfg, volatile sig_atomic_t *stop)
{
    struct rlimit rl;
    /* One descriptor per client: lift the soft limit to the hard one. */
    if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (cfg->cpu >= 0) {
        int rc = rtd_pin_cpu(cfg->cpu);
        if (rc)
            rtd_log(RTD_LOG_WARN, "--cpu %d: %s (not pinned)", cfg->cpu, strerror(-rc));
    }
    if (cfg->fifo_prio || cfg->mlock)
        rtd_realtime_setup(cfg->fifo_prio, cfg->mlock);
    struct acq *a = calloc(1, sizeof *a);
    if (!a)
        return -ENOMEM;
    int rc = acq_setup(a, cfg, stop);
    if (!rc) {
        if (cfg->io == RTD_IO_EPOLL) {
            rc = acq_run_epoll(a);
        } else {
            struct uring_loop L;
            memset(&L, 0, sizeof L);
            rc = uring_setup(&L, a);
            if (!rc) {
                rtd_log(RTD_LOG_INFO,
                        "instance %s: packets tcp+udp %s:%d, frames %s (udp port %d), "
                        "max %u clients",
                        cfg->instance, cfg->bind, cfg->packet_port,
                        cfg->source == RTD_SRC_UDP         ? "udp"
                        : cfg->source == RTD_SRC_SYNTHETIC ? "synthetic"
                        : cfg->source == RTD_SRC_REPLAY    ? "replay"
                                                           : "none",
                        cfg->frame_port, cfg->max_clients);
                rc = uring_loop_run(&L);
            }
            rtd_sd_stopping();
            acq_publish_packets(a);
            acq_housekeeping(a, 1);
            uring_teardown(&L);
        }
    }
    acq_teardown(a);
    free(a);
    return rc;
}
