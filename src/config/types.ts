// Typed view of a validated proxy.json (defaults filled in by the validator).
export type PoolMode = 'transaction' | 'session';
export type ClientAuth = 'trust' | 'cleartext' | 'md5' | 'scram-sha-256';
export type KeyType = 'smallint' | 'integer' | 'bigint' | 'text' | 'varchar' | 'uuid';
export type LockMode = 'all' | 'multi_shard' | 'off';

export interface UserConfig {
  name: string;
  auth: ClientAuth;
  password?: string;
  serverUser?: string;
  serverPassword?: string;
  admin: boolean;
  poolMode?: PoolMode;
  poolSize?: number;
}
export type SslMode = 'disable' | 'prefer' | 'require' | 'verify-ca' | 'verify-full';
export interface ServerTlsConfig { sslmode: SslMode; caFile?: string; certFile?: string; keyFile?: string }
export interface BackendConfig { host: string; port: number; role: 'primary' | 'replica'; tls?: Partial<ServerTlsConfig> }
export interface ShardConfig { name: string; weight: number; backends: BackendConfig[] }
export interface ShardedTableConfig {
  name: string; column: string; type: KeyType; columns?: string[];
  /** Definition only: counts column layout changes (ADD/DROP COLUMN, CREATE TABLE again) of a table
   *  whose columns the proxies read from the catalog; a new value makes every proxy read them again. */
  layout?: number;
}

export interface Config {
  listen: { host: string; port: number; unixSocketDir?: string };
  metrics: { enabled: boolean; host: string; port: number };
  logLevel: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
  zookeeper?: { connect: string; cluster: string; sessionTimeoutMs: number; auth?: { scheme: 'digest'; user: string; password: string }; selfFenceMs?: number };
  tls?: { enabled?: boolean; certFile: string; keyFile: string; require: boolean };
  /** auth.query: unlisted roles log in with the secret stored on the server (frontend/auth-query.ts). */
  auth?: { user: string; password?: string; query: string; database?: string; cacheMs: number };
  serverTls: ServerTlsConfig;
  pool: {
    mode: PoolMode; minSize: number; maxSize: number; queueTimeoutMs: number;
    idleTimeoutMs: number; connectTimeoutMs: number; preparedStatementCacheSize: number;
  };
  users: UserConfig[];
  shards: ShardConfig[];
  ring: { vnodes: number; seed: number };
  sharding: {
    tables: ShardedTableConfig[]; referenceTables?: string[]; unknownTables?: 'reference' | 'reject'; planCacheSize: number; readFirstMaxRows: number;
    /** Set by the loader: the file states sharding rules (tables, referenceTables or unknownTables). */
    stated?: boolean;
  };
  locks: { mode: LockMode; buckets: number; timeoutMs: number; leaseMs: number; singleShard: boolean; forward: boolean; idleOwnerMs: number; peerPort: number };
  health: { runChecks: boolean; intervalMs: number; timeoutMs: number };
  backup: { maxPauseMs: number };
  /** online resharding (src/reshard): the longest write pause of one cut-over attempt */
  resharding: { maxWritePauseMs: number };
  /** where plain reads outside write transactions go (SET pgring.reads, hint reads=...) */
  reads: 'primary' | 'replica' | 'any';
  replicaMaxLagBytes: number;
  replicaMaxLagMs: number;
  /** after a client's commit, its reads use a replica only once it has replayed that commit */
  readYourWrites: boolean;
  failover: { enabled: boolean; graceMs: number; holdWritesMs: number };
  shutdownGraceMs: number;
  maxClientConnections: number;
  authTimeoutMs: number;
}
