/*
 * In-process recording: the shared-memory ring between the FUSE server (native/preload.c, loaded
 * with LD_PRELOAD) and the pump (native/pump.cc), and the two messages of the takeover handshake.
 * Plain C with GCC __atomic builtins, so that the C preload and the C++ pump share one definition.
 *
 * Why: relaying every frame through the pump costs two extra thread wake-ups per request (kernel ->
 * pump -> server -> pump -> kernel). On a 2-vCPU VM that doubles the wall time of a serial metadata
 * workload even with no recording at all (a bare C relay: find+stat over 20,000 names 0.59 s direct,
 * 1.15 s relayed). When the server reads /dev/fuse through libc, the preload instead hands it the
 * real /dev/fuse fd and copies each frame into this ring next to the read()/write() that moved it:
 * the request path is then the native one.
 *
 * Handshake (on the server's first read() of /dev/fd/N, N being the socket fusetrace gave it):
 *   server -> pump  FT_TAKEOVER_REQUEST: a 16-byte fuse_out_header {16, FT_TAKEOVER_CODE, FT_MAGIC}
 *   pump            stops reading /dev/fuse (every request it read is already queued in the socket)
 *   pump -> server  FT_TAKEOVER_ACK: a fuse_in_header {48, FT_ACK_OPCODE, FT_MAGIC, ...} + u32
 *                   status; when accepted, SCM_RIGHTS carries [the mounted /dev/fuse fd, the ring memfd]
 *   server          keeps the requests it received before the ACK for its next reads, dup3()s the
 *                   /dev/fuse fd onto N, keeps the socket on another fd (end-of-file on it means
 *                   fusetrace is gone), and from then on records into the ring.
 * A refused takeover (status != 0) leaves the server on the socket: the pump relays as before.
 */
#ifndef FUSETRACE_RING_H
#define FUSETRACE_RING_H

#include <stdint.h>

#define FT_MAGIC 0x314b434152545446ull   /* "FTTRACK1" little-endian: never a kernel unique */
#define FT_TAKEOVER_CODE 0x46540001      /* fuse_out_header.error: no errno, no notify code */
#define FT_ACK_OPCODE 0x46540002u        /* fuse_in_header.opcode: no FUSE opcode */
#define FT_ACK_LEN 48u                   /* fuse_in_header (40) + status (4) + pad (4) */
#define FT_ACK_ACCEPTED 0u
/* Replay (FUSETRACE_REPLAY=1, preload.c): the server's first read of the replay socket sends
 * {16, FT_REPLAY_HELLO_CODE, FT_MAGIC} first, telling the replayer that end-of-file on that
 * socket will reach the server as ENODEV, as an unmount does (src/replay/link.ts). */
#define FT_REPLAY_HELLO_CODE 0x46540003

#define FT_RING_MAGIC 0x47525446u        /* "FTRG" */
/* 3: a SKIP record is its stamp alone (see FT_REC_SKIP); version 2 wrote a length after it, which
 * overran the data area when the skip was 8 bytes. */
#define FT_RING_VERSION 3u
#define FT_RING_HDR_BYTES 4096u          /* the data area starts one page in */

/* Record types (the low 3 bits of a record's stamp). A record's space is reserved first, filled,
 * then published by writing its stamp: (its absolute ring position ^ key) with the low 3 bits
 * replaced by the type. The position makes stale bytes (an old frame's payload where a new
 * record now starts) unmistakable for a published record, so nobody has to clear the ring. */
#define FT_REC_FRAME 1u
#define FT_REC_SKIP 2u    /* the rest of the data area before a wrap: no content, and no header
                             beyond the stamp (the skip can be as short as 8 bytes, the stamp
                             alone): its length is always the distance to the data area's end */
#define FT_REC_EVENT 3u   /* not a frame: code is an FT_EV_* */
#define FT_REC_PENDING 6u /* a reply whose write has not returned yet: complete but for fwd_ns and
                             write_errno; consumed as such only once the server is gone (it died
                             in the write), else waited for */
#define FT_REC_PROC 5u    /* not a frame: pid's process name (comm, cap_len bytes), read by the server
                             thread that got pid's first request, while pid still waits for it */
#define FT_REC_PATCH 4u   /* not a frame: the write result (fwd_ns, write_errno) of the notification
                             recorded at ring position `unique`, published before its write */
#define FT_STAMP(pos, key, type) ((((uint64_t)(pos) ^ (uint64_t)(key)) & ~(uint64_t)7) | (uint64_t)(type))

#define FT_EV_ENODEV 1    /* a read() of /dev/fuse returned ENODEV: unmounted or aborted */

/* ft_ring_hdr.flags */
#define FT_RING_LOSSY 1u  /* `record --lossy`: a full ring drops the frame (its unique goes to the
                             lost list) instead of making the server thread wait for room */

struct ft_ring_hdr {
  uint32_t magic;
  uint32_t version;
  uint64_t size;       /* bytes of the data area, a power of two */
  uint32_t snaplen;    /* bytes kept per frame, 0 = all */
  uint32_t flags;      /* FT_RING_* */
  uint64_t head __attribute__((aligned(64)));  /* producers: bytes reserved so far */
  uint64_t tail __attribute__((aligned(64)));  /* consumer: bytes consumed so far */
  uint64_t dropped;        /* frames not recorded because the ring was full */
  uint64_t dropped_bytes;  /* their full lengths */
  uint32_t sleeping;       /* futex word: 1 while the consumer sleeps */
  uint32_t pad1;
  uint64_t key;            /* random, mixed into every stamp */
  /* Backpressure (the default): a server thread that finds the ring full waits for the consumer.
   * Counted so that the live line can say the recorder is the bottleneck. */
  uint64_t waits;          /* reservations that had to wait for room */
  uint64_t wait_ns;        /* total time server threads spent waiting */
  /* The lost list (--lossy only; lost_cap 0 otherwise): the uniques of frames dropped from a full
   * ring, so that the requests they belong to are labelled `lost`, not guessed. lost_cap u64
   * entries right after the data area (FT_RING_HDR_BYTES + size), each unique + 1 (0: reserved
   * but not yet written). Slots beyond lost_cap are only counted (lost_head - lost_cap). */
  uint64_t lost_head __attribute__((aligned(64)));  /* slots reserved so far */
  uint64_t lost_cap;
};

/* 64 bytes, then cap_len bytes of the frame, padded to a multiple of 8. */
struct ft_ring_rec {
  uint64_t stamp;      /* FT_STAMP(position, key, type); written last, with release ordering */
  uint32_t rec_len;    /* bytes of this record, header included, a multiple of 8 */
  uint32_t pid;        /* fuse_in_header.pid of a request (kept even when snaplen cuts the header) */
  uint64_t ts_ns;      /* CLOCK_MONOTONIC: after a read returned; before a write was issued */
  uint64_t fwd_ns;     /* CLOCK_MONOTONIC: after the write returned (a read: = ts_ns) */
  uint64_t unique;
  uint32_t len;        /* the frame's full length */
  uint32_t cap_len;    /* bytes kept */
  int32_t code;        /* opcode (dir 0), fuse_out_header.error (dir 1), FT_EV_* (event) */
  int32_t write_errno; /* errno of the write to /dev/fuse, 0 on success */
  uint8_t dir;         /* 0 kernel->server, 1 server->kernel */
  uint8_t flags;       /* FT_RECF_* */
  uint8_t pad[6];
};

/* A notification's write may block in the kernel (fs/fuse/dev.c: NOTIFY_INVAL_* waits for inode
 * locks), so it is published before the write and its result follows as an FT_REC_PATCH. A reply
 * is reserved before its write and published after it: its position then precedes every request
 * the kernel could only send once it had the reply (a GETATTR after a WRITE's reply must not be
 * recorded before that reply, or a replay would reorder them). */
#define FT_RECF_PATCH_FOLLOWS 1u

#define FT_REC_ALIGN(n) (((n) + 7u) & ~(uint64_t)7u)

#endif
