// JSON schema of proxy.json. Strict: unknown keys are errors (additionalProperties: false),
// so a typo stops start-up with the key's path instead of being silently ignored.
// TLS to PostgreSQL servers, as libpq's connection settings (sslmode, sslrootcert, sslcert, sslkey).
const serverTlsProps = {
  // false keeps the section in a file (proxy.example.json) without using it
  enabled: { type: 'boolean' },
  sslmode: { enum: ['disable', 'prefer', 'require', 'verify-ca', 'verify-full'] },
  caFile: { type: 'string', minLength: 1 },
  certFile: { type: 'string', minLength: 1 },
  keyFile: { type: 'string', minLength: 1 },
} as const;
const certWithKey = { certFile: ['keyFile'], keyFile: ['certFile'] } as const;

export const configSchema = {
  $id: 'pgring-config',
  type: 'object',
  additionalProperties: false,
  required: ['users'],
  properties: {
    $schema: { type: 'string' },
    listen: {
      type: 'object', additionalProperties: false,
      properties: {
        host: { type: 'string', default: '127.0.0.1' },
        port: { type: 'integer', minimum: 0, maximum: 65535, default: 6432 },
        // also listen on <dir>/.s.PGSQL.<port> (PgBouncer's unix_socket_dir)
        unixSocketDir: { type: 'string', minLength: 1 },
      },
      default: {},
    },
    metrics: {
      type: 'object', additionalProperties: false,
      properties: {
        enabled: { type: 'boolean', default: true },
        host: { type: 'string', default: '127.0.0.1' },
        port: { type: 'integer', minimum: 0, maximum: 65535, default: 9930 },
      },
      default: {},
    },
    logLevel: { enum: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], default: 'info' },
    // TLS for client connections (SSLRequest answered 'S'); absent: 'N', as a server with ssl=off.
    tls: {
      type: 'object', additionalProperties: false,
      required: ['certFile', 'keyFile'],
      properties: {
        // false: the section is ignored (as if absent), so an example can show it without the files
        enabled: { type: 'boolean', default: true },
        certFile: { type: 'string', minLength: 1 },
        keyFile: { type: 'string', minLength: 1 },
        // refuse clients that do not negotiate TLS (like hostssl-only pg_hba.conf)
        require: { type: 'boolean', default: false },
      },
    },
    // PgBouncer's auth_user + auth_query: a role not in `users` logs in with the secret the
    // servers store for it, read by `user` on the first shard's primary (cached for cacheMs)
    auth: {
      type: 'object', additionalProperties: false,
      required: ['user'],
      properties: {
        user: { type: 'string', minLength: 1 },
        password: { type: 'string' },
        query: { type: 'string', minLength: 1, default: 'SELECT usename, passwd FROM pg_shadow WHERE usename=$1' },
        // database the lookup connects to (default: the client's, as PgBouncer's auth_dbname)
        database: { type: 'string', minLength: 1 },
        cacheMs: { type: 'integer', minimum: 0, default: 10000 },
      },
    },
    // TLS to every backend (a backend's own `tls` overrides it field by field); default: prefer
    serverTls: {
      type: 'object', additionalProperties: false, dependencies: certWithKey,
      properties: { ...serverTlsProps, sslmode: { ...serverTlsProps.sslmode, default: 'prefer' } },
      default: {},
    },
    zookeeper: {
      type: 'object', additionalProperties: false,
      required: ['connect'],
      properties: {
        connect: { type: 'string', minLength: 1 },
        cluster: { type: 'string', pattern: '^[A-Za-z0-9_.-]+$', default: 'default' },
        sessionTimeoutMs: { type: 'integer', minimum: 1000, maximum: 120000, default: 10000 },
        // credentials pgring authenticates with; every znode it creates gets their digest ACL
        auth: {
          type: 'object', additionalProperties: false,
          required: ['scheme', 'user', 'password'],
          properties: {
            scheme: { enum: ['digest'] },
            user: { type: 'string', minLength: 1, pattern: '^[^:]+$' },
            password: { type: 'string', minLength: 1 },
          },
        },
        // Writes stop after this long without a ZooKeeper connection; default: half the session timeout.
        selfFenceMs: { type: 'integer', minimum: 100, maximum: 120000 },
      },
    },
    pool: {
      type: 'object', additionalProperties: false,
      properties: {
        mode: { enum: ['transaction', 'session'], default: 'transaction' },
        minSize: { type: 'integer', minimum: 0, default: 0 },
        maxSize: { type: 'integer', minimum: 1, default: 20 },
        queueTimeoutMs: { type: 'integer', minimum: 1, default: 10000 },
        idleTimeoutMs: { type: 'integer', minimum: 0, default: 60000 },
        connectTimeoutMs: { type: 'integer', minimum: 1, default: 5000 },
        preparedStatementCacheSize: { type: 'integer', minimum: 0, default: 500 },
      },
      default: {},
    },
    users: {
      type: 'array', minItems: 1,
      items: {
        type: 'object', additionalProperties: false,
        required: ['name'],
        properties: {
          name: { type: 'string', minLength: 1 },
          // How pgring authenticates the client.
          auth: { enum: ['trust', 'cleartext', 'md5', 'scram-sha-256'], default: 'trust' },
          password: { type: 'string' },
          // Credentials pgring uses towards the servers (default: the same user and password).
          serverUser: { type: 'string' },
          serverPassword: { type: 'string' },
          admin: { type: 'boolean', default: false },
          poolMode: { enum: ['transaction', 'session'] },
          poolSize: { type: 'integer', minimum: 1 },
        },
      },
    },
    shards: {
      type: 'array',
      items: {
        type: 'object', additionalProperties: false,
        required: ['name', 'backends'],
        properties: {
          name: { type: 'string', pattern: '^[A-Za-z0-9_-]+$' },
          weight: { type: 'number', exclusiveMinimum: 0, default: 1 },
          backends: {
            type: 'array', minItems: 1,
            items: {
              type: 'object', additionalProperties: false,
              required: ['port'],
              properties: {
                host: { type: 'string', default: '127.0.0.1' },
                port: { type: 'integer', minimum: 1, maximum: 65535 },
                role: { enum: ['primary', 'replica'], default: 'primary' },
                tls: { type: 'object', additionalProperties: false, dependencies: certWithKey, properties: serverTlsProps },
              },
            },
          },
        },
      },
      default: [],
    },
    ring: {
      type: 'object', additionalProperties: false,
      properties: {
        vnodes: { type: 'integer', minimum: 1, maximum: 4096, default: 256 },
        seed: { type: 'integer', default: 0 },
      },
      default: {},
    },
    // With zookeeper configured, this only seeds the cluster definition (ring init, first proxy)
    // and must agree with it; leave tables/referenceTables/unknownTables out to take the cluster's.
    sharding: {
      type: 'object', additionalProperties: false,
      properties: {
        tables: {
          type: 'array',
          items: {
            type: 'object', additionalProperties: false,
            required: ['name', 'column', 'type'],
            properties: {
              name: { type: 'string', minLength: 1 },
              column: { type: 'string', minLength: 1 },
              type: { enum: ['smallint', 'integer', 'bigint', 'text', 'varchar', 'uuid'] },
              // All columns in table order, for COPY without a column list (optional: read
              // from the catalog when missing).
              columns: { type: 'array', items: { type: 'string' } },
            },
          },
          default: [],
        },
        // Tables present on every shard (reads from one shard, writes to all).
        referenceTables: { type: 'array', items: { type: 'string', minLength: 1 } },
        // What a table named in neither list is: a reference table, or an error.
        unknownTables: { enum: ['reference', 'reject'] },
        planCacheSize: { type: 'integer', minimum: 16, default: 4096 },
        // Rows a subquery, derived table or table read first may give (src/frontend/subqueries.ts):
        // pgring writes them into the statement as VALUES, so this bounds the statement it builds.
        readFirstMaxRows: { type: 'integer', minimum: 1, maximum: 1000000, default: 10000 },
      },
      default: {},
    },
    locks: {
      type: 'object', additionalProperties: false,
      properties: {
        mode: { enum: ['all', 'multi_shard', 'off'], default: 'all' },
        buckets: { type: 'integer', minimum: 1, maximum: 1048576, default: 1024 },
        timeoutMs: { type: 'integer', minimum: 0, default: 600000 },
        leaseMs: { type: 'integer', minimum: 0, default: 0 },
        // each bucket has one owner proxy that takes its ZooKeeper lock and grants it to the
        // other proxies' transactions over TCP (src/cluster/lock-peers.ts); false: every proxy
        // queues in ZooKeeper itself for every bucket
        forward: { type: 'boolean', default: true },
        // an owner whose own clients took no lock for this long, and whose buckets no third
        // proxy used meanwhile, is bypassed: the proxy that needs its buckets queues in ZooKeeper
        // itself and keeps them while it alone uses them (0: always forward)
        idleOwnerMs: { type: 'integer', minimum: 0, default: 30000 },
        // TCP port of that service (0: any free port; it is published in the proxy's znode)
        peerPort: { type: 'integer', minimum: 0, maximum: 65535, default: 0 },
        // take ZooKeeper locks also when the cluster has one shard (where PostgreSQL alone
        // orders every write and a lock adds nothing): for exercising the lock path
        singleShard: { type: 'boolean', default: false },
      },
      default: {},
    },
    resharding: {
      type: 'object', additionalProperties: false,
      properties: {
        // the longest write pause of one cut-over attempt (`pgring shard --max-pause-ms` overrides it)
        maxWritePauseMs: { type: 'integer', minimum: 100, maximum: 600000, default: 5000 },
      },
      default: {},
    },
    backup: {
      type: 'object', additionalProperties: false,
      properties: {
        // the longest `backup create` may hold new two-phase-commit decisions; a proxy that has
        // not acknowledged the barrier by then aborts the cut
        maxPauseMs: { type: 'integer', minimum: 10, maximum: 600000, default: 2000 },
      },
      default: {},
    },
    health: {
      type: 'object', additionalProperties: false,
      properties: {
        runChecks: { type: 'boolean', default: true },
        intervalMs: { type: 'integer', minimum: 100, default: 1000 },
        timeoutMs: { type: 'integer', minimum: 100, default: 2000 },
      },
      default: {},
    },
    // Replicas (docs/ARCHITECTURE.md "Replicas and failover").
    reads: { enum: ['primary', 'replica', 'any'], default: 'primary' },
    replicaMaxLagBytes: { type: 'integer', minimum: 0, default: 16777216 },
    replicaMaxLagMs: { type: 'integer', minimum: 0, default: 5000 },
    readYourWrites: { type: 'boolean', default: true },
    failover: {
      type: 'object', additionalProperties: false,
      properties: {
        // off by default: a shard fails over only where the operator set up replicas for it
        enabled: { type: 'boolean', default: false },
        graceMs: { type: 'integer', minimum: 0, default: 5000 },
        // statements for a shard that is failing over wait this long for its new primary
        // (0: 57P03 at once)
        holdWritesMs: { type: 'integer', minimum: 0, default: 0 },
      },
      default: {},
    },
    shutdownGraceMs: { type: 'integer', minimum: 0, default: 30000 },
    // client connections past this are refused with 53300 after their startup packet, as
    // PostgreSQL's max_connections (admin console connections, database "pgring", are not counted)
    maxClientConnections: { type: 'integer', minimum: 1, default: 10000 },
    // a client that has not completed authentication by then is disconnected (PostgreSQL's
    // authentication_timeout)
    authTimeoutMs: { type: 'integer', minimum: 100, maximum: 600000, default: 60000 },
  },
} as const;
