/**
 * `fusetrace query`: read-only SQL over stable views of a trace file. The tables of schema.ts may
 * change with the format version; these views are the interface users' queries are written
 * against, and README.md documents each column (keep the two in step).
 *
 * The views are TEMP views made on a connection opened with SQLITE_OPEN_READONLY, which is then
 * put in `PRAGMA query_only`: nothing a query says can change the file. Statements are also
 * checked before they run, so that a write is refused with a clear line instead of SQLite's
 * "attempt to write a readonly database".
 */
import BetterSqlite3 from 'better-sqlite3';
import type { Database, Statement } from 'better-sqlite3';
import { UserError } from '../errors.js';
import { TraceReader } from './reader.js';
import { decodeRequest, errnoName, Opcode, opcodeName, OUT_HEADER_SIZE, IN_HEADER_SIZE, structs } from '../protocol/index.js';

/** Payload bytes before a WRITE's data: fuse_in_header + fuse_write_in. */
const WRITE_HEADERS = IN_HEADER_SIZE + structs.fuse_write_in.size;

/**
 * The views, in the order README.md lists them. Decoded argument columns (`name`, `offset`, `size`)
 * read the request frame only when a query names them (SQLite drops a view's unused columns).
 */
const VIEWS_SQL = `
CREATE TEMP VIEW sessions AS
  SELECT id, name,
         strftime('%Y-%m-%dT%H:%M:%fZ', started_wall_ns / 1e9, 'unixepoch') AS started,
         started_wall_ns,
         ended_mono_ns - started_mono_ns AS duration_ns,
         command, mountpoint, end_reason, server_exit_code, server_signal, exit_status,
         frames, bytes, dropped, snaplen, kernel_major, kernel_minor, server_major, server_minor, max_write,
         json_extract(meta, '$.transport') AS transport,
         (SELECT count(*) FROM main.requests r WHERE r.session = s.id) AS requests
    FROM main.sessions s;

CREATE TEMP VIEW requests AS
  SELECT session, seq, unique_id, fusetrace_op(opcode) AS op, opcode, nodeid, fh, path, pid, comm, uid, gid,
         start_ns, fwd_ns, reply_ns, dur_ns, errno, fusetrace_err(errno) AS err, state, outcome, background,
         len, reply_len,
         CASE WHEN errno = 0 AND opcode = ${Opcode.READ} THEN max(reply_len - ${OUT_HEADER_SIZE}, 0)
              WHEN errno = 0 AND opcode = ${Opcode.WRITE} THEN max(len - ${WRITE_HEADERS}, 0) END AS bytes,
         fusetrace_arg(session, seq, 'name') AS name,
         fusetrace_arg(session, seq, 'offset') AS "offset",
         fusetrace_arg(session, seq, 'size') AS size,
         reply_seq, interrupt_seq
    FROM main.requests r;

CREATE TEMP VIEW frames AS
  SELECT s.id AS session, f.seq, f.ts_ns - s.started_mono_ns AS t_ns, f.ts_ns, f.fwd_ns,
         CASE f.dir WHEN 0 THEN 'rx' ELSE 'tx' END AS dir,
         f.unique_id, f.opcode, CASE WHEN f.dir = 0 THEN fusetrace_op(f.opcode) END AS op,
         f.error, f.len, f.cap_len, f.data, f.write_errno
    FROM main.sessions s, fusetrace_frames(s.id) f;
`;

/** Names of the views, for messages. */
export const QUERY_VIEWS = ['sessions', 'requests', 'frames'] as const;

/** The request's first struct field of that name, or its first file name; NULL when it has none. */
function requestArg(data: Buffer | null, field: string): string | number | bigint | null {
  if (!data) return null;
  const f = decodeRequest(data).frame;
  if (!f) return null;
  if (field === 'name') return f.names[0] ?? null;
  const v = f.args[0]?.[field];
  return typeof v === 'number' || typeof v === 'bigint' ? v : null;
}

/**
 * Makes `db` (opened read-only by openTraceDb) a query connection: the helper functions, the TEMP
 * views, then query_only, after which not even TEMP objects can be made.
 *
 * Frames have no table (schema.ts format 5): the `frames` view and the request arguments read
 * them out of their batches in JavaScript, through a second read-only connection to the same
 * file (better-sqlite3 refuses statements on a connection while it runs a query), closed with
 * `db`. The `frames` view decodes every batch of the sessions the query names (all of them when
 * its WHERE does not say `session = N`).
 */
export function prepareQueryConnection(db: Database): void {
  if (!db.readonly) throw new TypeError('prepareQueryConnection: the connection must be read-only');
  const lookup = new BetterSqlite3(db.name, { readonly: true, fileMustExist: true });
  const close = db.close.bind(db);
  db.close = () => {
    if (lookup.open) lookup.close();
    return close();
  };
  const reader = new TraceReader(lookup);
  db.function('fusetrace_op', { deterministic: true }, (op: unknown) => (op === null ? null : opcodeName(Number(op))));
  db.function('fusetrace_err', { deterministic: true }, (e: unknown) => (e === null || Number(e) <= 0 ? null : errnoName(Number(e))));
  db.function('fusetrace_arg', { deterministic: true, safeIntegers: true }, (session: unknown, seq: unknown, field: unknown) => {
    const [f] = reader.framesAt(Number(session), [Number(seq)]);
    return requestArg(f?.data ?? null, String(field));
  });
  // A table-valued function of the session (the view joins it to each sessions row): a query
  // on one session decodes only that session's batches.
  db.table('fusetrace_frames', {
    columns: ['seq', 'ts_ns', 'fwd_ns', 'dir', 'unique_id', 'opcode', 'error', 'len', 'cap_len', 'data', 'write_errno'],
    parameters: ['session'],
    safeIntegers: true,
    *rows(session: unknown) {
      for (const f of reader.frames(Number(session))) {
        yield [f.seq, f.tsNs, f.fwdNs, f.dir, BigInt.asIntN(64, f.unique), f.opcode, f.error, f.len, f.data.length, f.data, f.writeErrno];
      }
    },
  });
  db.exec(VIEWS_SQL);
  db.pragma('query_only = 1');
}

/**
 * PRAGMAs that only read. `PRAGMA name(arg)` is the same as `PRAGMA name = arg` for a pragma that
 * holds a setting, so only the table-valued ones (TABLE_PRAGMAS) may take an argument; the others
 * are allowed bare. Every pragma not listed is refused (many change the connection).
 */
const TABLE_PRAGMAS = new Set(['table_info', 'table_xinfo', 'table_list', 'index_list', 'index_info', 'index_xinfo', 'foreign_key_list']);
const BARE_PRAGMAS = new Set([
  'database_list', 'function_list', 'pragma_list', 'module_list', 'collation_list', 'compile_options', 'user_version',
  'application_id', 'page_size', 'page_count', 'freelist_count', 'encoding', 'schema_version', 'data_version', 'journal_mode',
]);

/** The statement's text without leading whitespace and comments. */
function stripLeading(sql: string): string {
  let s = sql;
  for (;;) {
    const t = s.replace(/^\s+/, '');
    if (t.startsWith('--')) s = t.slice(t.indexOf('\n') < 0 ? t.length : t.indexOf('\n'));
    else if (t.startsWith('/*')) s = t.slice(t.indexOf('*/') < 0 ? t.length : t.indexOf('*/') + 2);
    else return t;
  }
}

/** Statements that change a database or the connection, refused by their first word. */
const WRITE_KEYWORDS = new Set([
  'INSERT', 'UPDATE', 'DELETE', 'REPLACE', 'UPSERT', 'CREATE', 'DROP', 'ALTER', 'VACUUM', 'REINDEX', 'ANALYZE',
  'BEGIN', 'COMMIT', 'END', 'ROLLBACK', 'SAVEPOINT', 'RELEASE',
]);

const READ_ONLY_HINT = 'query only reads (SELECT, WITH, VALUES, EXPLAIN, or a PRAGMA that reads)';

/** Refuses what would change the file or the connection, with one line; then prepares the statement. */
export function prepareQuery(db: Database, sql: string): Statement {
  const head = stripLeading(sql);
  const keyword = /^[A-Za-z]+/.exec(head)?.[0]?.toUpperCase() ?? '';
  if (keyword === '') throw new UserError('query needs an SQL statement, e.g. "SELECT op, count(*) FROM requests GROUP BY op"');
  if (keyword === 'ATTACH' || keyword === 'DETACH') throw new UserError(`${keyword} is refused: ${READ_ONLY_HINT}, and only this trace file`);
  if (WRITE_KEYWORDS.has(keyword)) throw new UserError(`${keyword} is refused: ${READ_ONLY_HINT}; the trace file is never changed`);
  if (keyword === 'PRAGMA') {
    const m = /^PRAGMA\s+(?:(\w+)\s*\.\s*)?(\w+)\s*(=|\()?/i.exec(head);
    const name = m?.[2]?.toLowerCase() ?? '';
    const arg = m?.[3];
    const ok = arg === undefined ? TABLE_PRAGMAS.has(name) || BARE_PRAGMAS.has(name) : arg === '(' && TABLE_PRAGMAS.has(name);
    if (!ok) {
      const what = `PRAGMA ${name || '?'}${arg === '=' ? ' = ...' : arg === '(' ? '(...)' : ''}`;
      throw new UserError(`${what} is refused: ${READ_ONLY_HINT}, e.g. PRAGMA table_info(requests) or PRAGMA user_version`);
    }
  }
  let stmt: Statement;
  try {
    stmt = db.prepare(sql);
  } catch (err) {
    throw sqlError(err);
  }
  // reader: the statement returns rows. readonly: it changes no database (UPDATE ... RETURNING reads
  // rows and writes; BEGIN, SAVEPOINT and the like return none).
  if (!stmt.reader || !stmt.readonly) throw new UserError(`${keyword} is refused: ${READ_ONLY_HINT}; the trace file is never changed`);
  return stmt;
}

/** An SQLite or better-sqlite3 error as one line for the user. */
export function sqlError(err: unknown): Error {
  if (err instanceof RangeError && /more than one statement/.test(err.message)) {
    return new UserError('query runs one statement at a time (remove what follows the first ";")');
  }
  const code = (err as { code?: string }).code;
  if (typeof code === 'string' && code.startsWith('SQLITE_')) {
    const msg = (err as Error).message.replace(/\s+/g, ' ');
    if (code === 'SQLITE_READONLY' || /cannot modify .* because it is a view/.test(msg)) return new UserError(`refused: ${READ_ONLY_HINT}; the trace file is never changed (${msg})`);
    return new UserError(`SQL error: ${msg} (views: ${QUERY_VIEWS.join(', ')}; see README "fusetrace query")`);
  }
  return err instanceof Error ? err : new Error(String(err));
}
