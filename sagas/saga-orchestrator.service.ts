import type { Service, ServiceSchema } from "moleculer";
import { channelOf, type AnyEnvelope, type AnyNewMessage, type EventType } from "../services/shared/catalogue.js";
import { withTransaction, type Tx } from "../services/database/database.js";
import { consume, settledClaims, type ConsumerDeps, type Work } from "../services/messaging/consume.js";
import { consumerChannels, consumerDeps } from "../services/messaging/channel-consumer.js";
import { committed } from "../services/event-store/commit-signal.js";
import { NotFound } from "../services/shared/errors.js";
import { deadlineSweep } from "./deadline-sweep.js";
import { decide, type CheckoutSaga } from "./checkout.saga.js";
import { checkoutSteps, initiation } from "./checkout.steps.js";
import { consumerBase, type DriverDeps } from "./participant-drivers.js";

/** Every event the step table listens for: replies, failures and "compensation done". */
export const orchestratorInputs: EventType[] = [
  ...new Set<EventType>([
    initiation.startedBy,
    initiation.compensation.done,
    ...checkoutSteps.flatMap((s) => [s.succeeded, ...(s.failed ? [s.failed] : []), ...(s.compensation ? [s.compensation.done] : [])]),
  ]),
];


/** A saga's new state, and whether the decisions that led to it sent a command (which restarts the step's clock). */
interface Transition {
  state: CheckoutSaga;
  sent: boolean;
}

/**
 * Writes saga instances in one statement. A new instance gets both deadlines; an existing one
 * keeps its saga deadline, and its step deadline moves on only when a command went out (a new
 * instance always sends its first command).
 */
async function persist(tx: Tx, transitions: readonly Transition[], deadlines: { saga: number; step: number }): Promise<void> {
  if (transitions.length === 0) return;
  const rows = transitions.map(({ state: s, sent }) => ({ correlation_id: s.correlation_id, order_id: s.order.order_id, status: s.status, step: s.step, state: s, sent }));
  await tx.query(
    `INSERT INTO orchestrator.sagas AS s (correlation_id, order_id, status, step, state, deadline_at, step_deadline_at)
     SELECT r.correlation_id, r.order_id, r.status, r.step, r.state, now() + make_interval(secs => $2::float8 / 1000),
            CASE WHEN r.sent THEN now() + make_interval(secs => $3::float8 / 1000) END
       FROM jsonb_to_recordset($1::jsonb) AS r(correlation_id text, order_id text, status text, step text, state jsonb, sent boolean)
      ORDER BY r.correlation_id
     ON CONFLICT (correlation_id) DO UPDATE SET status = EXCLUDED.status, step = EXCLUDED.step, state = EXCLUDED.state,
       step_deadline_at = coalesce(EXCLUDED.step_deadline_at, s.step_deadline_at), updated_at = now()`,
    [JSON.stringify(rows), deadlines.saga, deadlines.step],
  );
}

/** The saga instances of a batch's checkouts, locked, and the transitions the batch makes to them. */
interface BatchSagas {
  states: Map<string, CheckoutSaga>;
  transitions: Map<string, Transition>;
}

const BATCH_SAGAS = Symbol("orchestrator.sagas");

async function lockSagas(tx: Tx, correlationIds: readonly string[]): Promise<BatchSagas> {
  const { rows } = await tx.query(
    "SELECT correlation_id, state FROM orchestrator.sagas WHERE correlation_id = ANY($1::text[]) ORDER BY correlation_id FOR UPDATE",
    [[...new Set(correlationIds)]],
  );
  return { states: new Map(rows.map((r) => [r.correlation_id as string, r.state as CheckoutSaga])), transitions: new Map() };
}

/**
 * The orchestrator: one persistent saga instance per checkout. Each transition is stored in the
 * same transaction as the commands it sends (recorded in the event store, published by the
 * relay), so a crash between the two is impossible. A sweep enforces the saga deadline and
 * sends the current command again when a step stays unanswered past its own deadline.
 */
export function sagaOrchestratorService(deps: DriverDeps): ServiceSchema {
  const { pool } = deps.db;
  const deadlines = { saga: deps.config.sagaTimeoutMs, step: deps.config.stepTimeoutMs };

  const decideWork: Work<undefined> = {
    // One read (locking) and one write of the saga instances per transaction, however many
    // replies it handles; each reply sees the state the ones before it in the batch left.
    handle: async ({ tx, cause, batch }) => {
      const sagas = await batch.shared(
        BATCH_SAGAS,
        () => lockSagas(tx, batch.messages.map((m) => m.correlation_id)),
        (b) => persist(tx, [...b.transitions.values()], deadlines),
      );
      const id = cause.correlation_id;
      const decision = decide(sagas.states.get(id) ?? null, cause);
      if (!decision) return [];
      sagas.states.set(id, decision.state);
      sagas.transitions.set(id, { state: decision.state, sent: (sagas.transitions.get(id)?.sent ?? false) || decision.commands.length > 0 });
      return decision.commands;
    },
  };

  /** Feeds one message to the saga re-read from the event store (its channel copy was lost). */
  function handle(svc: Service, message: AnyEnvelope) {
    return consume(consumerDeps(consumerBase(deps), svc), "saga-orchestrator", channelOf(message.event_type), message, decideWork);
  }

  const channels = consumerChannels(
    consumerBase(deps),
    orchestratorInputs.map((type) => ({
      channel: channelOf(type),
      group: "saga-orchestrator",
      consumer: "saga-orchestrator",
      handle: (message: AnyEnvelope, cdeps: ConsumerDeps) =>
        consume(cdeps, "saga-orchestrator", channelOf(message.event_type), message, decideWork),
    })),
  );

  /** Every OrderInitiated up to this position has been seen to have its saga instance (this process's view). */
  let initiationsChecked = 0;

  /**
   * A checkout whose OrderInitiated never reached the orchestrator has no saga instance, so no
   * deadline finds it: the message was lost on its way (a relay that does not run, a broker that
   * dropped it; in process the relay's checkpoint waits for the handlers, so a crash is not one
   * of them). Once a step's time has passed
   * without an instance, the OrderInitiated is read from the event store and fed again (the
   * inbox absorbs it if it was handled after all). Two statements per sweep, over the orders
   * placed since the last one.
   */
  async function adoptOrphans(svc: Service): Promise<void> {
    const placed = await deps.store.positionsOfType(initiation.startedBy, initiationsChecked, deadlines.step);
    if (placed.length === 0) return;
    const { rows } = await pool.query("SELECT correlation_id FROM orchestrator.sagas WHERE correlation_id = ANY($1::text[])", [
      placed.map((p) => p.correlation_id),
    ]);
    const started = new Set(rows.map((r) => r.correlation_id as string));
    for (const p of placed) {
      if (!started.has(p.correlation_id)) {
        if (!p.old) break; // its message may still be on its way: look again at the next sweep
        const [first] = (await deps.store.byCorrelation(p.correlation_id)).filter((e) => e.event_type === initiation.startedBy);
        svc.logger.warn(`saga ${p.correlation_id}: its ${initiation.startedBy} never arrived; reading it from the event store`);
        const { position: _, ...envelope } = first;
        await handle(svc, envelope as AnyEnvelope);
      }
      initiationsChecked = p.position;
    }
  }

  async function sweep(svc: Service): Promise<void> {
    await adoptOrphans(svc);
    const expired = await pool.query(
      `SELECT correlation_id FROM orchestrator.sagas WHERE status = 'running' AND deadline_at < now() LIMIT 100`,
    );
    for (const { correlation_id } of expired.rows) {
      const appended = await withTransaction(pool, async (tx) => {
        const { rows } = await tx.query(
          "SELECT state FROM orchestrator.sagas WHERE correlation_id = $1 AND status = 'running' FOR UPDATE",
          [correlation_id],
        );
        if (!rows.length) return 0;
        const d = decide(rows[0].state as CheckoutSaga, { event_type: "SagaDeadlinePassed", timestamp: new Date().toISOString() });
        if (!d) {
          await tx.query("UPDATE orchestrator.sagas SET deadline_at = NULL WHERE correlation_id = $1", [correlation_id]);
          return 0;
        }
        await persist(tx, [{ state: d.state, sent: d.commands.length > 0 }], deadlines);
        await deps.store.append(tx, d.commands.map((c) => deps.envelopes.create(c, { correlation_id, service_name: "saga-orchestrator" }) as AnyNewMessage));
        return d.commands.length;
      });
      if (appended) {
        svc.logger.warn(`saga ${correlation_id} passed its deadline; compensating`);
        committed();
      }
    }
    // A step unanswered past its deadline. The answer may be in the event store already (its
    // message lost on its way): feed the saga every answer its inbox has not seen.
    // Otherwise send the same command again (same id: a participant that did get it ignores it).
    const stalled = await pool.query(
      `UPDATE orchestrator.sagas SET step_deadline_at = now() + make_interval(secs => $1::float8 / 1000)
        WHERE status IN ('running','compensating') AND step_deadline_at < now()
        RETURNING correlation_id`,
      [deadlines.step],
    );
    for (const { correlation_id } of stalled.rows) {
      const all = await deps.store.byCorrelation(correlation_id);
      const answers = all.filter((e) => orchestratorInputs.includes(e.event_type as EventType));
      const handled = await settledClaims(pool, answers.map((e) => ({ consumer: "saga-orchestrator", message_id: e.event_id })), { deadLetters: false });
      const missed = answers.filter((e) => !handled({ consumer: "saga-orchestrator", message_id: e.event_id }));
      if (missed.length > 0) {
        svc.logger.warn(`saga ${correlation_id}: re-reading ${missed.map((e) => e.event_type).join(", ")} from the event store`);
        for (const { position: _, ...e } of missed) await handle(svc, e as AnyEnvelope);
        continue;
      }
      const last = all.filter((e) => e.aggregate_type === "sagas").pop();
      if (!last) continue;
      svc.logger.warn(`saga ${correlation_id}: no answer to ${last.event_type} in time; sending it again`);
      const { position: _, ...envelope } = last;
      await svc.broker.sendToChannel(channelOf(last.event_type), envelope);
    }
  }

  return {
    name: "saga-orchestrator",
    mixins: [deadlineSweep(sweep)],
    channels,
    actions: {
      get: {
        params: { correlation_id: "string" },
        async handler(ctx) {
          const { rows } = await pool.query(
            "SELECT status, step, state, deadline_at, created_at, updated_at FROM orchestrator.sagas WHERE correlation_id = $1",
            [(ctx.params as { correlation_id: string }).correlation_id],
          );
          if (!rows.length) throw new NotFound(`no saga instance for ${(ctx.params as { correlation_id: string }).correlation_id}`);
          return rows[0];
        },
      },
    },
  };
}
