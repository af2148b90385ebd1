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
import { NodeSDK } from "@opentelemetry/sdk-node";
import { BatchSpanProcessor, ConsoleSpanExporter, type SpanExporter } from "@opentelemetry/sdk-trace-base";
import { OTLPTraceExporter as OtlpHttpExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { OTLPTraceExporter as OtlpProtoExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { JaegerExporter } from "@opentelemetry/exporter-jaeger";
import { HttpInstrumentation } from "@opentelemetry/instrumentation-http";
import { PgInstrumentation } from "@opentelemetry/instrumentation-pg";
import { CheckoutSpanProcessor } from "./checkout-span-processor.js";
import { markTracingStarted } from "./span-attributes.js";

export type TracesExporter = "otlp" | "jaeger" | "console" | "none";

export function tracesExporterName(env: NodeJS.ProcessEnv = process.env): TracesExporter {
  if (/^true$/i.test(env.OTEL_SDK_DISABLED ?? "")) return "none";
  const name = (env.OTEL_TRACES_EXPORTER ?? "otlp").trim().toLowerCase() || "otlp";
  if (name === "otlp" || name === "jaeger" || name === "console" || name === "none") return name;
  throw new Error(`OTEL_TRACES_EXPORTER=${name} is not supported; use otlp, jaeger, console or none`);
}

function exporter(name: Exclude<TracesExporter, "none">, env: NodeJS.ProcessEnv): SpanExporter {
  switch (name) {
    case "otlp": {
      const protocol = env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? env.OTEL_EXPORTER_OTLP_PROTOCOL ?? "http/protobuf";
      if (protocol === "http/json") return new OtlpHttpExporter();
      if (protocol === "http/protobuf") return new OtlpProtoExporter();
      throw new Error(`OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=${protocol} is not supported; use http/protobuf or http/json`);
    }
    case "jaeger":
      return new JaegerExporter();
    case "console":
      return new ConsoleSpanExporter();
  }
}

/** The process's own service: one name from SERVICES, or the whole system. */
function serviceName(env: NodeJS.ProcessEnv): string {
  if (env.OTEL_SERVICE_NAME) return env.OTEL_SERVICE_NAME;
  const list = (env.SERVICES ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  return list.length === 1 && list[0] !== "all" && list[0] !== "*" ? list[0]! : "saga-bench";
}

function start(env: NodeJS.ProcessEnv): void {
  const name = tracesExporterName(env);
  if (name === "none") return;
  const sdk = new NodeSDK({
    serviceName: serviceName(env),
    spanProcessors: [new CheckoutSpanProcessor(new BatchSpanProcessor(exporter(name, env)))],
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

start(process.env);
