/*
 * trioring's io_uring binding: the ring structure and the functions Python
 * calls through cffi (trioring/uring/_build_ring.py hands the CDEF section
 * below to cffi). Compiled against the kernel UAPI header only: raw
 * io_uring_setup / io_uring_enter / io_uring_register through syscall(2),
 * the rings mapped with mmap, no liburing.
 */
#ifndef TRIORING_RING_H
#define TRIORING_RING_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <linux/io_uring.h>

/*
 * Guards for everything newer than the oldest headers we accept: the values
 * are kernel ABI and never change, so a binary built against old headers
 * still uses the feature on a newer kernel (setup retries without it on an
 * older one).
 */
#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif
#ifndef __NR_io_uring_enter
#define __NR_io_uring_enter 426
#endif
#ifndef __NR_io_uring_register
#define __NR_io_uring_register 427
#endif
#ifndef IORING_SETUP_CQSIZE
#define IORING_SETUP_CQSIZE (1U << 3)        /* Linux 5.5 */
#endif
#ifndef IORING_SETUP_CLAMP
#define IORING_SETUP_CLAMP (1U << 4)         /* Linux 5.6 */
#endif
#ifndef IORING_SETUP_SUBMIT_ALL
#define IORING_SETUP_SUBMIT_ALL (1U << 7)    /* Linux 5.18 */
#endif
#ifndef IORING_SETUP_COOP_TASKRUN
#define IORING_SETUP_COOP_TASKRUN (1U << 8)  /* Linux 5.19 */
#endif
#ifndef IORING_SETUP_NO_SQARRAY
#define IORING_SETUP_NO_SQARRAY (1U << 16)   /* Linux 6.6 */
#endif
#ifndef IORING_FEAT_SINGLE_MMAP
#define IORING_FEAT_SINGLE_MMAP (1U << 0)    /* Linux 5.4 */
#endif
#ifndef IORING_FEAT_NODROP
#define IORING_FEAT_NODROP (1U << 1)         /* Linux 5.5 */
#endif
#ifndef IORING_FEAT_SUBMIT_STABLE
#define IORING_FEAT_SUBMIT_STABLE (1U << 2)  /* Linux 5.5 */
#endif
#ifndef IORING_FEAT_RW_CUR_POS
#define IORING_FEAT_RW_CUR_POS (1U << 3)     /* Linux 5.6: IORING_OP_READ/WRITE exist */
#endif
#ifndef IORING_FEAT_FAST_POLL
#define IORING_FEAT_FAST_POLL (1U << 5)      /* Linux 5.7: sockets wait by poll, not a thread */
#endif
#ifndef IORING_SQ_CQ_OVERFLOW
#define IORING_SQ_CQ_OVERFLOW (1U << 1)      /* Linux 5.5 */
#endif
#ifndef IORING_FSYNC_DATASYNC
#define IORING_FSYNC_DATASYNC (1U << 0)
#endif
#ifndef IORING_ENTER_GETEVENTS
#define IORING_ENTER_GETEVENTS (1U << 0)
#endif

/* Opcodes are an enum in the header (no #ifdef possible); their values are ABI. */
#define TRIORING_OP_WRITEV 2
#define TRIORING_OP_POLL_ADD 6
#define TRIORING_OP_FSYNC 3
#define TRIORING_OP_ACCEPT 13              /* Linux 5.5 */
#define TRIORING_OP_ASYNC_CANCEL 14
#define TRIORING_OP_READ 22
#define TRIORING_OP_WRITE 23
#define TRIORING_OP_SEND 26                /* Linux 5.6 */
#define TRIORING_OP_RECV 27                /* Linux 5.6 */
#define TRIORING_OP_SPLICE 30              /* Linux 5.7 */
#define TRIORING_SQE_IO_LINK (1U << 2)       /* IOSQE_IO_LINK */

/* NODROP: a full CQ queues completions in the kernel instead of losing them.
 * SUBMIT_STABLE: SQE data (iovecs) is consumed at submit time.
 * RW_CUR_POS: the kernel has IORING_OP_READ / IORING_OP_WRITE (5.6). */
#define TRIORING_FEATURES_REQUIRED \
    (IORING_FEAT_NODROP | IORING_FEAT_SUBMIT_STABLE | IORING_FEAT_RW_CUR_POS)

struct trioring_ring {
    int ring_fd;                /* readable (poll) while completions wait to be reaped */
    unsigned sq_entries;
    unsigned cq_entries;
    unsigned features;
    unsigned setup_flags;
    uint64_t overflow_flushes;  /* times completions were fetched from the overflow list */
    /* private */
    unsigned *sq_head;
    unsigned *sq_tail;
    unsigned *sq_flags;
    unsigned sq_mask;
    unsigned sqe_tail;          /* next SQE to fill; published to *sq_tail on submit */
    struct io_uring_sqe *sqes;
    unsigned *cq_head;
    unsigned *cq_tail;
    unsigned cq_mask;
    struct io_uring_cqe *cqes;
    void *sq_ring;
    size_t sq_ring_bytes;
    void *cq_ring;              /* == sq_ring with IORING_FEAT_SINGLE_MMAP */
    size_t cq_ring_bytes;
    size_t sqes_bytes;
};

/* BEGIN CDEF: _build_ring.py hands the lines from here to the END mark to
 * cffi as they stand, so they must stay plain declarations (no macros). */
struct trioring_completion {
    uint64_t user_data;
    int32_t res;
    uint32_t flags;
};

int trioring_ring_setup(struct trioring_ring **ring_out, unsigned entries, unsigned cq_entries);
void trioring_ring_close(struct trioring_ring *ring);

unsigned trioring_sq_space(struct trioring_ring *ring);
unsigned trioring_sq_unsubmitted(struct trioring_ring *ring);

int trioring_prep_read(struct trioring_ring *ring, int fd, void *buffer, uint32_t length,
                       uint64_t offset, uint64_t user_data);
int trioring_prep_write(struct trioring_ring *ring, int fd, const void *buffer, uint32_t length,
                        uint64_t offset, unsigned sqe_flags, uint64_t user_data);
int trioring_prep_writev(struct trioring_ring *ring, int fd, const struct iovec *iovecs,
                         unsigned count, uint64_t offset, unsigned sqe_flags, uint64_t user_data);
int trioring_prep_fsync(struct trioring_ring *ring, int fd, unsigned fsync_flags,
                        unsigned sqe_flags, uint64_t user_data);
int trioring_prep_cancel(struct trioring_ring *ring, uint64_t target_user_data,
                         uint64_t user_data);
int trioring_prep_poll(struct trioring_ring *ring, int fd, unsigned poll_mask,
                       uint64_t user_data);
int trioring_prep_accept(struct trioring_ring *ring, int fd, unsigned accept_flags,
                         uint64_t user_data);
int trioring_prep_recv(struct trioring_ring *ring, int fd, void *buffer, uint32_t length,
                       unsigned msg_flags, unsigned recvsend_flags, uint64_t user_data);
int trioring_prep_send(struct trioring_ring *ring, int fd, const void *buffer, uint32_t length,
                       unsigned msg_flags, unsigned recvsend_flags, uint64_t user_data);
int trioring_prep_splice(struct trioring_ring *ring, int fd_in, int64_t offset_in, int fd_out,
                         int64_t offset_out, uint32_t length, unsigned splice_flags,
                         unsigned sqe_flags, uint64_t user_data);

int trioring_submit(struct trioring_ring *ring);
unsigned trioring_sq_discard(struct trioring_ring *ring, uint64_t *user_data_out, unsigned max);
unsigned trioring_reap(struct trioring_ring *ring, struct trioring_completion *out,
                       unsigned max, int *error_out);
/* END CDEF */

#endif /* TRIORING_RING_H */
