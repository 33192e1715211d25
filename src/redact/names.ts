/**
 * Stable pseudonyms for file names, xattr names and paths in a redacted bundle: the same name
 * always gets the same token within one bundle (keyed HMAC-SHA256), so paths, renames and
 * directory listings stay consistent and a diff of two sessions of one bundle still lines up.
 *
 * The key is random per bundle unless a salt is given: without the salt nobody can test a guess
 * ("is n4c6… secret-plan.txt?") against the tokens. With the same --salt, two bundles share tokens.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';

/** Characters of a token: RFC 4648 base32, lower case (a-z, 2-7): valid in any file name. */
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';
/** Token length: 12 base32 characters = 60 bits, so two names of one trace practically never collide. */
const TOKEN_CHARS = 12;
/** An extension worth keeping: a short alphanumeric suffix (".txt", ".tar.gz" keeps ".gz"). */
const EXTENSION = /\.[A-Za-z0-9]{1,8}$/;

/**
 * xattr namespaces whose names the kernel or a security module defines (system.posix_acl_access,
 * security.selinux, security.capability): kept, they name a mechanism, not user data. Names in
 * other namespaces (user., trusted.) keep their namespace and lose the rest.
 */
const KEPT_XATTR_NAMESPACES = ['system.', 'security.'];

export class NameHasher {
  private readonly key: Buffer;
  private readonly cache = new Map<string, string>();

  /** `salt`: derive the key from it (stable across bundles); otherwise a random key. */
  constructor(opts: { salt?: string; keepExtensions?: boolean } = {}) {
    this.key = opts.salt === undefined ? randomBytes(32) : createHash('sha256').update(`fusetrace-redact\0${opts.salt}`).digest();
    this.keepExtensions = opts.keepExtensions ?? false;
  }

  readonly keepExtensions: boolean;

  /** The token for one path component; `.` and `..` (and the empty name) stay as they are. */
  name(name: string): string {
    if (name === '' || name === '.' || name === '..') return name;
    const hit = this.cache.get(name);
    if (hit !== undefined) return hit;
    const mac = createHmac('sha256', this.key).update(name, 'utf8').digest();
    let token = '';
    // 5 bits per character from the MAC's first bytes.
    let acc = 0;
    let bits = 0;
    for (let i = 0; token.length < TOKEN_CHARS; i++) {
      acc = (acc << 8) | mac[i]!;
      bits += 8;
      while (bits >= 5 && token.length < TOKEN_CHARS) {
        token += ALPHABET[(acc >> (bits - 5)) & 31];
        bits -= 5;
      }
      acc &= (1 << bits) - 1;
    }
    const ext = this.keepExtensions && !name.startsWith('.') ? EXTENSION.exec(name)?.[0] ?? '' : '';
    const out = token + ext;
    this.cache.set(name, out);
    return out;
  }

  /** A path with every component replaced (`/a/b.txt` -> `/<t1>/<t2>`); separators, `.` and `..` kept. */
  path(p: string): string {
    return p.split('/').map((c) => this.name(c)).join('/');
  }

  /** An xattr name: kernel-defined namespaces kept whole, others keep only their namespace. */
  xattrName(name: string): string {
    if (KEPT_XATTR_NAMESPACES.some((ns) => name.startsWith(ns))) return name;
    const dot = name.indexOf('.');
    return dot < 0 ? this.name(name) : `${name.slice(0, dot + 1)}${this.name(name.slice(dot + 1))}`;
  }
}
