import { describe, expect, it } from 'vitest';
import { NameHasher } from './names.js';

describe('NameHasher', () => {
  it('gives a name the same token every time and different names different tokens', () => {
    const h = new NameHasher({ salt: 's' });
    expect(h.name('plan.txt')).toBe(h.name('plan.txt'));
    expect(h.name('plan.txt')).not.toBe(h.name('plan.txt2'));
    expect(h.name('plan.txt')).toMatch(/^[a-z2-7]{12}$/);
  });

  it('derives tokens from the salt: same salt, same tokens; no salt, a random key', () => {
    expect(new NameHasher({ salt: 'a' }).name('x')).toBe(new NameHasher({ salt: 'a' }).name('x'));
    expect(new NameHasher({ salt: 'a' }).name('x')).not.toBe(new NameHasher({ salt: 'b' }).name('x'));
    expect(new NameHasher().name('x')).not.toBe(new NameHasher().name('x'));
  });

  it('keeps extensions when asked, never for dot files', () => {
    const h = new NameHasher({ salt: 's', keepExtensions: true });
    expect(h.name('report.pdf')).toMatch(/^[a-z2-7]{12}\.pdf$/);
    expect(h.name('archive.tar.gz')).toMatch(/^[a-z2-7]{12}\.gz$/);
    expect(h.name('.bashrc')).toMatch(/^[a-z2-7]{12}$/);
  });

  it('maps paths component by component, keeping /, . and ..', () => {
    const h = new NameHasher({ salt: 's' });
    expect(h.path('/a/./b/../c')).toBe(`/${h.name('a')}/./${h.name('b')}/../${h.name('c')}`);
    expect(h.path('/')).toBe('/');
  });

  it('keeps kernel-defined xattr names and the namespace of the others', () => {
    const h = new NameHasher({ salt: 's' });
    expect(h.xattrName('system.posix_acl_access')).toBe('system.posix_acl_access');
    expect(h.xattrName('security.selinux')).toBe('security.selinux');
    expect(h.xattrName('user.secret')).toBe(`user.${h.name('secret')}`);
  });
});
