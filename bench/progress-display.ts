/**
 * The live line while a cell runs (cell, phase, elapsed, sagas done, rate, p50), rewritten in
 * place on a terminal; on anything else, a plain line every few seconds.
 */
export class ProgressDisplay {
  private readonly tty = Boolean(process.stdout.isTTY);
  private label = "";
  private phase = "";
  private startedAt = 0;
  private lastPlain = 0;
  private latest = { done: 0, p50: 0 };
  private timer?: NodeJS.Timeout;

  start(label: string, phase: string): void {
    this.label = label;
    this.phase = phase;
    this.startedAt = Date.now();
    this.latest = { done: 0, p50: 0 };
    this.lastPlain = Date.now();
    if (this.tty && !this.timer) this.timer = setInterval(() => this.render(), 250);
    if (!this.tty) this.line(`${label}: ${phase}`);
  }

  update(done: number, p50ms: number): void {
    this.latest = { done, p50: p50ms };
    if (!this.tty && Date.now() - this.lastPlain >= 5_000) {
      this.lastPlain = Date.now();
      this.line(this.text());
    }
  }

  /** A line that stays (a finished cell, a skip, a warning). */
  line(text: string): void {
    if (this.tty) process.stdout.write("\r\x1b[K");
    process.stdout.write(`${text}\n`);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.tty) process.stdout.write("\r\x1b[K");
  }

  private text(): string {
    const s = (Date.now() - this.startedAt) / 1000;
    const rate = s > 0 ? this.latest.done / s : 0;
    return `${this.label} ${this.phase} ${s.toFixed(0).padStart(3)} s  sagas ${String(this.latest.done).padStart(6)}  ${rate.toFixed(1).padStart(6)}/s  p50 ${this.latest.p50.toFixed(1)} ms`;
  }

  private render(): void {
    process.stdout.write(`\r\x1b[K${this.text().slice(0, (process.stdout.columns ?? 120) - 1)}`);
  }
}
