import { describe, expect, it } from 'vitest';
import { formatBytes, formatDuration, formatResult, formatSessionLength, formatTime, paintState, stateColor } from './format.js';

describe('format', () => {
  it('writes durations with three figures, the microsecond as the CLI or the TUI spells it', () => {
    expect([812, 14_200, 3_070_000, 1_250_000_000].map((ns) => formatDuration(ns))).toEqual(['812ns', '14.2µs', '3.07ms', '1.25s']);
    expect(formatDuration(900_000, 'us')).toBe('900us');
    expect(formatDuration(null)).toBe('-');
  });

  it('writes sizes in binary units, session lengths to the second, times in seconds', () => {
    expect([512, 4096, 1.5 * 2 ** 20, 2.25 * 2 ** 30].map(formatBytes)).toEqual(['512B', '4.00KiB', '1.50MiB', '2.25GiB']);
    expect([850_000_000n, 12_340_000_000n, 245_000_000_000n, 7_380_000_000_000n].map(formatSessionLength)).toEqual(['850ms', '12.3s', '4m05s', '2h03m']);
    expect(formatTime(1_500_000)).toBe('0.001500');
    expect([null, 0, 2].map(formatResult)).toEqual(['-', 'OK', 'ENOENT']);
  });

  it('draws a state the same way in Ink and on an ANSI terminal', () => {
    expect(stateColor('interrupted')).toEqual({ color: 'magenta', bold: true });
    expect(paintState('interrupted', 'interrupted')).toBe('\x1b[1;35minterrupted\x1b[0m');
    expect(paintState('noreply', 'noreply')).toBe('\x1b[2mnoreply\x1b[0m');
    expect(paintState('ok', 'ok')).toBe('ok');
  });
});
