import { describe, expect, it } from 'vitest';
import { checkTables, assertTablesConsistent, OPCODE_TABLE, NOTIFY_TABLE, opcodeName, Opcode, NotifyCode } from './opcodes.js';
import * as st from './structs.js';

describe('opcode table', () => {
  it('is consistent with itself and with the header compat sizes', () => {
    expect(checkTables()).toEqual([]);
    expect(() => assertTablesConsistent()).not.toThrow();
  });

  it('covers every opcode and notify code of 7.45', () => {
    const numbers = OPCODE_TABLE.map((o) => o.opcode);
    // 7 (GETDIR) and 19 were retired before 7.0; everything else from 1 to 53 exists in 7.45.
    const expected = Array.from({ length: 53 }, (_, i) => i + 1).filter((n) => n !== 7 && n !== 19);
    expect(numbers).toEqual([...expected, 4096]);
    expect(NOTIFY_TABLE.map((n) => n.code)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(Opcode.COPY_FILE_RANGE_64).toBe(53);
    expect(NotifyCode.PRUNE).toBe(9);
  });

  it('prints unknown opcodes as OPCODE-<n>', () => {
    expect(opcodeName(1)).toBe('LOOKUP');
    expect(opcodeName(7)).toBe('OPCODE-7');
    expect(opcodeName(9999)).toBe('OPCODE-9999');
  });

  it('sizes structs by negotiated minor', () => {
    expect(st.sizeAt(st.fuse_entry_out, 45)).toBe(128);
    expect(st.sizeAt(st.fuse_entry_out, 8)).toBe(120);
    expect(st.sizeAt(st.fuse_init_in, 5)).toBe(8);
    expect(st.sizeAt(st.fuse_init_in, 35)).toBe(16);
    expect(st.sizeAt(st.fuse_init_in, 36)).toBe(64);
    expect(st.sizeAt(st.fuse_init_out, 4)).toBe(8);
    expect(st.sizeAt(st.fuse_init_out, 22)).toBe(24);
    expect(st.sizeAt(st.fuse_mkdir_in, 11)).toBe(8); // umask took padding: no size change
    expect(st.sizeAt(st.fuse_release_in, 7)).toBe(16);
  });

  it('detects a table that disagrees with itself', () => {
    // Corrupt a copy of a descriptor's declared size through the shared table and restore it.
    const s = st.fuse_write_out as { size: number };
    const saved = s.size;
    s.size = 12;
    try {
      expect(checkTables()).toContain('fuse_write_out: fields add up to 8 bytes, declared 12');
    } finally {
      s.size = saved;
    }
    const row = OPCODE_TABLE[0] as { opcode: number };
    row.opcode = 2;
    try {
      expect(checkTables()).toContain('duplicate opcode number 2');
    } finally {
      row.opcode = 1;
    }
  });
});
