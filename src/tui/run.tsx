/**
 * `runTui`: opens the trace file read-only, draws the App on the terminal's alternate screen, and
 * puts the terminal back however it ends: `q`, Ctrl-C, SIGTERM/SIGHUP, an exception in a render
 * or in a timer. `fusetrace tui` and `fusetrace record --tui` both call it.
 */
import React from 'react';
import { render } from 'ink';
import type { Database } from 'better-sqlite3';
import { UserError } from '../errors.js';
import { openTraceDb } from '../store/db.js';
import { App } from './components/App.js';
import { TuiSource } from './data.js';

export interface RunTuiOptions {
  /** Trace file path, or an open connection (the caller keeps ownership of it). */
  db: string | Database;
  /** Session id or name to open at once; undefined: the sessions view (or the only session). */
  session?: number | string;
  /** A recording in progress: re-read counts and rows every second (default: when a session of the file has no end yet). */
  live?: boolean;
}

/** xterm private modes: 1049 = alternate screen with saved cursor; 25 = cursor visible. */
const ENTER_ALT = '\x1b[?1049h\x1b[H';
const LEAVE_ALT = '\x1b[?25h\x1b[?1049l';

/** Resolves SESSION (an id or a name) to a session id; a UserError names what is there. */
export function resolveSession(source: TuiSource, session: number | string | undefined): number | null {
  const ids = source.sessions();
  if (session === undefined) return ids.length === 1 ? ids[0]!.id : null;
  const text = String(session).trim();
  const byId = /^\d+$/.test(text) ? ids.find((s) => s.id === Number(text)) : undefined;
  const found = byId ?? ids.find((s) => s.name === text);
  if (!found) {
    const known = ids.map((s) => (s.name ? `${s.id} (${s.name})` : String(s.id))).join(', ') || 'none';
    throw new UserError(`no session ${text} in the trace file (sessions: ${known})`);
  }
  return found.id;
}

/**
 * Runs the TUI until the user quits. Resolves when the terminal is restored; rejects (after
 * restoring it) with the error that ended it.
 */
export async function runTui(opts: RunTuiOptions): Promise<void> {
  const stdout = process.stdout;
  if (!process.stdin.isTTY || !stdout.isTTY) throw new UserError('tui needs a terminal: stdin and stdout must be a tty (for scripts use show, stats or export)');
  const db = typeof opts.db === 'string' ? openTraceDb(opts.db, { readonly: true, complete: true }) : opts.db;
  const ownsDb = typeof opts.db === 'string';
  try {
    const source = new TuiSource(db);
    const session = resolveSession(source, opts.session);

    let restored = false;
    const restore = () => {
      if (restored) return;
      restored = true;
      try {
        if (process.stdin.isTTY) process.stdin.setRawMode(false);
      } catch {
        // stdin may already be closed.
      }
      stdout.write(LEAVE_ALT);
    };
    let fatal: unknown;
    let instance: ReturnType<typeof render> | undefined;
    const onFatal = (err: unknown) => {
      fatal ??= err;
      instance?.unmount();
      restore();
    };
    const onSignal = (sig: NodeJS.Signals) => {
      instance?.unmount();
      restore();
      process.exitCode = 128 + (sig === 'SIGHUP' ? 1 : 15);
    };
    // An exception in a timer or an effect would otherwise kill the process with the terminal
    // still in raw mode on the alternate screen.
    process.on('uncaughtException', onFatal);
    process.on('unhandledRejection', onFatal);
    process.on('SIGTERM', onSignal);
    process.on('SIGHUP', onSignal);
    process.on('exit', restore);
    stdout.write(ENTER_ALT);
    try {
      // A trace another `record` is still writing (a session without an end) is followed too, as
      // under `record --tui`: counts and the rows on screen are re-read every second. A session
      // whose recorder was killed also has no end; following it costs one small query a second.
      const live = opts.live ?? source.sessions().some((s) => s.durationNs === null);
      instance = render(<App source={source} session={session} live={live} />, { exitOnCtrlC: false, patchConsole: true });
      await instance.waitUntilExit();
    } catch (err) {
      fatal ??= err;
    } finally {
      instance?.unmount();
      restore();
      process.off('uncaughtException', onFatal);
      process.off('unhandledRejection', onFatal);
      process.off('SIGTERM', onSignal);
      process.off('SIGHUP', onSignal);
      process.off('exit', restore);
    }
    if (fatal !== undefined) throw fatal;
  } finally {
    if (ownsDb) db.close();
  }
}
