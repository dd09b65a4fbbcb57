// SHOW LOCKS: the ZooKeeper locks this proxy holds or waits for, from the lock
// manager's snapshot (ctx.tx.locks.snapshot()). Without a lock manager the result
// is empty with the same columns. Fields of the snapshot rows that are not among
// the fixed columns are appended as extra text columns.
import { lockSnapshot } from '../metrics';
import { Cell, cols, resultSet } from './result';
import type { AdminCommand } from './types';

const FIXED = cols('lock', 'bucket:int8', 'state', 'pid:int8', 'user', 'database', 'shards', 'node', 'since', 'wait_ms:int8', 'held_ms:int8');

export const showLocks: AdminCommand = {
  name: 'SHOW LOCKS',
  help: 'ZooKeeper locks held and awaited by this proxy\'s transactions',
  run: ({ proxy }) => {
    const snap = lockSnapshot(proxy) ?? [];
    const fixed = new Set(FIXED.map((c) => c.name));
    const extra: string[] = [];
    for (const r of snap) for (const k of Object.keys(r)) if (!fixed.has(k) && !extra.includes(k)) extra.push(k);
    const all = [...FIXED, ...cols(...extra)];
    const conv = (v: unknown): Cell => {
      if (v === null || v === undefined) return null;
      if (v instanceof Date) return v.toISOString();
      if (Array.isArray(v)) return v.join(',');
      if (typeof v === 'object') return JSON.stringify(v);
      return v as Cell;
    };
    const rows = snap.map((r) => all.map((c) => conv(r[c.name])));
    return resultSet(all, rows);
  },
};
