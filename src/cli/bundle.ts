/**
 * `fusetrace bundle [SESSION...] -o FILE.db --redact CLASSES [--keep-extensions] [--salt TEXT]`:
 * a new trace file with the chosen sessions (default: the latest), redacted for sharing. Every
 * command that reads a trace (show, stats, export, tui, replay) reads a bundle.
 */
import type { Command } from 'commander';
import { UserError } from '../errors.js';
import { dbPath } from './options.js';
import { openTraceDb } from '../store/db.js';
import { TraceReader } from '../store/reader.js';
import { REDACT_CLASSES, type RedactClass } from '../redact/frames.js';
import { NameHasher } from '../redact/names.js';
import { writeBundle } from '../redact/bundle.js';

interface BundleCliOptions {
  output?: string;
  redact?: string;
  keepExtensions?: boolean;
  salt?: string;
}

/** Parses `names,data` (or `all`) into the set of classes; a mistake is one line naming the valid ones. */
export function parseRedact(text: string): Set<RedactClass> {
  const out = new Set<RedactClass>();
  for (const word of text.split(',').map((w) => w.trim()).filter(Boolean)) {
    if (word === 'all') REDACT_CLASSES.forEach((c) => out.add(c));
    else if ((REDACT_CLASSES as readonly string[]).includes(word)) out.add(word as RedactClass);
    else throw new UserError(`unknown --redact class '${word}' (expected ${REDACT_CLASSES.join(', ')} or all)`);
  }
  if (out.size === 0) throw new UserError(`--redact needs at least one of ${REDACT_CLASSES.join(', ')} or all`);
  return out;
}

export function registerBundle(program: Command): void {
  program
    .command('bundle')
    .description('Write sessions to a new trace file with file names, data, xattrs and symlink targets redacted')
    .argument('[sessions...]', 'session ids or names (default: the latest)')
    .requiredOption('-o, --output <file>', 'the new trace file (must not exist)')
    .requiredOption('--redact <classes>', `what to remove: ${REDACT_CLASSES.join(',')} or all`)
    .option('--keep-extensions', 'keep file name extensions (.txt) after the hashed names')
    .option('--salt <text>', 'derive the name hashes from TEXT: bundles made with the same salt share hashes')
    .action((sessions: string[], opts: BundleCliOptions, cmd: Command) => {
      const classes = parseRedact(opts.redact ?? '');
      const file = dbPath(cmd);
      const db = openTraceDb(file, { readonly: true, complete: true });
      try {
        const reader = new TraceReader(db, file);
        const ids = sessions.length === 0 ? [reader.resolveSession()] : [...new Set(sessions.map((s) => reader.resolveSession(s)))];
        const hasher = new NameHasher({ salt: opts.salt, keepExtensions: opts.keepExtensions });
        const out = writeBundle(db, file, ids, opts.output!, { classes, hasher });
        process.stderr.write(
          `fusetrace: ${opts.output}: ${out.length === 1 ? 'session' : 'sessions'} ${ids.join(', ')} as ${out.join(', ')}, redacted: ${[...classes].join(', ')}\n`,
        );
      } finally {
        db.close();
      }
    });
}
