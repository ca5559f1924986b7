// The probe gate: requests to the canary and the stable, their answers judged.
export * from "./types";
export { ProbeRefusedError } from "./errors";
export {
  ProbeTemplateError,
  expectedModel,
  placeholderProblem,
  probeSides,
  resolveProbe,
} from "./render";
export { probeProblems } from "./validate";
export {
  describeFailure,
  failedCheck,
  judgeSide,
  probeMeasurement,
  type SideVerdict,
} from "./judge";
export { runProbe, type ProbeRunOptions } from "./client";
