import { describe, expect, it } from 'vitest';
import { liveCells } from './format.js';

describe('liveCells', () => {
  const row = { state: 'unanswered', outcome: null, start_ns: 1e9, dur_ns: null };

  it('shows an outstanding request\'s age in a live session, and HUNG past 5 s', () => {
    expect(liveCells(row, 3.5e9)).toEqual({ dur: '2.50s+', state: 'unanswered' });
    expect(liveCells(row, 13e9)).toEqual({ dur: '12.0s+', state: 'HUNG 12.0s' });
  });

  it('leaves answered rows and finished sessions as recorded', () => {
    expect(liveCells({ state: 'ok', outcome: null, start_ns: 0, dur_ns: 1500 }, 99e9)).toEqual({ dur: '1.50us', state: 'ok' });
    expect(liveCells(row, undefined)).toEqual({ dur: '-', state: 'unanswered' });
  });
});
