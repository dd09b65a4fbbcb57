// Which DDL statements pgring may wrap in a distributed transaction when they go to several
// shards outside a transaction (router/ddl-tx.ts): PostgreSQL refuses some inside a transaction block.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Router } from '../../src/router/router';

let r: Router;
before(async () => { await Router.init(); r = new Router({ tables: [] }, { cacheSize: 100 }); });
const wrapped = (sql: string): boolean => r.plan(sql)[0]!.plan.ddlTx === true;

describe('DDL in a distributed transaction', () => {
  it('wraps DDL PostgreSQL runs inside a transaction block', () => {
    for (const sql of ['CREATE TABLE t (a int)', 'ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0)', 'CREATE INDEX i ON t (a)',
      'DROP TABLE t', 'DROP INDEX i', 'TRUNCATE t', 'CREATE VIEW v AS SELECT 1', 'ALTER TABLE t RENAME TO u', 'COMMENT ON TABLE t IS \'x\'',
      'GRANT SELECT ON t TO PUBLIC', 'CREATE SEQUENCE s', 'CREATE FUNCTION f() RETURNS int LANGUAGE sql AS \'select 1\'',
      'CREATE TYPE e AS ENUM (\'a\')', 'CREATE SCHEMA s', 'REINDEX TABLE t', 'REINDEX INDEX i', 'CLUSTER t USING i',
      'ALTER TABLE t DETACH PARTITION p', 'CREATE EXTENSION IF NOT EXISTS pgcrypto', 'REFRESH MATERIALIZED VIEW m']) {
      assert.equal(wrapped(sql), true, sql);
    }
  });
  it('sends those PostgreSQL refuses inside a transaction block as they are', () => {
    for (const sql of ['CREATE INDEX CONCURRENTLY i ON t (a)', 'DROP INDEX CONCURRENTLY i', 'REINDEX TABLE CONCURRENTLY t',
      'REINDEX SCHEMA s', 'REINDEX DATABASE d', 'CLUSTER', 'ALTER TABLE t DETACH PARTITION p CONCURRENTLY', 'CREATE DATABASE d',
      'DROP DATABASE d', 'ALTER DATABASE d RENAME TO e', 'CREATE TABLESPACE x LOCATION \'/tmp\'', 'ALTER SYSTEM SET work_mem = 1',
      'VACUUM t', 'CREATE SUBSCRIPTION s CONNECTION \'\' PUBLICATION p']) {
      assert.equal(wrapped(sql), false, sql);
    }
  });
});
