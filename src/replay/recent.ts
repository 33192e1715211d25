/**
 * Bookkeeping that only needs the recent past: a replay of a million requests must not remember
 * every unique it sent. Each forgets its oldest entries (insertion order) beyond `cap`; the replay
 * deletes entries as soon as it is done with them, so the cap is a bound, not the normal way out.
 */
export class RecentMap<K, V> extends Map<K, V> {
  constructor(private readonly cap: number) {
    super();
  }

  override set(key: K, value: V): this {
    super.set(key, value);
    if (this.size > this.cap) this.delete(this.keys().next().value as K);
    return this;
  }
}

export class RecentSet<T> extends Set<T> {
  constructor(private readonly cap: number) {
    super();
  }

  override add(value: T): this {
    super.add(value);
    if (this.size > this.cap) this.delete(this.values().next().value as T);
    return this;
  }
}
