// Everything pgring keeps in ZooKeeper (locks and 2PC records are built on Zk elsewhere).
export * from './zk';
export * from './session';
export * from './layout';
export * from './sync';
export * from './ring-store';
export * from './registry';
export * from './heartbeat';
export * from './election';
