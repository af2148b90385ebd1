import { randomBytes } from "node:crypto";
import { newMessage, type AnyEmit, type AnyEnvelope, type AnyNewMessage, type Emit, type Metadata, type MessageType, type NewMessage } from "../shared/catalogue.js";
import { currentCarrier } from "../../observability/tracing.js";

/** Who is writing: the system (its database's identity) and its saga style. */
export interface SystemIdentity {
  systemId: string;
  sagaMode: string;
}

/**
 * Every envelope of the system is built here. Its metadata names the system that wrote it (a
 * consumer drops another system's messages), the saga style, the message that caused it, and the
 * trace context of the span that was current: `traceparent` survives the outbox, so the relay
 * can continue the trace later, from another process.
 */
export interface EnvelopeFactory {
  readonly identity: SystemIdentity;
  /** A message that starts a checkout or is recorded outside a handled message (orchestrator, watchdog). */
  create<T extends MessageType>(e: Emit<T>, origin: { correlation_id: string; service_name: string; metadata?: Pick<Metadata, "source_ip" | "user_agent"> }): NewMessage<T>;
  /** The messages a handler emits: same checkout, caused by the handled message. */
  causedBy(emits: readonly AnyEmit[], cause: Pick<AnyEnvelope, "event_id" | "correlation_id" | "metadata">, serviceName: string): AnyNewMessage[];
}

export function envelopeFactory(identity: SystemIdentity): EnvelopeFactory {
  const metadata = (inherited: string | undefined, extra: Metadata = {}): Metadata => {
    const trace = currentCarrier();
    return {
      ...extra,
      saga_mode: identity.sagaMode,
      system_id: identity.systemId,
      // without tracing the checkout still has one trace id, taken from its first message
      trace_id: trace.trace_id ?? inherited ?? randomBytes(16).toString("hex"),
      ...(trace.traceparent ? { traceparent: trace.traceparent } : {}),
      ...(trace.tracestate ? { tracestate: trace.tracestate } : {}),
    };
  };
  return {
    identity,
    create: (e, origin) =>
      newMessage(e, { correlation_id: origin.correlation_id, service_name: origin.service_name, metadata: metadata(undefined, origin.metadata) }),
    causedBy: (emits, cause, serviceName) =>
      emits.map(
        (e) =>
          newMessage(e, {
            correlation_id: cause.correlation_id,
            service_name: serviceName,
            causation_id: cause.event_id,
            metadata: metadata(cause.metadata.trace_id),
          }) as AnyNewMessage,
      ),
  };
}
