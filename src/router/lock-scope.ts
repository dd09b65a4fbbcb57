// What a write without shard keys locks in ZooKeeper (pure: libpg-query AST in, names out).
//
// Scope is never coarser than the conflict it prevents: a DDL statement locks the objects it
// names, a key-less DML statement the table it writes. Temporary objects live in one server
// session, where no other client can conflict with them: they lock nothing. A statement that
// names nothing pgring can find (DO, CALL, an unusual utility statement) locks its statement
// kind, so two of the same kind are ordered, and nothing else is.

type N = Record<string, unknown>;

function qualified(schema: unknown, name: unknown): string | null {
  if (typeof name !== 'string') return null;
  return (typeof schema === 'string' && schema ? `${schema}.${name}` : name).toLowerCase();
}

function strings(list: unknown): string[] {
  if (!Array.isArray(list)) return [];
  const out: string[] = [];
  for (const x of list) {
    const s = (x as { String?: { sval?: unknown } })?.String?.sval;
    if (typeof s === 'string') out.push(s);
  }
  return out;
}

/** A name from a List of String nodes (`a.b.c`), lower-cased. */
function listName(list: unknown): string | null {
  const parts = strings(list);
  return parts.length ? parts.join('.').toLowerCase() : null;
}

interface Scope { objects: Set<string>; temp: boolean; permanent: boolean }

function walk(node: unknown, sc: Scope, key: string): void {
  if (node === null || typeof node !== 'object') return;
  if (Array.isArray(node)) { for (const x of node) walk(x, sc, key); return; }
  const o = node as N;
  // A RangeVar, wrapped ({RangeVar: {...}}) where the field is a generic node, bare where typed.
  const rv = (o.RangeVar as N | undefined) ?? (typeof o.relname === 'string' ? o : undefined);
  if (rv) {
    const temp = rv.relpersistence === 't' || (typeof rv.schemaname === 'string' && /^pg_temp/i.test(rv.schemaname));
    const name = qualified(rv.schemaname, rv.relname);
    if (temp) { sc.temp = true; if (name) sc.objects.add(`temp:${name.replace(/^pg_temp[^.]*\./, '')}`); }
    else if (name) { sc.objects.add(`rel:${name}`); sc.permanent = true; }
    return;
  }
  for (const k in o) {
    const v = o[k];
    if (typeof v === 'string') {
      // Object names held as plain strings by utility statements.
      if (k === 'dbname' || k === 'extname' || k === 'idxname' || k === 'servername' || k === 'fdwname' || k === 'subname' || k === 'newname' || k === 'trigname' || k === 'policy_name' || k === 'pubname') {
        sc.objects.add(`${k}:${v.toLowerCase()}`); sc.permanent = true;
      } else if (k === 'schemaname' && key === 'CreateSchemaStmt') {
        sc.objects.add(`schema:${v.toLowerCase()}`); sc.permanent = true;
      }
      continue;
    }
    if (k === 'objects' && Array.isArray(v)) {
      for (const x of v) {
        const n = listName((x as { List?: { items?: unknown } }).List?.items) ?? (typeof (x as { String?: { sval?: unknown } }).String?.sval === 'string' ? String((x as { String: { sval: string } }).String.sval).toLowerCase() : null);
        if (n) { sc.objects.add(`obj:${n}`); sc.permanent = true; }
      }
    }
    if (k === 'role' || k === 'roles') {
      const r = (v as { RoleSpec?: { rolename?: unknown } })?.RoleSpec?.rolename ?? (typeof v === 'string' ? v : null);
      if (typeof r === 'string') { sc.objects.add(`role:${r.toLowerCase()}`); sc.permanent = true; }
    }
    walk(v, sc, key);
  }
}

/**
 * The lock objects of a key-less write: names like `rel:public.accounts`, `obj:f`, `db:x`, or
 * `stmt:<Tag>` when nothing is named. `temp:<name>` marks a temporary relation: it takes no lock,
 * and the transaction layer remembers the name for the session (a later `INSERT INTO name` in
 * that session writes the temporary table, which the parser alone cannot tell).
 */
export function lockObjects(tag: string, stmt: unknown): string[] {
  const sc: Scope = { objects: new Set(), temp: false, permanent: false };
  const s = (stmt as N)[tag] as N | undefined;
  if (tag === 'InsertStmt' || tag === 'UpdateStmt' || tag === 'DeleteStmt' || tag === 'MergeStmt') {
    // DML locks the table it writes, not the ones it reads.
    walk({ RangeVar: (s?.relation as N | undefined)?.RangeVar ?? s?.relation }, sc, tag);
    if (sc.objects.size) return [...sc.objects];
    return [`stmt:${tag}`];
  }
  if (tag === 'CreateRoleStmt' && typeof s?.role === 'string') sc.objects.add(`role:${s.role.toLowerCase()}`);
  // Names of the object a statement defines (functions, operators, types, domains): top level only,
  // so that the column types of a CREATE TABLE are not taken for objects it names.
  for (const k of ['funcname', 'defnames', 'typeName', 'domainname', 'objname']) {
    const v = s?.[k] as { names?: unknown } | unknown[] | undefined;
    const n = v ? listName(Array.isArray(v) ? v : (v as { names?: unknown }).names) : null;
    if (n) { if (/^pg_temp/.test(n)) sc.temp = true; else sc.objects.add(`obj:${n}`); }
  }
  walk(s, sc, tag);
  if (sc.objects.size) return [...sc.objects].sort();
  return sc.temp ? [] : [`stmt:${tag}`];
}
