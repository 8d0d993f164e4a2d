package overrides

// The file store. The file is one JSON document,
//
//	{"format": 1, "overrides": {"<id>": <the override's JSON>, ...}}
//
// indented for people to read, and replaced as a whole on every change:
// written to a temporary file in the same directory, fsynced, renamed over
// the old one, and the directory fsynced, so that a reader (another
// replica, a crash) sees the old file or the new one, never a part. A
// change is a read-modify-write under an exclusive flock of a lock file
// beside it (path + ".lock", never removed: removing a lock file races
// with its next taker), so that processes sharing the file do not lose
// each other's writes; within one process a mutex does the same. Reads
// take no lock.
//
// The version is a hash of the file's device, inode, size and modification
// time, from one stat. Every write sets the new file's modification time
// to at least one microsecond past the old one's, so that two writes in
// the same clock tick (file systems stamp files with a coarse clock), of
// the same size, on a reused inode, still differ.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// fileFormat is the "format" of the file.
const fileFormat = 1

// lockRetry is how often a writer retries a lock another process holds.
const lockRetry = 5 * time.Millisecond

// FileStore is a Store in one JSON file, for the memory backend: it
// survives restarts, and replicas on one host (or sharing a volume with
// working flock) may share it. A missing file is an empty store; the
// directory must exist. The file, created with mode 0600 as it may hold
// API keys, keeps its mode across writes. Values must be JSON (Marshal's
// output is); Load returns them compacted.
//
// A file that is not a valid store (edited by hand and broken) fails Load,
// Put and Delete with an error that names it, and is never overwritten:
// fix or remove it.
//
// A FileStore is safe for concurrent use.
type FileStore struct {
	path string
	lock string     // path + ".lock"
	mu   sync.Mutex // serializes this FileStore's writers
}

var _ Store = (*FileStore)(nil)

// NewFileStore returns the store in the file at path. It touches nothing
// until used.
func NewFileStore(path string) *FileStore {
	path = filepath.Clean(path)
	return &FileStore{path: path, lock: path + ".lock"}
}

// Path returns the file's path.
func (s *FileStore) Path() string { return s.path }

type fileDoc struct {
	Format    int                        `json:"format"`
	Overrides map[string]json.RawMessage `json:"overrides"`
}

// Load implements Store.
func (s *FileStore) Load(ctx context.Context) (map[string][]byte, int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, fmt.Errorf("overrides: load %s: %w", s.path, err)
	}
	m, fi, err := s.read()
	if err != nil {
		return nil, 0, fmt.Errorf("overrides: load %s: %w", s.path, err)
	}
	return m, fileVersion(fi), nil
}

// Version implements Store: one stat.
func (s *FileStore) Version(ctx context.Context) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("overrides: version %s: %w", s.path, err)
	}
	fi, err := os.Stat(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("overrides: version: %w", err)
	}
	return fileVersion(fi), nil
}

// Put implements Store.
func (s *FileStore) Put(ctx context.Context, id string, value []byte) ([]byte, error) {
	if id == "" {
		return nil, errors.New("overrides: put: empty id")
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, value); err != nil {
		return nil, fmt.Errorf("overrides: put %s: the value is not JSON: %w", id, err)
	}
	old, err := s.update(ctx, func(m map[string][]byte) ([]byte, bool) {
		old := m[id]
		m[id] = compact.Bytes()
		return old, true
	})
	if err != nil {
		return nil, fmt.Errorf("overrides: put %s: %w", id, err)
	}
	return old, nil
}

// Delete implements Store. Deleting an absent id writes nothing.
func (s *FileStore) Delete(ctx context.Context, id string) ([]byte, error) {
	old, err := s.update(ctx, func(m map[string][]byte) ([]byte, bool) {
		old, ok := m[id]
		delete(m, id)
		return old, ok
	})
	if err != nil {
		return nil, fmt.Errorf("overrides: delete %s: %w", id, err)
	}
	return old, nil
}

// read reads and decodes the file; fi is nil when it does not exist.
func (s *FileStore) read() (m map[string][]byte, fi fs.FileInfo, err error) {
	f, err := os.Open(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string][]byte{}, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	// The version comes from the file read, not from the path, which a
	// writer may have replaced meanwhile: then the next Version differs
	// from this one and the newer file is read in turn.
	if fi, err = f.Stat(); err != nil {
		return nil, nil, err
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, nil, err
	}
	m, err = decodeFile(data)
	if err != nil {
		return nil, nil, err
	}
	return m, fi, nil
}

// decodeFile decodes a file's content, with an error that says where it
// is broken.
func decodeFile(data []byte) (map[string][]byte, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("the file is empty: not an overrides file (remove it for an empty store)")
	}
	var doc fileDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			line := 1 + bytes.Count(data[:min(int(syn.Offset), len(data))], []byte("\n"))
			return nil, fmt.Errorf("invalid JSON on line %d (byte %d): %w", line, syn.Offset, err)
		}
		return nil, fmt.Errorf("not an overrides file: %w", err)
	}
	if doc.Format != fileFormat {
		return nil, fmt.Errorf("not an overrides file: format %d is not %d", doc.Format, fileFormat)
	}
	m := make(map[string][]byte, len(doc.Overrides))
	for id, raw := range doc.Overrides {
		var b bytes.Buffer
		if err := json.Compact(&b, raw); err != nil { // cannot fail: raw was parsed
			return nil, err
		}
		m[id] = b.Bytes()
	}
	return m, nil
}

// fileVersion hashes what identifies one version of the file; 0 is a
// missing file (fi nil). The hash is non-negative and never 0 otherwise.
func fileVersion(fi fs.FileInfo) int64 {
	if fi == nil {
		return 0
	}
	var dev, ino uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		dev, ino = uint64(st.Dev), st.Ino
	}
	h := fnv.New64a()
	var b [8]byte
	for _, v := range []uint64{dev, ino, uint64(fi.Size()), uint64(fi.ModTime().UnixNano())} {
		binary.LittleEndian.PutUint64(b[:], v)
		h.Write(b[:])
	}
	v := int64(h.Sum64() &^ (1 << 63))
	if v == 0 {
		v = 1
	}
	return v
}

// update applies f to the stored map under the locks and writes the
// result when f reports a change. It returns f's old value.
func (s *FileStore) update(ctx context.Context, f func(map[string][]byte) ([]byte, bool)) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	unlock, err := s.lockFile(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	m, fi, err := s.read()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.path, err)
	}
	old, changed := f(m)
	if !changed {
		return old, nil
	}
	if err := s.write(m, fi); err != nil {
		return nil, err
	}
	return old, nil
}

// lockFile takes the exclusive flock of the lock file, waiting for
// another process to release it until ctx is done, and returns the
// function that releases it.
func (s *FileStore) lockFile(ctx context.Context) (func(), error) {
	f, err := os.OpenFile(s.lock, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	fd := int(f.Fd())
	var wait *time.Timer
	for {
		err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			if wait != nil {
				wait.Stop()
			}
			return func() {
				syscall.Flock(fd, syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", s.lock, err)
		}
		if wait == nil {
			wait = time.NewTimer(lockRetry)
		} else {
			wait.Reset(lockRetry)
		}
		select {
		case <-ctx.Done():
			wait.Stop()
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", s.lock, ctx.Err())
		case <-wait.C:
		}
	}
}

// write replaces the file by one holding m, atomically; prev is the file
// replaced (nil when none).
func (s *FileStore) write(m map[string][]byte, prev fs.FileInfo) (err error) {
	doc := fileDoc{Format: fileFormat, Overrides: make(map[string]json.RawMessage, len(m))}
	for id, v := range m {
		doc.Overrides[id] = v
	}
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')

	dir, base := filepath.Split(s.path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	renamed := false
	defer func() {
		if err != nil && !renamed {
			tmp.Close()
			os.Remove(name)
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	mtime := time.Now().Truncate(time.Microsecond)
	if prev != nil {
		if err = tmp.Chmod(prev.Mode().Perm()); err != nil {
			return err
		}
		if p := prev.ModTime(); !mtime.After(p) {
			mtime = p.Truncate(time.Microsecond).Add(time.Microsecond)
		}
	}
	if err = os.Chtimes(name, mtime, mtime); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(name, s.path); err != nil {
		return err
	}
	renamed = true
	// The rename is done: from here on the new file is in place, and an
	// error only says that it may not survive a crash.
	d, derr := os.Open(dir)
	if derr != nil {
		return derr
	}
	defer d.Close()
	if derr = d.Sync(); derr != nil {
		return fmt.Errorf("sync directory %s: %w", dir, derr)
	}
	return nil
}
