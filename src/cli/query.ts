/**
 * `fusetrace query SQL [--json|--csv]`: read-only SQL over the views of src/store/views.ts
 * (`sessions`, `requests`, `frames`). An aligned table on a terminal, tab-separated cells in a pipe,
 * one JSON object per row with --json, RFC 4180 CSV with a header with --csv. 64-bit integers are
 * printed exactly; blobs as hex.
 */
import type { Command } from 'commander';
import { UserError } from '../errors.js';
import { dbPath } from './options.js';
import { openTraceDb } from '../store/db.js';
import { prepareQuery, prepareQueryConnection, sqlError } from '../store/views.js';

interface QueryOptions {
  json?: boolean;
  csv?: boolean;
}

export function registerQuery(program: Command): void {
  program
    .command('query')
    .description('Read-only SQL over the views sessions, requests and frames')
    .argument('<sql>', 'one SQL statement that reads, e.g. "SELECT op, count(*) FROM requests GROUP BY op"')
    .option('--json', 'one JSON object per row (64-bit integers exact, blobs as hex)')
    .option('--csv', 'CSV with a header row (RFC 4180)')
    .addHelpText(
      'after',
      `
Views (README "fusetrace query" lists every column):
  sessions(id, name, started, duration_ns, command, requests, ...)
  requests(session, seq, unique_id, op, nodeid, fh, path, pid, comm, start_ns, dur_ns, err, state, bytes, name, offset, size, ...)
  frames(session, seq, t_ns, dir, unique_id, op, error, len, cap_len, data, write_errno, ...)
  fusetrace query "SELECT path, dur_ns FROM requests WHERE op = 'LOOKUP' ORDER BY dur_ns DESC LIMIT 10"`,
    )
    .action((sql: string, opts: QueryOptions, cmd: Command) => {
      if (opts.json && opts.csv) throw new UserError('--json and --csv exclude each other');
      const file = dbPath(cmd);
      const db = openTraceDb(file, { readonly: true, complete: true });
      try {
        prepareQueryConnection(db);
        const stmt = prepareQuery(db, sql).raw(true).safeIntegers(true);
        const columns = stmt.columns().map((c) => c.name);
        const format: Format = opts.json ? 'json' : opts.csv ? 'csv' : process.stdout.isTTY === true ? 'table' : 'tsv';
        // Pipes and files are written synchronously by Node on Linux: chunks of 64 KiB keep memory flat.
        let chunk = '';
        const write = (s: string): void => {
          chunk += s;
          if (chunk.length >= 65536) {
            process.stdout.write(chunk);
            chunk = '';
          }
        };
        try {
          printRows(columns, stmt.iterate() as IterableIterator<unknown[]>, format, write);
        } catch (err) {
          throw sqlError(err);
        }
        process.stdout.write(chunk);
      } finally {
        db.close();
      }
    });
}

type Format = 'table' | 'tsv' | 'json' | 'csv';

/** A cell as text: exact integers, hex blobs, empty for NULL (table and tsv). */
function cellText(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (Buffer.isBuffer(v)) return v.toString('hex');
  return String(v);
}

/** JSON with 64-bit integers as exact numbers (digits, never rounded through a double). */
function jsonRow(columns: string[], row: unknown[]): string {
  const obj: Record<string, unknown> = {};
  columns.forEach((c, i) => {
    const v = row[i];
    obj[c] = Buffer.isBuffer(v) ? v.toString('hex') : v;
  });
  return JSON.stringify(obj, (_k, x) => (typeof x === 'bigint' ? `\u0000${x}` : x)).replace(/"\\u0000(-?\d+)"/g, '$1');
}

function csvCell(v: unknown): string {
  const s = cellText(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** Writes the rows; `table` holds them to align the columns (a terminal shows a screenful anyway). */
function printRows(columns: string[], rows: IterableIterator<unknown[]>, format: Format, write: (s: string) => void): void {
  if (format === 'json') {
    for (const r of rows) write(jsonRow(columns, r) + '\n');
    return;
  }
  if (format === 'csv') {
    write(columns.map(csvCell).join(',') + '\r\n');
    for (const r of rows) write(r.map(csvCell).join(',') + '\r\n');
    return;
  }
  if (format === 'tsv') {
    // A tab or newline inside a cell would break the columns: shown as a space.
    const clean = (v: unknown): string => cellText(v).replace(/[\t\r\n]/g, ' ');
    write(columns.join('\t') + '\n');
    for (const r of rows) write(r.map(clean).join('\t') + '\n');
    return;
  }
  const cells = [...rows].map((r) => r.map((v) => cellText(v).replace(/[\t\r\n]/g, ' ')));
  const numeric = columns.map((_, i) => cells.length > 0 && cells.every((r) => r[i] === '' || /^-?\d+(\.\d+)?(e[+-]?\d+)?$/i.test(r[i]!)));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i]!.length)));
  const line = (r: string[]): string => r.map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd() + '\n';
  write(line(columns));
  for (const r of cells) write(line(r));
  write(`(${cells.length} row${cells.length === 1 ? '' : 's'})\n`);
}
