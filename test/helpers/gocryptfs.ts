// gocryptfs (Debian package, built on go-fuse) as a real non-libfuse FUSE server for the tests.
import { spawnSync } from 'node:child_process';

/** The password every test cipher directory uses; passed with -extpass, never typed. */
const EXTPASS = 'echo pw';

/**
 * Creates a gocryptfs cipher directory in the existing empty `cipherDir`. -scryptn 10 keeps
 * the key derivation fast (tests do not need the default cost).
 */
export function gocryptfsInit(cipherDir: string): void {
  const r = spawnSync('gocryptfs', ['-init', '-q', '-scryptn', '10', '-extpass', EXTPASS, cipherDir], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    throw new Error(`gocryptfs -init ${cipherDir} failed: ${r.error?.message ?? (r.stderr || r.stdout).trim()}`);
  }
}

/**
 * Arguments that run gocryptfs in the foreground on `cipherDir`; the mountpoint comes last:
 * `runDirect('gocryptfs', gocryptfsArgs(cipher), mnt)`.
 */
export function gocryptfsArgs(cipherDir: string): string[] {
  return ['-fg', '-q', '-extpass', EXTPASS, cipherDir];
}
