import { MongoBulkWriteError, MongoClient, type AnyBulkWriteOperation, type Collection } from "mongodb";
import { inViewOrder, type OrderView } from "./order-projection.js";
import type { OrderSummary, PositionedView, ReadModelStore } from "./read-model-store.js";

/** One order view, its fields at the top level, keyed by order id. */
type OrderDocument = OrderView & { _id: string; position: number };
type CheckpointDocument = { _id: string; position: number };

const CHECKPOINT = "orders";
const DUPLICATE_KEY = 11000;

/**
 * Read models in MongoDB (the official driver). A standalone server has no multi-document
 * transactions, so nothing here needs one: each view is replaced only by one of a later position
 * (a conditional upsert per document), and the checkpoint, a document beside the views, only
 * moves forward (`$max`). Views are written before the checkpoint, so after a crash between the
 * two the batch is handled again and its views, already there, are left as they are.
 */
export class MongoReadModelStore implements ReadModelStore {
  readonly label: string;
  private readonly client: MongoClient;
  private orders!: Collection<OrderDocument>;
  private checkpoints!: Collection<CheckpointDocument>;

  /** `database` overrides the one the URL names (tests use a fresh one each). */
  constructor(url: string, private readonly database?: string) {
    // ignoreUndefined: an absent field stays absent, as in the JSON the PostgreSQL store keeps.
    // Timeouts and the like come from the URL's options (an option given here would win over them).
    this.client = new MongoClient(url, { ignoreUndefined: true });
    this.label = `MongoDB (${url.replace(/\/\/[^@/]*@/, "//")})`;
  }

  async open(): Promise<void> {
    await this.client.connect().catch((err: Error) => {
      throw new Error(`read models: no answer from ${this.label}: ${err.message}`, { cause: err });
    });
    const db = this.client.db(this.database); // the URL's database when none is given
    this.orders = db.collection<OrderDocument>("orders");
    this.checkpoints = db.collection<CheckpointDocument>("checkpoints");
    // createIndexes does nothing for an index that already exists with the same keys and name
    await this.orders.createIndexes([
      { key: { user_id: 1, created_at: -1, order_id: -1 }, name: "user_orders" },
      { key: { correlation_id: 1 }, name: "correlation" },
      { key: { status: 1 }, name: "status" },
    ]);
  }

  async close(): Promise<void> {
    await this.client.close();
  }

  async checkpoint(): Promise<number> {
    const doc = await this.checkpoints.findOne({ _id: CHECKPOINT });
    return doc?.position ?? 0;
  }

  async views(orderIds: readonly string[]): Promise<Map<string, PositionedView>> {
    if (orderIds.length === 0) return new Map();
    const docs = await this.orders.find({ _id: { $in: [...orderIds] } }).toArray();
    return new Map(docs.map((d) => [d._id, { view: inViewOrder(d), position: d.position }]));
  }

  async apply(views: readonly PositionedView[], upTo: number): Promise<void> {
    if (views.length > 0) {
      const writes: AnyBulkWriteOperation<OrderDocument>[] = views.map(({ view, position }) => ({
        replaceOne: {
          filter: { _id: view.order_id, position: { $lt: position } },
          replacement: { ...inViewOrder(view), position },
          upsert: true,
        },
      }));
      try {
        await this.orders.bulkWrite(writes, { ordered: false });
      } catch (err) {
        // The filter misses a view stored at this position or a later one, so the upsert tries
        // to insert a second document with its id: that view is already newer, leave it.
        if (!(err instanceof MongoBulkWriteError) || err.err || !allDuplicateKeys(err)) throw err;
      }
    }
    await this.checkpoints.updateOne({ _id: CHECKPOINT }, { $max: { position: upTo } }, { upsert: true });
  }

  async order(orderId: string): Promise<OrderView | null> {
    const doc = await this.orders.findOne({ _id: orderId });
    return doc ? inViewOrder(doc) : null;
  }

  async byCorrelation(correlationId: string): Promise<OrderView | null> {
    const doc = await this.orders.findOne({ correlation_id: correlationId });
    return doc ? inViewOrder(doc) : null;
  }

  async ordersOfUser(userId: number, limit: number): Promise<OrderView[]> {
    const docs = await this.orders.find({ user_id: userId }).sort({ created_at: -1, order_id: -1 }).limit(limit).toArray();
    return docs.map(inViewOrder);
  }

  async summaries(status?: OrderView["status"]): Promise<OrderSummary[]> {
    return this.orders
      .find(status ? { status } : {}, {
        projection: { _id: 0, status: 1, saga_mode: 1, currency: 1, total_amount: 1, cancellation_reason: 1, saga_duration_ms: 1 },
      })
      .toArray() as Promise<OrderSummary[]>;
  }

  async reset(): Promise<void> {
    // checkpoint first: a crash in between leaves views a replay from 0 skips, never a gap
    await this.checkpoints.deleteOne({ _id: CHECKPOINT });
    await this.orders.deleteMany({});
  }
}

function allDuplicateKeys(err: MongoBulkWriteError): boolean {
  const errors = Array.isArray(err.writeErrors) ? err.writeErrors : [err.writeErrors];
  return errors.length > 0 && errors.every((e) => e.code === DUPLICATE_KEY);
}
