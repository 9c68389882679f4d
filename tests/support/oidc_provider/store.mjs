// A bigger in-memory store for oidc-provider. Its default keeps 1,000 entries and drops the least
// recently used: a long test session (or a benchmark of thousands of grants) would then lose
// grants, which fail later as invalid_grant and look like our bug. Same adapter, larger store.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);
const lib = dirname(require.resolve('oidc-provider')); // …/oidc-provider/lib
const { default: MemoryAdapter } = await import(join(lib, 'adapters', 'memory_adapter.js'));
const { default: LRU } = await import(join(lib, 'helpers', 'lru.js'));

const store = new LRU({ maxSize: 10_000_000 });

export const largeMemoryAdapter = (model) => new MemoryAdapter(model, store);
