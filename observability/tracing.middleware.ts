import { context, ROOT_CONTEXT, SpanKind } from "@opentelemetry/api";
import type { Context as MoleculerContext, Middleware, ServiceBroker } from "moleculer";
import { ATTR } from "./span-attributes.js";
import { contextOf, currentCarrier, currentCorrelation, flushTracing, inSpan, messageAttributes, publishSpan, tracingEnabled, type TracedMessage } from "./tracing.js";

/** `messaging.system` of each transport (OpenTelemetry messaging conventions). */
const MESSAGING_SYSTEM = { memory: "moleculer-fake", nats: "nats", amqp: "rabbitmq" } as const;
export type Transport = keyof typeof MESSAGING_SYSTEM;

type ChannelHandler = (msg: unknown, raw: unknown) => Promise<unknown>;
type SendToChannel = (channel: string, payload: unknown, opts?: { headers?: Record<string, string> } & Record<string, unknown>) => Promise<unknown>;
type Call = (action: string, params?: unknown, opts?: { meta?: Record<string, unknown> } & Record<string, unknown>) => Promise<unknown>;
interface ChannelDef {
  name: string;
  group?: string;
  consumer?: string;
}
interface HeaderParser {
  parseMessageHeaders(raw: unknown): Record<string, unknown> | null;
}

/** A channel payload that looks like an envelope (a malformed one is traced by its channel only). */
function traced(msg: unknown): TracedMessage | undefined {
  const m = msg as Partial<TracedMessage> | null;
  return m && typeof m.event_type === "string" && typeof m.correlation_id === "string" && m.metadata && typeof m.metadata === "object"
    ? (m as TracedMessage)
    : undefined;
}

const correlationOf = (value: unknown): string | undefined => {
  const c = (value as { correlation_id?: unknown } | null)?.correlation_id;
  return typeof c === "string" ? c : undefined;
};

/**
 * Spans for actions (context through `ctx.meta`), channel sends (context in the `traceparent`
 * header, continued from the one the message was stored with) and channel messages (children of
 * their publish span). Without an SDK in this process it adds no hook at all.
 */
export function tracingMiddleware(transport: Transport): Middleware {
  if (!tracingEnabled()) return { name: "Tracing" } as unknown as Middleware;
  const system = MESSAGING_SYSTEM[transport];
  let broker: ServiceBroker;
  return {
    name: "Tracing",
    created(b: ServiceBroker) {
      broker = b;
    },

    call(next: Call): Call {
      return (action, params, opts = {}) => {
        const carrier = currentCarrier();
        if (!carrier.traceparent) return next(action, params, opts);
        const { trace_id: _, ...w3c } = carrier;
        const correlation = currentCorrelation();
        return next(action, params, { ...opts, meta: { ...opts.meta, ...w3c, ...(correlation ? { correlation_id: correlation } : {}) } });
      };
    },

    localAction(next: (ctx: MoleculerContext) => Promise<unknown>, action: { name: string; service?: { name: string } }) {
      if (action.name.startsWith("$")) return next;
      return (ctx: MoleculerContext) => {
        const meta = ctx.meta as { traceparent?: string; tracestate?: string; correlation_id?: string };
        // a local call runs in its caller's context already; a remote one brings it in ctx.meta
        const remote = ctx.nodeID != null && ctx.nodeID !== broker.nodeID;
        const parent = remote && meta.traceparent ? contextOf(meta, ROOT_CONTEXT) : context.active();
        const correlation = correlationOf(ctx.params) ?? (remote ? meta.correlation_id : currentCorrelation());
        return inSpan(
          `action ${action.name}`,
          remote ? SpanKind.SERVER : SpanKind.INTERNAL,
          parent,
          { [ATTR.service]: action.service?.name ?? action.name.split(".")[0]!, ...(correlation ? { [ATTR.correlationId]: correlation } : {}) },
          async (span) => {
            const result = await next(ctx);
            // a checkout begun inside this call names itself in ctx.meta (merged back to callers)
            if (!correlation && meta.correlation_id) span.setAttribute(ATTR.correlationId, meta.correlation_id);
            return result;
          },
        );
      };
    },

    sendToChannel(next: SendToChannel): SendToChannel {
      return (channel, payload, opts = {}) => {
        const message = traced(payload);
        if (!message) return next(channel, payload, opts);
        return publishSpan(message, { system, destination: channel }, (headers) =>
          next(channel, payload, { ...opts, headers: { ...opts.headers, ...headers } }),
        );
      };
    },

    localChannel(next: ChannelHandler, chan: ChannelDef): ChannelHandler {
      return (msg, raw) => {
        const message = traced(msg);
        const adapter = (broker as unknown as { channelAdapter?: HeaderParser }).channelAdapter;
        const headers = (adapter?.parseMessageHeaders(raw) ?? {}) as Record<string, unknown>;
        const header = (k: string) => (headers[k] === undefined ? undefined : String(headers[k]));
        // the publish span's context, from the header; a message sent around the middleware
        // still continues from the context it was stored with
        const parent = header("traceparent")
          ? contextOf({ traceparent: header("traceparent"), tracestate: header("tracestate") })
          : contextOf(message?.metadata);
        const service = chan.consumer?.split(":")[0] ?? chan.group ?? "";
        return inSpan(
          `process ${message?.event_type ?? chan.name}`,
          SpanKind.CONSUMER,
          parent,
          {
            ...(message ? messageAttributes(message) : {}),
            [ATTR.service]: service,
            "messaging.system": system,
            "messaging.destination.name": chan.name,
            "messaging.operation": "process",
            ...(chan.group ? { "messaging.consumer.group.name": chan.group } : {}),
          },
          async (span) => {
            const outcome = await next(msg, raw);
            if (typeof outcome === "string") span.setAttribute("saga.consume_outcome", outcome);
            return outcome;
          },
        );
      };
    },

    async stopped() {
      // the process may exit right after the broker stops: export what is buffered first
      await flushTracing().catch(() => undefined);
    },
  } as unknown as Middleware;
}
