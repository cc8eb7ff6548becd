/* SPDX-License-Identifier: MIT */
/*
 * Topics "fits", "wavelet" and "frames": records written into results rings
 * the way rtdaq-proc writes them come out as [topic, JSON header, payload]
 * (one fits message per frame carrying its ions, one wavelet message per band
 * record), frames are decimated (every 2nd), and closing a ring ends its
 * stream with a "kind": "end" message.
 */
#include "ctl_test.h"
#include "rtd_results.h"
#include "rtd_shm.h"

static int streams_ready(struct t_ctl *t, int want)
{
    for (int i = 0; i < 100; i++) {
        json_t *r = t_req(t, "{\"cmd\":\"status\"}");
        size_t n = json_array_size(json_object_get(r, "streams"));
        json_decref(r);
        if ((int)n >= want)
            return 1;
        usleep(50000);
    }
    return 0;
}

int main(void)
{
    char inst[32];
    snprintf(inst, sizeof inst, "tres%d", (int)getpid());
    struct rtd_ring *res = NULL, *wav = NULL, *frames = NULL;
    struct t_ctl t = {0};
    void *ctx = zmq_ctx_new(), *sub = NULL;
    json_t *m = NULL;
    struct rtd_ring_config pc = {
        .kind = RTD_RING_PACKET, .data_bytes = 1 << 20, .overflow = RTD_OVERFLOW_DROP_NEWEST};
    struct rtd_ring_config fc = {.kind = RTD_RING_FRAME,
                                 .slot_payload = 8192,
                                 .slot_count = 16,
                                 .overflow = RTD_OVERFLOW_DROP_NEWEST};
    REQUIRE(rtd_ring_create(&res, inst, "results.w0", &pc) == 0, "results ring");
    REQUIRE(rtd_ring_create(&wav, inst, "wavelet.w0", &pc) == 0, "wavelet ring");
    REQUIRE(rtd_ring_create(&frames, inst, "frames", &fc) == 0, "frames ring");
    int port = t_port_base();
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", port);
    sub = t_sub(ctx, ep, "fits");
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "wavelet", 7);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "frames", 6);
    int rc =
        t_ctl_start(&t, inst, port, "--interval-ms", "100", "--frames-every", "2", (char *)NULL);
    REQUIRE(rc == 0, "rtdaq-ctl did not start: %d", rc);
    REQUIRE(streams_ready(&t, 3), "ctl did not follow the three rings");
    usleep(200000); /* the subscriber's connection */

    /* One frame's fits: three ions, then the summary. */
    int err;
    for (int i = 0; i < 3; i++) {
        struct rtd_res_ion *ion = rtd_pkt_reserve(res, sizeof *ion, RTD_RES_ION, &err);
        REQUIRE(ion, "reserve ion: %d", err);
        memset(ion, 0, sizeof *ion);
        ion->frame_seq = 41;
        ion->frame_id = 1041;
        ion->x = 10.5f + (float)i;
        ion->index = (uint16_t)i;
    }
    struct rtd_res_frame *fr = rtd_pkt_reserve(res, sizeof *fr, RTD_RES_FRAME, &err);
    REQUIRE(fr, "reserve frame: %d", err);
    memset(fr, 0, sizeof *fr);
    fr->frame_seq = 41;
    fr->frame_id = 1041;
    fr->n_ions = 3;
    fr->width = 300;
    fr->height = 300;
    rtd_pkt_publish(res);
    /* One band-power record with 4 bands. */
    struct rtd_res_wpower *w =
        rtd_pkt_reserve(wav, sizeof *w + 4 * sizeof(double), RTD_RES_WPOWER, &err);
    REQUIRE(w, "reserve wpower: %d", err);
    memset(w, 0, sizeof *w);
    w->client = 7;
    w->n_bands = 4;
    w->dt = 1e-3;
    double bands[4] = {1, 2, 3, 4};
    memcpy(w + 1, bands, sizeof bands);
    rtd_pkt_publish(wav);
    /* Ten frames; every second one should be published. */
    for (int i = 0; i < 10; i++) {
        struct rtd_frame f;
        REQUIRE(rtd_frame_claim(frames, &f) == 0, "claim");
        f.hdr->len = 4096;
        f.hdr->width = 64;
        f.hdr->height = 32;
        f.hdr->pixfmt = RTD_PIXFMT_MONO16;
        f.hdr->frame_id = 500 + (uint64_t)i;
        memset(f.data, i, 4096);
        rtd_frame_publish(frames, &f);
    }

    int got_fits = 0, got_wav = 0, got_frames = 0;
    uint64_t end = rtd_now_ns() + 3000000000ull;
    while (rtd_now_ns() < end && (!got_fits || !got_wav || got_frames < 5)) {
        size_t plen = 0;
        zmq_pollitem_t it = {sub, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 100) <= 0)
            continue;
        char topic[32];
        int n = zmq_recv(sub, topic, sizeof topic - 1, 0);
        topic[n > 0 ? n : 0] = 0;
        int more;
        size_t ml = sizeof more;
        zmq_msg_t part;
        json_t *h = NULL;
        for (int k = 1;; k++) {
            zmq_getsockopt(sub, ZMQ_RCVMORE, &more, &ml);
            if (!more)
                break;
            zmq_msg_init(&part);
            zmq_msg_recv(&part, sub, 0);
            if (k == 1)
                h = json_loadb(zmq_msg_data(&part), zmq_msg_size(&part), 0, NULL);
            else
                plen = zmq_msg_size(&part);
            zmq_msg_close(&part);
        }
        REQUIRE(h, "header of %s is JSON", topic);
        CHECK(json_integer_value(json_object_get(h, "version")) == 1, "version");
        if (!strcmp(topic, "fits")) {
            json_t *frm = json_object_get(h, "frame");
            CHECK(json_integer_value(json_object_get(frm, "frame_id")) == 1041, "frame_id");
            CHECK(json_integer_value(json_object_get(h, "ions")) == 3, "ions");
            CHECK(plen == 3 * sizeof(struct rtd_res_ion), "fits payload %zu", plen);
            CHECK(!strcmp(json_string_value(json_object_get(h, "worker")), "w0"), "worker");
            got_fits++;
        } else if (!strcmp(topic, "wavelet")) {
            CHECK(json_integer_value(json_object_get(json_object_get(h, "power"), "client")) == 7,
                  "client");
            CHECK(plen == 4 * sizeof(double), "wavelet payload %zu", plen);
            got_wav++;
        } else if (!strcmp(topic, "frames")) {
            json_t *fh = json_object_get(h, "frame");
            int64_t id = json_integer_value(json_object_get(fh, "frame_id"));
            CHECK((id - 500) % 2 == 0, "decimation: frame %lld", (long long)id);
            CHECK(plen == 4096, "frame payload %zu", plen);
            got_frames++;
        }
        json_decref(h);
    }
    printf("fits %d, wavelet %d, frames %d\n", got_fits, got_wav, got_frames);
    CHECK(got_fits == 1 && got_wav == 1 && got_frames == 5, "messages received");

    /* Closing the results ring ends its stream. */
    rtd_ring_close(res);
    res = NULL;
    m = t_recv_topic(sub, "fits", 2000, NULL);
    CHECK(m && !strcmp(json_string_value(json_object_get(m, "kind")), "end"),
          "end-of-stream message on fits");
    CHECK(m && json_integer_value(json_object_get(m, "records")) == 1, "records in end message");
    CHECK(t_ctl_stop(&t) == 0, "exit status");
out:
    json_decref(m);
    t_ctl_stop(&t);
    if (sub)
        zmq_close(sub);
    zmq_ctx_term(ctx);
    if (res)
        rtd_ring_close(res);
    if (wav)
        rtd_ring_close(wav);
    if (frames)
        rtd_ring_close(frames);
    printf("%s\n", t_failed ? "FAILED" : "ok");
    return t_failed ? 1 : 0;
}
