import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import YAML from "yaml";
import { ALL_SERVICES, CONFIG_VARIABLES, loadConfig, SAGA_MODES, READ_MODEL_STORES } from "../services/shared/config.js";
import { REQUIRE_SERVICES } from "./support/infrastructure.js";
import { SERVICE_PROCESS_V8_FLAGS } from "../services/cluster.js";

/**
 * The compose deployment, checked without a Docker engine: the file validates, every container
 * has a health check and a memory limit, the application containers set only variables the
 * code reads and everything it needs, and Kong's declarative file routes to the gateway with
 * key-auth and rate-limiting.
 */

const ROOT = path.resolve(import.meta.dirname, "..");
const read = (file: string) => fs.readFileSync(path.join(ROOT, file), "utf8");

interface ComposeService {
  image?: string;
  build?: unknown;
  mem_limit?: string;
  healthcheck?: { test?: string[] | string; disable?: boolean };
  environment?: Record<string, string | number | boolean | null>;
  volumes?: string[];
  ports?: string[];
  depends_on?: Record<string, { condition: string }>;
}
interface ComposeFile {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
}

const compose = YAML.parse(read("docker-compose.yml"), { merge: true }) as ComposeFile;
const services = compose.services;
const APP_IMAGE = "saga-bench:latest";
const appContainers = Object.entries(services).filter(([, s]) => s.image === APP_IMAGE);

/** Compose's interpolation of `${NAME}`, `${NAME:-default}` and `${NAME-default}` from `vars`. */
function interpolate(value: string, vars: Record<string, string>): string {
  return value.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}/g, (whole, name?: string, op?: string, fallback?: string) => {
    if (whole === "$$") return "$";
    const set = vars[name!];
    if (op === ":-") return set ? set : fallback!;
    if (op === "-") return set ?? fallback!;
    return set ?? "";
  });
}

function environmentOf(service: ComposeService, vars: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(service.environment ?? {}).map(([k, v]) => [k, interpolate(String(v ?? ""), vars)]));
}

/** The combinations the file's header offers. */
const COMBINATIONS: Record<string, string>[] = SAGA_MODES.flatMap((SAGA_MODE) =>
  ["nats://nats:4222", "amqp://saga:saga@rabbitmq:5672"].flatMap((TRANSPORTER) =>
    READ_MODEL_STORES.map((READ_MODEL_STORE) => ({ SAGA_MODE, TRANSPORTER, READ_MODEL_STORE })),
  ),
);

const hostOf = (url: string) => new URL(url).hostname;

describe("docker-compose.yml", () => {
  it("validates with docker-compose config -q", async () => {
    const ok = await promisify(execFile)("docker-compose", ["version"]).then(
      () => true,
      () => false,
    );
    if (!ok) {
      if (REQUIRE_SERVICES) throw new Error("REQUIRE_SERVICES=1 but docker-compose is not installed (apt-get install docker-compose)");
      console.warn("[skip] docker-compose is not installed; the file is not validated by it");
      return;
    }
    for (const vars of [{}, COMBINATIONS[COMBINATIONS.length - 1]]) {
      // throws, with docker-compose's message, when the file is invalid
      await promisify(execFile)("docker-compose", ["-f", path.join(ROOT, "docker-compose.yml"), "config", "-q"], {
        cwd: ROOT,
        env: { ...process.env, ...vars },
      });
    }
  });

  it("defines PostgreSQL, NATS, RabbitMQ, MongoDB, Jaeger and Kong, each with a health check, a memory limit and its data on a named volume", () => {
    for (const name of ["postgres", "nats", "rabbitmq", "mongodb", "jaeger", "kong"]) expect(services, name).toHaveProperty(name);
    const dataAt: Record<string, string> = {
      postgres: "/var/lib/postgresql/data",
      nats: "/data",
      rabbitmq: "/var/lib/rabbitmq",
      mongodb: "/data/db",
    };
    for (const [name, target] of Object.entries(dataAt)) {
      const volume = (services[name].volumes ?? []).map((v) => v.split(":")).find(([, t]) => t === target);
      expect(volume, `${name} keeps ${target} on a named volume`).toBeDefined();
      expect(compose.volumes, name).toHaveProperty(volume![0]);
    }
    expect(services.nats.healthcheck).toBeDefined();
    expect(String((services.nats as { command?: string[] }).command)).toContain("-js");
    expect(services.rabbitmq.image).toMatch(/management/);
    expect(services.jaeger.ports).toEqual(expect.arrayContaining(["16686:16686", "4317:4317", "4318:4318"]));
  });

  it("gives every container a health check and a memory limit", () => {
    expect(Object.keys(services).length).toBeGreaterThan(10);
    for (const [name, s] of Object.entries(services)) {
      expect(s.mem_limit, `${name}: mem_limit`).toMatch(/^\d+[mg]$/);
      expect(s.healthcheck?.disable, `${name}: health check`).not.toBe(true);
      expect((s.healthcheck?.test ?? []).length, `${name}: health check`).toBeGreaterThan(0);
    }
  });

  it("runs every service of the checkout exactly once, one container per group, from the one image", () => {
    expect(appContainers.length).toBeGreaterThan(1);
    const run = appContainers.flatMap(([, s]) => String(s.environment?.SERVICES ?? "").split(","));
    expect([...run].sort()).toEqual([...ALL_SERVICES].sort());
    for (const [name, s] of appContainers) expect((s.build as { dockerfile?: string })?.dockerfile, name).toBe(".docker/Dockerfile");
  });

  it("sets only variables the code reads (config.ts, the OpenTelemetry SDK), and everything a container needs", () => {
    const known = new Set<string>(CONFIG_VARIABLES);
    for (const [name, s] of appContainers) {
      for (const variable of Object.keys(s.environment ?? {})) {
        expect(known.has(variable) || variable.startsWith("OTEL_"), `${name} sets ${variable}, which nothing reads`).toBe(true);
      }
      for (const vars of [{}, ...COMBINATIONS]) {
        const env = environmentOf(s, vars);
        const config = loadConfig(env); // throws on a missing or invalid value (MONGO_URL with mongodb …)
        // processes in different containers share a broker and a PostgreSQL server
        expect(config.transport, name).not.toBe("memory");
        expect(hostOf(config.transporterUrl!), name).toMatch(/^(nats|rabbitmq)$/);
        expect(config.databaseUrl && hostOf(config.databaseUrl), name).toBe("postgres");
        expect(env.NODE_ID, `${name}: a stable NODE_ID`).toBe(name);
        if (config.readModelStore === "mongodb") expect(hostOf(config.mongoUrl!), name).toBe("mongodb");
        expect(hostOf(env.OTEL_EXPORTER_OTLP_ENDPOINT), name).toBe("jaeger");
        expect(env.OTEL_SERVICE_NAME, name).toBe(name);
      }
    }
    const defaults = loadConfig(environmentOf(services.gateway, {}));
    expect(defaults).toMatchObject({ sagaMode: "orchestrated", transport: "nats", readModelStore: "postgres", host: "0.0.0.0", port: 8000 });
  });

  it("puts Kong in front, in DB-less mode, as the only published entry to the gateway", () => {
    const kong = services.kong;
    expect(kong.ports).toEqual(["8000:8000"]);
    expect(services.gateway.ports).toBeUndefined();
    expect(kong.environment?.KONG_DATABASE).toBe("off");
    const mounted = (kong.volumes ?? []).map((v) => v.split(":")).find(([from]) => from === "./.docker/kong.yml");
    expect(mounted?.[1]).toBe(kong.environment?.KONG_DECLARATIVE_CONFIG);
    expect(kong.depends_on?.gateway?.condition).toBe("service_healthy");
  });
});

describe(".docker/kong.yml", () => {
  interface KongPlugin {
    name: string;
    config?: Record<string, unknown>;
  }
  const kong = YAML.parse(read(".docker/kong.yml")) as {
    _format_version: string;
    services: { name: string; url: string; routes: { name: string; paths: string[]; plugins?: KongPlugin[] }[] }[];
    consumers: { username: string; keyauth_credentials?: { key: string }[] }[];
  };

  it("routes everything to the gateway through key-auth and rate-limiting", () => {
    expect(kong._format_version).toBe("3.0");
    expect(kong.services).toHaveLength(1);
    const [upstream] = kong.services;
    const url = new URL(upstream.url);
    expect(url.hostname).toBe("gateway");
    expect(url.port).toBe(String(services.gateway.environment?.PORT));
    expect(upstream.routes).toHaveLength(1);
    const [route] = upstream.routes;
    expect(route.paths).toEqual(["/"]);
    expect(route.plugins?.map((p) => p.name).sort()).toEqual(["key-auth", "rate-limiting"]);
    const keyAuth = route.plugins!.find((p) => p.name === "key-auth")!;
    // the header the gateway and the bench use
    expect(keyAuth.config?.key_names).toEqual(["X-API-Key"]);
  });

  it("declares a consumer with a key", () => {
    const keys = kong.consumers.flatMap((c) => (c.keyauth_credentials ?? []).map((k) => k.key));
    expect(keys).toContain("dev-key");
  });
});

describe(".docker/Dockerfile", () => {
  const dockerfile = read(".docker/Dockerfile");
  const stages = dockerfile.split(/^FROM /m).slice(1);

  it("builds in one stage and runs compiled JavaScript with production dependencies only, as a non-root user", () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(dockerfile).toMatch(/RUN npm ci[^\n]*\n[\s\S]*RUN npm run build/);
    expect(dockerfile).toMatch(/npm ci --omit=dev/);
    const final = stages[stages.length - 1];
    expect(final).not.toMatch(/npm run build|RUN npm ci(?! --omit=dev)/);
    expect(final).toMatch(/^USER (?!root)\w+/m);
    // a container runs one service, with the V8 flags of `npm run start:cluster`'s processes
    expect(final).toContain(
      `CMD ${JSON.stringify(["node", ...SERVICE_PROCESS_V8_FLAGS, "--enable-source-maps", "--import", "./dist/observability/otel-sdk.js", "dist/services/main.js"]).replace(/","/g, '", "')}`,
    );
    expect(fs.existsSync(path.join(ROOT, "services/main.ts"))).toBe(true);
  });
});
