import type { Context } from "@opentelemetry/api";
import type { ReadableSpan, Span, SpanProcessor } from "@opentelemetry/sdk-trace-base";
import { ATTR, CORRELATION, processAttributes } from "./span-attributes.js";

const MAX_TRACES = 10_000;

/**
 * Stamps `saga.mode` and `correlation_id` on every span, including the ones the pg and http
 * instrumentations make. A checkout's id is born inside `orders.create`, after the HTTP span
 * and the first queries began, so a span of a trace whose id is not known yet is held until a
 * span of the same trace ends with it (or the trace's local root ends), then passed on.
 */
export class CheckoutSpanProcessor implements SpanProcessor {
  private readonly known = new Map<string, string>();
  private readonly held = new Map<string, ReadableSpan[]>();

  constructor(private readonly next: SpanProcessor) {}

  onStart(span: Span, parent: Context): void {
    if (processAttributes.sagaMode) span.setAttribute(ATTR.sagaMode, processAttributes.sagaMode);
    const correlation = parent.getValue(CORRELATION);
    if (typeof correlation === "string") span.setAttribute(ATTR.correlationId, correlation);
    this.next.onStart(span, parent);
  }

  onEnd(span: ReadableSpan): void {
    const traceId = span.spanContext().traceId;
    const own = span.attributes[ATTR.correlationId];
    if (typeof own === "string") {
      this.remember(traceId, own);
      this.release(traceId, own);
      this.next.onEnd(span);
      return;
    }
    const known = this.known.get(traceId);
    if (known) {
      stamp(span, known);
      this.next.onEnd(span);
      return;
    }
    const localRoot = !span.parentSpanContext || span.parentSpanContext.isRemote;
    if (localRoot) {
      this.release(traceId, undefined);
      this.next.onEnd(span);
      return;
    }
    const list = this.held.get(traceId) ?? [];
    list.push(span);
    this.held.set(traceId, list);
    if (this.held.size > MAX_TRACES) this.release(this.held.keys().next().value!, undefined);
  }

  private remember(traceId: string, correlation: string): void {
    this.known.delete(traceId);
    this.known.set(traceId, correlation);
    if (this.known.size > MAX_TRACES) this.known.delete(this.known.keys().next().value!);
  }

  private release(traceId: string, correlation: string | undefined): void {
    const list = this.held.get(traceId);
    if (!list) return;
    this.held.delete(traceId);
    for (const s of list) {
      if (correlation) stamp(s, correlation);
      this.next.onEnd(s);
    }
  }

  async forceFlush(): Promise<void> {
    for (const id of [...this.held.keys()]) this.release(id, this.known.get(id));
    await this.next.forceFlush();
  }

  async shutdown(): Promise<void> {
    await this.forceFlush();
    await this.next.shutdown();
  }
}

/** An ended span takes no more setAttribute calls; its attribute object is still its own. */
function stamp(span: ReadableSpan, correlation: string): void {
  (span.attributes as Record<string, unknown>)[ATTR.correlationId] = correlation;
}
