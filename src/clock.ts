// A millisecond clock read once per socket read (Dispatch.onData, ServerConnection's reads)
// instead of Date.now() at every statistic of a statement: the hot path took the time about
// seven times per transaction. Only statistics use it (query and transaction times, a server
// connection's last use); anything that decides on time (timeouts, waits) calls Date.now().
let cached = Date.now();

/** The time of the current socket read (or a later one). */
export function readTime(): number { return cached; }

/** Called at the start of each socket read. */
export function tickReadTime(): number { return (cached = Date.now()); }
