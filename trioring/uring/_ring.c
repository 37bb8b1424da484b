/*
 * The ring bookkeeping (heads, tails, masks, memory barriers, partial
 * submits, overflow flushing) lives here, so the Python side makes one call
 * per SQE and one call per batch of completions. See _ring.h.
 */
#include "_ring.h"

static unsigned load_acquire(const unsigned *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static void store_release(unsigned *p, unsigned v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

static int sys_setup(unsigned entries, struct io_uring_params *p) {
    return (int)syscall(__NR_io_uring_setup, entries, p);
}
static int sys_enter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags) {
    return (int)syscall(__NR_io_uring_enter, fd, to_submit, min_complete, flags, NULL, 0);
}

static void unmap_ring(struct trioring_ring *r) {
    if (r->sqes && r->sqes != MAP_FAILED) munmap(r->sqes, r->sqes_bytes);
    if (r->cq_ring && r->cq_ring != MAP_FAILED && r->cq_ring != r->sq_ring)
        munmap(r->cq_ring, r->cq_ring_bytes);
    if (r->sq_ring && r->sq_ring != MAP_FAILED) munmap(r->sq_ring, r->sq_ring_bytes);
}

void trioring_ring_close(struct trioring_ring *r) {
    if (!r) return;
    unmap_ring(r);
    if (r->ring_fd >= 0) close(r->ring_fd);
    free(r);
}

/* Returns 0 and a ring, or -errno. */
int trioring_ring_setup(struct trioring_ring **ring_out, unsigned entries, unsigned cq_entries) {
    /* Newest flags first; an older kernel answers EINVAL and we drop the newest. */
    static const unsigned optional_flags[] = {
        IORING_SETUP_SUBMIT_ALL | IORING_SETUP_NO_SQARRAY | IORING_SETUP_COOP_TASKRUN,
        IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN,
        IORING_SETUP_SUBMIT_ALL,
        0,
    };
    struct io_uring_params p;
    struct trioring_ring *r;
    int fd = -1, error;
    size_t i;

    *ring_out = NULL;
    r = calloc(1, sizeof *r);
    if (!r) return -ENOMEM;
    r->ring_fd = -1;

    for (i = 0; i < sizeof optional_flags / sizeof optional_flags[0]; i++) {
        memset(&p, 0, sizeof p);
        p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP | optional_flags[i];
        p.cq_entries = cq_entries;
        fd = sys_setup(entries, &p);
        if (fd >= 0 || errno != EINVAL) break;
    }
    if (fd < 0) { error = -errno; goto fail; }
    r->ring_fd = fd;
    r->setup_flags = p.flags;
    r->features = p.features;
    if ((p.features & TRIORING_FEATURES_REQUIRED) != TRIORING_FEATURES_REQUIRED) {
        error = -EOPNOTSUPP;
        goto fail;
    }

    r->sq_entries = p.sq_entries;
    r->cq_entries = p.cq_entries;
    /* As liburing sizes it. With NO_SQARRAY (6.6+, so SINGLE_MMAP too) there is
     * no array (sq_off.array is 0) and the CQ part of the one mapping dominates. */
    r->sq_ring_bytes = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    r->cq_ring_bytes = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (p.features & IORING_FEAT_SINGLE_MMAP) {
        if (r->cq_ring_bytes > r->sq_ring_bytes) r->sq_ring_bytes = r->cq_ring_bytes;
        r->cq_ring_bytes = r->sq_ring_bytes;
    }
    r->sq_ring = mmap(NULL, r->sq_ring_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                      fd, IORING_OFF_SQ_RING);
    if (r->sq_ring == MAP_FAILED) { error = -errno; goto fail; }
    if (p.features & IORING_FEAT_SINGLE_MMAP) {
        r->cq_ring = r->sq_ring;
    } else {
        r->cq_ring = mmap(NULL, r->cq_ring_bytes, PROT_READ | PROT_WRITE,
                          MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_CQ_RING);
        if (r->cq_ring == MAP_FAILED) { error = -errno; goto fail; }
    }
    r->sqes_bytes = p.sq_entries * sizeof(struct io_uring_sqe);
    r->sqes = mmap(NULL, r->sqes_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                   fd, IORING_OFF_SQES);
    if (r->sqes == MAP_FAILED) { error = -errno; goto fail; }

    r->sq_head = (unsigned *)((char *)r->sq_ring + p.sq_off.head);
    r->sq_tail = (unsigned *)((char *)r->sq_ring + p.sq_off.tail);
    r->sq_flags = (unsigned *)((char *)r->sq_ring + p.sq_off.flags);
    r->sq_mask = *(unsigned *)((char *)r->sq_ring + p.sq_off.ring_mask);
    r->sqe_tail = *r->sq_tail;
    if (!(p.flags & IORING_SETUP_NO_SQARRAY)) {
        /* Identity map once: SQE slot i is always array entry i. */
        unsigned *array = (unsigned *)((char *)r->sq_ring + p.sq_off.array);
        for (i = 0; i < p.sq_entries; i++) array[i] = (unsigned)i;
    }
    r->cq_head = (unsigned *)((char *)r->cq_ring + p.cq_off.head);
    r->cq_tail = (unsigned *)((char *)r->cq_ring + p.cq_off.tail);
    r->cq_mask = *(unsigned *)((char *)r->cq_ring + p.cq_off.ring_mask);
    r->cqes = (struct io_uring_cqe *)((char *)r->cq_ring + p.cq_off.cqes);
    *ring_out = r;
    return 0;

fail:
    trioring_ring_close(r);
    return error;
}

unsigned trioring_sq_space(struct trioring_ring *r) {
    return r->sq_entries - (r->sqe_tail - load_acquire(r->sq_head));
}

unsigned trioring_sq_unsubmitted(struct trioring_ring *r) {
    return r->sqe_tail - load_acquire(r->sq_head);
}

/* A zeroed SQE, or NULL when the SQ is full (submit to make room). */
static struct io_uring_sqe *next_sqe(struct trioring_ring *r) {
    struct io_uring_sqe *sqe;
    if (r->sqe_tail - load_acquire(r->sq_head) >= r->sq_entries) return NULL;
    sqe = &r->sqes[r->sqe_tail & r->sq_mask];
    r->sqe_tail++;
    memset(sqe, 0, sizeof *sqe);
    return sqe;
}

static int prep_rw(struct trioring_ring *r, uint8_t opcode, int fd, uint64_t address,
                   uint32_t length, uint64_t offset, uint32_t op_flags, unsigned sqe_flags,
                   uint64_t user_data) {
    struct io_uring_sqe *sqe = next_sqe(r);
    if (!sqe) return -EBUSY;
    sqe->opcode = opcode;
    sqe->flags = (uint8_t)sqe_flags;
    sqe->fd = fd;
    sqe->off = offset;
    sqe->addr = address;
    sqe->len = length;
    sqe->rw_flags = op_flags;   /* same union as fsync_flags and cancel_flags */
    sqe->user_data = user_data;
    return 0;
}

int trioring_prep_read(struct trioring_ring *r, int fd, void *buffer, uint32_t length,
                       uint64_t offset, uint64_t user_data) {
    return prep_rw(r, TRIORING_OP_READ, fd, (uint64_t)(uintptr_t)buffer, length, offset, 0, 0,
                   user_data);
}

int trioring_prep_write(struct trioring_ring *r, int fd, const void *buffer, uint32_t length,
                        uint64_t offset, unsigned sqe_flags, uint64_t user_data) {
    return prep_rw(r, TRIORING_OP_WRITE, fd, (uint64_t)(uintptr_t)buffer, length, offset, 0,
                   sqe_flags, user_data);
}

int trioring_prep_writev(struct trioring_ring *r, int fd, const struct iovec *iovecs,
                         unsigned count, uint64_t offset, unsigned sqe_flags, uint64_t user_data) {
    return prep_rw(r, TRIORING_OP_WRITEV, fd, (uint64_t)(uintptr_t)iovecs, count, offset, 0,
                   sqe_flags, user_data);
}

int trioring_prep_fsync(struct trioring_ring *r, int fd, unsigned fsync_flags,
                        unsigned sqe_flags, uint64_t user_data) {
    return prep_rw(r, TRIORING_OP_FSYNC, fd, 0, 0, 0, fsync_flags, sqe_flags, user_data);
}

int trioring_prep_cancel(struct trioring_ring *r, uint64_t target_user_data, uint64_t user_data) {
    return prep_rw(r, TRIORING_OP_ASYNC_CANCEL, -1, target_user_data, 0, 0, 0, 0, user_data);
}

/* One-shot wait until ``fd`` is ready for ``poll_mask`` (POLLIN, POLLOUT...);
 * the result is the ready events. */
int trioring_prep_poll(struct trioring_ring *r, int fd, unsigned poll_mask, uint64_t user_data) {
    struct io_uring_sqe *sqe = next_sqe(r);
    if (!sqe) return -EBUSY;
    sqe->opcode = TRIORING_OP_POLL_ADD;
    sqe->fd = fd;
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    poll_mask = (poll_mask << 16) | (poll_mask >> 16);   /* the kernel reads it word-swapped */
#endif
    sqe->poll32_events = poll_mask;
    sqe->user_data = user_data;
    return 0;
}

/* Accepts one connection; the address is not asked for (getpeername gives it). */
int trioring_prep_accept(struct trioring_ring *r, int fd, unsigned accept_flags,
                         uint64_t user_data) {
    return prep_rw(r, TRIORING_OP_ACCEPT, fd, 0, 0, 0, accept_flags, 0, user_data);
}

/* recvsend_flags (IORING_RECVSEND_*) travel in the ioprio field. */
static int prep_recvsend(struct trioring_ring *r, uint8_t opcode, int fd, uint64_t address,
                         uint32_t length, unsigned msg_flags, unsigned recvsend_flags,
                         uint64_t user_data) {
    struct io_uring_sqe *sqe = next_sqe(r);
    if (!sqe) return -EBUSY;
    sqe->opcode = opcode;
    sqe->fd = fd;
    sqe->addr = address;
    sqe->len = length;
    sqe->msg_flags = msg_flags;
    sqe->ioprio = (uint16_t)recvsend_flags;
    sqe->user_data = user_data;
    return 0;
}

int trioring_prep_recv(struct trioring_ring *r, int fd, void *buffer, uint32_t length,
                       unsigned msg_flags, unsigned recvsend_flags, uint64_t user_data) {
    return prep_recvsend(r, TRIORING_OP_RECV, fd, (uint64_t)(uintptr_t)buffer, length, msg_flags,
                         recvsend_flags, user_data);
}

int trioring_prep_send(struct trioring_ring *r, int fd, const void *buffer, uint32_t length,
                       unsigned msg_flags, unsigned recvsend_flags, uint64_t user_data) {
    return prep_recvsend(r, TRIORING_OP_SEND, fd, (uint64_t)(uintptr_t)buffer, length, msg_flags,
                         recvsend_flags, user_data);
}

/* An offset of -1 means "no offset" (required for a pipe end): the kernel
 * compares the u64 field with (u64)-1. */
int trioring_prep_splice(struct trioring_ring *r, int fd_in, int64_t offset_in, int fd_out,
                         int64_t offset_out, uint32_t length, unsigned splice_flags,
                         unsigned sqe_flags, uint64_t user_data) {
    struct io_uring_sqe *sqe = next_sqe(r);
    if (!sqe) return -EBUSY;
    sqe->opcode = TRIORING_OP_SPLICE;
    sqe->flags = (uint8_t)sqe_flags;
    sqe->fd = fd_out;
    sqe->off = (uint64_t)offset_out;
    sqe->splice_off_in = (uint64_t)offset_in;
    sqe->splice_fd_in = fd_in;
    sqe->len = length;
    sqe->splice_flags = splice_flags;
    sqe->user_data = user_data;
    return 0;
}

/*
 * Hands every filled SQE to the kernel. Returns 0, or -errno with the rest
 * still queued (EAGAIN / EBUSY are transient: reap, then call again).
 * Without IORING_SETUP_SUBMIT_ALL the kernel stops at an SQE that fails to
 * prepare (it posts that SQE's error CQE), so loop until all are consumed.
 */
int trioring_submit(struct trioring_ring *r) {
    unsigned tail = r->sqe_tail;
    store_release(r->sq_tail, tail);
    for (;;) {
        unsigned pending = tail - load_acquire(r->sq_head);
        int submitted;
        if (pending == 0) return 0;
        submitted = sys_enter(r->ring_fd, pending, 0, 0);
        if (submitted < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (submitted == 0) return -EAGAIN;
    }
}

/*
 * Takes back SQEs the kernel has not consumed (after a submit error that
 * won't go away), reporting their user_data so their waiters can be failed.
 */
unsigned trioring_sq_discard(struct trioring_ring *r, uint64_t *user_data_out, unsigned max) {
    unsigned head = load_acquire(r->sq_head);
    unsigned n = 0;
    while (r->sqe_tail != head && n < max) {
        r->sqe_tail--;
        user_data_out[n++] = r->sqes[r->sqe_tail & r->sq_mask].user_data;
    }
    store_release(r->sq_tail, r->sqe_tail);
    return n;
}

/*
 * Copies up to ``max`` completions into ``out`` and frees their CQ slots.
 * When the CQ is drained but the kernel holds overflowed completions
 * (IORING_SQ_CQ_OVERFLOW), asks it to move them into the CQ and goes on.
 * ``*error_out`` gets -errno if that flush failed (EBADR: the kernel could
 * not keep a completion and dropped it).
 */
unsigned trioring_reap(struct trioring_ring *r, struct trioring_completion *out, unsigned max,
                       int *error_out) {
    unsigned head = *r->cq_head;
    unsigned n = 0;
    *error_out = 0;
    for (;;) {
        unsigned tail = load_acquire(r->cq_tail);
        while (head != tail && n < max) {
            const struct io_uring_cqe *cqe = &r->cqes[head & r->cq_mask];
            out[n].user_data = cqe->user_data;
            out[n].res = cqe->res;
            out[n].flags = cqe->flags;
            head++;
            n++;
        }
        store_release(r->cq_head, head);
        if (n == max) return n;
        if (!(__atomic_load_n(r->sq_flags, __ATOMIC_ACQUIRE) & IORING_SQ_CQ_OVERFLOW)) return n;
        r->overflow_flushes++;
        if (sys_enter(r->ring_fd, 0, 0, IORING_ENTER_GETEVENTS) < 0 && errno != EINTR) {
            *error_out = -errno;
            return n;
        }
    }
}
