import type { Config } from "./config.js";
import type { Database } from "../database/database.js";
import type { PgEventStore } from "../event-store/pg-event-store.js";
import type { Participant } from "./catalogue.js";
import type { ParticipantHandlers } from "./participant.js";
import type { ServiceSchema } from "moleculer";
import type { EnvelopeFactory } from "../messaging/envelope-factory.js";

/** What the saga style adds to a participant: the channels that drive its commands. */
export type ParticipantDriver = <P extends Participant>(
  participant: P,
  handlers: ParticipantHandlers<P>,
) => Partial<ServiceSchema>;

/** Everything a service factory receives; wiring happens in services/system.ts only. */
export interface ServiceDeps {
  config: Config;
  db: Database;
  store: PgEventStore;
  envelopes: EnvelopeFactory;
  drive: ParticipantDriver;
}
