/** Reading `fedmq`'s arguments before any command module loads (entry.ts): this file imports nothing. */

/** The command `argv` (the arguments after `fedmq`) names: its first word after the global `--log-level L`, or undefined. */
export function commandOf(argv: readonly string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--log-level') i++;
    else if (!a.startsWith('-')) return a;
  }
  return undefined;
}
