package overrides

import "context"

// Store persists overrides by ID as opaque bytes (Marshal's output). A
// Store is safe for concurrent use, and every replica's Store over the
// same storage (one Redis, one file) sees the others' writes.
//
// Implementations: FileStore, and the Redis backend's OverrideStore
// (package backends/redis), which has this method set without importing
// this package.
type Store interface {
	// Load returns every stored override (id → value) and the store's
	// version. The values are at least as new as the version: a change
	// made during Load may be in the values and not yet in the version
	// (it is then loaded again), never the reverse.
	Load(ctx context.Context) (map[string][]byte, int64, error)
	// Version returns a number that changes whenever the stored set
	// changes. It is cheap: one GET, one stat.
	Version(ctx context.Context) (int64, error)
	// Put stores value under id, returning the previous value (nil when
	// none).
	Put(ctx context.Context, id string, value []byte) (old []byte, err error)
	// Delete removes id, returning the previous value (nil when none, and
	// then the version does not change).
	Delete(ctx context.Context, id string) (old []byte, err error)
}
