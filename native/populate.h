/*
 * Prefaulting the pages of a shared or queue buffer in one call (Linux 5.14 MADV_POPULATE_WRITE)
 * rather than one page fault per 4 KiB on the thread that first writes them: a fault costs ~10 us
 * on this project's 2-vCPU PVM test VM (measured, issue 13's note), ~0.5 us per page this way.
 * Plain C, shared by the preload (C) and the pump (C++).
 */
#ifndef FUSETRACE_POPULATE_H
#define FUSETRACE_POPULATE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>

/* glibc names it from 2.35 on (its headers here do); the number is the kernel's (mman-common.h). */
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* Faults in the whole pages inside [p, p + n). A kernel older than 5.14 answers EINVAL: the pages
 * are then faulted in as they are first written, which is only slower, so the result is ignored. */
static inline void ft_populate_write(void* p, size_t n) {
  uintptr_t a = ((uintptr_t)p + 4095) & ~(uintptr_t)4095;
  uintptr_t e = ((uintptr_t)p + n) & ~(uintptr_t)4095;
  if (e > a) (void)madvise((void*)a, e - a, MADV_POPULATE_WRITE);
}

#endif
