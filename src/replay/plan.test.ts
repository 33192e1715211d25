import { afterEach, describe, expect, it } from 'vitest';
import { buildReply, buildRequest, Opcode } from '../protocol/index.js';
import { UserError } from '../errors.js';
import { createFixtureDb, type FixtureDb } from '../store/requests.fixture.js';
import { TraceWriter, type FrameRecord } from '../store/writer.js';
import { buildPlan, type PlanEvent, type SendEvent } from './plan.js';
import { mustFollow, orderTouch } from './pipeline.js';

let fx: FixtureDb | undefined;
afterEach(() => fx?.cleanup());

/** A session of real-shaped frames (built by the codec) in a fresh trace file. */
function session(frames: Buffer[][]): number {
  fx = createFixtureDb();
  const w = new TraceWriter(fx.db);
  const id = w.beginSession({ command: ['srv'], startedWallNs: 1n, startedMonoNs: 0n });
  const recs: FrameRecord[] = frames.map(([data, dirFlag], seq) => {
    const dir = dirFlag[0] as 0 | 1;
    const unique = data.readBigUInt64LE(8);
    return {
      seq, tsNs: BigInt(seq * 1000), fwdNs: BigInt(seq * 1000 + 1), dir, unique, len: data.length, data, writeErrno: 0,
      opcode: dir === 0 ? data.readUInt32LE(4) : null, error: dir === 1 ? data.readInt32LE(4) : null,
    };
  });
  w.addFrames(recs);
  w.close();
  return id;
}
const rx = (b: Buffer): Buffer[] => [b, Buffer.from([0])];
const tx = (b: Buffer): Buffer[] => [b, Buffer.from([1])];
const init = (u = 2n) => rx(buildRequest({ opcode: Opcode.INIT, unique: u, arg: { major: 7, minor: 45 } }));
const initReply = (u = 2n, error = 0) => tx(buildReply({ unique: u, opcode: Opcode.INIT, error, args: [{ major: 7, minor: 31, max_write: 131072 }] }));

function planError(frames: Buffer[][]): string {
  const id = session(frames);
  try {
    buildPlan(fx!.db, id);
  } catch (err) {
    expect(err).toBeInstanceOf(UserError);
    return (err as Error).message;
  }
  throw new Error('buildPlan did not fail');
}

describe('a session with nothing to replay fails with a clear message (issue 12 item 7)', () => {
  it('the server never answered INIT', () => {
    expect(planError([init()])).toMatch(/the server never answered INIT when it was recorded: nothing to replay/);
  });
  it('only INIT', () => {
    expect(planError([init(), initReply()])).toMatch(/nothing to replay \(the server answered INIT and no request came after it\)/);
  });
  it('INIT refused', () => {
    expect(planError([init(), initReply(2n, -71)])).toMatch(/answered INIT with error -71/);
  });
  it('no INIT at all', () => {
    expect(planError([rx(buildRequest({ opcode: Opcode.GETATTR, unique: 4n, nodeid: 1n }))])).toMatch(/has no INIT request/);
  });
});

describe('the plan streams and marks races', () => {
  const read = (u: bigint, fh: bigint) => rx(buildRequest({ opcode: Opcode.READ, unique: u, nodeid: 7n, arg: { fh, offset: 0n, size: 4096 } }));
  const truncate = (u: bigint) => rx(buildRequest({ opcode: Opcode.SETATTR, unique: u, nodeid: 7n, arg: { valid: 1 << 3, size: 0n } }));
  const getattr = (u: bigint, nodeid: bigint) => rx(buildRequest({ opcode: Opcode.GETATTR, unique: u, nodeid }));
  const ok = (u: bigint) => tx(buildReply({ unique: u }));

  it('a READ in flight with a truncating SETATTR of its node races with it; requests on other nodes, or not overlapping, do not', () => {
    const id = session([
      init(), initReply(),
      read(4n, 9n), truncate(6n), getattr(8n, 3n), ok(6n), ok(4n), ok(8n),
      read(10n, 9n), ok(10n), truncate(12n), ok(12n),
    ]);
    const plan = buildPlan(fx!.db, id);
    const events: PlanEvent[] = [...plan.events];
    const sends = events.filter((e): e is SendEvent => e.kind === 'send');
    const by = (u: bigint) => sends.find((s) => s.frame.unique === u)!;
    expect(by(4n).races?.map((t) => t.unique)).toEqual([6n]);
    expect(by(6n).races?.map((t) => t.unique)).toEqual([4n]);
    expect(by(8n).races).toEqual([]);
    expect(by(10n).races).toEqual([]);
    expect(by(12n).races).toEqual([]);
    // Replies are attached by the time their expect event comes.
    for (const e of events) if (e.kind === 'expect') expect(e.request?.reply).toBe(e.frame);
  });

  it('pipeline: readers of one node pass each other, a write or truncate of it does not, and barriers stop everything', () => {
    const id = session([
      init(), initReply(),
      read(4n, 9n), getattr(6n, 7n), truncate(8n), getattr(10n, 3n),
      rx(buildRequest({ opcode: Opcode.UNLINK, unique: 12n, nodeid: 1n, names: ['x'] })),
      ok(4n), ok(6n), ok(8n), ok(10n), ok(12n),
    ]);
    const sends = [...buildPlan(fx!.db, id).events].filter((e): e is SendEvent => e.kind === 'send');
    const [r, g, t, other, unlink] = sends.map(orderTouch);
    const bound = (): boolean => true;
    expect(mustFollow(r, g, bound)).toBe(false);
    expect(mustFollow(r, t, bound)).toBe(true);
    expect(mustFollow(t, g, bound)).toBe(true);
    expect(mustFollow(t, other, bound)).toBe(false);
    expect(mustFollow(unlink, other, bound)).toBe(true);
    expect(mustFollow(other, unlink, bound)).toBe(true);
  });
});
