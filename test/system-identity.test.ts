import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BROKERS, clusterAvailable } from "./support/infrastructure.js";
import { SpawnedSystem } from "./support/spawned-system.js";
import { auditCheckouts } from "./support/audit.js";

/**
 * Two systems with separate databases share one broker namespace (a second deployment, or a
 * fresh database on a namespace an earlier run used): each process per service. Their order ids
 * collide (order_1 … in both), yet neither applies the other's messages: each acknowledges,
 * counts and drops them, and both end clean.
 */

const PRODUCTS = [
  { id: 104, stock: 30 },
  { id: 105, stock: 150 },
];
const ORDERS = [
  { user_id: 457, product_id: 105, quantity: 2 },
  { user_id: 457, product_id: 104, quantity: 1, card_token: "tok_chargeDeclined" },
  { user_id: 457, product_id: 105, quantity: 1 },
  { user_id: 457, product_id: 104, quantity: 99 },
];

const foreignDrops = async (s: SpawnedSystem): Promise<number> => {
  const text = await (await fetch(`${s.baseUrl}/metrics`)).text();
  return text
    .split("\n")
    .filter((l) => l.startsWith("saga_messages_consumed_total{") && l.includes('outcome="foreign"'))
    .reduce((n, l) => n + Number(l.split(" ").at(-1)), 0);
};

describe.each(BROKERS)("two systems on one $kind namespace", ({ kind, url }) => {
  let skip = false;
  let first: SpawnedSystem | undefined;
  let second: SpawnedSystem | undefined;
  const placed = new Map<SpawnedSystem, string[]>();

  beforeAll(async () => {
    skip = !(await clusterAvailable(kind));
    if (skip) return;
    first = await SpawnedSystem.start({ mode: "orchestrated", transporter: url, env: { OTEL_TRACES_EXPORTER: "none" } });
    // the first has used the namespace already when the second, on a fresh database, joins it
    await first.order(ORDERS[0]!);
    second = await SpawnedSystem.start({ mode: "orchestrated", transporter: url, namespace: first.namespace, env: { OTEL_TRACES_EXPORTER: "none" } });
    const both = [first, second];
    await Promise.all(
      both.map(async (s) => {
        const ids: string[] = [];
        for (const o of ORDERS) ids.push((await s.order(o)).order_id);
        placed.set(s, ids);
      }),
    );
    placed.get(first)!.push("order_1");
  }, 1_500_000);

  afterAll(async () => {
    await second?.stop();
    await first?.stop();
  }, 60_000);

  it("gives each system its own identity", async ({ skip: s }) => {
    if (skip) return s();
    const a = (await first!.pool.query("SELECT id FROM messaging.system")).rows[0].id;
    const b = (await second!.pool.query("SELECT id FROM messaging.system")).rows[0].id;
    expect(a).not.toBe(b);
    for (const [sys, id] of [[first!, a], [second!, b]] as const) {
      const { rows } = await sys.pool.query("SELECT count(*)::int AS n FROM event_store.events WHERE metadata->>'system_id' IS DISTINCT FROM $1", [id]);
      expect(rows[0].n, "events of another system in the store").toBe(0);
    }
  });

  it("drops the other system's messages, and counts them", async ({ skip: s }) => {
    if (skip) return s();
    expect(await foreignDrops(first!)).toBeGreaterThan(0);
    expect(await foreignDrops(second!)).toBeGreaterThan(0);
  });

  it("ends every checkout of both systems clean: stock conserved, nobody charged twice", async ({ skip: s }) => {
    if (skip) return s();
    for (const sys of [first!, second!]) await auditCheckouts(sys.pool, [...new Set(placed.get(sys)!)], PRODUCTS);
  });

  // Action calls stay inside each system (its transit namespace carries the system's identity):
  // an order placed through one system's gateway is created in that system's database only.
  it("keeps each system's orders in its own database", async ({ skip: s }) => {
    if (skip) return s();
    for (const sys of [first!, second!]) {
      const ids = [...new Set(placed.get(sys)!)];
      const { rows } = await sys.pool.query("SELECT order_id, status FROM orders.orders ORDER BY order_id");
      expect(rows.map((r) => r.status).sort()).toEqual(
        ids.length === 5 ? ["cancelled", "cancelled", "confirmed", "confirmed", "confirmed"] : ["cancelled", "cancelled", "confirmed", "confirmed"],
      );
    }
  });
});
