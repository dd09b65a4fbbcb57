// Statement planner: one parsed statement (libpg-query AST) + router schema -> Plan template.
//
// The planner runs once per statement *shape*. The text it sees ("parse text") is the shape with
// each literal slot rendered back as a literal; A_Const nodes are mapped back to their slot by
// location. Key references then point at slots, so the plan holds for every statement of the same
// shape. Plan parts that depend on a literal's *value* (ORDER BY 2, LIMIT 10, SET x = 5, COPY
// options...) mark that slot "fixed": the cache then keys the plan by shape + those values.
import type { Command, CopyMergedSpec, CopySpec, KeyType, NotifyArg, Plan } from './types';
import type { Token } from './lexer';
import { foreignKeyProblem, uniqueWithoutKey } from './constraint-check';
import { N, NTable, Occ, Level, Part, PlanTemplate, nodeTag, strs, bakeFixed, createsTemp, numConstText } from './plan-ast';
import { StatementWalker } from './planner-walk';
import { findAgg, hasWindow, mergeSpec, sublinkAggs } from './merge-rewrite';
import { finalizeSql, groupsOrAggregates } from './finalize';
import { hasSublink } from './subqueries';
import { lockObjects } from './lock-scope';
import { shapeObjects } from './ddl-shape';
import { ddlCreatesSequence, ddlRunsInTransaction } from './ddl-tx';
import { definitionName } from '../ring/ring';

export { normalizeSchema, renderParts, createsTemp } from './plan-ast';
export type { NSchema, Part, PlanInput, PlanTemplate } from './plan-ast';

const TXN: Record<string, Command> = {
  TRANS_STMT_BEGIN: 'begin', TRANS_STMT_START: 'begin', TRANS_STMT_COMMIT: 'commit', TRANS_STMT_ROLLBACK: 'rollback',
  TRANS_STMT_SAVEPOINT: 'savepoint', TRANS_STMT_RELEASE: 'release', TRANS_STMT_ROLLBACK_TO: 'rollback_to',
  TRANS_STMT_PREPARE: 'prepare_transaction', TRANS_STMT_COMMIT_PREPARED: 'commit_prepared',
  TRANS_STMT_ROLLBACK_PREPARED: 'rollback_prepared',
};

/** Statements -> plan templates: what the command is and how it routes, from what StatementWalker
 *  (planner-walk.ts) found in it; the merge of multi-shard SELECTs is in merge-rewrite.ts. */
export class Planner extends StatementWalker {
  plan(stmt: N): PlanTemplate {
    const tag = nodeTag(stmt);
    const s = stmt[tag];
    const p: Plan = { command: 'other', write: false, target: 'none', keys: null };
    const withKeys = this.classify(tag, stmt, s, p);
    this.finishTarget(tag, s, p, withKeys);
    return this.template(p, this.scatterAnalysis(tag, s, p));
  }

  /** The command and what it touches (walking the statement); true when its keys route it. */
  private classify(tag: string, stmt: N, s: N, p: Plan): boolean {
    let withKeys = false;
    switch (tag) {
      case 'SelectStmt':
        p.command = 'select'; withKeys = true;
        this.walkStatement(stmt, null);
        if (s.intoClause) {
          p.command = 'ddl';
          const rel = s.intoClause.rel;
          if (rel && rel.relpersistence !== 't' && !rel.catalogname && (!rel.schemaname || rel.schemaname === 'public')) p.createsTable = rel.relname;
        }
        break;
      case 'InsertStmt': p.command = 'insert'; p.write = true; withKeys = true; this.walkStatement(stmt, null); break;
      case 'UpdateStmt': p.command = 'update'; p.write = true; withKeys = true; this.walkStatement(stmt, null); break;
      case 'DeleteStmt': p.command = 'delete'; p.write = true; withKeys = true; this.walkStatement(stmt, null); break;
      case 'MergeStmt': p.command = 'merge'; p.write = true; withKeys = true; this.walkStatement(stmt, null); break;
      case 'TransactionStmt':
        p.command = TXN[s.kind] ?? 'other';
        if (typeof s.savepoint_name === 'string') p.savepoint = s.savepoint_name;
        if (typeof s.gid === 'string' && (p.command === 'commit_prepared' || p.command === 'rollback_prepared')) { p.gid = s.gid; this.fixEverySlot(); }
        if (s.chain) p.chain = true;
        this.fixAll(s.options);
        break;
      case 'VariableSetStmt': this.classifySet(s, p); break;
      case 'VariableShowStmt': p.command = 'show'; break;
      case 'DiscardStmt': p.command = 'discard'; break;
      case 'ListenStmt': p.command = 'listen'; p.sessionState = 'listen'; break;
      case 'UnlistenStmt': p.command = 'unlisten'; break;
      case 'NotifyStmt': p.command = 'notify'; break;
      case 'PrepareStmt': {
        p.command = 'prepare'; p.sessionState = 'prepare';
        this.walkStatement(s.query, null);
        const qt = nodeTag(s.query);
        p.write = qt !== 'SelectStmt' || this.dmlWrite;
        break;
      }
      case 'ExecuteStmt': p.command = 'execute'; if (typeof s.name === 'string') p.execute = s.name; break;
      case 'DeallocateStmt': p.command = 'deallocate'; if (!s.isall && typeof s.name === 'string') p.deallocate = s.name; break;
      case 'DeclareCursorStmt':
        p.command = 'declare_cursor';
        if (typeof s.portalname === 'string') p.cursor = s.portalname;
        if ((s.options ?? 0) & 0x20) { p.sessionState = 'cursor_hold'; p.cursorHold = true; }
        if ((s.options ?? 0) & 0x01) p.cursorBinary = true;
        this.walkStatement(s.query, null); withKeys = true;
        break;
      case 'FetchStmt': {
        p.command = 'fetch';
        p.cursor = typeof s.portalname === 'string' ? s.portalname : null;
        // the count is part of the plan: the plan holds for this exact literal
        for (let k = 0; k < this.input.slotStart.length; k++) this.fixed.add(k);
        const dir = String(s.direction ?? 'FETCH_FORWARD').replace('FETCH_', '').toLowerCase();
        const n = Number(s.howMany ?? 0);
        p.fetch = { direction: dir === 'backward' || dir === 'absolute' || dir === 'relative' ? dir : 'forward', count: n >= 2147483647 ? Infinity : n, move: !!s.ismove };
        break;
      }
      case 'ClosePortalStmt': p.command = 'close_cursor'; p.cursor = typeof s.portalname === 'string' ? s.portalname : null; break;
      case 'LockStmt': p.command = 'lock'; this.walkExprs(s, { parent: null, items: [] }); break;
      case 'CopyStmt': withKeys = this.classifyCopy(s, p); break;
      case 'ExplainStmt': p.command = 'other'; this.walkStatement(s.query, null); withKeys = true; break;
      case 'DoStmt': case 'CallStmt': p.command = 'other'; p.write = true; break;
      default:
        this.classifyOther(tag, s, p);
    }
    return withKeys;
  }

  private classifySet(s: N, p: Plan): void {
    const reset = s.kind === 'VAR_RESET' || s.kind === 'VAR_RESET_ALL';
    p.command = reset ? 'reset' : 'set';
    let value: string | null = null;
    if (s.kind === 'VAR_SET_VALUE' && s.args) {
      value = s.args.map((a: N) => {
        const c = a.A_Const ?? a.TypeCast?.arg?.A_Const;
        return c ? this.constValue(c) ?? '' : '';
      }).join(', ');
    }
    const name = s.kind === 'VAR_RESET_ALL' ? 'all' : s.name ?? (s.kind === 'VAR_SET_MULTI' ? 'transaction' : '');
    this.fixAll(s.args);
    p.setVar = { name: String(name).toLowerCase(), value, local: !!s.is_local };
  }

  /** COPY: true when its keys route it (COPY TO with a WHERE, COPY (query)). */
  private classifyCopy(s: N, p: Plan): boolean {
    let withKeys = false;
    p.command = s.is_from ? 'copy_from' : 'copy_to';
    // option values are plain strings in the AST (no locations): the plan holds for these exact literals
    for (let k = 0; k < this.input.slotStart.length; k++) this.fixed.add(k);
    p.write = !!s.is_from;
    if (!s.is_from) p.copyOut = copyOutFormat(s);
    if (s.query) { this.walkStatement(s.query, null); withKeys = true; }
    else if (s.relation) {
      const L: Level = { parent: null, items: [] };
      this.addRangeVar(s.relation, L);
      if (s.whereClause) this.applyQual(s.whereClause, L, null, null);
      withKeys = !s.is_from;
      if (s.is_from && !s.filename) p.copy = this.copySpec(s);
    }
    return withKeys;
  }

  /** DDL and the statements pgring only forwards. */
  private classifyOther(tag: string, s: N, p: Plan): void {
    if (/^(Create|Alter|Drop|Rename|Grant|Comment|Truncate|Index|View|Reindex|Cluster|Define|Composite|AlterTable|Sec|RuleStmt|CreateTableAs|AlterOwner|Refresh|Import)/.test(tag) || tag === 'RuleStmt') {
      p.command = 'ddl'; p.write = true;
      if (ddlRunsInTransaction(tag, s)) p.ddlTx = true;
      if (tag === 'DropdbStmt') p.freeDatabase = s.dbname;
      else if (tag === 'RenameStmt' && s.renameType === 'OBJECT_DATABASE') p.freeDatabase = s.subname;
      else if (tag === 'AlterTableStmt' && s.relation?.relname && (s.cmds ?? []).some((c: N) => c.AlterTableCmd?.subtype === 'AT_AddColumn' || c.AlterTableCmd?.subtype === 'AT_DropColumn')) {
        const table = s.relation.schemaname ? `${s.relation.schemaname}.${s.relation.relname}` : s.relation.relname;
        const add: string[] = [], drop: string[] = [];
        for (const c of s.cmds) {
          const cmd = c.AlterTableCmd;
          if (cmd?.subtype === 'AT_AddColumn' && cmd.def?.ColumnDef?.colname) add.push(cmd.def.ColumnDef.colname);
          if (cmd?.subtype === 'AT_DropColumn' && cmd.name) drop.push(cmd.name);
        }
        p.columnChanges = { table, add, drop };
      }
      else if (tag === 'AlterTableStmt' && s.relation?.relname && (s.cmds ?? []).some((c: N) => c.AlterTableCmd?.subtype === 'AT_AttachPartition')) {
        const parent = this.lookupTable(s.relation);
        const child = s.cmds.find((c: N) => c.AlterTableCmd?.subtype === 'AT_AttachPartition').AlterTableCmd.def?.PartitionCmd?.name;
        if (parent && child?.relname) p.shardedLike = { table: child.schemaname ? `${child.schemaname}.${child.relname}` : child.relname, sharded: { column: parent.column, type: parent.type } };
      }
      else if (tag === 'RenameStmt' && s.relation?.relname && s.newname && (s.renameType === 'OBJECT_TABLE' || s.renameType === 'OBJECT_COLUMN')) {
        const table = s.relation.schemaname ? `${s.relation.schemaname}.${s.relation.relname}` : s.relation.relname;
        p.renames = s.renameType === 'OBJECT_TABLE' ? { table, to: s.newname } : { table, to: s.newname, column: s.subname };
      }
      else if (tag === 'CreatedbStmt') {
        const t = (s.options ?? []).find((o: N) => o.DefElem?.defname === 'template')?.DefElem?.arg;
        const name = t?.String?.sval ?? t?.TypeName?.names?.[0]?.String?.sval;
        if (typeof name === 'string') p.freeDatabase = name;
      }
      this.walkExprs(s, { parent: null, items: [] });
      if (tag === 'DropStmt' && (s.removeType === 'OBJECT_TABLE' || s.removeType === 'OBJECT_INDEX' || s.removeType === 'OBJECT_VIEW')) {
        for (const o of s.objects ?? []) {
          const names = strs(o.List?.items);
          const rv = { relname: names[names.length - 1], schemaname: names.length > 1 ? names[names.length - 2] : undefined };
          if (this.lookupTable(rv)) {
            this.occs.push({ id: -1, table: this.lookupTable(rv), relname: rv.relname, alias: rv.relname, level: { parent: null, items: [] }, own: null, keys: null });
            if (s.removeType === 'OBJECT_VIEW') (p.dropsViews ??= []).push(rv.relname);
          } else this.sawReference = true;
        }
      }
      this.sawReference = true;
      const rel = tag === 'CreateStmt' ? s.relation : tag === 'CreateTableAsStmt' && s.objtype === 'OBJECT_TABLE' ? s.into?.rel : undefined;
      if (rel && rel.relpersistence !== 't' && !rel.catalogname && (!rel.schemaname || rel.schemaname === 'public')) p.createsTable = rel.relname;
      // A partition (or inheritance child) of a sharded table holds rows of its parent: sharded by
      // the parent's key, not a reference table (a write to it went to every shard).
      const parent = tag === 'CreateStmt' ? (s.inhRelations ?? []).map((r: N) => r.RangeVar && this.lookupTable(r.RangeVar)).find((t: NTable | null) => t) : undefined;
      if (parent && rel?.relname) p.shardedLike = { table: rel.schemaname ? `${rel.schemaname}.${rel.relname}` : rel.relname, sharded: { column: parent.column, type: parent.type } };
      // A sharded table created again (dropped, then made with other columns): other proxies must
      // read its column list from the catalog again (the definition notes a new column layout).
      else if (tag === 'CreateStmt' && rel?.relname && this.lookupTable(rel)) p.columnChanges = { table: rel.schemaname ? `${rel.schemaname}.${rel.relname}` : rel.relname, add: [], drop: [] };
      // Constraints that each shard could check only against its own rows (constraint-check.ts).
      const onTable = tag === 'CreateStmt' || tag === 'IndexStmt' || tag === 'AlterTableStmt' ? (s.relation && this.lookupTable(s.relation)) ?? parent : undefined;
      // Sequences get a range per shard (frontend/sequences.ts) for sharded tables and CREATE
      // SEQUENCE; a reference table's must count alike on every shard (its INSERTs go to all).
      if (ddlCreatesSequence(tag, s) && (tag === 'CreateSeqStmt' || onTable)) p.createsSequence = true;
      const unique = onTable ? uniqueWithoutKey(tag, s, onTable.lcolumn) : null;
      if (unique) {
        const name = s.relation?.relname ?? onTable!.name;
        p.scatterUnsupported = `${unique} on sharded table "${name}" that does not include its shard key column "${onTable!.column}" (each shard checks only its own rows, so a duplicate on another shard would get through; include "${onTable!.column}" in it)`;
      }
      const fk = tag === 'CreateStmt' || tag === 'AlterTableStmt' ? foreignKeyProblem(tag, s, onTable?.lcolumn ?? null, (rv) => this.lookupTable(rv)?.lcolumn ?? null) : null;
      if (fk) p.scatterUnsupported ??= fk;
    } else {
      p.command = 'other';
      this.walkExprs(s, { parent: null, items: [] });
    }
  }

  /** Session state, the sharded table and its keys, unsupported forms, the COPY key column. */
  private finishTarget(tag: string, s: N, p: Plan, withKeys: boolean): void {
    if (this.dmlWrite) p.write = true;
    if (p.write) p.lockObjects = lockObjects(tag, { [tag]: s });
    if (p.command === 'ddl') { const so = shapeObjects(tag, s); if (so) p.shapeObjects = so; }
    if (this.sessionState && !p.sessionState) p.sessionState = this.sessionState;
    if (this.advisory) p.advisory = true;
    if (this.preparedView) p.preparedView = true;
    if (this.advisory && tag === 'SelectStmt') { const n = notifyCalls(s, (c) => this.constSlot(c).slot); if (n) p.notifyCalls = n; }
    // Any temporary object (TEMP table, view or sequence, SELECT INTO TEMP, an object in pg_temp)
    // lives in the server session: the client must keep that connection.
    if (!p.sessionState && tag !== 'SelectStmt' && tag !== 'InsertStmt' && tag !== 'UpdateStmt' && tag !== 'DeleteStmt' && createsTemp(s)) p.sessionState = 'temp_table';
    else if (!p.sessionState && tag === 'SelectStmt' && s.intoClause && createsTemp(s.intoClause)) p.sessionState = 'temp_table';
    const fk = this.finishKeys();
    if (this.occs.length) {
      p.target = 'sharded';
      p.table = fk.table!.name;
      p.keyType = fk.table!.type as KeyType;
      p.keyColumn = fk.table!.lcolumn;
    } else if (this.sawReference) p.target = 'reference';
    p.keys = withKeys && p.target === 'sharded' ? fk.keys : null;
    if (this.unsupported) p.unsupported = this.unsupported;
    else if (this.unknownTable && !p.createsTable) {
      const t = this.unknownTable;
      p.unsupported = `table "${t}", which the cluster definition does not name (unknownTables is "reject"; register it with \`pgring table reference ${t}\` or \`pgring table shard ${t} --column COLUMN --type TYPE\`),`;
    }
    if (p.copy && this.occs.length) {
      const t = this.occs[0].table!;
      const cols = p.copy.columns ?? t.lcolumns ?? null;
      const idx = cols ? cols.indexOf(t.lcolumn) : -1;
      p.copy.keyColumnIndex = idx >= 0 ? idx : null;
    }
  }

  /** Statements that may run on several shards: the merge spec of a SELECT (returns its per-shard SQL template, if any). */
  private scatterAnalysis(tag: string, s: N, p: Plan): Part[] | undefined {
    let shardSqlT: Part[] | undefined;
    // Statements that may run on several shards: a SELECT over sharded tables gets a merge spec (the
    // caller uses it when the route has more than one shard); what cannot be answered correctly from
    // several shards gets `scatterUnsupported`, and `unsupported` too when it always scatters (no keys).
    const dml = tag === 'SelectStmt' || tag === 'InsertStmt' || tag === 'UpdateStmt' || tag === 'DeleteStmt' || tag === 'MergeStmt';
    if (dml && p.target === 'sharded' && p.command !== 'ddl') {
      let reason: string | undefined;
      if (this.writesReference && p.write) {
        if (!p.unsupported) p.unsupported = 'writing a reference table in a statement that reads sharded tables';
      }
      if (tag === 'MergeStmt' && this.writeTarget) reason = 'MERGE into a sharded table';
      reason ??= this.insertReason ?? this.scatterReason(tag, s);
      // a subquery that is not joined on the key: run first, its rows written in (subqueries.ts)
      // (also one with LIMIT / OFFSET, DISTINCT ON or a window, though joined on the key: each shard
      // would take its own rows; run first, merged, it takes them from all: `WHERE id IN (SELECT id … ORDER BY … LIMIT 10)`)
      if ((reason?.startsWith('subquery over sharded table') || reason?.startsWith('a subquery with ')) && reason !== this.insertReason && (hasSublink(s) || (tag === 'SelectStmt' && s.withClause && !s.withClause.recursive))) { p.subqueries = reason; reason = undefined; }
      if (this.insertKeyDefault && tag === 'InsertStmt' && !s.withClause) p.keyDefault = true;
      if (this.insertVia && tag === 'InsertStmt' && !s.withClause && reason === this.insertReason) p.insertVia = this.insertVia;
      if (tag === 'SelectStmt' && p.command === 'select') {
        const m = mergeSpec(this, s);
        if ('unsupported' in m) {
          // expressions over the aggregates: an inner query merged, the rest evaluated by a server (finalize.ts)
          const f = !reason && groupsOrAggregates(s) ? finalizeSql(this.text, s) : null;
          if (f && !('unsupported' in f)) p.finalize = m.unsupported;
          else reason ??= m.unsupported;
        }
        else { p.merge = m.spec; shardSqlT = m.shardSqlT; }
      }
      // a read that no merge answers across shards: its tables are read first and it runs on one
      // shard over their rows (materialize.ts)
      // (with keys: only when they route to several shards, frontend/simple.ts and extended.ts)
      if ((reason || p.subqueries) && tag === 'SelectStmt' && p.command === 'select' && !p.write && !p.unsupported && !p.finalize) {
        p.materialize = true;
        if (p.keys === null) { p.subqueries ??= reason; reason = undefined; }
      }
      if (reason) {
        p.scatterUnsupported = reason;
        if (p.keys === null && !p.unsupported) p.unsupported = reason;
      }
    }
    const view = p.command === 'ddl' && p.target === 'sharded' && tag === 'ViewStmt' ? this.shardedView(s) : null;
    if (view) p.shardedLike = view;
    else if (p.command === 'ddl' && p.target === 'sharded' && (tag === 'ViewStmt' || tag === 'CreateTableAsStmt' || tag === 'SelectStmt')) {
      // Broadcast to every shard, each shard would build it from its own rows only: a view or a
      // table that pgring then reads from one shard (a reference table) gives a part of the rows.
      const what = tag === 'ViewStmt' ? 'CREATE VIEW' : tag === 'SelectStmt' ? 'SELECT INTO' : s.objtype === 'OBJECT_MATVIEW' ? 'CREATE MATERIALIZED VIEW' : 'CREATE TABLE AS';
      p.scatterUnsupported = `${what} over sharded table "${p.table}" (each shard would build it from its own rows only${tag === 'ViewStmt' ? '; a view whose rows each come from one shard and that shows the shard key column is supported' : '; create the table, then fill it with INSERT or COPY'})`;
    }
    if (tag === 'DeclareCursorStmt' && p.target === 'sharded' && !p.unsupported) {
      // A cursor lives on the server that declared it; FETCH follows it there (frontend/session-route.ts).
      // Over several shards pgring keeps the rows itself (frontend/cursors.ts), in the simple protocol.
      p.scatterUnsupported = 'a cursor over several shards in a multi-statement string (DECLARE for a query without a shard key; use a shard key, SET pgring.shard, or a DECLARE of its own)';
    }
    if (tag === 'CopyStmt' && !s.is_from && p.target === 'sharded') {
      // COPY ... TO runs on every shard its keys allow and the rows are concatenated
      // (frontend/copy-out.ts): what concatenation cannot answer is refused, not cut short.
      let reason: string | undefined;
      if (s.filename || s.is_program) reason = 'COPY TO a server file or program across shards (each shard would write its own)';
      else if (s.query) {
        const q = s.query.SelectStmt;
        reason = q ? this.scatterReason('SelectStmt', q) : 'COPY of a data-modifying statement across shards';
        // what concatenating the shards' streams cannot answer (ORDER BY, GROUP BY, LIMIT…) runs as a
        // merged SELECT; so does one the shards cannot answer at all (its tables read first, materialize.ts)
        if (q && (reason ? !q.lockingClause?.length : copyQueryReason(q))) {
          const merged = copyMergedSpec(s, this.toks(), this.text);
          if (typeof merged === 'string') reason = merged; else { p.copyMerged = merged; reason = undefined; }
        }
      }
      if (reason) {
        p.scatterUnsupported = reason;
        if (p.keys === null && !p.unsupported) p.unsupported = reason;
      }
    }
    return shardSqlT;
  }

  private template(p: Plan, shardSqlT: Part[] | undefined): PlanTemplate {
    const out: PlanTemplate = { plan: p, fixed: [...this.fixed].sort((a, b) => a - b) };
    if (shardSqlT) out.shardSqlT = shardSqlT;
    if (this.insertT && p.target === 'sharded') out.insertT = this.insertT;
    // re-render templates so fixed slots are baked (parts() consulted `fixed` as it was then)
    if (out.shardSqlT) out.shardSqlT = bakeFixed(out.shardSqlT, this.fixed, this.input);
    if (out.insertT) {
      out.insertT.head = bakeFixed(out.insertT.head, this.fixed, this.input);
      out.insertT.tail = bakeFixed(out.insertT.tail, this.fixed, this.input);
      for (const r of out.insertT.rows) r.parts = bakeFixed(r.parts, this.fixed, this.input);
    }
    out.fixed = [...this.fixed].sort((a, b) => a - b);
    return out;
  }

  private copySpec(s: N): CopySpec {
    const spec: CopySpec = {
      table: s.relation.relname, columns: s.attlist ? strs(s.attlist) : null, keyColumnIndex: null,
      format: 'text', delimiter: '\t', header: false, null: '\\N', quote: '"', escape: '"',
    };
    let delim: string | undefined, nul: string | undefined, quote: string | undefined, escape: string | undefined;
    for (const o of s.options ?? []) {
      const d = o.DefElem;
      const arg = d.arg;
      this.fixAll(arg);
      const v = optionText(arg);
      switch (d.defname) {
        case 'format': if (v === 'csv' || v === 'binary' || v === 'text') spec.format = v; break;
        case 'delimiter': delim = v; break;
        case 'null': nul = v; break;
        case 'header': spec.header = v === undefined || !(v === 'false' || v === 'off' || v === '0'); break;
        case 'quote': quote = v; break;
        case 'escape': escape = v; break;
      }
    }
    if (spec.format === 'csv') { spec.delimiter = ','; spec.null = ''; }
    if (delim !== undefined) spec.delimiter = delim;
    if (nul !== undefined) spec.null = nul;
    if (quote !== undefined) spec.quote = quote;
    spec.escape = escape ?? spec.quote;
    return spec;
  }

  // ---------------------------------------------------------------- scatter rules

  /**
   * Whether the SELECT `s` groups by a shard key column of its sharded tables (`GROUP BY
   * customer_id`, by name, position or output alias; other grouping columns may follow): each
   * group's rows are then on one shard, which computes every aggregate of the group exactly (any
   * aggregate: ordered string_agg, percentiles, corr, json_object_agg…) and filters it by HAVING;
   * the shards' groups are disjoint and merge like plain rows (Citus pushes these down too).
   */
  groupedByKey(s: N): boolean {
    const L = this.levelOf.get(s);
    const groups: N[] = s.groupClause ?? [];
    if (!L || !groups.length || s.groupDistinct || groups.some((g) => g.GroupingSet)) return false;
    const targets: N[] = s.targetList ?? [];
    // the key column itself (a cast could map two keys of different shards to one group)
    const key = (e: N | undefined): boolean => !!e?.ColumnRef && this.keyCol(e, L) !== null;
    return groups.some((g) => {
      if (key(g)) return true;
      if (g.A_Const?.ival !== undefined && !g.A_Const.fval) {
        const k = Number(this.constValue(g.A_Const));
        return key(targets[k - 1]?.ResTarget?.val);
      }
      const f = strs(g.ColumnRef?.fields);
      if (f.length === 1) {
        return key(targets.find((x) => x.ResTarget?.name === f[0])?.ResTarget?.val);
      }
      return false;
    });
  }

  /**
   * Whether every window of the SELECT `s` is partitioned by a shard key column of its sharded
   * tables (`PARTITION BY customer_id`, directly or through a named WINDOW): each partition's rows
   * are then on one shard, which computes its windows exactly, and the shards' rows merge like any
   * other rows (Citus pushes such windows down likewise). Windows over all rows, or partitioned by
   * another column, need every shard's rows and stay refused.
   */
  windowsLocal(s: N): boolean {
    const L = this.levelOf.get(s);
    if (!L) return false;
    return windowsPartitionedBy(s, (e) => this.keyCol(e, L) !== null);
  }

  /**
   * A query with no sharded table of its own that reads a derived table (`FROM (SELECT ...) AS s`,
   * what ORMs wrap a query in to count or paginate it) over sharded tables: when each row of the
   * subquery comes from one shard's rows only (no LIMIT / OFFSET, window, set operation, and
   * grouping or DISTINCT only by the shard key), the subquery's rows are the union of what each
   * shard derives, so the outer query merges as if it read the sharded table: its occurrences
   * anchor the query. [] otherwise (the subquery stays "not joined on the shard key").
   */
  private derivedGroup(q: N): Occ[] {
    const subs: N[] = [];
    const from = (f: N): void => {
      if (f?.RangeSubselect) subs.push(f.RangeSubselect.subquery?.SelectStmt);
      else if (f?.JoinExpr) { from(f.JoinExpr.larg); from(f.JoinExpr.rarg); }
    };
    for (const f of q.fromClause ?? []) from(f);
    let found: Occ[] = [];
    for (const sub of subs) {
      if (!sub) continue;
      const L = this.levelOf.get(sub);
      const own = L ? this.occs.filter((o) => o.level === L) : [];
      const g = own.length ? own : this.derivedGroup(sub);
      if (g.length === 0) continue;
      if (found.length || !rowLocal(sub, g)) return [];
      found = g;
    }
    return found;
  }

  /**
   * CREATE [OR REPLACE] VIEW over sharded tables whose rows each come from one shard (as a derived
   * table, `rowLocal`) and that shows the shard key column: every shard keeps the view over its own
   * rows, and the view is registered as sharded by that output column, so reading it merges like a
   * sharded table and `WHERE key = …` on it goes to one shard. null: refused as before.
   */
  private shardedView(s: N): { table: string; sharded: { column: string; type: KeyType }; view: true } | null {
    const q = s.query?.SelectStmt;
    const v = s.view;
    if (!q || !v?.relname || v.relpersistence === 't' || q.withClause?.recursive || (v.schemaname && v.schemaname !== 'public')) return null;
    if (this.scatterReason('SelectStmt', q) !== undefined) return null;
    const L = this.levelOf.get(q);
    const own = L ? this.occs.filter((o) => o.level === L) : [];
    const g = own.length ? own : this.derivedGroup(q);
    if (g.length === 0 || !rowLocal(q, g)) return null;
    const aliases: string[] = strs(s.aliases);
    const targets: N[] = q.targetList ?? [];
    for (let i = 0; i < targets.length; i++) {
      const r = targets[i].ResTarget;
      const f = strs(r?.val?.ColumnRef?.fields);
      const last = f[f.length - 1];
      if (last === '*') {
        const occ = g.find((o) => f.length === 1 || f[f.length - 2] === o.alias);
        if (occ) return aliases.length ? null : { table: v.relname, sharded: { column: definitionName(occ.table!.lcolumn), type: occ.table!.type }, view: true };
        continue;
      }
      const occ = last === undefined ? undefined : g.find((o) => o.table!.lcolumn === last && (f.length === 1 || f[f.length - 2] === o.alias));
      if (occ) return { table: v.relname, sharded: { column: definitionName(aliases[i] ?? r.name ?? last), type: occ.table!.type }, view: true };
    }
    return null;
  }

  /** The sharded occurrences of each item of a FROM-less SELECT whose items all merge as
   *  aggregates (merge-rewrite.ts sublinkAggs), each over rows that come from one shard's rows
   *  (an EXISTS) or aggregated without grouping; [] when not every item is such a subquery over
   *  sharded tables (one over reference tables only would be counted once per shard). */
  private sublinkGroups(q: N): Occ[][] {
    const links = sublinkAggs(q);
    if (!links) return [];
    const out: Occ[][] = [];
    for (const { sub, exists } of links) {
      const L = this.levelOf.get(sub);
      const g = L ? this.occs.filter((o) => o.level === L) : [];
      if (g.length === 0 || (sub.targetList ?? []).some((t: N) => hasWindow(t)) || (exists && !rowLocal(sub, g))) return [];
      out.push(g);
    }
    return out;
  }

  /** Why running this statement on each of several shards and combining the results would not
   *  equal running it once over all the data. Per-shard evaluation is correct when every sharded
   *  table occurrence is joined, through shard-key equalities between co-located tables, to the
   *  sharded occurrence(s) of the statement's top level (each set-operation arm for UNION ALL). */
  private scatterReason(tag: string, s: N): string | undefined {
    if (!this.occs.length) return undefined;
    const outer = outerJoinReason(s, (rv) => this.lookupTable(rv)?.name ?? null);
    if (outer) return outer;
    const up = new Map<Occ, Occ>();
    for (const o of this.occs) up.set(o, o);
    const find = (o: Occ): Occ => { let r = o; while (up.get(r) !== r) r = up.get(r)!; return r; };
    for (const e of this.edges) { const a = find(e.from), b = find(e.to); if (a !== b) up.set(a, b); }
    const groups: Occ[][] = [];
    const leaves: N[] = [];
    if (tag === 'SelectStmt') {
      const collect = (x: N): void => { if (x.op && x.op !== 'SETOP_NONE') { collect(x.larg); collect(x.rarg); } else leaves.push(x); };
      collect(s);
      for (const leaf of leaves) {
        const L = this.levelOf.get(leaf);
        const own = L ? this.occs.filter((o) => o.level === L) : [];
        if (own.length || leaves.length > 1) { groups.push(own); continue; }
        const derived = this.derivedGroup(leaf);
        // SELECT EXISTS (...) / (SELECT count(*) ...) over sharded tables: each item its own group
        const links = derived.length ? [] : this.sublinkGroups(leaf);
        if (links.length) groups.push(...links); else groups.push(derived);
      }
      if (leaves.length > 1 && groups.some((g) => g.length === 0)) return 'set operations mixing sharded and non-sharded queries across shards';
    } else if (this.writeTarget && this.writeTarget !== 'reference') {
      const L = this.writeTarget.level; // the written table with UPDATE ... FROM / DELETE ... USING tables
      groups.push(this.occs.filter((o) => o.level === L));
    }
    else groups.push([]);
    const anchored = new Set<Occ>();
    for (const g of groups) {
      const roots = new Set(g.map(find));
      if (roots.size > 1) {
        const names = [...new Set(g.map((o) => o.table!.name))].map((n) => `"${n}"`).join(', ');
        return `join of sharded tables (${names}) not on their shard keys (cross-shard join)`;
      }
      for (const r of roots) anchored.add(r);
    }
    for (const o of this.occs) {
      if (!anchored.has(find(o))) return `subquery over sharded table "${o.table!.name}" not joined to the outer query on the shard key`;
    }
    // A subquery joined on the key is answered shard by shard, right for a filter but not for a
    // LIMIT / OFFSET, DISTINCT ON or a window over its rows: `WHERE id IN (SELECT id FROM t ORDER BY
    // id LIMIT 3)` would take 3 rows on each shard.
    const top = new Set<object>(leaves);
    for (const [node, L] of this.levelOf) {
      const q = node as N;
      if (top.has(node)) continue;
      const what = q.limitCount || q.limitOffset ? 'LIMIT or OFFSET'
        : (q.distinctClause ?? []).some((d: N) => d && Object.keys(d).length) ? 'DISTINCT ON'
        // a window partitioned by the shard key sees each partition whole on its shard
        : (q.windowClause?.length || (q.targetList ?? []).some((t: N) => hasWindow(t))) && !windowsPartitionedBy(q, (e) => this.keyCol(e, L) !== null) ? 'a window function' : null;
      if (!what) continue;
      const o = this.occs.find((x) => x.level === L);
      if (o) return `a subquery with ${what} over sharded table "${o.table!.name}" (each shard would take its own rows)`;
    }
    return undefined;
  }
}

/** A COPY option's value as text (a string, boolean, number or constant), or undefined. */
function optionText(arg: N | undefined): string | undefined {
  return arg?.String?.sval ?? (arg?.Boolean ? String(!!arg.Boolean.boolval) : arg?.A_Const ? numConstText(arg.A_Const) ?? undefined : arg?.Integer ? String(arg.Integer.ival ?? 0) : undefined);
}

/** COPY ... TO: FORMAT binary, and HEADER (csv): what merging several shards' streams needs. */
function copyOutFormat(s: N): { binary: boolean; header: boolean } {
  const out = { binary: false, header: false };
  for (const o of s.options ?? []) {
    const d = o.DefElem;
    const v = d?.arg === undefined || d.arg === null ? 'true' : optionText(d.arg) ?? '';
    if (d?.defname === 'format') out.binary = String(v).toLowerCase() === 'binary';
    else if (d?.defname === 'header') out.header = !/^(false|off|0|f|n|no)$/i.test(String(v));
  }
  return out;
}

/** The options of `COPY (SELECT …) TO STDOUT` that pgring needs to write the rows itself, or why it cannot. */
function copyMergedSpec(s: N, toks: Token[], text: string): CopyMergedSpec | string {
  const spec: CopyMergedSpec = { query: '', csv: false, header: false, delimiter: '\t', null: '\\N', quote: '"', escape: '"', forceQuote: null };
  let delimiter: string | undefined, nul: string | undefined, escape: string | undefined;
  for (const o of s.options ?? []) {
    const d = o.DefElem;
    if (!d) continue;
    const v = d.arg === undefined || d.arg === null ? 'true' : optionText(d.arg) ?? '';
    switch (d.defname) {
      case 'format': if (String(v).toLowerCase() === 'binary') return 'COPY (SELECT ... ORDER BY / GROUP BY / LIMIT) TO in binary format across shards'; spec.csv = String(v).toLowerCase() === 'csv'; break;
      case 'header': spec.header = !/^(false|off|0|f|n|no)$/i.test(String(v)); break;
      case 'delimiter': delimiter = String(v); break;
      case 'null': nul = String(v); break;
      case 'quote': spec.quote = String(v); break;
      case 'escape': escape = String(v); break;
      case 'force_quote': spec.forceQuote = d.arg?.A_Star ? true : (d.arg?.List?.items ?? []).map((x: N) => x.String?.sval); break;
      default: return `COPY (SELECT ... ORDER BY / GROUP BY / LIMIT) TO with option ${d.defname} across shards`;
    }
  }
  spec.delimiter = delimiter ?? (spec.csv ? ',' : '\t');
  spec.null = nul ?? (spec.csv ? '' : '\\N');
  spec.escape = escape ?? spec.quote;
  if (spec.delimiter.length !== 1 || spec.quote.length !== 1 || spec.escape.length !== 1) return 'COPY (SELECT ...) TO with a multi-character option across shards';
  // the query's text: COPY ( … ), the statement's first parenthesis at depth 0 to its match
  const open = toks.findIndex((t) => t.depth === 0 && t.text === '(');
  const close = open < 0 ? -1 : toks.findIndex((t, i) => i > open && t.depth === 0 && t.text === ')');
  if (close < 0) return 'COPY (SELECT ...) TO across shards';
  spec.query = text.slice(toks[open]!.end, toks[close]!.start);
  return spec;
}

const AGGREGATES = new Set(['count', 'sum', 'min', 'max', 'avg', 'array_agg', 'string_agg', 'json_agg', 'jsonb_agg', 'json_object_agg',
  'jsonb_object_agg', 'bool_and', 'bool_or', 'every', 'bit_and', 'bit_or', 'bit_xor', 'xmlagg', 'stddev', 'stddev_pop', 'stddev_samp',
  'variance', 'var_pop', 'var_samp', 'corr', 'covar_pop', 'covar_samp', 'mode', 'percentile_cont', 'percentile_disc', 'range_agg', 'range_intersect_agg']);

/** COPY (SELECT ...) TO across shards: the shards' rows are concatenated, so anything that
 *  needs the rows of every shard together (order, limit, grouping, dedup) cannot be answered. */
function copyQueryReason(q: N): string | undefined {
  const what = (x: string) => `COPY (SELECT ... ${x}) TO across shards`;
  if (q.op && q.op !== 'SETOP_NONE') return q.op === 'SETOP_UNION' && q.all ? copyQueryReason(q.larg) ?? copyQueryReason(q.rarg) : what(q.op.replace('SETOP_', ''));
  if (q.sortClause?.length) return what('ORDER BY');
  if (q.limitCount || q.limitOffset) return what('LIMIT/OFFSET');
  if (q.distinctClause) return what('DISTINCT');
  if (q.groupClause?.length || q.havingClause) return what('GROUP BY');
  if (q.windowClause?.length) return what('WINDOW');
  let agg: string | undefined;
  const visit = (n: unknown): void => {
    if (agg || n === null || typeof n !== 'object') return;
    if (Array.isArray(n)) { for (const x of n) visit(x); return; }
    const o = n as N;
    if (o.SelectStmt || o.SubLink) return;   // a subquery's aggregates are its own
    if (o.FuncCall) {
      const f = o.FuncCall;
      const name = String(strs(f.funcname).slice(-1)[0] ?? '').toLowerCase();
      if (f.over) { agg = 'window functions'; return; }
      if (f.agg_star || f.agg_distinct || f.agg_order?.length || f.agg_filter || AGGREGATES.has(name)) { agg = `aggregate ${name}()`; return; }
    }
    for (const k of Object.keys(o)) visit(o[k]);
  };
  visit(q.targetList);
  return agg ? what(agg) : undefined;
}

/** Whether every row of the SELECT `q` over the co-located occurrences `g` comes from one shard's
 *  rows: no LIMIT / OFFSET, window or set operation, and grouping or DISTINCT only with the shard key. */
function rowLocal(q: N, g: Occ[]): boolean {
  if ((q.op && q.op !== 'SETOP_NONE') || q.limitCount || q.limitOffset) return false;
  const keyRef = (n: N): boolean => {
    const f = strs(n?.ColumnRef?.fields);
    const col = f[f.length - 1];
    return col !== undefined && g.some((o) => o.table!.lcolumn === col && (f.length === 1 || f[f.length - 2] === o.alias));
  };
  // a window partitioned by the key sees only its shard's rows of each partition: exact there
  // (`row_number() OVER (PARTITION BY customer_id ORDER BY id DESC)`, the latest row per key)
  if ((q.windowClause?.length || (q.targetList ?? []).some((t: N) => hasWindow(t))) && !windowsPartitionedBy(q, keyRef)) return false;
  const grouped = (q.groupClause ?? []).length > 0 || !!q.havingClause || findAgg(q.targetList) !== null;
  if (grouped && !(q.groupClause ?? []).some(keyRef)) return false;
  const distinct: N[] | undefined = q.distinctClause;
  if (distinct?.length) {
    const on = distinct.filter((d) => d && Object.keys(d).length);
    if (on.length ? !on.some(keyRef) : !(q.targetList ?? []).some((t: N) => keyRef(t.ResTarget?.val))) return false;
  }
  return true;
}

/** The pg_notify() calls of `SELECT pg_notify(a, b) [AS x], …` with constant or parameter arguments
 *  and no other clause; null for anything else (it runs where it is routed). */
export function notifyCalls(s: N, slotOf: (c: N) => number): NonNullable<Plan['notifyCalls']> | null {
  if (s.fromClause || s.whereClause || s.groupClause || s.havingClause || s.sortClause || s.limitCount || s.limitOffset || s.withClause
    || s.distinctClause || s.valuesLists || s.intoClause || s.lockingClause || s.windowClause || (s.op && s.op !== 'SETOP_NONE')) return null;
  const out: NonNullable<Plan['notifyCalls']> = [];
  for (const t of s.targetList ?? []) {
    const f = t.ResTarget?.val?.FuncCall;
    const fn = strs(f?.funcname);
    if (!f || !(fn.length === 1 || (fn.length === 2 && fn[0] === 'pg_catalog')) || fn[fn.length - 1] !== 'pg_notify') return null;
    if (f.args?.length !== 2 || f.agg_order || f.agg_filter || f.over || f.agg_star || f.agg_distinct || f.func_variadic) return null;
    const args: NotifyArg[] = [];
    for (const a0 of f.args) {
      let a = a0;
      const cast = a.TypeCast;
      if (cast) {
        const tn = strs(cast.typeName?.names);
        if (!['text', 'varchar', 'name'].includes(tn[tn.length - 1] ?? '') || cast.typeName?.arrayBounds) return null;
        a = cast.arg;
      }
      if (a?.A_Const?.isnull) args.push({ text: null });
      else if (a?.A_Const?.sval) { const slot = slotOf(a.A_Const); args.push(slot >= 0 ? { slot } : { text: a.A_Const.sval.sval ?? '' }); }
      else if (a?.ParamRef && typeof a.ParamRef.number === 'number') args.push({ param: a.ParamRef.number - 1 });
      else return null;
    }
    out.push({ name: t.ResTarget.name ?? 'pg_notify', args: [args[0]!, args[1]!] });
  }
  return out.length ? out : null;
}

/** Whether every window of the SELECT `s` (its calls' OVER, directly or through a named WINDOW)
 *  is partitioned by an expression `isKey` accepts. */
function windowsPartitionedBy(s: N, isKey: (e: N) => boolean): boolean {
  const named = new Map<string, N>();
  for (const w of s.windowClause ?? []) if (w.WindowDef?.name) named.set(w.WindowDef.name, w.WindowDef);
  const partition = (def: N, depth = 0): N[] | undefined => {
    if (def.partitionClause?.length) return def.partitionClause;
    const ref = def.refname ?? (def.partitionClause || def.orderClause ? undefined : def.name);
    const base = ref !== undefined ? named.get(ref) : undefined;
    return base && base !== def && depth < 10 ? partition(base, depth + 1) : undefined;
  };
  const onKey = (def: N): boolean => (partition(def) ?? []).some((e: N) => isKey(e));
  let ok = true;
  const visit = (x: N): void => {
    if (!ok || !x || typeof x !== 'object') return;
    if (Array.isArray(x)) { x.forEach(visit); return; }
    for (const k in x) {
      if (k === 'SubLink') continue;
      if (k === 'FuncCall' && x[k].over && !onKey(x[k].over)) { ok = false; return; }
      visit(x[k]);
    }
  };
  visit(s.targetList);
  visit(s.sortClause);
  return ok;
}

/** An outer join whose preserved side reads no sharded table (a reference table, VALUES, a
 *  function) while its other side does: every shard would keep all the preserved rows, each
 *  null-extended or matched with its own rows only. */
function outerJoinReason(s: N, sharded: (rv: N) => string | null): string | undefined {
  const ctes = new Set<string>();
  const tablesIn = (x: N): string[] => {
    const out: string[] = [];
    const visit = (y: N): void => {
      if (y === null || typeof y !== 'object') return;
      if (Array.isArray(y)) { y.forEach(visit); return; }
      if (y.RangeVar && !(!y.RangeVar.schemaname && ctes.has(y.RangeVar.relname))) { const t = sharded(y.RangeVar); if (t) out.push(t); }
      for (const v of Object.values(y)) visit(v);
    };
    visit(x);
    return out;
  };
  let reason: string | undefined;
  const visit = (x: N): void => {
    if (reason || x === null || typeof x !== 'object') return;
    if (Array.isArray(x)) { x.forEach(visit); return; }
    if (x.CommonTableExpr?.ctename) ctes.add(x.CommonTableExpr.ctename);
    const j = x.JoinExpr;
    if (j && (j.jointype === 'JOIN_LEFT' || j.jointype === 'JOIN_RIGHT' || j.jointype === 'JOIN_FULL')) {
      const l = tablesIn(j.larg), r = tablesIn(j.rarg);
      const kept = j.jointype === 'JOIN_LEFT' ? [l] : j.jointype === 'JOIN_RIGHT' ? [r] : [l, r];
      const other = j.jointype === 'JOIN_LEFT' ? r : j.jointype === 'JOIN_RIGHT' ? l : [...l, ...r];
      if (other.length && kept.some((k) => k.length === 0)) {
        reason = `an outer join that keeps the rows of a table that is not sharded, joined to sharded table "${other[0]}" (each shard would keep every one of those rows)`;
        return;
      }
    }
    for (const v of Object.values(x)) visit(v);
  };
  visit(s);
  return reason;
}
