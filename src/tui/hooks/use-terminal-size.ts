import { useEffect, useState } from 'react';
import { useStdout } from 'ink';

/** The terminal's size, following SIGWINCH; `fixed` (tests) overrides it. */
export function useTerminalSize(fixed?: { columns?: number; rows?: number }): { columns: number; rows: number } {
  const { stdout } = useStdout();
  const read = () => ({
    columns: fixed?.columns ?? (stdout.columns || 100),
    rows: fixed?.rows ?? (stdout.rows || 30),
  });
  const [size, setSize] = useState(read);
  useEffect(() => {
    if (fixed?.columns !== undefined && fixed?.rows !== undefined) return;
    const onResize = () => setSize(read());
    stdout.on('resize', onResize);
    return () => {
      stdout.off('resize', onResize);
    };
    // read() only depends on stdout and fixed, which do not change for the app's lifetime.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [stdout]);
  return size;
}
