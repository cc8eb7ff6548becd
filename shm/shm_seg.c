/* SPDX-License-Identifier: MIT */
/*
 * Segments: name validation, create/attach/close of POSIX shared memory,
 * listing and cleaning an instance's segments in /dev/shm, and the
 * kernel helpers the rings need (futex, membarrier, "is this pid still alive").
 */
#include "shm_internal.h"
#include "rtd_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SHM_DIR    "/dev/shm"
#define SHM_PREFIX "rtdaq."

void rtd_strlcpy(char *dst, const char *src, size_t cap)
{
    size_t n = src ? strnlen(src, cap - 1) : 0;
    if (n)
        memcpy(dst, src, n);
    memset(dst + n, 0, cap - n);
}

const char *rtd_instance_name(const char *arg)
{
    if (arg && *arg)
        return arg;
    const char *env = getenv("RTDAQ_INSTANCE");
    if (env && *env)
        return env;
    return RTD_INSTANCE_DEFAULT;
}

/* 0, -EINVAL (empty or a character outside the set), -ENAMETOOLONG. */
static int check_name(const char *s, size_t max, bool dots)
{
    if (!s || !*s)
        return -EINVAL;
    size_t n = 0;
    for (const char *p = s; *p; p++, n++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-' || (dots && c == '.');
        if (!ok)
            return -EINVAL;
        if (n >= max)
            return -ENAMETOOLONG;
    }
    /* "." and ".." would be path components of /dev/shm. */
    if (dots && (!strcmp(s, ".") || !strcmp(s, "..")))
        return -EINVAL;
    return 0;
}

int rtd_shm_name(char *out, size_t cap, const char *instance, const char *ring)
{
    int rc = check_name(instance, RTD_INSTANCE_MAX, false);
    if (rc)
        return rc;
    rc = check_name(ring, RTD_RING_NAME_MAX, true);
    if (rc)
        return rc;
    int n = snprintf(out, cap, "/" SHM_PREFIX "%s.%s", instance, ring);
    if (n < 0 || (size_t)n >= cap)
        return -ENAMETOOLONG;
    return 0;
}

bool rtd_pid_dead(pid_t pid)
{
    if (pid <= 0)
        return false;
    if (kill(pid, 0) == -1 && errno == ESRCH)
        return true;
    /* A SIGKILLed child stays a zombie until its parent waits: for us it is dead. */
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = 0;
    const char *rp = strrchr(buf, ')');
    return rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X');
}

int rtd_shm_pid_alive(int32_t pid)
{
    return pid > 0 && !rtd_pid_dead(pid);
}

int rtd_futex_wait(_Atomic uint32_t *word, uint32_t val, uint64_t timeout_ns)
{
    struct timespec ts = {.tv_sec = (time_t)(timeout_ns / 1000000000u),
                          .tv_nsec = (long)(timeout_ns % 1000000000u)};
    /* Shared (not FUTEX_PRIVATE): waiters and wakers are different processes. */
    long rc = syscall(SYS_futex, word, FUTEX_WAIT, val, &ts, NULL, 0);
    if (rc == 0)
        return 0;
    return errno == ETIMEDOUT ? -ETIMEDOUT : (errno == EAGAIN || errno == EINTR) ? 0 : -errno;
}

void rtd_futex_wake(_Atomic uint32_t *word)
{
    syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/*
 * Wake-up handshakes without a fence on the hot side. A sleeper announces
 * itself (sleepers++) and then checks for work; a waker publishes work and
 * then checks for sleepers. Each side needs a store-load barrier between its
 * two steps, and on x86 the waker's (an mfence after storing a line the other
 * core is reading) waits for that line's round trip: 100+ ns per publish, which
 * capped publishing each record near ZeroMQ's rate. So a process that wakes
 * often registers for MEMBARRIER_CMD_GLOBAL_EXPEDITED and stops fencing, and
 * every sleeper, on its slow path, runs membarrier(): every registered thread
 * that is running executes a full barrier before it returns, so a registered
 * waker's program order is enough.
 *
 * Only frequent wakers register (over ~650 k wake-ups/s, checked every 64 k):
 * each sleeper's membarrier() interrupts the cores that run registered
 * processes, and a fit worker publishing 10 k results/s gains nothing from
 * skipping a fence but would take those interrupts. Registration waits for
 * membarrier() calls in flight (the kernel's synchronize_rcu), so a sleeper's
 * call either covered this process or ended before it stopped fencing.
 *
 * membar_avail: 0 not yet asked, 1 the kernel has the global expedited
 * commands, -1 not (or refused here: this process fences on both sides and
 * sleeps at most RTD_SLEEP_CAP_NS, since a registered peer may skip its fence).
 * membar_registered: this process stopped fencing; cleared in a forked child,
 * whose address space is not registered (it decides anew). RTD_MEMBARRIER=
 * register makes a process register at once, =off keeps it fencing.
 * ThreadSanitizer does not model membarrier: its builds always fence.
 */
#if defined(__SANITIZE_THREAD__)
void rtd_membarrier_init(void)
{
}

void rtd_wake_fence(int pair)
{
    RTD_FENCE(memory_order_seq_cst, pair);
    (void)pair;
}

uint64_t rtd_sleep_fence(int pair, uint64_t timeout_ns)
{
    RTD_FENCE(memory_order_seq_cst, pair);
    (void)pair;
    return timeout_ns;
}

int rtd_shm_membarrier_state(void)
{
    return -1;
}
#else
#define RTD_SLEEP_CAP_NS   1000000u
#define RTD_WAKE_WINDOW    65536u
#define RTD_WAKE_WINDOW_NS 100000000ull
static _Atomic int membar_avail, membar_registered;
static _Atomic uint64_t wake_count, wake_window_start;

static void membar_atfork_child(void)
{
    atomic_store_explicit(&membar_registered, 0, memory_order_relaxed);
    atomic_store_explicit(&membar_avail, 0, memory_order_relaxed); /* ask (and register) anew */
    atomic_store_explicit(&wake_count, 0, memory_order_relaxed);
}

static int membar_query(void)
{
    int av = atomic_load_explicit(&membar_avail, memory_order_relaxed);
    if (av)
        return av;
    long q = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    int want = MEMBARRIER_CMD_GLOBAL_EXPEDITED | MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED;
    av = q >= 0 && (q & want) == want ? 1 : -1;
    /* RTD_MEMBARRIER=register: stop fencing from the first wake-up (tests, benchmarks);
     * =off: never use membarrier here (fences on both sides, capped sleeps). */
    const char *env = getenv("RTD_MEMBARRIER");
    if (env && !strcmp(env, "off"))
        av = -1;
    else if (av > 0 && env && !strcmp(env, "register") &&
             syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) == 0)
        atomic_store_explicit(&membar_registered, 1, memory_order_relaxed);
    static _Atomic int atfork_done;
    if (!atomic_exchange_explicit(&atfork_done, 1, memory_order_relaxed))
        (void)pthread_atfork(NULL, NULL, membar_atfork_child);
    /* Relaxed: each thread that races here computes the same answer. */
    atomic_store_explicit(&membar_avail, av, memory_order_relaxed);
    return av;
}

void rtd_membarrier_init(void)
{
    (void)membar_query();
}

int rtd_shm_membarrier_state(void)
{
    if (atomic_load_explicit(&membar_registered, memory_order_relaxed))
        return 1;
    return membar_query() > 0 ? 0 : -1;
}

/* Every RTD_WAKE_WINDOW fenced wake-ups: register if they came faster than the threshold. */
static void membar_consider(void)
{
    uint64_t n = atomic_fetch_add_explicit(&wake_count, 1, memory_order_relaxed) + 1;
    if (n % RTD_WAKE_WINDOW)
        return;
    uint64_t now = rtd_now_ns();
    uint64_t start = atomic_exchange_explicit(&wake_window_start, now, memory_order_relaxed);
    if (n == RTD_WAKE_WINDOW || now - start > RTD_WAKE_WINDOW_NS || membar_query() < 0)
        return; /* the first window has no start; or not frequent; or no membarrier */
    if (syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) == 0)
        atomic_store_explicit(&membar_registered, 1, memory_order_relaxed);
    else
        atomic_store_explicit(&membar_avail, -1, memory_order_relaxed);
}

void rtd_wake_fence(int pair)
{
    /* Registered: only the compiler must keep our store before our load; the CPU's
     * store-load order comes from the sleeper's membarrier(). */
    if (atomic_load_explicit(&membar_registered, memory_order_relaxed)) {
        atomic_signal_fence(memory_order_seq_cst);
        return;
    }
    RTD_FENCE(memory_order_seq_cst, pair);
    (void)pair;
    membar_consider();
}

uint64_t rtd_sleep_fence(int pair, uint64_t timeout_ns)
{
    RTD_FENCE(memory_order_seq_cst, pair);
    (void)pair;
    if (membar_query() > 0 && syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) == 0)
        return timeout_ns;
    /* The kernel has it but refuses this process (seccomp): peers may still skip fences. */
    if (atomic_load_explicit(&membar_avail, memory_order_relaxed) > 0)
        atomic_store_explicit(&membar_avail, -1, memory_order_relaxed);
    return timeout_ns < RTD_SLEEP_CAP_NS ? timeout_ns : RTD_SLEEP_CAP_NS;
}
#endif

void rtd_seg_init_hdr(void *base, uint64_t magic, uint32_t seg_type, size_t seg_bytes,
                      uint32_t hdr_bytes)
{
    struct rtd_seg_hdr *h = base;
    h->magic = magic;
    h->abi_major = RTD_ABI_MAJOR;
    h->abi_minor = RTD_ABI_MINOR;
    h->seg_type = seg_type;
    h->seg_bytes = seg_bytes;
    h->hdr_bytes = hdr_bytes;
    h->creator_pid = (int32_t)getpid();
    h->created_real_ns = rtd_realtime_ns();
    h->created_mono_ns = rtd_now_ns();
    atomic_store_explicit(&h->state, RTD_STATE_INIT, memory_order_relaxed);
}

/* Creator pid of an existing segment, 0 if unreadable (too short, not ours). */
static pid_t seg_creator(int fd)
{
    struct rtd_seg_hdr h;
    if (pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h)
        return 0;
    /* Any rtdaq segment ("TDAQ...": rings, stats, ctl's control block) has this identity block. */
    if ((h.magic & 0xffffffffu) != RTD_MAGIC_FAMILY)
        return 0;
    return h.creator_pid;
}

int rtd_shm_identity(const char *instance, const char *ring, struct rtd_seg_hdr *out)
{
    char name[RTD_SHM_NAME_MAX];
    int rc = rtd_shm_name(name, sizeof name, instance, ring);
    if (rc)
        return rc;
    int fd = shm_open(name, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    ssize_t n = pread(fd, out, sizeof *out, 0);
    close(fd);
    if (n == 0)
        return -EAGAIN;
    if (n != (ssize_t)sizeof *out)
        return -EBADMSG;
    return (out->magic & 0xffffffffu) == RTD_MAGIC_FAMILY ? 0 : -EPROTO;
}

static bool warned_mlock;

int rtd_seg_create(struct rtd_seg *s, const char *name, size_t len, int lock)
{
    memset(s, 0, sizeof *s);
    rtd_strlcpy(s->name, name, sizeof s->name);
    int fd = -1;
    for (int attempt = 0; attempt < 2; attempt++) {
        fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0660);
        if (fd >= 0 || errno != EEXIST)
            break;
        /* A leftover: replace it only if its creator is gone. */
        int old = shm_open(name, O_RDONLY | O_CLOEXEC, 0);
        if (old >= 0) {
            pid_t pid = seg_creator(old);
            close(old);
            if (pid > 0 && !rtd_pid_dead(pid))
                return -EEXIST;
        }
        shm_unlink(name);
    }
    if (fd < 0)
        return -errno;
    /* The umask must not take the group's access away: readers run as other users. */
    (void)fchmod(fd, 0660);
    int rc = 0;
    if (ftruncate(fd, (off_t)len) != 0) {
        rc = -errno;
        goto fail;
    }
    void *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (base == MAP_FAILED) {
        rc = -errno;
        goto fail;
    }
    close(fd);
    if (lock && mlock(base, len) != 0 && !warned_mlock) {
        warned_mlock = true;
        rtd_log(RTD_LOG_WARN, "mlock of %s (%zu bytes) not permitted (%s): pages may be swapped",
                name, len, strerror(errno));
    }
    s->base = base;
    s->len = len;
    s->creator = true;
    return 0;
fail:
    close(fd);
    shm_unlink(name);
    return rc;
}

int rtd_seg_attach(struct rtd_seg *s, const char *name, uint64_t magic, uint32_t seg_type,
                   bool writable)
{
    memset(s, 0, sizeof *s);
    rtd_strlcpy(s->name, name, sizeof s->name);
    int fd = shm_open(name, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    /* Size 0: the creator is between shm_open and ftruncate. */
    if (st.st_size == 0) {
        close(fd);
        return -EAGAIN;
    }
    if ((size_t)st.st_size < sizeof(struct rtd_seg_hdr)) {
        close(fd);
        return -EBADMSG;
    }
    size_t len = (size_t)st.st_size;
    /* Readers that only look (tools) skip populating: a ring may be hundreds of MB. */
    void *base = mmap(NULL, len, PROT_READ | (writable ? PROT_WRITE : 0),
                      MAP_SHARED | (writable ? MAP_POPULATE : 0), fd, 0);
    int err = errno;
    close(fd);
    if (base == MAP_FAILED)
        return -err;
    const struct rtd_seg_hdr *h = base;
    /* A1: pairs with R1 in the creators (state stored last, with release). */
    uint32_t state = atomic_load_explicit(&h->state, memory_order_acquire);
    int rc = 0;
    if (state != RTD_STATE_READY && state != RTD_STATE_CLOSED)
        rc = -EAGAIN;
    else if (h->magic != magic || h->seg_type != seg_type || h->abi_major != RTD_ABI_MAJOR)
        rc = -EPROTO;
    else if (h->seg_bytes > len || h->hdr_bytes > h->seg_bytes)
        rc = -EBADMSG;
    if (rc) {
        munmap(base, len);
        return rc;
    }
    s->base = base;
    s->len = len;
    return 0;
}

void rtd_seg_close(struct rtd_seg *s)
{
    if (!s->base)
        return;
    munmap(s->base, s->len);
    if (s->creator)
        shm_unlink(s->name);
    s->base = NULL;
}

/* Split "rtdaq.<instance>.<ring>" for our instance; NULL if the entry is not ours. */
static const char *ring_part(const char *entry, const char *instance)
{
    size_t pl = strlen(SHM_PREFIX), il = strlen(instance);
    if (strncmp(entry, SHM_PREFIX, pl) || strncmp(entry + pl, instance, il) ||
        entry[pl + il] != '.' || !entry[pl + il + 1])
        return NULL;
    return entry + pl + il + 1;
}

int rtd_shm_list(const char *instance, void (*fn)(const char *ring, void *arg), void *arg)
{
    if (check_name(instance, RTD_INSTANCE_MAX, false))
        return -EINVAL;
    DIR *d = opendir(SHM_DIR);
    if (!d)
        return -errno;
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *ring = ring_part(e->d_name, instance);
        if (!ring)
            continue;
        count++;
        if (fn)
            fn(ring, arg);
    }
    closedir(d);
    return count;
}

struct cleanup_ctx {
    const char *instance;
    int force;
    int removed;
};

static void cleanup_one(const char *ring, void *arg)
{
    struct cleanup_ctx *c = arg;
    char name[RTD_SHM_NAME_MAX];
    if (snprintf(name, sizeof name, "/" SHM_PREFIX "%s.%s", c->instance, ring) >= (int)sizeof name)
        return;
    if (!c->force) {
        int fd = shm_open(name, O_RDONLY | O_CLOEXEC, 0);
        if (fd < 0)
            return;
        pid_t pid = seg_creator(fd);
        close(fd);
        /* Unknown creator (not an rtdaq header) counts as dead: nothing can use it. */
        if (pid > 0 && !rtd_pid_dead(pid))
            return;
    }
    if (shm_unlink(name) == 0)
        c->removed++;
}

int rtd_shm_cleanup(const char *instance, int force)
{
    struct cleanup_ctx c = {.instance = instance, .force = force};
    int rc = rtd_shm_list(instance, cleanup_one, &c);
    return rc < 0 ? rc : c.removed;
}

/*
 * A ring is orphaned when its creator closed it (CLOSED) or died without
 * closing it (SIGKILL): a restarted producer creates a new segment under the
 * same name, and a consumer must drain what is left here and attach anew.
 * Costs a /proc read (see rtd_shm_pid_alive): call it at heartbeat rate.
 */
int rtd_ring_orphaned(const struct rtd_ring *r)
{
    /* A4: pairs with the creator's READY/CLOSED release stores. */
    if (atomic_load_explicit(&r->hdr->state, memory_order_acquire) != RTD_STATE_READY)
        return 1;
    return !rtd_shm_pid_alive(r->hdr->creator_pid);
}
