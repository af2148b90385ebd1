import { createContextKey, type Context } from "@opentelemetry/api";

/**
 * The attributes every span of a checkout carries, shared by the middleware (which knows them)
 * and the span processor (which stamps them on the spans the instrumentations make).
 */
export const ATTR = {
  correlationId: "correlation_id",
  sagaMode: "saga.mode",
  sagaStep: "saga.step",
  eventType: "event_type",
  service: "moleculer.service",
  systemId: "saga.system_id",
} as const;

/** The checkout a context belongs to; spans started under it inherit its correlation id. */
export const CORRELATION = createContextKey("saga-bench correlation_id");

export const withCorrelation = (ctx: Context, correlationId: string | undefined): Context =>
  correlationId ? ctx.setValue(CORRELATION, correlationId) : ctx;

/** Set once per process by the system (the saga mode is configuration, read in one place). */
export const processAttributes: { sagaMode?: string } = {};

let started = false;
/** Called by otel-sdk.ts once its SDK runs; before that (or with `none`) tracing costs nothing. */
export function markTracingStarted(): void {
  started = true;
}
/** True when an SDK was started in this process. */
export const tracingEnabled = (): boolean => started;
