package redis_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ratelimitd/ratelimitd/backends"
	"github.com/ratelimitd/ratelimitd/backends/redis"
	"github.com/ratelimitd/ratelimitd/internal/redistest"
)

// overrideCtx returns a context for one store call: generous, as a bound
// on a failure, not a speed requirement.
func overrideCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// overrideTopologies runs f with Options for a standalone Redis and a
// Cluster, each started once.
func overrideTopologies(t *testing.T, f func(t *testing.T, o redis.Options)) {
	t.Run("standalone", func(t *testing.T) {
		s := redistest.Standalone(t)
		f(t, redis.Options{Addrs: []string{s.Addr}})
	})
	t.Run("cluster", func(t *testing.T) {
		c := redistest.Cluster(t)
		f(t, redis.Options{Topology: redis.Cluster, Addrs: c.Addrs})
	})
}

func mustVersion(t *testing.T, st *redis.OverrideStore) int64 {
	t.Helper()
	v, err := st.Version(overrideCtx(t))
	if err != nil {
		t.Fatalf("Version: %v", err)
	}
	return v
}

func mustLoad(t *testing.T, st *redis.OverrideStore) (map[string][]byte, int64) {
	t.Helper()
	m, v, err := st.Load(overrideCtx(t))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return m, v
}

func TestOverrideStore(t *testing.T) {
	overrideTopologies(t, func(t *testing.T, o redis.Options) {
		st := newBackend(t, o).OverrideStore("")
		ctx := overrideCtx(t)

		if hash, version := st.Keys(); hash != redis.DefaultOverrideKey || version != redis.DefaultOverrideKey+":version" {
			t.Fatalf("Keys() = %q, %q", hash, version)
		}
		if m, v := mustLoad(t, st); len(m) != 0 || v != 0 {
			t.Fatalf("new store: Load = %q, %d; want empty, 0", m, v)
		}
		if v := mustVersion(t, st); v != 0 {
			t.Fatalf("new store: Version = %d, want 0", v)
		}

		// Put a new id.
		v1 := []byte(`{"a":1}`)
		old, err := st.Put(ctx, "3:api7:api_key3:abc", v1)
		if err != nil || old != nil {
			t.Fatalf("Put new = %q, %v; want nil, nil", old, err)
		}
		ver1 := mustVersion(t, st)
		if ver1 == 0 {
			t.Fatal("Version after Put is still 0")
		}
		m, lv := mustLoad(t, st)
		if len(m) != 1 || !bytes.Equal(m["3:api7:api_key3:abc"], v1) || lv != ver1 {
			t.Fatalf("Load = %q, %d; want the put value, %d", m, lv, ver1)
		}

		// Replace it; values are bytes, any bytes.
		v2 := []byte("\x00binary\xff\n")
		old, err = st.Put(ctx, "3:api7:api_key3:abc", v2)
		if err != nil || !bytes.Equal(old, v1) {
			t.Fatalf("Put again = %q, %v; want %q", old, err, v1)
		}
		ver2 := mustVersion(t, st)
		if ver2 == ver1 {
			t.Fatal("Version unchanged by a replacing Put")
		}
		if m, _ := mustLoad(t, st); !bytes.Equal(m["3:api7:api_key3:abc"], v2) {
			t.Fatalf("Load after replace = %q", m)
		}
		if _, err := st.Put(ctx, "other", v1); err != nil {
			t.Fatal(err)
		}
		ver3 := mustVersion(t, st)

		// Delete it, then delete an absent id.
		old, err = st.Delete(ctx, "3:api7:api_key3:abc")
		if err != nil || !bytes.Equal(old, v2) {
			t.Fatalf("Delete = %q, %v; want %q", old, err, v2)
		}
		ver4 := mustVersion(t, st)
		if ver4 == ver3 {
			t.Fatal("Version unchanged by a Delete")
		}
		old, err = st.Delete(ctx, "3:api7:api_key3:abc")
		if err != nil || old != nil {
			t.Fatalf("Delete absent = %q, %v; want nil, nil", old, err)
		}
		if v := mustVersion(t, st); v != ver4 {
			t.Fatalf("Delete of an absent id changed the version: %d, then %d", ver4, v)
		}
		if m, lv := mustLoad(t, st); len(m) != 1 || !bytes.Equal(m["other"], v1) || lv != ver4 {
			t.Fatalf("Load at the end = %q, %d; want only other, %d", m, lv, ver4)
		}

		// Stores of other names are apart.
		if m, v := mustLoad(t, newBackend(t, o).OverrideStore("elsewhere")); len(m) != 0 || v != 0 {
			t.Fatalf("another name sees %q, %d", m, v)
		}
	})
}

// TestOverrideStoreReplicas: two replicas, each with its own Backend on one
// Redis, see each other's writes.
func TestOverrideStoreReplicas(t *testing.T) {
	overrideTopologies(t, func(t *testing.T, o redis.Options) {
		a := newBackend(t, o).OverrideStore("")
		b := newBackend(t, o).OverrideStore("")
		ctx := overrideCtx(t)

		before := mustVersion(t, b)
		if _, err := a.Put(ctx, "id", []byte("v")); err != nil {
			t.Fatal(err)
		}
		if v := mustVersion(t, b); v == before {
			t.Fatalf("B's Version did not change after a Put through A: %d", v)
		}
		m, _ := mustLoad(t, b)
		if string(m["id"]) != "v" {
			t.Fatalf("B's Load = %q, want id: v", m)
		}

		before = mustVersion(t, a)
		if old, err := b.Delete(ctx, "id"); err != nil || string(old) != "v" {
			t.Fatalf("B's Delete = %q, %v", old, err)
		}
		if v := mustVersion(t, a); v == before {
			t.Fatal("A's Version did not change after a Delete through B")
		}
		if m, _ := mustLoad(t, a); len(m) != 0 {
			t.Fatalf("A's Load after B's Delete = %q", m)
		}
	})
}

// TestOverrideStoreNames: a name without a hash tag still keeps both keys
// on one slot, and the store works on it in a Cluster.
func TestOverrideStoreNames(t *testing.T) {
	b := newBackend(t, redis.Options{Addrs: []string{"127.0.0.1:1"}}) // never contacted
	for _, tc := range []struct{ name, version string }{
		{"", redis.DefaultOverrideKey + ":version"},
		{"rl_ratelimitd:{overrides}", "rl_ratelimitd:{overrides}:version"},
		{"plain", "{plain}:version"},
		{"a{b", "{a{b}:version"},
	} {
		hash, version := b.OverrideStore(tc.name).Keys()
		if version != tc.version {
			t.Errorf("OverrideStore(%q): version key %q, want %q", tc.name, version, tc.version)
		}
		if redis.Slot(hash) != redis.Slot(version) {
			t.Errorf("OverrideStore(%q): %q and %q are on slots %d and %d", tc.name, hash, version, redis.Slot(hash), redis.Slot(version))
		}
	}

	c := redistest.Cluster(t)
	st := newBackend(t, redis.Options{Topology: redis.Cluster, Addrs: c.Addrs}).OverrideStore("plain")
	if _, err := st.Put(overrideCtx(t), "id", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if m, v := mustLoad(t, st); string(m["id"]) != "v" || v == 0 {
		t.Fatalf("Load = %q, %d", m, v)
	}
}

// TestOverrideStoreVersionAfterDataLoss: a Redis that lost its data (a
// restart without persistence) and took writes again never comes back to
// a version seen before, so no replica keeps a stale set.
func TestOverrideStoreVersionAfterDataLoss(t *testing.T) {
	s := redistest.Standalone(t)
	st := newBackend(t, redis.Options{Addrs: []string{s.Addr}}).OverrideStore("")
	ctx := overrideCtx(t)
	var seen []int64
	for range 3 {
		if _, err := st.Put(ctx, "id", []byte("v")); err != nil {
			t.Fatal(err)
		}
		seen = append(seen, mustVersion(t, st))
	}
	if err := s.Client(t).FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if v := mustVersion(t, st); v != 0 {
		t.Fatalf("Version after FLUSHALL = %d, want 0", v)
	}
	for range 3 {
		if _, err := st.Put(ctx, "id", []byte("v")); err != nil {
			t.Fatal(err)
		}
		v := mustVersion(t, st)
		for _, old := range seen {
			if v == old {
				t.Fatalf("version %d after data loss repeats one seen before, %v", v, seen)
			}
		}
	}
}

// TestOverrideStoreUnavailable: every operation on a dead Redis or a
// closed Backend fails with backends.ErrUnavailable.
func TestOverrideStoreUnavailable(t *testing.T) {
	s := redistest.Standalone(t)
	dead := newBackend(t, redis.Options{Addrs: []string{s.Addr}}).OverrideStore("")
	closedB, err := redis.New(redis.Options{Addrs: []string{s.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	closed := closedB.OverrideStore("")
	closedB.Close()
	s.Kill()

	for name, st := range map[string]*redis.OverrideStore{"dead redis": dead, "closed backend": closed} {
		ctx := overrideCtx(t)
		_, _, errLoad := st.Load(ctx)
		_, errVersion := st.Version(ctx)
		_, errPut := st.Put(ctx, "id", []byte("v"))
		_, errDelete := st.Delete(ctx, "id")
		for op, err := range map[string]error{"Load": errLoad, "Version": errVersion, "Put": errPut, "Delete": errDelete} {
			if !errors.Is(err, backends.ErrUnavailable) {
				t.Errorf("%s: %s: error %v, want one wrapping backends.ErrUnavailable", name, op, err)
			}
		}
	}
}
