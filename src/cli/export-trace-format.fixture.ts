/**
 * A checker of the Chrome trace event format (the JSON Object Format of
 * https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU), strict on the
 * subset `fusetrace export --format perfetto` writes; shared by the export tests.
 */
const PHASES = new Set(['B', 'E', 'X', 'i', 'I', 'C', 'b', 'n', 'e', 's', 't', 'f', 'P', 'N', 'O', 'D', 'M', 'R', 'c']);
const METADATA_NAMES = new Set(['process_name', 'process_labels', 'process_sort_index', 'thread_name', 'thread_sort_index']);

/** Every violation found, empty when the document is valid. */
export function checkChromeTrace(doc: unknown): string[] {
  const errors: string[] = [];
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return ['top level must be an object (JSON Object Format)'];
  const d = doc as Record<string, unknown>;
  if (!Array.isArray(d.traceEvents)) return ['traceEvents must be an array'];
  if (d.displayTimeUnit !== undefined && d.displayTimeUnit !== 'ms' && d.displayTimeUnit !== 'ns') errors.push('displayTimeUnit must be ms or ns');
  const num = (v: unknown) => typeof v === 'number' && Number.isFinite(v);
  const int = (v: unknown) => Number.isInteger(v);
  // Complete events on one thread must nest: check with a stack per (pid, tid), sorted by ts.
  const byThread = new Map<string, Array<{ ts: number; end: number }>>();
  d.traceEvents.forEach((e, i) => {
    const at = `event ${i}`;
    if (typeof e !== 'object' || e === null) return errors.push(`${at}: not an object`);
    const ev = e as Record<string, unknown>;
    if (typeof ev.ph !== 'string' || !PHASES.has(ev.ph)) return errors.push(`${at}: bad ph ${JSON.stringify(ev.ph)}`);
    if (typeof ev.name !== 'string') errors.push(`${at}: name must be a string`);
    if (!int(ev.pid)) errors.push(`${at}: pid must be an integer`);
    if (ev.tid !== undefined && !int(ev.tid)) errors.push(`${at}: tid must be an integer`);
    if (ev.cat !== undefined && typeof ev.cat !== 'string') errors.push(`${at}: cat must be a string`);
    if (ev.args !== undefined && (typeof ev.args !== 'object' || ev.args === null || Array.isArray(ev.args))) errors.push(`${at}: args must be an object`);
    switch (ev.ph) {
      case 'X':
        if (!num(ev.ts)) errors.push(`${at}: X needs a numeric ts`);
        if (!num(ev.dur) || (ev.dur as number) < 0) errors.push(`${at}: X needs a non-negative dur`);
        if (!int(ev.tid)) errors.push(`${at}: X needs a tid`);
        {
          const k = `${ev.pid}/${ev.tid}`;
          const list = byThread.get(k) ?? [];
          list.push({ ts: ev.ts as number, end: (ev.ts as number) + (ev.dur as number) });
          byThread.set(k, list);
        }
        break;
      case 'i':
      case 'I':
        if (!num(ev.ts)) errors.push(`${at}: instant needs a numeric ts`);
        if (ev.s !== undefined && !['g', 'p', 't'].includes(ev.s as string)) errors.push(`${at}: instant scope must be g, p or t`);
        if ((ev.s === undefined || ev.s === 't') && !int(ev.tid)) errors.push(`${at}: thread-scoped instant needs a tid`);
        break;
      case 'M':
        if (!METADATA_NAMES.has(ev.name as string)) errors.push(`${at}: unknown metadata name ${String(ev.name)}`);
        if (typeof ev.args !== 'object' || ev.args === null) errors.push(`${at}: metadata needs args`);
        else if ((ev.name === 'process_name' || ev.name === 'thread_name') && typeof (ev.args as Record<string, unknown>).name !== 'string')
          errors.push(`${at}: ${String(ev.name)} needs args.name`);
        if (String(ev.name).startsWith('thread_') && !int(ev.tid)) errors.push(`${at}: thread metadata needs a tid`);
        break;
      default:
        errors.push(`${at}: fusetrace never writes ph ${ev.ph}`);
    }
  });
  for (const [k, list] of byThread) {
    list.sort((a, b) => a.ts - b.ts || b.end - a.end);
    const stack: Array<{ ts: number; end: number }> = [];
    for (const s of list) {
      while (stack.length && stack[stack.length - 1].end <= s.ts) stack.pop();
      if (stack.length && s.end > stack[stack.length - 1].end) errors.push(`thread ${k}: slice at ${s.ts} overlaps without nesting`);
      stack.push(s);
    }
  }
  return errors;
}

