#include "mount_util.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

namespace fusetrace {

int MountFuse(const std::string& source, const std::string& target, const std::string& fstype,
              unsigned long flags, const std::string& data) {
  if (mount(source.c_str(), target.c_str(), fstype.c_str(), flags, data.c_str()) != 0) return -errno;
  return 0;
}

int Unmount(const std::string& target, int flags) {
  if (umount2(target.c_str(), flags) != 0) return -errno;
  return 0;
}

static int SizeBuffer(int fd, int sndbuf, bool* forced) {
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof sndbuf) == 0) {
    *forced = true;
  } else if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf) != 0) {
    return -errno;
  }
  // The receive side of an AF_UNIX datagram socket is bounded by the sender's
  // sk_sndbuf, but size it too for symmetry with what `ss` shows.
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sndbuf, sizeof sndbuf) != 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sndbuf, sizeof sndbuf);
  int got = 0;
  socklen_t len = sizeof got;
  if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &got, &len) != 0) return -errno;
  return got;
}

int SeqpacketPair(int sndbuf, int fds[2], int* sndbuf_out, bool* forced) {
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) return -errno;
  *forced = false;
  bool f0 = false, f1 = false;
  int a = SizeBuffer(fds[0], sndbuf, &f0);
  int b = SizeBuffer(fds[1], sndbuf, &f1);
  if (a < 0 || b < 0) {
    close(fds[0]);
    close(fds[1]);
    return a < 0 ? a : b;
  }
  *forced = f0 && f1;
  *sndbuf_out = a < b ? a : b;
  return 0;
}

int RecvFd(int sock) {
  char byte = 0;
  struct iovec iov = {&byte, 1};
  char ctl[CMSG_SPACE(sizeof(int))];
  memset(ctl, 0, sizeof ctl);
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctl;
  msg.msg_controllen = sizeof ctl;
  ssize_t r;
  do { r = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC); } while (r < 0 && errno == EINTR);
  if (r < 0) return -errno;
  if (r == 0) return -ECONNRESET;  // fusermount3 failed and closed the socket
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      int fd;
      memcpy(&fd, CMSG_DATA(c), sizeof fd);
      return fd;
    }
  }
  return -EPROTO;
}

int SetCloexec(int fd, bool on) {
  int fl = fcntl(fd, F_GETFD);
  if (fl < 0) return -errno;
  if (fcntl(fd, F_SETFD, on ? (fl | FD_CLOEXEC) : (fl & ~FD_CLOEXEC)) != 0) return -errno;
  return 0;
}

long SendNoWait(int sock, const void* buf, size_t len) {
  ssize_t n;
  do {
    n = send(sock, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  return n < 0 ? -errno : n;
}

}  // namespace fusetrace
