import { Errors } from "moleculer";

/** Client errors carry their HTTP status as `code`; the gateway turns them into problem+json. */
export class NotFound extends Errors.MoleculerClientError {
  constructor(detail: string) {
    super(detail, 404, "NOT_FOUND");
  }
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
