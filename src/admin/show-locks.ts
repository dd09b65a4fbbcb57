// SHOW LOCKS: the ZooKeeper lock buckets this proxy holds or waits for, from the lock
// manager's snapshot (ctx.tx.lockService / ctx.tx.locks .snapshot(), LockRow in
// src/cluster/locks.ts). Without a lock manager the result is empty with the same
// columns. Row fields are matched by snake_case name (heldMs -> held_ms); fields that
// are not among the fixed columns are appended as extra text columns.
import { lockSnapshot } from '../metrics';
import { Cell, cols, resultSet } from './result';
import type { AdminCommand } from './types';

const FIXED = cols('bucket:int8', 'proxy', 'state', 'holder', 'waiting:int8', 'remote_waiting:int8', 'held_ms:int8', 'owner_ms:int8');

const snake = (k: string): string => k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

export const showLocks: AdminCommand = {
  name: 'SHOW LOCKS',
  help: 'ZooKeeper lock buckets held or awaited by this proxy: holder, local and remote waiters, hold time',
  run: ({ proxy }) => {
    const snap = (lockSnapshot(proxy) ?? []).map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [snake(k), v])));
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
    return resultSet(all, snap.map((r) => all.map((c) => conv(r[c.name]))));
  },
};
