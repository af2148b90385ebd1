import { Errors } from "moleculer";

/** Client errors carry their HTTP status as `code`; the gateway turns them into problem+json. */
export class NotFound extends Errors.MoleculerClientError {
  constructor(detail: string) {
    super(detail, 404, "NOT_FOUND");
  }
}

/**
 * Whether a call failed because the thing asked for does not exist (a service's `NotFound`).
 * Moleculer's own "no service runs this action" (ServiceNotFoundError) has the same code, 404,
 * but means "try again shortly", not "no such user".
 */
export function isNotFound(err: unknown): boolean {
  const e = err as { code?: unknown; type?: unknown } | null | undefined;
  return e?.code === 404 && e.type === "NOT_FOUND";
}

export interface FieldIssue {
  field: string;
  message: string;
}

export class UnprocessableEntity extends Errors.MoleculerClientError {
  constructor(detail: string, issues: FieldIssue[] = []) {
    super(detail, 422, "UNPROCESSABLE_ENTITY", { issues });
  }
}

export class Conflict extends Errors.MoleculerClientError {
  constructor(detail: string) {
    super(detail, 409, "CONFLICT");
  }
}
