import { describeBrokerRestart } from "./support/broker-restart.js";

// A RabbitMQ restart mid-run loses no order (test/support/broker-restart.ts); runs only with
// DISRUPTIVE_TESTS=1, after the other test files, beside the other broker's restart
await describeBrokerRestart("amqp");
