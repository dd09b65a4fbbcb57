// A prepared statement's routing plan that follows cluster-definition changes. A named
// statement is planned once, at Parse, and may be bound for hours; when the proxy swaps in a
// router for a new cluster definition (a table sharded, registered or forgotten), the old
// router gets a `successor`, and the statement re-plans with the newest router on its next
// use, so no session keeps writing a now-sharded table to every shard.
import type { Hint, Plan, RoutedStatement } from './types';

export interface PlanSource {
  successor: PlanSource | null;
  planPreparedNow(sql: string): RoutedStatement;
}

export class LiveStatement implements RoutedStatement {
  constructor(private source: PlanSource, private readonly text: string, private r: RoutedStatement) {}

  private cur(): RoutedStatement {
    if (this.source.successor === null) return this.r;
    let s = this.source.successor;
    while (s.successor !== null) s = s.successor;
    this.source = s;
    this.r = s.planPreparedNow(this.text);
    return this.r;
  }

  get sql(): string { return this.cur().sql; }
  get plan(): Plan { return this.cur().plan; }
  get literals(): string[] { return this.cur().literals; }
  get literalKinds(): number[] { return this.cur().literalKinds; }
  get hint(): Hint | undefined { return this.cur().hint; }
}
