export { type Language, LANGUAGES, parseLanguage } from "./languages.js";
export { parsePythonError } from "./python-errors.js";
export { type InputFile, type RunOnceOptions, Runner, type RunnerOptions } from "./runner.js";
export { DEFAULT_PROFILES, WarmPool, type WarmPoolOptions, type WarmProfile } from "./warm-pool.js";
