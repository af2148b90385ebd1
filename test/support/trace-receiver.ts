import http from "node:http";
import type { AddressInfo } from "node:net";
import { gunzipSync } from "node:zlib";

/**
 * Stand-ins for a tracing backend, so the trace tests need no Jaeger: one HTTP server that takes
 * OTLP/HTTP (`/v1/traces`, JSON or protobuf) and Jaeger's collector protocol (`/api/traces`,
 * Thrift binary, as `@opentelemetry/exporter-jaeger` sends it). Every span arrives here in one
 * shape, whatever the wire.
 */

export type AttributeValue = string | number | boolean;

export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  /** The exporting process's `service.name`. */
  service: string;
  attributes: Record<string, AttributeValue>;
  startNs: bigint;
  endNs: bigint;
  /** Which wire it came by. */
  via: "otlp-json" | "otlp-protobuf" | "jaeger-thrift";
}

export class TraceReceiver {
  readonly spans: ReceivedSpan[] = [];
  readonly requests: { path: string; contentType: string }[] = [];

  private constructor(private readonly server: http.Server) {}

  static async start(): Promise<TraceReceiver> {
    const server = http.createServer();
    const receiver = new TraceReceiver(server);
    server.on("request", (req, res) => receiver.handle(req, res));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    return receiver;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  stop(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      let body = Buffer.concat(chunks);
      if (req.headers["content-encoding"] === "gzip") body = gunzipSync(body);
      const contentType = String(req.headers["content-type"] ?? "");
      this.requests.push({ path: req.url ?? "", contentType });
      try {
        if (req.url === "/v1/traces" && contentType.includes("json")) this.spans.push(...fromOtlpJson(JSON.parse(body.toString("utf8"))));
        else if (req.url === "/v1/traces") this.spans.push(...fromOtlpProtobuf(body));
        else if (req.url?.startsWith("/api/traces")) this.spans.push(...fromJaegerThrift(body));
        else {
          res.writeHead(404).end();
          return;
        }
      } catch (err) {
        res.writeHead(400).end(String(err));
        return;
      }
      res.writeHead(200, { "content-type": contentType.includes("json") ? "application/json" : contentType || "application/x-protobuf" });
      res.end(contentType.includes("json") ? "{}" : undefined);
    });
  }

  byCorrelation(correlationId: string): ReceivedSpan[] {
    return this.spans.filter((s) => s.attributes.correlation_id === correlationId);
  }

  byTrace(traceId: string): ReceivedSpan[] {
    return this.spans.filter((s) => s.traceId === traceId);
  }
}

/** A text waterfall of one trace: offset, duration, service and span name, indented by depth. */
export function waterfall(spans: ReceivedSpan[]): string {
  const ids = new Set(spans.map((s) => s.spanId));
  const children = new Map<string | undefined, ReceivedSpan[]>();
  for (const s of spans) {
    const parent = s.parentSpanId && ids.has(s.parentSpanId) ? s.parentSpanId : undefined;
    children.set(parent, [...(children.get(parent) ?? []), s]);
  }
  const t0 = spans.reduce((m, s) => (s.startNs < m ? s.startNs : m), spans[0]!.startNs);
  const ms = (ns: bigint) => (Number(ns) / 1e6).toFixed(1).padStart(7);
  const lines: string[] = [];
  const walk = (parent: string | undefined, depth: number) => {
    const list = (children.get(parent) ?? []).sort((a, b) => (a.startNs < b.startNs ? -1 : 1));
    for (const s of list) {
      const service = String(s.attributes["moleculer.service"] ?? s.service);
      lines.push(`${ms(s.startNs - t0)} ms ${ms(s.endNs - s.startNs)} ms  ${service.padEnd(17)} ${"  ".repeat(depth)}${s.name}`);
      walk(s.spanId, depth + 1);
    }
  };
  walk(undefined, 0);
  return lines.join("\n");
}

// ---- OTLP JSON ----------------------------------------------------------------------------

interface OtlpAnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: number | string;
  doubleValue?: number;
}
interface OtlpKeyValue {
  key: string;
  value: OtlpAnyValue;
}

const jsonValue = (v: OtlpAnyValue): AttributeValue =>
  v.stringValue ?? v.boolValue ?? (v.intValue !== undefined ? Number(v.intValue) : undefined) ?? v.doubleValue ?? "";

function fromOtlpJson(body: {
  resourceSpans?: {
    resource?: { attributes?: OtlpKeyValue[] };
    scopeSpans?: {
      spans?: {
        traceId: string;
        spanId: string;
        parentSpanId?: string;
        name: string;
        attributes?: OtlpKeyValue[];
        startTimeUnixNano: string | number;
        endTimeUnixNano: string | number;
      }[];
    }[];
  }[];
}): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  for (const rs of body.resourceSpans ?? []) {
    const resource = Object.fromEntries((rs.resource?.attributes ?? []).map((a) => [a.key, jsonValue(a.value)]));
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        out.push({
          traceId: s.traceId,
          spanId: s.spanId,
          parentSpanId: s.parentSpanId || undefined,
          name: s.name,
          service: String(resource["service.name"]),
          attributes: Object.fromEntries((s.attributes ?? []).map((a) => [a.key, jsonValue(a.value)])),
          startNs: BigInt(s.startTimeUnixNano),
          endNs: BigInt(s.endTimeUnixNano),
          via: "otlp-json",
        });
      }
    }
  }
  return out;
}

// ---- OTLP protobuf: just enough of the wire format for the trace request -------------------

type Field = { no: number; wire: number; value: bigint | Buffer };

function* fields(buf: Buffer): Generator<Field> {
  let i = 0;
  const varint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      const b = buf[i++]!;
      result |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return result;
      shift += 7n;
    }
  };
  while (i < buf.length) {
    const key = Number(varint());
    const no = key >> 3;
    const wire = key & 7;
    if (wire === 0) yield { no, wire, value: varint() };
    else if (wire === 1) {
      yield { no, wire, value: buf.subarray(i, i + 8) };
      i += 8;
    } else if (wire === 2) {
      const len = Number(varint());
      yield { no, wire, value: buf.subarray(i, i + len) };
      i += len;
    } else if (wire === 5) {
      yield { no, wire, value: buf.subarray(i, i + 4) };
      i += 4;
    } else throw new Error(`protobuf wire type ${wire} not expected`);
  }
}

function protoValue(buf: Buffer): AttributeValue {
  for (const f of fields(buf)) {
    if (f.no === 1) return (f.value as Buffer).toString("utf8");
    if (f.no === 2) return f.value !== 0n;
    if (f.no === 3) return Number(BigInt.asIntN(64, f.value as bigint));
    if (f.no === 4) return (f.value as Buffer).readDoubleLE(0);
  }
  return "";
}

function protoAttribute(buf: Buffer): [string, AttributeValue] {
  let key = "";
  let value: AttributeValue = "";
  for (const f of fields(buf)) {
    if (f.no === 1) key = (f.value as Buffer).toString("utf8");
    if (f.no === 2) value = protoValue(f.value as Buffer);
  }
  return [key, value];
}

function fromOtlpProtobuf(body: Buffer): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  for (const rs of fields(body)) {
    if (rs.no !== 1) continue;
    let service = "";
    const spans: Omit<ReceivedSpan, "service">[] = [];
    for (const f of fields(rs.value as Buffer)) {
      if (f.no === 1) {
        for (const a of fields(f.value as Buffer)) {
          if (a.no !== 1) continue;
          const [k, v] = protoAttribute(a.value as Buffer);
          if (k === "service.name") service = String(v);
        }
      }
      if (f.no !== 2) continue;
      for (const ss of fields(f.value as Buffer)) {
        if (ss.no !== 2) continue;
        const span: Omit<ReceivedSpan, "service"> = { traceId: "", spanId: "", name: "", attributes: {}, startNs: 0n, endNs: 0n, via: "otlp-protobuf" };
        for (const x of fields(ss.value as Buffer)) {
          const b = x.value as Buffer;
          if (x.no === 1) span.traceId = b.toString("hex");
          else if (x.no === 2) span.spanId = b.toString("hex");
          else if (x.no === 4 && b.length) span.parentSpanId = b.toString("hex");
          else if (x.no === 5) span.name = b.toString("utf8");
          else if (x.no === 7) span.startNs = b.readBigUInt64LE(0);
          else if (x.no === 8) span.endNs = b.readBigUInt64LE(0);
          else if (x.no === 9) {
            const [k, v] = protoAttribute(b);
            span.attributes[k] = v;
          }
        }
        spans.push(span);
      }
    }
    out.push(...spans.map((s) => ({ ...s, service })));
  }
  return out;
}

// ---- Jaeger Thrift (binary protocol), as the Jaeger collector's /api/traces takes it --------

type Thrift = bigint | number | boolean | string | Buffer | Map<number, Thrift> | Thrift[];

function thriftStruct(buf: Buffer, at: { i: number }): Map<number, Thrift> {
  const struct = new Map<number, Thrift>();
  for (;;) {
    const type = buf[at.i++]!;
    if (type === 0) return struct;
    const id = buf.readInt16BE(at.i);
    at.i += 2;
    struct.set(id, thriftValue(buf, at, type));
  }
}

function thriftValue(buf: Buffer, at: { i: number }, type: number): Thrift {
  switch (type) {
    case 2:
      return buf[at.i++] !== 0;
    case 3:
      return buf.readInt8(at.i++);
    case 4: {
      const v = buf.readDoubleBE(at.i);
      at.i += 8;
      return v;
    }
    case 6: {
      const v = buf.readInt16BE(at.i);
      at.i += 2;
      return v;
    }
    case 8: {
      const v = buf.readInt32BE(at.i);
      at.i += 4;
      return v;
    }
    case 10: {
      const v = buf.readBigInt64BE(at.i);
      at.i += 8;
      return v;
    }
    case 11: {
      const len = buf.readInt32BE(at.i);
      at.i += 4;
      const v = buf.subarray(at.i, at.i + len);
      at.i += len;
      return v;
    }
    case 12:
      return thriftStruct(buf, at);
    case 15:
    case 14: {
      const elem = buf[at.i++]!;
      const n = buf.readInt32BE(at.i);
      at.i += 4;
      return Array.from({ length: n }, () => thriftValue(buf, at, elem));
    }
    default:
      throw new Error(`thrift type ${type} not expected`);
  }
}

const hex64 = (v: Thrift | undefined) => BigInt.asUintN(64, (v as bigint | undefined) ?? 0n).toString(16).padStart(16, "0");

function jaegerTag(tag: Map<number, Thrift>): [string, AttributeValue] {
  const key = (tag.get(1) as Buffer).toString("utf8");
  switch (tag.get(2) as number) {
    case 0:
      return [key, (tag.get(3) as Buffer).toString("utf8")];
    case 1:
      return [key, tag.get(4) as number];
    case 2:
      return [key, tag.get(5) as boolean];
    case 3:
      return [key, Number(tag.get(6) as bigint)];
    default:
      return [key, ""];
  }
}

function fromJaegerThrift(body: Buffer): ReceivedSpan[] {
  const batch = thriftStruct(body, { i: 0 });
  const process = batch.get(1) as Map<number, Thrift>;
  const service = (process.get(1) as Buffer).toString("utf8");
  return ((batch.get(2) as Map<number, Thrift>[]) ?? []).map((s) => {
    const parent = hex64(s.get(4));
    const startUs = BigInt(s.get(8) as bigint);
    return {
      traceId: hex64(s.get(2)) + hex64(s.get(1)),
      spanId: hex64(s.get(3)),
      parentSpanId: parent === "0000000000000000" ? undefined : parent,
      name: (s.get(5) as Buffer).toString("utf8"),
      service,
      attributes: Object.fromEntries(((s.get(10) as Map<number, Thrift>[]) ?? []).map(jaegerTag)),
      startNs: startUs * 1000n,
      endNs: (startUs + BigInt(s.get(9) as bigint)) * 1000n,
      via: "jaeger-thrift" as const,
    };
  });
}
