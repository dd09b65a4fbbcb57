// Structured JSON logs (pino); human-readable lines when stdout is a terminal.
import pino from 'pino';

export type Logger = pino.Logger;

export function createLogger(level: string = 'info', opts: { pretty?: boolean } = {}): Logger {
  const pretty = opts.pretty ?? (process.stdout.isTTY === true);
  if (pretty) {
    // A small synchronous formatter instead of a transport worker: no extra thread, no extra package.
    const dest = {
      write(line: string) {
        try {
          const o = JSON.parse(line) as Record<string, unknown>;
          const { level: lv, time, msg, pid: _p, hostname: _h, ...rest } = o;
          const name = pino.levels.labels[lv as number] ?? String(lv);
          const extra = Object.keys(rest).length ? ' ' + JSON.stringify(rest) : '';
          process.stdout.write(`${new Date(time as number).toISOString()} ${name.toUpperCase().padEnd(5)} ${msg ?? ''}${extra}\n`);
        } catch { process.stdout.write(line); }
      },
    };
    return pino({ level, base: undefined }, dest);
  }
  return pino({ level, base: { pid: process.pid } }, pino.destination({ dest: 1, sync: false }));
}

export const silentLogger: Logger = pino({ level: 'silent' });
