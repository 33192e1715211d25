/**
 * Golden tests over real frames captured by scripts/capture-golden.sh (libfuse's hello and
 * passthrough_ll under strace on this kernel): every frame decodes without error, pairs with its
 * request, re-encodes byte for byte, and prints the committed lines. Set UPDATE_GOLDEN=1 to rewrite
 * the .lines.txt files (then review them by eye).
 */
import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { SessionDecoder, encode, formatFields, formatLine, negotiateInit, opcodeName, Opcode, type DecodedFrame } from './index.js';

const dir = fileURLToPath(new URL('../../test/fixtures/frames/', import.meta.url));
const captures = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();

interface Capture {
  server: string;
  frames: Array<{ dir: 'rx' | 'tx'; hex: string; writeErrno?: string }>;
}
const load = (f: string): Capture => JSON.parse(readFileSync(join(dir, f), 'utf8'));

describe('golden captures', () => {
  it('exist and are small', () => {
    expect(captures).toEqual(['hello.json', 'passthrough_ll.json']);
    const total = captures.reduce((n, f) => n + readFileSync(join(dir, f)).length, 0);
    expect(total).toBeLessThan(2 * 1024 * 1024);
  });

  for (const file of captures) {
    describe(file, () => {
      const cap = load(file);
      const frames = cap.frames.map((f) => ({ ...f, buf: Buffer.from(f.hex, 'hex') }));

      it('decodes every frame without error, pairs every reply and re-encodes byte-identically', () => {
        const d = new SessionDecoder();
        let replies = 0;
        for (const f of frames) {
          const res = d.decode(f.dir, f.buf);
          expect(res.errors, `${f.dir} ${f.hex.slice(0, 80)}`).toEqual([]);
          expect(res.frame).toBeDefined();
          const frame = res.frame as DecodedFrame;
          expect(encode(frame).equals(f.buf)).toBe(true);
          if (f.dir === 'tx' && frame.unique !== 0n) {
            replies++;
            expect(res.request, `reply ${frame.unique} has no request`).toBeDefined();
            expect(frame.opcode).toBe(res.request!.opcode);
          }
          // The detail view names every byte-carrying field and never fails.
          expect(formatFields(res).length).toBeGreaterThan(1);
        }
        expect(replies).toBeGreaterThan(10);
        // Everything that expects a reply got one; only FORGETs stay unanswered.
        expect(d.unanswered().map((r) => r.name)).toEqual([]);
        expect(d.init?.kernelMinor).toBe(45);
      });

      it('prints the committed lines', () => {
        const d = new SessionDecoder();
        const lines = frames.map((f) => formatLine(d.decode(f.dir, f.buf).frame!));
        const golden = join(dir, file.replace(/\.json$/, '.lines.txt'));
        if (process.env.UPDATE_GOLDEN || !existsSync(golden)) writeFileSync(golden, lines.join('\n') + '\n');
        expect(lines.join('\n') + '\n').toBe(readFileSync(golden, 'utf8'));
      });
    });
  }

  it('hello: INIT negotiation as the kernel saw it', () => {
    const cap = load('hello.json');
    const req = Buffer.from(cap.frames[0].hex, 'hex');
    const rep = Buffer.from(cap.frames[1].hex, 'hex');
    const init = negotiateInit(req, rep)!;
    expect(init).toMatchObject({ kernelMajor: 7, kernelMinor: 45, serverMajor: 7, error: 0 });
    expect(init.minor).toBe(Math.min(45, init.serverMinor));
    expect(init.maxWrite).toBeGreaterThan(4096);
    expect(typeof init.flags).toBe('bigint');
    // The server's reply had FUSE_INIT_EXT, so flags2 counts; the kernel offered flags2 bits too.
    expect(init.kernelFlags >> 32n).not.toBe(0n);
  });

  it('passthrough_ll: the workload reached the opcodes it was written for', () => {
    const seen = new Set(load('passthrough_ll.json').frames.filter((f) => f.dir === 'rx')
      .map((f) => opcodeName(Buffer.from(f.hex, 'hex').readUInt32LE(4))));
    for (const name of ['LOOKUP', 'GETATTR', 'SETATTR', 'READLINK', 'SYMLINK', 'MKNOD', 'MKDIR', 'UNLINK', 'RMDIR',
      'RENAME', 'LINK', 'OPEN', 'READ', 'WRITE', 'STATFS', 'RELEASE', 'FSYNC', 'SETXATTR', 'GETXATTR', 'LISTXATTR',
      'REMOVEXATTR', 'FLUSH', 'INIT', 'OPENDIR', 'READDIR', 'RELEASEDIR', 'FSYNCDIR', 'SETLKW', 'CREATE',
      'BATCH_FORGET', 'FALLOCATE', 'READDIRPLUS', 'LSEEK', 'COPY_FILE_RANGE']) {
      expect(seen, name).toContain(name);
    }
    expect(Opcode.LOOKUP).toBe(1);
  });
});
