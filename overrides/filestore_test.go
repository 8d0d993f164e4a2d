package overrides_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ratelimitd/ratelimitd/overrides"
)

// ctx returns a context for store calls: a bound on a failure, not a
// speed requirement.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func load(t *testing.T, st overrides.Store) (map[string][]byte, int64) {
	t.Helper()
	m, v, err := st.Load(ctx(t))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return m, v
}

func version(t *testing.T, st overrides.Store) int64 {
	t.Helper()
	v, err := st.Version(ctx(t))
	if err != nil {
		t.Fatalf("Version: %v", err)
	}
	return v
}

func put(t *testing.T, st overrides.Store, o *overrides.Override) {
	t.Helper()
	b, err := overrides.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(ctx(t), o.ID(), b); err != nil {
		t.Fatalf("Put: %v", err)
	}
}

func TestFileStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "overrides.json")
	st := overrides.NewFileStore(path)
	c := ctx(t)

	if m, v := load(t, st); len(m) != 0 || v != 0 {
		t.Fatalf("missing file: Load = %q, %d; want empty, 0", m, v)
	}
	if v := version(t, st); v != 0 {
		t.Fatalf("missing file: Version = %d", v)
	}

	v1 := []byte(`{"a": 1}`)
	old, err := st.Put(c, "id1", v1)
	if err != nil || old != nil {
		t.Fatalf("Put new = %q, %v", old, err)
	}
	ver1 := version(t, st)
	m, lv := load(t, st)
	if string(m["id1"]) != `{"a":1}` || lv != ver1 || ver1 == 0 {
		t.Fatalf("Load = %q, %d; Version %d", m, lv, ver1)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("new file mode %v, want 0600", fi.Mode().Perm())
	}

	// Same size, written at once: the version still changes.
	old, err = st.Put(c, "id1", []byte(`{"a":2}`))
	if err != nil || string(old) != `{"a":1}` {
		t.Fatalf("Put again = %q, %v", old, err)
	}
	ver2 := version(t, st)
	if ver2 == ver1 {
		t.Fatal("Version unchanged by a Put of the same size")
	}

	if _, err := st.Put(c, "id1", []byte("not json")); err == nil || !strings.Contains(err.Error(), "not JSON") {
		t.Errorf("Put of a non-JSON value: %v", err)
	}
	if v := version(t, st); v != ver2 {
		t.Error("a refused Put changed the version")
	}

	old, err = st.Delete(c, "id1")
	if err != nil || string(old) != `{"a":2}` {
		t.Fatalf("Delete = %q, %v", old, err)
	}
	ver3 := version(t, st)
	if ver3 == ver2 {
		t.Fatal("Version unchanged by a Delete")
	}
	if old, err := st.Delete(c, "id1"); err != nil || old != nil {
		t.Fatalf("Delete absent = %q, %v", old, err)
	}
	if v := version(t, st); v != ver3 {
		t.Fatal("Delete of an absent id changed the version")
	}

	// The mode an operator gave the file is kept.
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(c, "id2", v1); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("mode after a write: %v, %v; want 0640", fi.Mode().Perm(), err)
	}
}

// TestFileStoreRestart: a new FileStore on the same path (a restarted
// process) loads what the old one stored, and the file is readable JSON.
func TestFileStoreRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "overrides.json")
	before := overrides.NewFileStore(path)
	a, b := limit(500, "api_key", "abc"), limit(7, "api_key", "def", "path", "/x")
	put(t, before, a)
	put(t, before, b)
	wantM, wantV := load(t, before)

	after := overrides.NewFileStore(path)
	m, v := load(t, after)
	if v != wantV || len(m) != 2 {
		t.Fatalf("after restart: %d overrides, version %d; want 2, %d", len(m), v, wantV)
	}
	for id, value := range wantM {
		if !bytes.Equal(m[id], value) {
			t.Errorf("after restart %s = %s, want %s", id, m[id], value)
		}
	}
	got, err := overrides.Unmarshal(m[a.ID()])
	if err != nil || got.RequestsPerUnit != 500 {
		t.Fatalf("decoded %+v, %v", got, err)
	}

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"format": 1`, `"3:api7:api_key3:abc": {`, `"requests_per_unit": 500`} {
		if !bytes.Contains(data, []byte(want)) {
			t.Errorf("the file does not hold %s:\n%s", want, data)
		}
	}
}

// TestFileStoreNoTempFiles: writes leave the file and its lock file,
// nothing else.
func TestFileStoreNoTempFiles(t *testing.T) {
	dir := t.TempDir()
	st := overrides.NewFileStore(filepath.Join(dir, "overrides.json"))
	for i := range 5 {
		put(t, st, limit(uint32(i+1), "k", fmt.Sprint(i)))
	}
	if _, err := st.Delete(ctx(t), limit(1, "k", "0").ID()); err != nil {
		t.Fatal(err)
	}
	// A failed write (the directory is gone) leaves nothing either.
	if _, err := overrides.NewFileStore(filepath.Join(dir, "missing", "o.json")).Put(ctx(t), "id", []byte("{}")); err == nil {
		t.Error("Put in a missing directory: no error")
	}
	names := dirNames(t, dir)
	if want := []string{"overrides.json", "overrides.json.lock"}; !slices.Equal(names, want) {
		t.Errorf("directory holds %q, want %q", names, want)
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// TestFileStoreConcurrentPuts: goroutines writing through one FileStore,
// and through two FileStores on one path (which stand for two processes:
// only the flock orders them), lose no write.
func TestFileStoreConcurrentPuts(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "overrides.json")
	stores := []*overrides.FileStore{overrides.NewFileStore(path), overrides.NewFileStore(path)}
	const writers, each = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		st := stores[w%len(stores)]
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("w%d-%d", w, i)
				if _, err := st.Put(context.Background(), id, []byte(`"`+id+`"`)); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	m, _ := load(t, overrides.NewFileStore(path))
	if len(m) != writers*each {
		t.Errorf("%d overrides stored, want %d", len(m), writers*each)
	}
	for w := range writers {
		for i := range each {
			id := fmt.Sprintf("w%d-%d", w, i)
			if string(m[id]) != `"`+id+`"` {
				t.Errorf("%s = %q", id, m[id])
			}
		}
	}
	if names := dirNames(t, dir); len(names) != 2 {
		t.Errorf("directory holds %q, want the file and its lock", names)
	}
}

// TestFileStoreCorrupt: a broken file fails Load, Put and Delete with an
// error that names the file and the place, and is not overwritten.
func TestFileStoreCorrupt(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content, want string
	}{
		{"truncated", "{\n  \"format\": 1,\n  \"overrides\": {\n", "invalid JSON on line 4"},
		{"garbage", "{\n  \"format\": 1,\n  oops\n}\n", "invalid JSON on line 3"},
		{"empty", "", "the file is empty"},
		{"wrong shape", `{"format": 1, "overrides": []}`, "not an overrides file"},
		{"other format", `{"format": 2, "overrides": {}}`, "format 2 is not 1"},
		{"no format", `{"overrides": {}}`, "format 0 is not 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name+".json")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			st := overrides.NewFileStore(path)
			_, _, err := st.Load(ctx(t))
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("Load = %v, want an error naming %s and containing %q", err, path, tt.want)
			}
			if _, err := st.Put(ctx(t), "id", []byte("{}")); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Put = %v, want an error containing %q", err, tt.want)
			}
			if _, err := st.Delete(ctx(t), "id"); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Delete = %v, want an error containing %q", err, tt.want)
			}
			if data, _ := os.ReadFile(path); string(data) != tt.content {
				t.Errorf("the broken file was overwritten: %q", data)
			}
		})
	}
}

// TestFileStoreLockWait: a writer waits for the flock another process
// holds, and gives up when its context ends.
func TestFileStoreLockWait(t *testing.T) {
	path := filepath.Join(t.TempDir(), "overrides.json")
	unlock := holdLock(t, path+".lock")
	c, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := overrides.NewFileStore(path).Put(c, "id", []byte("{}"))
		done <- err
	}()
	cancel()
	if err := <-done; err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Errorf("Put with the lock held and its context cancelled = %v", err)
	}
	unlock()
	if _, err := overrides.NewFileStore(path).Put(ctx(t), "id", []byte("{}")); err != nil {
		t.Errorf("Put after the lock was released: %v", err)
	}
}

// holdLock takes the flock of path as another process would, and returns
// the function that releases it.
func holdLock(t *testing.T, path string) func() {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release := func() { once.Do(func() { f.Close() }) }
	t.Cleanup(release)
	return release
}
