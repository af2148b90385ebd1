import { randomUUID } from "node:crypto";
import { z } from "zod";

/**
 * The one catalogue of the checkout's messages. Each entry is declared once: its TypeScript type,
 * its runtime validator, the aggregate it belongs to and its channel name all come from here.
 * Events are facts a participant records; commands are requests the orchestrator records
 * (on the `sagas` aggregate) for one participant.
 */

export const CANCELLATION_REASONS = ["stock_unavailable", "payment_failed", "shipping_failed", "timeout"] as const;
export type CancellationReason = (typeof CANCELLATION_REASONS)[number];

const reason = z.enum(CANCELLATION_REASONS);
const orderId = z.string().regex(/^order_\d+$/);
const money = z.number().nonnegative();
const productId = z.number().int().positive();
const quantity = z.number().int().positive();
const isoTime = z.string().datetime();

export const lineItem = z.object({
  product_id: productId,
  product_name: z.string(),
  quantity,
  unit_price: money,
});
export const address = z.object({
  street: z.string().min(1),
  city: z.string().min(1),
  postal_code: z.string().min(1),
});
const stockLine = z.object({ product_id: productId, quantity });

export const PARTICIPANTS = ["orders", "warehouse", "payments", "shipping", "notifications"] as const;
export type Participant = (typeof PARTICIPANTS)[number];
export const AGGREGATE_TYPES = [...PARTICIPANTS, "sagas"] as const;
export type AggregateType = (typeof AGGREGATE_TYPES)[number];

interface EventSpec<A extends AggregateType, S extends z.ZodType> {
  readonly kind: "event";
  readonly aggregate: A;
  readonly schema: S;
}
interface CommandSpec<P extends Participant, S extends z.ZodType> {
  readonly kind: "command";
  readonly aggregate: "sagas";
  /** The participant that carries the command out. */
  readonly participant: P;
  readonly schema: S;
}

const event = <A extends AggregateType, S extends z.ZodType>(aggregate: A, schema: S): EventSpec<A, S> => ({
  kind: "event",
  aggregate,
  schema,
});
const command = <P extends Participant, S extends z.ZodType>(participant: P, schema: S): CommandSpec<P, S> => ({
  kind: "command",
  aggregate: "sagas",
  participant,
  schema,
});

/**
 * Who to tell about an order, as the customer was when the order was placed (event-carried state):
 * the read model and the notification take it from the messages instead of asking the users
 * service again. Absent from messages stored before it was carried; their readers look the user up.
 */
const contact = z.object({ name: z.string(), email: z.string(), phone: z.string().nullable() });

export const catalogue = {
  // orders
  OrderInitiated: event(
    "orders",
    z.object({
      order_id: orderId,
      customer_id: z.number().int().positive(),
      cart_id: z.string().nullable(),
      total_amount: money,
      currency: z.string().length(3),
      items: z.array(lineItem).min(1),
      shipping_address: address,
      card_token: z.string().min(1),
      customer: contact.optional(),
    }),
  ),
  OrderConfirmed: event(
    "orders",
    z.object({ order_id: orderId, shipment_id: z.string(), estimated_delivery: z.string() }),
  ),
  OrderCancelled: event("orders", z.object({ order_id: orderId, reason })),

  // warehouse: one StockReserved per product line, all lines of an order in one transaction
  StockReserved: event(
    "warehouse",
    z.object({
      order_id: orderId,
      product_id: productId,
      quantity,
      line: z.number().int().positive(),
      lines: z.number().int().positive(),
    }),
  ),
  StockUnavailable: event(
    "warehouse",
    z.object({ order_id: orderId, product_id: productId, requested: quantity, available: z.number().int() }),
  ),
  StockReleased: event("warehouse", z.object({ order_id: orderId, lines: z.array(stockLine), reason })),

  // payments
  PaymentProcessed: event(
    "payments",
    z.object({
      order_id: orderId,
      payment_id: z.string(),
      transaction_id: z.string(),
      amount: money,
      currency: z.string().length(3),
    }),
  ),
  PaymentFailed: event(
    "payments",
    z.object({ order_id: orderId, amount: money, reason: z.string(), error_code: z.string() }),
  ),
  PaymentRefunded: event(
    "payments",
    z.object({ order_id: orderId, payment_id: z.string().nullable(), amount: money, reason }),
  ),

  // shipping
  ShipmentScheduled: event(
    "shipping",
    z.object({ order_id: orderId, shipment_id: z.string(), carrier: z.string(), estimated_delivery: z.string() }),
  ),
  ShipmentFailed: event("shipping", z.object({ order_id: orderId, reason: z.string() })),
  ShipmentCancelled: event(
    "shipping",
    z.object({ order_id: orderId, shipment_id: z.string().nullable(), reason }),
  ),

  // notifications
  NotificationSent: event(
    "notifications",
    z.object({
      order_id: orderId,
      channel: z.enum(["email", "sms"]),
      recipient: z.string(),
      template: z.string(),
    }),
  ),
  NotificationFailed: event(
    "notifications",
    z.object({ order_id: orderId, channel: z.enum(["email", "sms"]), error: z.string(), attempt: z.number().int() }),
  ),

  // choreography: the watchdog's word that a checkout ran out of time; the participant of the
  // step in flight undoes it, and the usual compensation chain runs back from there
  CheckoutTimedOut: event(
    "sagas",
    z.object({ order_id: orderId, undo_from: z.enum(["reserve_stock", "charge_payment", "schedule_shipment"]) }),
  ),

  // commands (recorded by the orchestrator; choreography calls the same handlers directly)
  ReserveStock: command("warehouse", z.object({ order_id: orderId, items: z.array(stockLine).min(1) })),
  ReleaseStock: command("warehouse", z.object({ order_id: orderId, reason })),
  ProcessPayment: command(
    "payments",
    z.object({
      order_id: orderId,
      customer_id: z.number().int().positive(),
      amount: money,
      currency: z.string().length(3),
      card_token: z.string(),
    }),
  ),
  RefundPayment: command("payments", z.object({ order_id: orderId, reason })),
  ScheduleShipment: command(
    "shipping",
    z.object({ order_id: orderId, shipping_address: address, items: z.array(stockLine).min(1) }),
  ),
  CancelShipment: command("shipping", z.object({ order_id: orderId, reason })),
  ConfirmOrder: command(
    "orders",
    z.object({ order_id: orderId, shipment_id: z.string(), estimated_delivery: z.string() }),
  ),
  CancelOrder: command("orders", z.object({ order_id: orderId, reason })),
  SendNotification: command(
    "notifications",
    z.object({ order_id: orderId, customer_id: z.number().int().positive(), template: z.string(), recipient: contact.optional() }),
  ),
} as const;

type Catalogue = typeof catalogue;
export type MessageType = keyof Catalogue;
export type EventType = { [K in MessageType]: Catalogue[K]["kind"] extends "event" ? K : never }[MessageType];
export type CommandType = Exclude<MessageType, EventType>;
export type DataOf<T extends MessageType> = z.infer<Catalogue[T]["schema"]>;
export type ParticipantOf<C extends CommandType> = Catalogue[C] extends CommandSpec<infer P, z.ZodType> ? P : never;
export type CommandsOf<P extends Participant> = { [C in CommandType]: ParticipantOf<C> extends P ? C : never }[CommandType];

export const MESSAGE_TYPES = Object.keys(catalogue) as MessageType[];
export const EVENT_TYPES = MESSAGE_TYPES.filter((t) => catalogue[t].kind === "event") as EventType[];
export const COMMAND_TYPES = MESSAGE_TYPES.filter((t) => catalogue[t].kind === "command") as CommandType[];

export const isEventType = (t: string): t is EventType => (EVENT_TYPES as string[]).includes(t);
export const isCommandType = (t: string): t is CommandType => (COMMAND_TYPES as string[]).includes(t);
/** The envelope form of `isCommandType`: narrows a message to a command, or (when false) to an event. */
export const isCommand = (e: AnyEnvelope): e is AnyCommand => isCommandType(e.event_type);
/** Narrows a message to one type, so that its `data` is that type's. */
export const isMessage = <T extends MessageType>(e: AnyEnvelope, type: T): e is AnyEnvelope & Envelope<T> => e.event_type === type;
export const participantOf = <C extends CommandType>(c: C): ParticipantOf<C> =>
  (catalogue[c] as CommandSpec<Participant, z.ZodType>).participant as ParticipantOf<C>;
export const aggregateOf = (t: MessageType): AggregateType => catalogue[t].aggregate;

/** Channel a message travels on. Nothing else builds a channel name. */
export const channelOf = (t: MessageType): string =>
  `checkout.${catalogue[t].kind === "event" ? "events" : "commands"}.${t}`;

export interface Metadata {
  trace_id?: string;
  /** W3C trace context of the span that wrote the message (observability/tracing.ts). */
  traceparent?: string;
  tracestate?: string;
  /** The system (database) that wrote it; consumers drop other systems' messages. */
  system_id?: string;
  causation_id?: string;
  source_ip?: string;
  user_agent?: string;
  saga_mode?: string;
}

/** The stored and published form of every message, field for field. */
export interface Envelope<T extends MessageType = MessageType> {
  readonly event_id: string;
  readonly event_type: T;
  readonly aggregate_type: AggregateType;
  readonly aggregate_id: string;
  readonly timestamp: string;
  readonly version: number;
  readonly correlation_id: string;
  readonly service_name: string;
  readonly data: DataOf<T>;
  readonly metadata: Metadata;
}
export type AnyEnvelope = { [T in MessageType]: Envelope<T> }[MessageType];
export type AnyCommand = { [T in CommandType]: Envelope<T> }[CommandType];

/** A message before the event store gives it its version. */
export type NewMessage<T extends MessageType = MessageType> = Omit<Envelope<T>, "version">;
export type AnyNewMessage = { [T in MessageType]: NewMessage<T> }[MessageType];

/** What a handler returns: the store fills in ids, times, correlation and causation. */
export type Emit<T extends MessageType = MessageType> = { type: T; aggregate_id?: string; data: DataOf<T> };
export type AnyEmit = { [T in MessageType]: Emit<T> }[MessageType];
export const emit = <T extends MessageType>(type: T, data: DataOf<T>, aggregate_id?: string): Emit<T> => ({
  type,
  data,
  aggregate_id,
});

export class ContractError extends Error {
  constructor(
    message: string,
    readonly issues: string[] = [],
  ) {
    super(message);
  }
}

export function validateData<T extends MessageType>(type: T, data: unknown): DataOf<T> {
  const parsed = catalogue[type].schema.safeParse(data);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`);
    throw new ContractError(`${type} data does not match the catalogue: ${issues.join("; ")}`, issues);
  }
  return parsed.data as DataOf<T>;
}

const envelopeSchema = z.object({
  event_id: z.string().uuid(),
  event_type: z.string(),
  aggregate_type: z.string(),
  aggregate_id: z.string().min(1),
  timestamp: isoTime,
  version: z.number().int().positive(),
  correlation_id: z.string().min(1),
  service_name: z.string(),
  data: z.unknown(),
  metadata: z.record(z.string(), z.unknown()),
});

/** Validates an envelope that arrived from outside (a channel, an HTTP body) against the catalogue. */
export function parseEnvelope(raw: unknown): AnyEnvelope {
  const parsed = envelopeSchema.safeParse(raw);
  if (!parsed.success) throw new ContractError(`not a message envelope: ${parsed.error.message}`);
  const type = parsed.data.event_type;
  if (!(type in catalogue)) throw new ContractError(`unknown message type "${type}"`);
  const data = validateData(type as MessageType, parsed.data.data);
  return { ...(parsed.data as unknown as AnyEnvelope), data } as AnyEnvelope;
}

/** Builds an envelope; services build theirs through services/messaging/envelope-factory.ts. */
export function newMessage<T extends MessageType>(
  e: Emit<T>,
  ctx: { correlation_id: string; service_name: string; causation_id?: string; metadata?: Metadata },
): NewMessage<T> {
  const data = validateData(e.type, e.data);
  const aggregate_type = aggregateOf(e.type);
  const aggregate_id =
    e.aggregate_id ?? (aggregate_type === "sagas" ? ctx.correlation_id : (data as { order_id: string }).order_id);
  return {
    event_id: randomUUID(),
    event_type: e.type,
    aggregate_type,
    aggregate_id,
    timestamp: new Date().toISOString(),
    correlation_id: ctx.correlation_id,
    service_name: ctx.service_name,
    data,
    metadata: { ...ctx.metadata, ...(ctx.causation_id ? { causation_id: ctx.causation_id } : {}) },
  };
}
