import { describe, expect, it } from 'vitest';
import { NotifyCode, Opcode, buildNotify, buildReply, buildRequest, decodeReply, decodeRequest } from '../protocol/index.js';
import { FrameRedactor, REDACT_CLASSES, type RedactClass } from './frames.js';
import { NameHasher } from './names.js';

const hasher = new NameHasher({ salt: 't' });
const all = () => new FrameRedactor(new Set<RedactClass>(REDACT_CLASSES), hasher);
const redact = (r: FrameRedactor, dir: 0 | 1, buf: Buffer) => r.redact(dir, buf, buf.length);

describe('FrameRedactor', () => {
  it('hashes a LOOKUP name and rewrites fuse_in_header.len', () => {
    const buf = buildRequest({ opcode: Opcode.LOOKUP, unique: 2n, nodeid: 1n, names: ['tax-return-2025.pdf'] });
    const out = redact(all(), 0, buf);
    const d = decodeRequest(out.data);
    expect(d.ok).toBe(true);
    expect(d.frame!.names).toEqual([hasher.name('tax-return-2025.pdf')]);
    expect(out.len).toBe(out.data.length);
    expect(out.data.readUInt32LE(0)).toBe(out.len);
  });

  it('zeroes WRITE data and READ replies, keeping their lengths', () => {
    const r = all();
    const write = buildRequest({ opcode: Opcode.WRITE, unique: 4n, nodeid: 2n, arg: { fh: 1n, size: 6 }, data: Buffer.from('secret') });
    const w = redact(r, 0, write);
    expect(w.data.length).toBe(write.length);
    expect(decodeRequest(w.data).frame!.data).toEqual(Buffer.alloc(6));
    const read = buildRequest({ opcode: Opcode.READ, unique: 6n, nodeid: 2n, arg: { fh: 1n, size: 4096 } });
    redact(r, 0, read);
    const reply = buildReply({ unique: 6n, opcode: Opcode.READ, data: Buffer.from('contents') });
    expect(decodeReply(redact(r, 1, reply).data, { opcode: Opcode.READ }).frame!.data).toEqual(Buffer.alloc(8));
  });

  it('READDIR: names hashed, namelen and padding rewritten, the buffer still decodes', () => {
    const r = all();
    redact(r, 0, buildRequest({ opcode: Opcode.READDIR, unique: 8n, nodeid: 1n, arg: { fh: 1n, size: 4096 } }));
    const dirents = [
      { ino: 1n, off: 1n, type: 4, name: '.' },
      { ino: 5n, off: 2n, type: 8, name: 'a' },
      { ino: 6n, off: 3n, type: 8, name: 'quarterly-numbers.xlsx' },
    ];
    const out = redact(r, 1, buildReply({ unique: 8n, opcode: Opcode.READDIR, dirents }));
    const d = decodeReply(out.data, { opcode: Opcode.READDIR });
    expect(d.ok, JSON.stringify(d.errors)).toBe(true);
    expect(d.frame!.dirents!.map((e) => e.name)).toEqual(['.', hasher.name('a'), hasher.name('quarterly-numbers.xlsx')]);
    expect(d.frame!.dirents!.map((e) => e.off)).toEqual([1n, 2n, 3n]);
  });

  it('SYMLINK target and READLINK reply become token paths; xattr values zeroes', () => {
    const r = all();
    const sym = decodeRequest(redact(r, 0, buildRequest({ opcode: Opcode.SYMLINK, unique: 10n, nodeid: 1n, names: ['link', '../docs/plan.txt'] })).data);
    expect(sym.frame!.names).toEqual([hasher.name('link'), `../${hasher.name('docs')}/${hasher.name('plan.txt')}`]);
    const set = buildRequest({ opcode: Opcode.SETXATTR, unique: 12n, nodeid: 2n, arg: { size: 5 }, names: ['user.owner'], data: Buffer.from('alice'), minor: 31 });
    const s = decodeRequest(redact(r, 0, set).data, { minor: 31 });
    expect(s.frame!.names).toEqual([`user.${hasher.name('owner')}`]);
    expect(s.frame!.data).toEqual(Buffer.alloc(5));
  });

  it('notifications: NOTIFY_INVAL_ENTRY name and its namelen', () => {
    const out = redact(all(), 1, buildNotify(NotifyCode.INVAL_ENTRY, { arg: { parent: 1n }, names: ['old-name'] }));
    const d = decodeReply(out.data);
    expect(d.ok, JSON.stringify(d.errors)).toBe(true);
    expect(d.frame!.names).toEqual([hasher.name('old-name')]);
  });

  it('only the chosen classes: data alone keeps names; bytes it cannot explain are zeroed', () => {
    const r = new FrameRedactor(new Set<RedactClass>(['data']), hasher);
    const lookup = buildRequest({ opcode: Opcode.LOOKUP, unique: 2n, nodeid: 1n, names: ['keep-me'] });
    expect(redact(r, 0, lookup).data).toEqual(lookup);
    const unknown = Buffer.concat([buildRequest({ opcode: 999, unique: 4n }), Buffer.from('opaque')]);
    unknown.writeUInt32LE(unknown.length, 0);
    const out = redact(r, 0, unknown);
    expect(out.data.subarray(40)).toEqual(Buffer.alloc(6));
  });
});
