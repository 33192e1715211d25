// Small wrappers around the mount-related system calls the proxy needs before
// the pump starts. Every function runs on the JS thread and returns -errno on
// failure so binding.cc can turn it into a JS error with the errno name.
#pragma once

#include <string>

namespace fusetrace {

// mount(2) of a FUSE filesystem; `data` carries fd=,rootmode=,user_id=,group_id=.
int MountFuse(const std::string& source, const std::string& target, const std::string& fstype,
              unsigned long flags, const std::string& data);
// umount2(2) without MNT_DETACH: a lazy unmount would hide a busy mount.
int Unmount(const std::string& target, int flags);
// An AF_UNIX SOCK_SEQPACKET pair, close-on-exec on both ends, with SO_SNDBUF of
// both ends set to `sndbuf` (SO_SNDBUFFORCE when permitted, else SO_SNDBUF which
// the kernel caps at net.core.wmem_max). Writes the fds and the smaller
// resulting sk_sndbuf. Returns 0 or -errno.
int SeqpacketPair(int sndbuf, int fds[2], int* sndbuf_out, bool* forced);
// The fusermount3 _FUSE_COMMFD protocol (libfuse lib/mount.c receive_fd):
// receives one fd passed with SCM_RIGHTS. Returns the fd, 0-byte EOF -> -ECONNRESET.
int RecvFd(int sock);
// Clears FD_CLOEXEC so a child started by node inherits `fd` at the same number.
int SetCloexec(int fd, bool on);
// Sends one message on a socket without blocking (MSG_DONTWAIT): bytes sent, or -errno
// (-EAGAIN when the send buffer is full). Any thread.
long SendNoWait(int sock, const void* buf, size_t len);

}  // namespace fusetrace
