export { StoreError } from "./errors.js";
export { MIGRATIONS } from "./migrations.js";
export { DATABASE_FILE, openSqliteStore } from "./sqlite-store.js";
export type * from "./types.js";
