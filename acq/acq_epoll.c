/* SPDX-License-Identifier: MIT */
/*
 * The epoll back end (--io epoll): the same parser and frame reassembly fed
 * by plain non-blocking read()/recv(). It exists for hosts whose seccomp
 * profile blocks io_uring, and as the baseline the acq benchmark compares
 * the io_uring loop against.
 */
#include "acq_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rtd_util.h"

struct econn {
    int fd;
    struct acq_stream st;
};

/* epoll data: small integers for the listeners, conn index + 16 for clients. */
enum { EP_LISTEN = 1, EP_UDP = 2, EP_FRAG = 3, EP_CONN0 = 16 };

int acq_run_epoll(struct acq *a)
{
    const struct rtd_acq_config *cfg = a->cfg;
    int ep = epoll_create1(EPOLL_CLOEXEC), lfd = -1, ufd = -1, ffd = -1, rc = 0;
    uint32_t n_conns = cfg->max_clients + 64, n_free = 0, active = 0;
    struct econn *conns = calloc(n_conns, sizeof *conns);
    uint32_t *free_list = calloc(n_conns, sizeof *free_list);
    size_t bufsz = 256 * 1024;
    uint8_t *buf = malloc(bufsz);
    if (ep < 0 || !conns || !free_list || !buf) {
        rc = -ENOMEM;
        goto out;
    }
    for (uint32_t i = 0; i < n_conns; i++) {
        conns[i].fd = -1;
        free_list[n_free++] = n_conns - 1 - i;
    }
    struct epoll_event ev = {.events = EPOLLIN};
    if (cfg->packet_port > 0) {
        if ((lfd = acq_tcp_listener(cfg)) < 0 ||
            (ufd = acq_udp_socket(cfg, cfg->packet_port)) < 0) {
            rc = lfd < 0 ? lfd : ufd;
            goto out;
        }
        fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK); /* accept until EAGAIN */
        ev.data.u64 = EP_LISTEN;
        epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
        ev.data.u64 = EP_UDP;
        epoll_ctl(ep, EPOLL_CTL_ADD, ufd, &ev);
    }
    if (cfg->source == RTD_SRC_UDP && cfg->frame_port > 0) {
        if ((ffd = acq_udp_socket(cfg, cfg->frame_port)) < 0) {
            rc = ffd;
            goto out;
        }
        ev.data.u64 = EP_FRAG;
        epoll_ctl(ep, EPOLL_CTL_ADD, ffd, &ev);
    }
    rtd_log(RTD_LOG_INFO, "instance %s: epoll back end, packets %s:%d", cfg->instance, cfg->bind,
            cfg->packet_port);
    uint64_t start = rtd_now_ns();
    uint64_t end = cfg->duration_s > 0 ? start + (uint64_t)(cfg->duration_s * 1e9) : UINT64_MAX;
    uint64_t next_hk = start + 100000000ull, next_sec = start + 1000000000ull, next_ctl = start;
    rtd_sd_ready();
    struct epoll_event evs[256];
    while (!*a->stop) {
        uint64_t now = rtd_now_ns();
        if (now >= end)
            break;
        uint64_t wait = acq_source_poll(a);
        now = rtd_now_ns();
        uint64_t hk = now >= next_hk ? 0 : next_hk - now;
        if (hk < wait)
            wait = hk;
        uint64_t ct = now >= next_ctl ? 0 : next_ctl - now;
        if (ct < wait)
            wait = ct;
        int ms = (int)(wait / 1000000ull);
        int n = epoll_wait(ep, evs, 256, ms);
        a->now_real = rtd_realtime_ns();
        a->now_mono = rtd_now_ns();
        for (int i = 0; i < n; i++) {
            uint64_t d = evs[i].data.u64;
            if (d == EP_LISTEN) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    if (active >= cfg->max_clients || !n_free) {
                        close(fd);
                        a->cnt[C_CLIENTS_REJECTED]++;
                        continue;
                    }
                    uint32_t idx = free_list[--n_free];
                    conns[idx].fd = fd;
                    acq_stream_init(a, &conns[idx].st);
                    struct epoll_event cev = {.events = EPOLLIN, .data.u64 = EP_CONN0 + idx};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                    active++;
                    a->cnt[C_CLIENTS_ACTIVE] = active;
                    a->cnt[C_CLIENTS_ACCEPTED]++;
                }
            } else if (d == EP_UDP || d == EP_FRAG) {
                int fd = d == EP_UDP ? ufd : ffd;
                for (int k = 0; k < 64; k++) {
                    ssize_t r = recv(fd, buf, bufsz, MSG_DONTWAIT | MSG_TRUNC);
                    if (r < 0)
                        break;
                    if ((size_t)r > bufsz)
                        a->cnt[C_UDP_TRUNC]++;
                    else if (d == EP_UDP)
                        acq_parse_datagram(a, buf, (size_t)r);
                    else
                        acq_frame_fragment(a, buf, (size_t)r);
                }
            } else {
                uint32_t idx = (uint32_t)(d - EP_CONN0);
                struct econn *c = &conns[idx];
                ssize_t r = read(c->fd, buf, bufsz);
                int bad = 0, gone = 0;
                if (r > 0)
                    bad = acq_parse_stream(a, &c->st, buf, (size_t)r) != 0;
                else if (r == 0 || (errno != EAGAIN && errno != EINTR))
                    gone = 1;
                if (bad || gone) {
                    if (gone && c->st.have)
                        a->cnt[C_CLIENTS_VANISHED]++;
                    close(c->fd);
                    c->fd = -1;
                    free_list[n_free++] = idx;
                    active--;
                    a->cnt[C_CLIENTS_ACTIVE] = active;
                }
            }
        }
        acq_publish_packets(a);
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
    acq_housekeeping(a, 1);
out:
    for (uint32_t i = 0; conns && i < n_conns; i++) {
        if (conns[i].fd >= 0)
            close(conns[i].fd);
        acq_stream_free(&conns[i].st);
    }
    if (lfd >= 0)
        close(lfd);
    if (ufd >= 0)
        close(ufd);
    if (ffd >= 0)
        close(ffd);
    if (ep >= 0)
        close(ep);
    free(conns);
    free(free_list);
    free(buf);
    return rc;
}
