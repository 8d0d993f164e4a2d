package memory

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ratelimitd/ratelimitd/algorithms"
	"github.com/ratelimitd/ratelimitd/backends"
)

type testVal struct{ expiry, payload int64 }

func (v testVal) expiresAt() int64 { return v.expiry }

// check verifies t against want: the same keys and values, the count,
// the load bound and the Robin Hood order (every key is findable, and no
// key is farther from its home than the key before it, plus one).
func check(tb testing.TB, t *table[testVal], want map[hashKey]testVal) {
	tb.Helper()
	if t.n != len(want) {
		tb.Fatalf("n = %d, want %d", t.n, len(want))
	}
	if t.n*maxLoadDen > len(t.slots)*maxLoadNum {
		tb.Fatalf("%d keys in %d slots: above the maximum load", t.n, len(t.slots))
	}
	held := 0
	for i, s := range t.slots {
		if s.key == (hashKey{}) {
			continue
		}
		held++
		if v, ok := want[s.key]; !ok || v != s.val {
			tb.Fatalf("slot %d: %v=%v, want %v (present %v)", i, s.key, s.val, v, ok)
		}
		prev := (i + len(t.slots) - 1) % len(t.slots)
		pd := -1
		if p := t.slots[prev].key; p != (hashKey{}) {
			pd = t.dist(prev, p)
		}
		if d := t.dist(i, s.key); d > pd+1 {
			tb.Fatalf("slot %d: distance %d after %d", i, d, pd)
		}
	}
	if held != t.n {
		tb.Fatalf("%d slots held, n = %d", held, t.n)
	}
	for k, v := range want {
		i := t.find(k)
		if i < 0 || t.slots[i].val != v {
			tb.Fatalf("find(%v) = %d", k, i)
		}
	}
}

// randomKey returns a key whose home is anywhere, or, with keysNearEnd,
// at the end of the table, so that runs wrap around to slot 0.
func randomKey(r *rand.Rand, nearEnd bool) hashKey {
	k := hashKey{r.Uint64(), r.Uint64()}
	if nearEnd {
		k.slot = math.MaxUint64 - r.Uint64N(1<<58)
	}
	if k == (hashKey{}) {
		k.slot = 1
	}
	return k
}

// TestTable runs random inserts, finds, removes, sweeps and samples on
// tables and on Go maps and compares them after every step.
func TestTable(t *testing.T) {
	for _, c := range []struct {
		name    string
		limit   int
		nearEnd bool
	}{
		{"tiny", 1, false},
		{"small", 7, false},
		{"bounded", 100, false},
		{"wrapping", 100, true},
		{"large", 3000, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, uint64(c.limit)))
			var tb table[testVal]
			want := map[hashKey]testVal{}
			var keys []hashKey // every key inserted, some removed since
			peak := 0
			// Lifetimes long enough for the table to reach its limit
			// between sweeps.
			now, life := int64(1000), int64(4*c.limit+10)
			steps := max(5*c.limit, 2000)
			for step := range steps {
				switch op := r.IntN(10); {
				case op < 5 && len(want) < c.limit: // insert a new key
					k := randomKey(r, c.nearEnd)
					if tb.find(k) >= 0 {
						t.Fatalf("new key %v found", k)
					}
					v := testVal{expiry: now + r.Int64N(life), payload: int64(step)}
					tb.insert(k, v, c.limit)
					want[k] = v
					keys = append(keys, k)
				case op < 7 && len(keys) > 0: // update or remove a known key
					k := keys[r.IntN(len(keys))]
					i := tb.find(k)
					if _, ok := want[k]; ok != (i >= 0) {
						t.Fatalf("find(%v) = %d, present %v", k, i, ok)
					}
					if i < 0 {
						continue
					}
					if op == 5 {
						v := testVal{expiry: now + r.Int64N(life), payload: int64(step)}
						tb.slots[i].val, want[k] = v, v
					} else {
						tb.remove(i)
						delete(want, k)
					}
				case op == 7: // sweep
					now += r.Int64N(5)
					removed := tb.removeExpired(now)
					n := 0
					for k, v := range want {
						if v.expiry <= now {
							delete(want, k)
							n++
						}
					}
					if removed != n {
						t.Fatalf("removeExpired removed %d, want %d", removed, n)
					}
				default: // sample
					victim, earliest, freed := tb.sample(now)
					if freed {
						for k, v := range want {
							if v.expiry <= now && tb.find(k) < 0 {
								delete(want, k)
							}
						}
						break
					}
					if victim < 0 {
						if tb.n != 0 {
							t.Fatalf("no victim in a table of %d", tb.n)
						}
						break
					}
					s := tb.slots[victim]
					if s.val.expiry != earliest || s.val.expiry <= now {
						t.Fatalf("victim %v expiring at %d (earliest %d, now %d)", s.key, s.val.expiry, earliest, now)
					}
					tb.remove(victim)
					delete(want, s.key)
				}
				if c.limit <= 100 || step%97 == 0 {
					check(t, &tb, want)
				}
				peak = max(peak, tb.n)
			}
			check(t, &tb, want)
			if peak != c.limit {
				t.Errorf("at most %d keys held, want the limit %d", peak, c.limit)
			}
			if tb.n > 0 && len(tb.slots) > tableSize(c.limit) && len(tb.slots) > minTable {
				t.Errorf("%d slots for a limit of %d", len(tb.slots), c.limit)
			}
		})
	}
}

// TestTableGrowShrink fills a table, checks its size follows the growth
// rule and the bound, then expires it and checks it shrinks to nothing.
func TestTableGrowShrink(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	var tb table[testVal]
	const limit = 10000
	for i := range limit {
		tb.insert(randomKey(r, false), testVal{expiry: int64(i)}, limit)
		if i > minTable && tb.n*maxLoadDen*3 < len(tb.slots)*maxLoadNum*2 {
			t.Fatalf("%d keys in %d slots: less than 2/3 of the maximum load", tb.n, len(tb.slots))
		}
	}
	if len(tb.slots) != tableSize(limit) {
		t.Errorf("%d slots for %d keys at the limit, want %d", len(tb.slots), limit, tableSize(limit))
	}
	if n := tb.removeExpired(limit - 1000); n != limit-999 {
		t.Errorf("removed %d", n)
	}
	if len(tb.slots) != 999*2 {
		t.Errorf("%d slots for 999 keys after the sweep, want %d", len(tb.slots), 999*2)
	}
	tb.removeExpired(limit)
	if tb.n != 0 || tb.slots != nil {
		t.Errorf("after expiring everything: %d keys, %d slots", tb.n, len(tb.slots))
	}
}

// TestAgainstModel runs random calls (mixed algorithms, refunds, time
// steps that move concurrency buckets between the two tables, sweeps,
// resets) on a Backend and on a model that applies algorithms.Decide to a
// map of states, under ChargeAlways, and compares every decision.
func TestAgainstModel(t *testing.T) {
	type bucket struct {
		state  algorithms.State
		expiry int64
	}
	limits := []algorithms.Limit{
		{Algorithm: algorithms.FixedWindow, Rate: 5, Period: algorithms.Minute},
		{Algorithm: algorithms.SlidingWindow, Rate: 5, Period: algorithms.Minute},
		{Algorithm: algorithms.TokenBucket, Rate: 5, Period: algorithms.Minute, Burst: 3},
		{Algorithm: algorithms.GCRA, Rate: 5, Period: algorithms.Minute},
		{Algorithm: algorithms.Concurrency, Rate: 4, Period: algorithms.Minute},
		{Algorithm: algorithms.Concurrency, Rate: 4, Period: algorithms.Minute},
	}
	r := rand.New(rand.NewPCG(3, 3))
	var clock atomic.Int64 // now, for Reset
	b := New(Options{Shards: 2, MaxBuckets: 1 << 10, Now: func() time.Time { return time.UnixMicro(clock.Load()) }})
	defer b.Close()
	model := map[string]bucket{}
	ctx := context.Background()
	now, moves := base, 0
	for step := range 20000 {
		clock.Store(now)
		switch op := r.IntN(50); {
		case op == 0:
			now += r.Int64N(3 * algorithms.Minute)
			b.sweep(now)
			for k, v := range model {
				if v.expiry <= now {
					delete(model, k)
				}
			}
			continue
		case op == 1:
			k := fmt.Sprint("k", r.IntN(60))
			n, err := b.Reset(ctx, [][]byte{[]byte(k)})
			if err != nil {
				t.Fatal(err)
			}
			v, ok := model[k]
			delete(model, k)
			if live := ok && v.expiry > now; live != (n == 1) {
				t.Fatalf("step %d: Reset(%s) = %d, want it live: %v", step, k, n, live)
			}
			continue
		}
		now += r.Int64N(15 * algorithms.Second)
		reqs := make([]backends.Request, 1+r.IntN(4))
		for i := range reqs {
			k := r.IntN(60)
			reqs[i] = backends.Request{Key: []byte(fmt.Sprint("k", k)), Limit: limits[k%len(limits)], Hits: r.Int64N(6) - 2}
		}
		out := make([]algorithms.Decision, len(reqs))
		if err := b.Apply(ctx, now, backends.ChargeAlways, reqs, out); err != nil {
			t.Fatal(err)
		}
		cur := map[string]*bucket{}
		stored := map[string]bool{}
		for i, rq := range reqs {
			k := string(rq.Key)
			c, ok := cur[k]
			if !ok {
				v, existed := model[k]
				c, stored[k] = &v, existed
				cur[k] = c
			}
			d, ns := algorithms.Decide(rq.Limit, c.state, now, rq.Hits)
			if d != out[i] {
				t.Fatalf("step %d, request %d (%s %v hits %d): %+v, model %+v", step, i, k, rq.Limit.Algorithm, rq.Hits, out[i], d)
			}
			c.state, c.expiry = ns, algorithms.Expiry(rq.Limit, ns)
			stored[k] = stored[k] || rq.Hits != 0
		}
		for k, c := range cur {
			if stored[k] {
				if old, ok := model[k]; ok && small(&old.state) != small(&c.state) {
					moves++
				}
				model[k] = *c
			}
		}
		if s := b.Stats(); s.Buckets != int64(len(model)) {
			t.Fatalf("step %d: %d buckets, model %d", step, s.Buckets, len(model))
		}
	}
	if s := b.Stats(); s.Evictions != 0 {
		t.Errorf("%d evictions", s.Evictions)
	}
	if moves < 100 {
		t.Errorf("%d moves between the tables, want many", moves)
	}
	t.Logf("%d moves between the tables", moves)
}
