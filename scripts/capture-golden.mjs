// Converts an `strace -f -y -ttt -xx` log of a FUSE server into a frame fixture:
//   { "server": NAME, "frames": [ { "dir": "rx" | "tx", "hex": "...", "writeErrno"?: "ENOENT" }, ... ] }
// rx = read() from /dev/fuse (a kernel request), tx = write()/writev() to it (a reply or notify).
// writev() iovecs are joined: the kernel sees one frame per writev().
// Usage: node scripts/capture-golden.mjs TRACE OUT.json NAME
import { readFileSync, writeFileSync } from 'node:fs';

const [trace, outPath, name] = process.argv.slice(2);
if (!trace || !outPath || !name) {
  console.error('usage: capture-golden.mjs TRACE OUT.json NAME');
  process.exit(2);
}

const lines = readFileSync(trace, 'utf8').split('\n');
const pending = new Map(); // pid -> text of an `<unfinished ...>` call on /dev/fuse
const frames = [];
const hexOf = (s) => s.replace(/\\x/g, '');
// -xx hex-escapes the fd's path too: 3<\x2f\x64...>.
const unescape = (s) => s.replace(/\\x([0-9a-f]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16)));
const fdPath = (rest) => {
  const m = /^\w+\(\d+<([^>]*)>/.exec(rest);
  return m ? unescape(m[1]) : undefined;
};
const strRe = /"((?:\\x[0-9a-f]{2})*)"/g;

for (const line of lines) {
  const m = /^(\d+)\s+([\d.]+)\s+(.*)$/.exec(line);
  if (!m) continue;
  const [, pid, , restRaw] = m;
  let rest = restRaw;
  if (rest.endsWith('<unfinished ...>')) {
    if (fdPath(rest) === '/dev/fuse') pending.set(pid, rest.slice(0, -'<unfinished ...>'.length));
    continue;
  }
  const resumed = /^<\.\.\. (\w+) resumed>(.*)$/.exec(rest);
  if (resumed) {
    const head = pending.get(pid);
    pending.delete(pid);
    if (!head) continue;
    rest = head + resumed[2];
  }
  const call = /^(read|write|writev)\((\d+)<([^>]*)>, (.*)\) += (-?\d+)(?: (\w+))?/.exec(rest);
  if (!call || unescape(call[3]) !== '/dev/fuse') continue;
  const [, sys, , , args, retStr, errName] = call;
  const ret = Number(retStr);
  if (sys === 'read') {
    if (ret <= 0) continue; // EINTR, ENODEV at unmount, EOF
    const s = /^"((?:\\x[0-9a-f]{2})*)"/.exec(args);
    if (!s) throw new Error(`cannot parse read buffer: ${line.slice(0, 200)}`);
    const hex = hexOf(s[1]);
    if (hex.length / 2 !== ret) throw new Error(`read returned ${ret} but strace printed ${hex.length / 2} bytes`);
    frames.push({ dir: 'rx', hex });
  } else {
    let hex = '';
    if (sys === 'write') {
      const s = /^"((?:\\x[0-9a-f]{2})*)"/.exec(args);
      if (!s) throw new Error(`cannot parse write buffer: ${line.slice(0, 200)}`);
      hex = hexOf(s[1]);
    } else {
      for (const s of args.matchAll(strRe)) hex += hexOf(s[1]);
    }
    const frame = { dir: 'tx', hex };
    if (ret < 0) frame.writeErrno = errName;
    else if (hex.length / 2 !== ret) throw new Error(`write returned ${ret} of ${hex.length / 2} bytes`);
    frames.push(frame);
  }
}

writeFileSync(outPath, JSON.stringify({ server: name, frames }, null, 1) + '\n');
console.log(`${outPath}: ${frames.length} frames`);
