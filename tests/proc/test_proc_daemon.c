/* SPDX-License-Identifier: MIT */
/*
 * rtdaq-proc end to end: this test is the frames producer. It creates the
 * instance's frames ring, starts the real daemon with two fit workers,
 * publishes frames, SIGKILLs one worker mid-run, and checks that every frame
 * has its summary in a results ring (the killed worker's frame is adopted, none
 * is counted lost_dead: the ring blocks, so the design loses nothing), that the worker was
 * restarted and resumed its counters, that ions come out where they were put, and that SIGTERM
 * stops everything and unlinks the daemon's segments. Exit 0 pass, 1 fail, 77 skip.
 */
#include <math.h>
#include <stdatomic.h>

#include "proc_test.h"
#include "rtd_results.h"

#define W       128
#define H       128
#define NFRAMES 600
#define KILL_AT 200
#define NTEMPL  4
#define NIONS   3

static uint16_t templ[NTEMPL][W * H];
static float truth[NTEMPL][NIONS][2];

static void make_templates(void)
{
    uint64_t s = 88172645463325252ull;
    for (int k = 0; k < NTEMPL; k++) {
        for (int i = 0; i < NIONS; i++) {
            truth[k][i][0] = 20.0f + 40.0f * (float)i + 3.3f * (float)k;
            truth[k][i][1] = 30.0f + 25.0f * (float)k + 7.1f * (float)i;
        }
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                double v = 110;
                for (int i = 0; i < NIONS; i++) {
                    double dx = x - truth[k][i][0], dy = y - truth[k][i][1];
                    v += 100.0 * exp(-(dx * dx + dy * dy) / 8.0);
                }
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                v += (double)(s % 9) - 4.0; /* +-4 ADU of noise */
                templ[k][y * W + x] = (uint16_t)lrint(v);
            }
    }
}

struct drain {
    struct rtd_consumer *c;
    int frames, ions, bad_ions;
};

static void drain(struct drain *d, uint16_t *seen)
{
    /* A monitor of a drop-newest ring: records are copied out and validated (rtd_pkt_copy). */
    static uint64_t buf[(sizeof(struct rtd_pkt_hdr) + RTD_PKT_MAX_PAYLOAD) / 8];
    const struct rtd_pkt_hdr *h = (const struct rtd_pkt_hdr *)buf;
    int got = 0;
    while (rtd_pkt_copy(d->c, buf, sizeof buf, NULL) >= 0) {
        got++;
        if (h->type == RTD_RES_FRAME && h->len >= sizeof(struct rtd_res_frame)) {
            struct rtd_res_frame f;
            memcpy(&f, rtd_pkt_payload(h), sizeof f);
            if (f.frame_id < NFRAMES)
                seen[f.frame_id]++;
            d->frames++;
        } else if (h->type == RTD_RES_ION && h->len >= sizeof(struct rtd_res_ion)) {
            struct rtd_res_ion a;
            memcpy(&a, rtd_pkt_payload(h), sizeof a);
            d->ions++;
            int k = (int)(a.frame_id % NTEMPL), ok = 0;
            for (int i = 0; i < NIONS; i++)
                ok |= hypotf(a.x - truth[k][i][0], a.y - truth[k][i][1]) < 0.5f;
            d->bad_ions += !ok;
        }
    }
    if (got)
        rtd_pkt_release(d->c);
}

int main(void)
{
    if (access(PROC_BIN, X_OK) != 0) {
        printf("skip: %s not built\n", PROC_BIN);
        return 77;
    }
    make_templates();
    char inst[32];
    snprintf(inst, sizeof inst, "tproc%d", (int)getpid());
    rtd_shm_cleanup(inst, 1);

    struct rtd_ring *frames = NULL;
    struct rtd_ring_config cfg = {
        .kind = RTD_RING_FRAME,
        .slot_payload = W * H * 2,
        .slot_count = 32,
        .overflow = RTD_OVERFLOW_BLOCK,
    };
    int rc = rtd_ring_create(&frames, inst, "frames", &cfg);
    if (rc < 0) {
        fprintf(stderr, "create frames ring: %s\n", strerror(-rc));
        return 1;
    }
    const char *args[] = {"--instance", inst,     "--workers",   "2",          "--cpu",
                          "-1",         "--mode", "fits",        "--duration", "60",
                          "--poll-us",  "50",     "--log-level", "4",          NULL};
    pid_t sup = t_spawn_proc(args);
    if (sup < 0)
        return 1;

    /* Both workers up: their pid gauges set and both members in the group. */
    int64_t pid0 = -1, pid1 = -1;
    const struct rtd_ring_hdr *rh = rtd_ring_header(frames);
    int members = 0;
    for (int t = 0; t < 1500 && (pid0 <= 0 || pid1 <= 0 || members < 2); t++) {
        pid0 = t_counter(inst, "proc.w0", "pid");
        pid1 = t_counter(inst, "proc.w1", "pid");
        members = 0;
        for (int g = 0; g < RTD_MAX_GROUPS; g++)
            for (int m = 0; m < RTD_GROUP_MAX_MEMBERS; m++)
                members += atomic_load(&rh->groups[g].members[m].state) == RTD_MEMBER_ACTIVE;
        t_sleep_ms(10);
    }
    CHECK(pid0 > 0 && pid1 > 0 && members == 2, "workers up: pids %lld %lld, members %d",
          (long long)pid0, (long long)pid1, members);
    if (t_failed)
        goto stop;

    struct rtd_ring *res[2] = {NULL, NULL};
    struct drain dr[2];
    memset(dr, 0, sizeof dr);
    for (int k = 0; k < 2; k++) {
        char name[32];
        snprintf(name, sizeof name, "results.w%d", k);
        rc = rtd_ring_attach(&res[k], inst, name);
        CHECK(rc == 0, "attach %s: %s", name, strerror(-rc));
        if (rc == 0) {
            rc = rtd_consumer_open(&dr[k].c, res[k], RTD_CONSUMER_MONITOR, "test");
            CHECK(rc == 0, "monitor %s: %s", name, strerror(-rc));
        }
    }
    if (t_failed)
        goto stop;

    static uint16_t seen[NFRAMES];
    const uint64_t t0 = rtd_now_ns();
    for (int i = 0; i < NFRAMES; i++) {
        struct rtd_frame f;
        while ((rc = rtd_frame_claim(frames, &f)) == -EAGAIN) {
            drain(&dr[0], seen);
            drain(&dr[1], seen);
            t_sleep_ms(1);
            if (rtd_now_ns() - t0 > 20000000000ull)
                break;
        }
        CHECK(rc == 0, "claim frame %d: %s", i, strerror(-rc));
        if (rc != 0)
            goto stop;
        memcpy(f.data, templ[i % NTEMPL], sizeof templ[0]);
        f.hdr->len = W * H * 2;
        f.hdr->width = W;
        f.hdr->height = H;
        f.hdr->pixfmt = RTD_PIXFMT_MONO16;
        f.hdr->frame_id = (uint64_t)i;
        f.hdr->ts_mono_ns = rtd_now_ns();
        rtd_frame_publish(frames, &f);
        if (i == KILL_AT) {
            /* SIGKILL worker 1 in the middle of the run: the group must not lose its frame. */
            pid1 = t_counter(inst, "proc.w1", "pid");
            CHECK(pid1 > 0, "worker 1 pid");
            if (pid1 > 0)
                kill((pid_t)pid1, SIGKILL);
        }
        if (i % 8 == 0) {
            drain(&dr[0], seen);
            drain(&dr[1], seen);
        }
        struct timespec ts = {0, 200000}; /* ~5 kHz: the workers keep up, the kill lands mid-run */
        nanosleep(&ts, NULL);
    }

    /* Everything accounted for: seen in a results ring, or counted lost_dead. */
    uint64_t lost = 0, adopted = 0;
    int distinct = 0, dups = 0;
    for (int t = 0; t < 1500; t++) {
        drain(&dr[0], seen);
        drain(&dr[1], seen);
        lost = adopted = 0;
        for (int g = 0; g < RTD_MAX_GROUPS; g++) {
            lost += atomic_load(&rh->groups[g].lost_dead);
            adopted += atomic_load(&rh->groups[g].adopted);
        }
        distinct = dups = 0;
        for (int i = 0; i < NFRAMES; i++) {
            distinct += seen[i] > 0;
            dups += seen[i] > 1 ? seen[i] - 1 : 0;
        }
        if ((uint64_t)distinct + lost >= NFRAMES)
            break; /* lost > 0 fails below */
        t_sleep_ms(10);
    }
    printf("frames: %d distinct results, %d duplicates, %llu lost_dead, %llu adopted; "
           "ring w0 %d frames, w1 %d frames; ions %d (%d off truth)\n",
           distinct, dups, (unsigned long long)lost, (unsigned long long)adopted, dr[0].frames,
           dr[1].frames, dr[0].ions + dr[1].ions, dr[0].bad_ions + dr[1].bad_ions);
    /*
     * Exact: the frames ring blocks and a dead member's holding gates the shared
     * cursor, so its frame is still in its slot when a survivor adopts it, and
     * the survivor keeps the group alive (no revival): nothing can be lost.
     * adopted is 1 only if the worker held a frame when it died.
     */
    CHECK(lost == 0, "%llu frames lost_dead (a killed member's frame must be adopted)",
          (unsigned long long)lost);
    CHECK(distinct == NFRAMES, "%d of %d frames have a result", distinct, NFRAMES);
    for (int i = 0; i < NFRAMES; i++)
        if (!seen[i])
            CHECK(0, "frame %d has no result", i);
    CHECK(adopted <= 1, "%llu adopted for one killed worker", (unsigned long long)adopted);
    CHECK((uint64_t)dups <= adopted,
          "%d duplicate results, %llu adopted (only an adopted frame may repeat)", dups,
          (unsigned long long)adopted);
    CHECK(dr[0].frames > 0 && dr[1].frames > 0, "results in both rings: %d, %d", dr[0].frames,
          dr[1].frames);
    CHECK(dr[0].ions + dr[1].ions >= distinct * NIONS, "ions %d for %d frames",
          dr[0].ions + dr[1].ions, distinct);
    CHECK(dr[0].bad_ions + dr[1].bad_ions == 0, "%d ions away from the truth",
          dr[0].bad_ions + dr[1].bad_ions);

    /* The killed worker was restarted (new pid) and its counters resumed. */
    int64_t newpid = t_counter(inst, "proc.w1", "pid");
    int64_t restarts = t_counter(inst, "proc.w1", "restarts");
    int64_t p0 = t_counter(inst, "proc.w0", "frames.processed");
    int64_t p1 = t_counter(inst, "proc.w1", "frames.processed");
    printf("worker 1: pid %lld -> %lld, restarts %lld; processed w0 %lld w1 %lld\n",
           (long long)pid1, (long long)newpid, (long long)restarts, (long long)p0, (long long)p1);
    CHECK(newpid > 0 && newpid != pid1, "worker 1 restarted");
    CHECK(restarts >= 1, "restarts counter %lld", (long long)restarts);
    CHECK(p0 + p1 + (int64_t)lost >= NFRAMES, "processed counters %lld + %lld", (long long)p0,
          (long long)p1);
    for (int k = 0; k < 2; k++)
        if (dr[k].c)
            rtd_consumer_close(dr[k].c);
    for (int k = 0; k < 2; k++)
        if (res[k])
            rtd_ring_close(res[k]);

stop:
    kill(sup, SIGTERM);
    int st = t_wait_exit(sup, 15000);
    CHECK(st == 0, "rtdaq-proc exit status %d after SIGTERM", st);
    /* Only our own frames ring is left: the daemon unlinked its rings and stats. */
    struct t_list l = {0};
    rtd_shm_list(inst, t_list_cb, &l);
    for (int i = 0; i < l.n; i++)
        CHECK(!strcmp(l.names[i], "frames"), "segment %s left behind", l.names[i]);
    rtd_ring_close(frames);
    rtd_shm_cleanup(inst, 1);
    printf("%s\n", t_failed ? "FAIL" : "PASS");
    return t_failed;
}
