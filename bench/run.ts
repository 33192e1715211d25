/**
 * `npm run bench [-- SECTION...]`: runs the named benchmark sections, all of them by default.
 * To add a section, add one line to SECTIONS.
 */
import { benchStore } from './store.js';
import { benchRecord } from './record.js';
import { benchTui } from './tui.js';
import { benchQuery } from './query.js';
import { benchLedger } from './ledger.js';
import { benchDerive } from './derive.js';
import { benchReplay } from './replay.js';
import { benchAttach } from './attach.js';

const SECTIONS: Record<string, () => Promise<void>> = {
  store: benchStore,
  record: benchRecord,
  tui: benchTui,
  query: benchQuery,
  ledger: benchLedger,
  derive: benchDerive,
  replay: benchReplay,
  attach: benchAttach,
};

async function main(argv: string[]): Promise<number> {
  const unknown = argv.filter((name) => !(name in SECTIONS));
  if (unknown.length > 0) {
    process.stderr.write(`bench: unknown section ${unknown.join(', ')} (sections: ${Object.keys(SECTIONS).join(', ')})\n`);
    return 2;
  }
  for (const name of argv.length > 0 ? argv : Object.keys(SECTIONS)) {
    process.stdout.write(`== ${name}\n`);
    await SECTIONS[name]();
  }
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  },
);
