/**
 * Bookkeeping that only needs the recent past: a replay of a million requests must not remember
 * every unique it sent. Each keeps its newest entries (insertion order): at least the last `cap`
 * inserted and at most 2 * cap; the replay deletes entries as soon as it is done with them, so the
 * cap is a bound, not the normal way out.
 *
 * Two generations: entries go into the young one; once it holds `cap`, it becomes the old one and
 * the previous old one is dropped whole. Dropping the oldest entry one at a time instead
 * (`keys().next()` then `delete`) cost about 8 us an insertion at the cap: a V8 Map iterator
 * starts at the front of the table and walks over every slot deleted there since the last rehash.
 */
/** A Map of the recent past: its newest `cap` to 2 * cap entries. */
export class RecentMap<K, V> {
  private young = new Map<K, V>();
  private old = new Map<K, V>();

  constructor(private readonly cap: number) {}

  get size(): number {
    return this.young.size + this.old.size;
  }

  // Each lookup first asks whether a generation is empty: a lookup hashes its key even in an empty
  // map (a bigint key: 20-40 ns, against 1-2 ns for the size), and the replay's maps are often
  // empty (notSent) or have an empty old generation until they first reach the cap.
  get(key: K): V | undefined {
    // A key is in one generation at most (set() takes it out of the old one).
    const v = this.young.size > 0 ? this.young.get(key) : undefined;
    return v !== undefined || this.old.size === 0 ? v : this.old.get(key);
  }

  has(key: K): boolean {
    return (this.young.size > 0 && this.young.has(key)) || (this.old.size > 0 && this.old.has(key));
  }

  set(key: K, value: V): this {
    if (this.old.size > 0) this.old.delete(key);
    this.young.set(key, value);
    if (this.young.size >= this.cap) {
      this.old = this.young;
      this.young = new Map();
    }
    return this;
  }

  delete(key: K): boolean {
    return (this.young.size > 0 && this.young.delete(key)) || (this.old.size > 0 && this.old.delete(key));
  }
}

/** A Set of the recent past: its newest `cap` to 2 * cap values. */
export class RecentSet<T> {
  private young = new Set<T>();
  private old = new Set<T>();

  constructor(private readonly cap: number) {}

  get size(): number {
    return this.young.size + this.old.size;
  }

  has(value: T): boolean {
    return (this.young.size > 0 && this.young.has(value)) || (this.old.size > 0 && this.old.has(value));
  }

  add(value: T): this {
    if (this.old.size > 0) this.old.delete(value);
    this.young.add(value);
    if (this.young.size >= this.cap) {
      this.old = this.young;
      this.young = new Set();
    }
    return this;
  }

  delete(value: T): boolean {
    return (this.young.size > 0 && this.young.delete(value)) || (this.old.size > 0 && this.old.delete(value));
  }
}
