package redistest

import (
	"fmt"
	"os"
	"sync"
)

// T is what the helpers need of a test: testing.TB has it, and so has
// Program, for the load programs (make bench, soak, chaos) that start
// Redis outside of `go test`.
type T interface {
	Helper()
	Cleanup(func())
	Errorf(format string, args ...any)
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
	TempDir() string
}

// Program is a T for a main package. Fatal and Skipf print, run the
// cleanups (killing every process started) and exit 1; Close runs the
// cleanups. Its temporary directories are removed by Close.
type Program struct {
	Name string // prefixes messages and temporary directories

	mu       sync.Mutex
	cleanups []func()
	closed   bool
}

var _ T = (*Program)(nil)

// Helper does nothing.
func (*Program) Helper() {}

// Cleanup registers f to run at Close, last registered first.
func (p *Program) Cleanup(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cleanups = append(p.cleanups, f)
}

// Errorf prints to standard error.
func (p *Program) Errorf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s: %s\n", p.Name, fmt.Sprintf(format, args...))
}

// Fatal prints, runs the cleanups and exits 1.
func (p *Program) Fatal(args ...any) { p.exit(fmt.Sprint(args...)) }

// Fatalf prints, runs the cleanups and exits 1.
func (p *Program) Fatalf(format string, args ...any) { p.exit(fmt.Sprintf(format, args...)) }

// Skipf is fatal too: a program has nothing to skip to.
func (p *Program) Skipf(format string, args ...any) { p.exit(fmt.Sprintf(format, args...)) }

func (p *Program) exit(msg string) {
	fmt.Fprintf(os.Stderr, "%s: %s\n", p.Name, msg)
	p.Close()
	os.Exit(1)
}

// TempDir returns a new directory, removed by Close.
func (p *Program) TempDir() string {
	dir, err := os.MkdirTemp("", p.Name+"-")
	if err != nil {
		p.Fatalf("temporary directory: %v", err)
	}
	p.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Close runs the cleanups once, last registered first.
func (p *Program) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	fs := p.cleanups
	p.cleanups = nil
	p.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}
