import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { channelOf, emit } from "../services/shared/catalogue.js";
import { CheckoutHarness } from "./support/checkout-harness.js";

/** What an operator does: replay dead letters, rebuild the read models. */

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, probe: () => Promise<T | undefined | null | false>, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(50);
  }
}

describe("operations", () => {
  let h: CheckoutHarness;

  beforeAll(async () => {
    h = await CheckoutHarness.start({ mode: "orchestrated", env: { MESSAGE_MAX_RETRIES: "1" } });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it("parks a message its consumer keeps failing on, lists it, and replays it once the cause is fixed", async () => {
    // a notification for a customer the users service does not know (yet)
    const command = {
      ...h.system.envelopes.create(emit("SendNotification", { order_id: "order_990001", customer_id: 990001, template: "order_confirmed" }), {
        correlation_id: `checkout_${randomUUID().slice(0, 8)}`,
        service_name: "test",
      }),
      version: 1,
    };
    await h.broker.sendToChannel(channelOf("SendNotification"), command);

    const letters = await until("dead letter", async () => {
      const r = await fetch(`${h.baseUrl}/admin/dead-letters`);
      const all = (await r.json()) as { id: number; consumer: string; message_id: string; error: string }[];
      return all.find((d) => d.message_id === command.event_id) ? all : undefined;
    });
    const letter = letters.find((d) => d.message_id === command.event_id)!;
    expect(letter.consumer).toBe("notifications:SendNotification");
    expect(letter.error).toMatch(/user 990001 does not exist/);

    await h.pool.query(
      "INSERT INTO users.users (id, name, email, street, city, postal_code) VALUES (990001, 'Late Customer', 'late@example.com', '1 Main', 'Ottawa', 'K1A 0B1')",
    );
    const replay = await fetch(`${h.baseUrl}/admin/dead-letters/${letter.id}/replay`, { method: "POST" });
    expect(replay.status).toBe(200);

    const sent = await until("NotificationSent after the replay", async () => {
      const events = await h.events(command.correlation_id);
      return events.find((e) => e.event_type === "NotificationSent");
    });
    expect(sent.data).toMatchObject({ order_id: "order_990001", recipient: "late@example.com" });
  });

  it("dead-letters a message that does not match the catalogue at once", async () => {
    const id = randomUUID();
    await h.broker.sendToChannel(channelOf("ReserveStock"), { event_id: id, event_type: "ReserveStock", data: { order_id: "nope" } });
    await until("dead letter of the malformed message", async () => {
      const { rows } = await h.pool.query("SELECT attempts, error FROM messaging.dead_letters WHERE message_id = $1", [id]);
      return rows[0];
    });
    const { rows } = await h.pool.query("SELECT attempts, error FROM messaging.dead_letters WHERE message_id = $1", [id]);
    expect(rows[0].attempts).toBe(1);
    expect(rows[0].error).toMatch(/not a message envelope/);
  });

  it("rebuilds the read models from the event store to the same views", async () => {
    const orders = [];
    for (const card_token of ["tok_visa", "tok_chargeDeclined", "tok_visa"]) {
      orders.push((await h.checkout({ user_id: 457, product_id: 102, quantity: 1, card_token })).view);
    }
    const stats = await h.broker.call("projections.statistics");
    const r = await fetch(`${h.baseUrl}/admin/projections/rebuild`, { method: "POST" });
    expect(r.status).toBe(200);
    const head = await h.system.store.lastPosition();
    await until("projections caught up", async () => {
      const { position } = await h.broker.call<{ position: number }>("projections.position");
      return position >= head;
    });
    for (const before of orders) {
      expect(await h.broker.call("projections.order", { order_id: before.order_id })).toEqual(before);
    }
    expect(await h.broker.call("projections.statistics")).toEqual(stats);
  });
});
