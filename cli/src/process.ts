/** Process-level helpers shared by the `fedmq` commands (main.ts, node-main.ts). */
import { Option, type Command } from 'commander';
import { isFedmqError } from '@fedmq/protocol';

/** The global `--log-level` option of `fedmq` (the JSON logs on stderr). */
export function logLevelOption(): Option {
  return new Option('--log-level <level>', 'log level of the JSON logs on stderr').choices(['trace', 'debug', 'info', 'warn', 'error', 'silent']);
}

/** Runs `stop` on the first SIGINT/SIGTERM; a second signal exits at once. */
export function onSignal(stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (sig: NodeJS.Signals) => {
    if (stopping) process.exit(130);
    stopping = true;
    process.stderr.write(`\n${sig}: stopping…\n`);
    stop().then(() => process.exit(0), () => process.exit(1));
  };
  process.on('SIGINT', handler).on('SIGTERM', handler);
}

/**
 * The stable code of an error, to print before its message: a FedmqError's `FEDMQ_*` code, or the
 * `code` of any other error when it is an upper-case identifier with an underscore (`ML_BAD_DATA`
 * of @fedmq/ml, Node's `ERR_*`), unless the message already starts with it. Undefined otherwise
 * (commander's own codes, Node's `ENOENT`, whose message names it).
 */
export function errorCode(err: unknown): string | undefined {
  if (isFedmqError(err)) return err.code;
  const code = (err as { code?: unknown } | null)?.code;
  if (!(err instanceof Error) || typeof code !== 'string' || !/^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$/.test(code)) return undefined;
  return err.message.startsWith(code) ? undefined : code;
}

/** Parses `process.argv` with `program`; an error ends the process with `fedmq: CODE: message` on stderr and exit code 1, not a stack trace. */
export function runProgram(program: Command): void {
  program.parseAsync().catch((err: unknown) => {
    const code = errorCode(err);
    process.stderr.write(`fedmq: ${code ? `${code}: ` : ''}${(err as Error)?.message ?? err}\n`);
    process.exit(1);
  });
}
