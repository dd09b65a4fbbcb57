// Pure parts of backups: backup names, restore point names, the settlement rule of restored
// prepared transactions, the choice of the base backup, archive_command parsing, the local
// pgBackRest config.
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { checkBackupName, lsnValue, pickBackupSet, restorePointName, settle } from '../../src/backup/manifest';
import { archiveSettings, localConfigText, parseArchiveCommand, summarise } from '../../src/backup/pgbackrest';
import { makeGid } from '../../src/cluster/txns';

describe('backup names', () => {
  it('accepts short file-safe names and refuses the rest', () => {
    for (const n of ['b1', 'nightly-2026.12.02', 'A_b']) assert.equal(checkBackupName(n), n);
    for (const n of ['', '-x', 'a/b', 'a b', 'x'.repeat(41), "a'b"]) assert.throws(() => checkBackupName(n), /invalid backup name/);
  });
  it('restore point names are unique per cut and below PostgreSQL\'s 64-byte limit', () => {
    const rp = restorePointName('x'.repeat(40), 'mx6ddt4pc0fa');
    assert.ok(rp.length < 64, rp);
    assert.notEqual(restorePointName('b', 'c1'), restorePointName('b', 'c2'));
  });
});

describe('settling restored prepared transactions', () => {
  const m = { cluster: 'live', decisions: [{ proxy: 'p_1', txid: 'a1', gids: [], at: 0 }] };
  it('commits when the decision was in force at the cut', () => {
    assert.equal(settle(m, makeGid('live', 'p_1', 'a1', 's1'), 'db').action, 'commit');
  });
  it('rolls back when it was not (decided after the cut, or never)', () => {
    assert.equal(settle(m, makeGid('live', 'p_1', 'a2', 's2'), 'db').action, 'rollback');
    assert.equal(settle(m, makeGid('live', 'p_2', 'a1', 's2'), 'db').action, 'rollback');
  });
  it('leaves transactions of other clusters and non-pgring ones alone', () => {
    assert.equal(settle(m, makeGid('other', 'p_1', 'a1', 's1'), 'db').action, 'foreign');
    assert.equal(settle(m, 'my_own_gid', 'db').action, 'foreign');
  });
});

describe('base backup choice', () => {
  it('the newest backup that ended at or before the cut LSN', () => {
    const sets = [{ label: 'F1', lsnStop: '0/3000100' }, { label: 'F2', lsnStop: '0/5000100' }, { label: 'F3', lsnStop: '1/0' }];
    assert.equal(pickBackupSet(sets, '0/5000100'), 'F2');
    assert.equal(pickBackupSet(sets, '0/4FFFFFF'), 'F1');
    assert.equal(pickBackupSet(sets, '2/0'), 'F3');
    assert.equal(pickBackupSet(sets, '0/100'), null);
    assert.ok(lsnValue('1/0') > lsnValue('0/FFFFFFFF'));
  });
});

describe('pgBackRest settings', () => {
  it('archive_command round-trips through parseArchiveCommand', () => {
    const line = archiveSettings({ config: '/d/pgbackrest.conf', stanza: 's1' }).find((l) => l.startsWith('archive_command'))!;
    const cmd = /'(.*)'/.exec(line)![1]!;
    assert.deepEqual(parseArchiveCommand(cmd), { config: '/d/pgbackrest.conf', stanza: 's1' });
    assert.deepEqual(parseArchiveCommand('pgbackrest --stanza=main archive-push %p'), { config: '/etc/pgbackrest.conf', stanza: 'main' });
    assert.equal(parseArchiveCommand('cp %p /archive/%f'), null);
    assert.equal(parseArchiveCommand(''), null);
  });
  it('the local config keeps everything under its directory', () => {
    const t = localConfigText('/x', [{ stanza: 's1', dataDir: '/x/pg1/data', port: 5555, socketDir: '/x/pg1' }]);
    for (const k of ['repo1-path=/x/repo', 'lock-path=/x/lock', 'log-path=/x/log', 'spool-path=/x/spool', '[s1]', 'pg1-path=/x/pg1/data', 'pg1-port=5555', 'pg1-socket-path=/x/pg1']) assert.ok(t.includes(k), k);
  });
  it('summarise keeps pgBackRest\'s ERROR lines', () => {
    assert.equal(summarise('P00   INFO: x\nP00  ERROR: [055]: unable to load info file\nP00   INFO: y\n'), 'P00  ERROR: [055]: unable to load info file');
  });
});
