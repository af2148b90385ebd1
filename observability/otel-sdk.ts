/**
 * The OpenTelemetry SDK of one process, preloaded before the services (`node --import
 * ./dist/observability/otel-sdk.js`), so that pg and http are instrumented before anything loads
 * them. Configured only by the standard variables:
 *   OTEL_TRACES_EXPORTER  otlp (default) | jaeger | console | none
 *   OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL (http/protobuf | http/json)
 *   OTEL_EXPORTER_JAEGER_ENDPOINT (collector over HTTP) or OTEL_EXPORTER_JAEGER_AGENT_HOST
 *   OTEL_SERVICE_NAME (default: the process's own service, from SERVICES), OTEL_SDK_DISABLED
 * With `none` or OTEL_SDK_DISABLED=true no SDK starts and the spans API stays a no-op.
 */
import type { SpanExporter } from "@opentelemetry/sdk-trace-base";
import { markTracingStarted } from "./span-attributes.js";

// Everything else loads only when tracing is on, and only the exporter chosen: with `none` this
// module costs the process nothing.

export type TracesExporter = "otlp" | "jaeger" | "console" | "none";

export function tracesExporterName(env: NodeJS.ProcessEnv = process.env): TracesExporter {
  if (/^true$/i.test(env.OTEL_SDK_DISABLED ?? "")) return "none";
  const name = (env.OTEL_TRACES_EXPORTER ?? "otlp").trim().toLowerCase() || "otlp";
  if (name === "otlp" || name === "jaeger" || name === "console" || name === "none") return name;
  throw new Error(`OTEL_TRACES_EXPORTER=${name} is not supported; use otlp, jaeger, console or none`);
}

async function exporter(name: Exclude<TracesExporter, "none">, env: NodeJS.ProcessEnv): Promise<SpanExporter> {
  switch (name) {
    case "otlp": {
      const protocol = env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? env.OTEL_EXPORTER_OTLP_PROTOCOL ?? "http/protobuf";
      if (protocol === "http/json") return new (await import("@opentelemetry/exporter-trace-otlp-http")).OTLPTraceExporter();
      if (protocol === "http/protobuf") return new (await import("@opentelemetry/exporter-trace-otlp-proto")).OTLPTraceExporter();
      throw new Error(`OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=${protocol} is not supported; use http/protobuf or http/json`);
    }
    case "jaeger":
      return new (await import("@opentelemetry/exporter-jaeger")).JaegerExporter();
    case "console":
      return new (await import("@opentelemetry/sdk-trace-base")).ConsoleSpanExporter();
  }
}

/** The process's own service: one name from SERVICES, or the whole system. */
function serviceName(env: NodeJS.ProcessEnv): string {
  if (env.OTEL_SERVICE_NAME) return env.OTEL_SERVICE_NAME;
  const list = (env.SERVICES ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  return list.length === 1 && list[0] !== "all" && list[0] !== "*" ? list[0]! : "saga-bench";
}

async function start(env: NodeJS.ProcessEnv): Promise<void> {
  const name = tracesExporterName(env);
  if (name === "none") return;
  const [{ NodeSDK }, { BatchSpanProcessor }, { HttpInstrumentation }, { PgInstrumentation }, { CheckoutSpanProcessor }] = await Promise.all([
    import("@opentelemetry/sdk-node"),
    import("@opentelemetry/sdk-trace-base"),
    import("@opentelemetry/instrumentation-http"),
    import("@opentelemetry/instrumentation-pg"),
    import("./checkout-span-processor.js"),
  ]);
  const sdk = new NodeSDK({
    serviceName: serviceName(env),
    spanProcessors: [new CheckoutSpanProcessor(new BatchSpanProcessor(await exporter(name, env)))],
    // traces only: no metric readers, no log processors
    logRecordProcessors: [],
    instrumentations: [
      new HttpInstrumentation({
        // the broker's own HTTP (RabbitMQ management, OTLP export itself) is not a checkout's
        ignoreOutgoingRequestHook: () => true,
      }),
      new PgInstrumentation({ requireParentSpan: true }),
    ],
  });
  sdk.start();
  markTracingStarted();
}

await start(process.env);
