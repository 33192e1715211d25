import { describe, expect, it } from 'vitest';
import { PACKET_HEADER, PACKET_HEADER_LEN, checkPacketHeader, encodePacketHeader } from './packet-header.js';
import { generateDissector, lua } from './wireshark.js';
import { OPCODE_TABLE, ALL_STRUCTS, ERRNOS } from '../protocol/index.js';

describe('the pcapng packet header', () => {
  it('is consistent with itself', () => {
    expect(checkPacketHeader()).toEqual([]);
  });

  it('encodes every field at its offset', () => {
    const b = encodePacketHeader({ hdr_len: PACKET_HEADER_LEN, dir: 1, unique: 0xfedcba9876543210n, write_errno: -2, comm: 'a-very-long-process-name' });
    expect(b.length).toBe(PACKET_HEADER_LEN);
    const at = (n: string) => PACKET_HEADER.find((f) => f.name === n)!.offset;
    expect(b.readUInt16LE(at('hdr_len'))).toBe(PACKET_HEADER_LEN);
    expect(b.readBigUInt64LE(at('unique'))).toBe(0xfedcba9876543210n);
    expect(b.readInt32LE(at('write_errno'))).toBe(-2);
    // comm: at most TASK_COMM_LEN - 1 bytes and a NUL.
    expect(b.subarray(at('comm')).toString('latin1')).toBe('a-very-long-pro\0');
  });
});

describe('the generated dissector', () => {
  it('carries every opcode, struct and errno of src/protocol', () => {
    const text = generateDissector();
    for (const o of OPCODE_TABLE) expect(text).toContain(`[${o.opcode}]={name=${JSON.stringify(o.name)}`);
    for (const s of ALL_STRUCTS) expect(text).toContain(`${s.name}={`);
    for (const [n, name] of ERRNOS.slice(0, 10)) expect(text).toContain(`[${n}]=${JSON.stringify(name)}`);
    expect(generateDissector()).toBe(text);
  });

  it('writes Lua literals', () => {
    expect(lua({ a: [1, 'x'], 15: true, 'b-c': null })).toBe('{[15]=true,a={1,"x"},["b-c"]=nil}');
  });
});
