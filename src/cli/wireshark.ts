/**
 * `fusetrace wireshark [--install]`: the Lua dissector for `export --format pcapng`. Prints the
 * path of the copy shipped in the package (regenerated from src/protocol's tables when it is
 * missing or out of date, so it always matches this fusetrace), or with --install writes it into
 * Wireshark's personal Lua plugin folder, where Wireshark and tshark load it by themselves.
 */
import path from 'node:path';
import type { Command } from 'commander';
import { UserError } from '../errors.js';
import { dissectorPath, generateDissector, personalPluginDir, writeIfChanged } from '../export/wireshark.js';

interface WiresharkOptions {
  install?: boolean;
}

export function registerWireshark(program: Command): void {
  program
    .command('wireshark')
    .description('Print the path of the Wireshark dissector for pcapng exports, or --install it')
    .option('--install', "copy it into Wireshark's personal Lua plugin folder")
    .addHelpText('after', '\n  tshark -X lua_script:$(fusetrace wireshark) -r trace.pcapng -Y \'fuse.opcode == "READ" && fuse.time > 0.01\'')
    .action((opts: WiresharkOptions) => {
      const text = generateDissector();
      const target = opts.install ? path.join(personalPluginDir(), 'fusetrace.lua') : dissectorPath();
      try {
        writeIfChanged(target, text);
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        throw new UserError(`cannot write ${target}: ${e.code === 'EACCES' || e.code === 'EPERM' ? 'permission denied' : e.message}`);
      }
      process.stdout.write(`${target}\n`);
    });
}
