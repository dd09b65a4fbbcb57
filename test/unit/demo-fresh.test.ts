// `pgring demo --fresh`: deletes an earlier demo's directory, and nothing else.
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startOver } from '../../src/cli/demo';

const tmp = (files: Record<string, string>) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgring-fresh-'));
  for (const [f, text] of Object.entries(files)) { fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true }); fs.writeFileSync(path.join(dir, f), text); }
  return dir;
};

describe('demo --fresh', () => {
  it('removes a demo directory whose servers are stopped', () => {
    const dir = tmp({ 'proxy.json': '{}', 'pg1/data/PG_VERSION': '15', 'pg1/data/postmaster.pid': '999999999\n', 'zookeeper/data/myid': '1' });
    startOver(dir);
    assert.equal(fs.existsSync(dir), false);
  });

  it('refuses a directory that is not a demo\'s', () => {
    const dir = tmp({ 'important.txt': 'keep me' });
    assert.throws(() => startOver(dir), /does not look like a demo directory/);
    assert.equal(fs.readFileSync(path.join(dir, 'important.txt'), 'utf8'), 'keep me');
    fs.rmSync(dir, { recursive: true });
  });

  it('refuses while a server still runs from it', () => {
    const dir = tmp({ 'proxy.json': '{}', 'pg2/data/postmaster.pid': `${process.pid}\n/some/dir\n` });
    assert.throws(() => startOver(dir), /still runs from/);
    assert.ok(fs.existsSync(path.join(dir, 'proxy.json')));
    fs.rmSync(dir, { recursive: true });
  });

  it('does nothing when the directory does not exist', () => {
    startOver(path.join(os.tmpdir(), `pgring-fresh-none-${process.pid}`));
  });
});
