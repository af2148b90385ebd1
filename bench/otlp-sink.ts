import http from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A stand-in OTLP/HTTP collector for `--tracing on`: it accepts every export, counts requests,
 * bytes and (for http/json exports) spans, and keeps nothing, so the bench measures what the
 * tracing costs the system without a Jaeger to feed.
 */
export class OtlpSink {
  exports = 0;
  bytes = 0;
  spans: number | null = null;
  private constructor(private readonly server: http.Server) {}

  static async start(): Promise<OtlpSink> {
    const server = http.createServer();
    const sink = new OtlpSink(server);
    server.on("request", (req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const body = Buffer.concat(chunks);
        sink.exports++;
        sink.bytes += body.length;
        if ((req.headers["content-type"] ?? "").includes("json")) {
          try {
            const doc = JSON.parse(body.toString("utf8")) as { resourceSpans?: { scopeSpans?: { spans?: unknown[] }[] }[] };
            const n = (doc.resourceSpans ?? []).flatMap((r) => r.scopeSpans ?? []).reduce((sum, s) => sum + (s.spans?.length ?? 0), 0);
            sink.spans = (sink.spans ?? 0) + n;
          } catch {
            // not JSON after all: counted as an export only
          }
        }
        res.writeHead(200, { "content-type": req.headers["content-type"] ?? "application/json" });
        res.end((req.headers["content-type"] ?? "").includes("json") ? "{}" : "");
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    return sink;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  reset(): void {
    this.exports = 0;
    this.bytes = 0;
    this.spans = null;
  }

  close(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }
}
