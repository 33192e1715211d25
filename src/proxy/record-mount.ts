/**
 * What `record` does with the mounts of a server it intercepts (src/proxy/intercept.ts).
 *
 * The first FUSE mount is the recorded one: fusetrace mounts it for real with the caller's exact
 * options on a /dev/fuse fd of its own (the pump's), and the server end of the socketpair takes
 * the caller's fd number. A server that mounts again (several mountpoints, or a remount after an
 * unmount) gets those mounts directly, on a device fd of their own, and a note says they are not
 * recorded: one session is one FUSE connection.
 *
 * The server's own unmount (libfuse's fuse_session_unmount at exit, `fusermount3 -u`) of the
 * recorded mountpoint is performed as asked; if the mount is already gone (the user or fusetrace
 * unmounted it: through a socket libfuse cannot see POLLERR, lib/mount.c fuse_kern_unmount, and
 * unmounts anyway) it is answered 0 without touching whatever is mounted there now.
 */
import { closeSync } from 'node:fs';
import { mountLikeCaller, type FuseMountCall, type InterceptStrategy } from './intercept.js';
import { MNT_DETACH, mountAt, unmountFuse, type FuseMount } from './mount.js';

/** The recorded mount: what the server asked for and what fusetrace made of it. */
export interface RecordedMount {
  call: FuseMountCall;
  mount: FuseMount;
  /** st_dev of the mount ("0:N"), to tell it from a later mount on the same directory. */
  device: string | undefined;
}

export class RecordMountStrategy implements InterceptStrategy {
  private recorded: RecordedMount | undefined;
  /** The first mount is under way (mounts of several server threads may overlap). */
  private claimed = false;
  private readonly others: Array<{ mount: FuseMount; device: string | undefined }> = [];
  private firstResolve!: (m: RecordedMount) => void;
  /** Resolves with the first FUSE mount once the server holds the socket at its number. */
  readonly first: Promise<RecordedMount>;

  /**
   * `serverFd`: our copy of the server end of the socketpair (closed once the server holds it, so
   * that its exit reads as end-of-file). `say` prints one line to the user.
   */
  constructor(
    private serverFd: number,
    private readonly say: (line: string) => void,
  ) {
    this.first = new Promise((r) => (this.firstResolve = r));
  }

  async mount(call: FuseMountCall): Promise<number> {
    const isFirst = !this.claimed;
    this.claimed = true;
    let mount: FuseMount;
    try {
      mount = await mountLikeCaller(call);
    } catch (err) {
      if (isFirst) this.claimed = false;
      throw err;
    }
    const device = mountAt(call.target)?.device;
    if (isFirst) {
      this.recorded = { call, mount, device };
      return this.serverFd;
    }
    this.others.push({ mount, device });
    this.say(`the server mounted again on ${call.target} (pid ${call.pid}): that mount is served directly and not recorded`);
    return mount.devFd;
  }

  placed(call: FuseMountCall, fd: number): void {
    if (fd !== this.serverFd || !this.recorded || this.recorded.call !== call) return;
    closeSync(this.serverFd);
    this.serverFd = -1;
    this.firstResolve(this.recorded);
  }

  async unmount(call: FuseMountCall, flags: number): Promise<void> {
    const lazy = flags & MNT_DETACH;
    if (this.recorded && this.recorded.call === call) {
      // Already gone: the user's umount or fusetrace's own ended the session first.
      if (mountAt(call.target)?.device !== this.recorded.device) return;
      await unmountFuse(this.recorded.mount, lazy);
      return;
    }
    const i = this.others.findIndex((o) => o.mount.mountpoint === call.target);
    if (i < 0) return;
    const o = this.others[i];
    if (mountAt(call.target)?.device === o.device) await unmountFuse(o.mount, lazy);
    closeSync(o.mount.devFd);
    this.others.splice(i, 1);
  }

  /** Closes the device fds of the unrecorded mounts (after the server is gone). */
  close(): void {
    for (const o of this.others.splice(0)) closeSync(o.mount.devFd);
    if (this.serverFd >= 0) {
      closeSync(this.serverFd);
      this.serverFd = -1;
    }
  }
}
