import {
  context,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Span,
} from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { ATTR, CORRELATION, tracingEnabled, withCorrelation } from "./span-attributes.js";
export { tracingEnabled };
import { stepOf } from "./saga-steps.js";

/**
 * Business code touches only this module (and through it `@opentelemetry/api`): the envelope
 * factory asks for the current trace context, the middleware and the relay make the spans.
 * Without a started SDK every call here is a no-op.
 */
export const tracer = trace.getTracer("saga-bench");

/** W3C trace context, written into envelope metadata and message headers whatever SDK is set. */
const w3c = new W3CTraceContextPropagator();

export interface TraceCarrier {
  traceparent?: string;
  tracestate?: string;
}

/**
 * Longest wait at stop for the exporter to take what is buffered. A collector answers in
 * milliseconds; without one (the default endpoint on a machine with no Jaeger) the OTLP exporter
 * retries until its own timeout, and the process took 8 s to stop.
 */
export const FLUSH_AT_STOP_MS = 1_000;

/** Exports what is buffered, waiting at most `FLUSH_AT_STOP_MS`; called when the broker stops, before the process exits. */
export async function flushTracing(): Promise<void> {
  const provider = trace.getTracerProvider() as unknown as { getDelegate?(): { forceFlush?(): Promise<void> } };
  const flush = provider.getDelegate?.().forceFlush?.();
  if (!flush) return;
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<void>((resolve) => (timer = setTimeout(resolve, FLUSH_AT_STOP_MS)));
  await Promise.race([flush, bound]).finally(() => clearTimeout(timer));
}

/**
 * Runs `fn` as part of a checkout: its spans, and those of the services it calls (the id
 * travels in `ctx.meta`), carry the correlation id; so do the callers' spans, since Moleculer
 * merges `meta` back into the caller's context.
 */
export function inCheckout<T>(correlationId: string, meta: { correlation_id?: string }, fn: () => Promise<T>): Promise<T> {
  meta.correlation_id = correlationId;
  if (!tracingEnabled()) return fn();
  trace.getActiveSpan()?.setAttribute(ATTR.correlationId, correlationId);
  return context.with(withCorrelation(context.active(), correlationId), fn);
}

/** The checkout the current context belongs to, if any. */
export const currentCorrelation = (): string | undefined => {
  const v = context.active().getValue(CORRELATION);
  return typeof v === "string" ? v : undefined;
};

/** A callback that runs in the trace that is current now, whoever calls it later. */
export function inCurrentTrace<A extends unknown[], R>(fn: (...args: A) => R): (...args: A) => R {
  return context.bind(context.active(), fn);
}

/** The active span's context, for a message being built now. */
export function currentCarrier(): TraceCarrier & { trace_id?: string } {
  const active = trace.getSpan(context.active())?.spanContext();
  if (!active || !trace.isSpanContextValid(active)) return {};
  const carrier: TraceCarrier = {};
  w3c.inject(context.active(), carrier, { set: (c, k, v) => ((c as Record<string, string>)[k] = v) });
  return { trace_id: active.traceId, ...carrier };
}

export function contextOf(carrier: TraceCarrier | undefined, base: Context = ROOT_CONTEXT): Context {
  if (!carrier?.traceparent) return base;
  return w3c.extract(base, carrier, {
    get: (c, k) => (c as Record<string, string | undefined>)[k],
    keys: (c) => Object.keys(c as object),
  });
}

function inject(ctx: Context, headers: Record<string, string>): void {
  w3c.inject(ctx, headers, { set: (c, k, v) => ((c as Record<string, string>)[k] = v) });
}

/** The parts of an envelope the spans read. */
export interface TracedMessage {
  event_type: string;
  correlation_id: string;
  metadata: TraceCarrier & Record<string, unknown>;
}

export function messageAttributes(message: TracedMessage): Attributes {
  const step = stepOf(message.event_type);
  return {
    [ATTR.correlationId]: message.correlation_id,
    [ATTR.eventType]: message.event_type,
    ...(step ? { [ATTR.sagaStep]: step } : {}),
  };
}

export async function inSpan<T>(name: string, kind: SpanKind, parent: Context, attributes: Attributes, fn: (span: Span) => Promise<T>): Promise<T> {
  const correlation = attributes[ATTR.correlationId];
  const span = tracer.startSpan(name, { kind, attributes }, parent);
  const ctx = withCorrelation(trace.setSpan(parent, span), typeof correlation === "string" ? correlation : undefined);
  try {
    return await context.with(ctx, () => fn(span));
  } catch (err) {
    span.recordException(err as Error);
    span.setStatus({ code: SpanStatusCode.ERROR, message: String(err) });
    throw err;
  } finally {
    span.end();
  }
}

/**
 * A message handed to the broker. The span continues from the context stored with the message
 * (the outbox: it was written in another transaction, maybe another process), and its own
 * context travels in the `traceparent` header, so the consumer's span is its child.
 */
export function publishSpan<T>(
  message: TracedMessage,
  messaging: { system: string; destination: string },
  send: (headers: Record<string, string>) => Promise<T>,
): Promise<T> {
  if (!tracingEnabled()) return send({});
  const parent = message.metadata.traceparent ? contextOf(message.metadata) : context.active();
  return inSpan(
    `publish ${message.event_type}`,
    SpanKind.PRODUCER,
    parent,
    {
      ...messageAttributes(message),
      "messaging.system": messaging.system,
      "messaging.destination.name": messaging.destination,
      "messaging.operation": "publish",
    },
    () => {
      const headers: Record<string, string> = {};
      inject(context.active(), headers);
      return send(headers);
    },
  );
}
