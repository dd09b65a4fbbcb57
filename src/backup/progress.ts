// Progress of long backup steps on stderr (stdout stays clean for --json): one line when a
// step starts, one every 10 s while it runs, one when it ends.
export class Progress {
  constructor(private readonly quiet = false, private readonly out: (line: string) => void = (l) => process.stderr.write(l + '\n')) {}

  note(msg: string): void { if (!this.quiet) this.out(`pgring backup: ${msg}`); }

  async step<T>(what: string, fn: () => Promise<T>): Promise<T> {
    const t0 = Date.now();
    this.note(`${what} ...`);
    const tick = setInterval(() => this.note(`${what}: still running (${Math.round((Date.now() - t0) / 1000)} s)`), 10000);
    try {
      const r = await fn();
      this.note(`${what}: done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      return r;
    } catch (e) {
      this.note(`${what}: FAILED after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      throw e;
    } finally { clearInterval(tick); }
  }
}
