import type { Command } from "commander";
/** Placeholder until the bundle command lands in the next commit. */
export function registerBundle(_p: Command): void {}
