/**
 * An error caused by the user's input or environment (bad flag, missing file, no /dev/fuse).
 * main.ts prints its message as one line on stderr and exits with `exitCode` (2 by default),
 * without a stack. Any other exception is an internal error and keeps its stack.
 */
export class UserError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 2) {
    super(message);
    this.name = 'UserError';
    this.exitCode = exitCode;
  }
}
