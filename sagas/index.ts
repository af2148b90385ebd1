import type { ServiceSchema } from "moleculer";
import type { SagaMode, ServiceName } from "../services/shared/config.js";
import type { ParticipantDriver } from "../services/shared/service-deps.js";
import { choreographedDriver, orchestratedDriver, type DriverDeps } from "./participant-drivers.js";
import { sagaOrchestratorService } from "./saga-orchestrator.service.js";
import { sagaWatchdogService } from "./saga-watchdog.service.js";

/** What a saga style contributes: how participants are driven, and its own services. */
export interface SagaStyle {
  mode: SagaMode;
  drive: ParticipantDriver;
  /** Coordination services of this style: the orchestrator, or the choreography's deadline watchdog. */
  services: Partial<Record<ServiceName, () => ServiceSchema>>;
}

export function sagaStyle(mode: SagaMode, deps: DriverDeps): SagaStyle {
  switch (mode) {
    case "orchestrated":
      return {
        mode,
        drive: orchestratedDriver(deps),
        services: { "saga-orchestrator": () => sagaOrchestratorService(deps) },
      };
    case "choreographed":
      return {
        mode,
        drive: choreographedDriver(deps),
        services: { "saga-watchdog": () => sagaWatchdogService(deps) },
      };
  }
}
