package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Config is a loaded, validated, compiled set of domains. The zero Config
// (and a nil *Config) has no domains: Match returns nil for everything.
type Config struct {
	domains  map[string]*node
	settings map[string]*Domain
	// trailingOnly is Options.TrailingWildcardsOnly, for RulesWith.
	trailingOnly bool
	names        []string // domain names, sorted
	rules        []*Rule  // every rule: domains sorted, then config order
	files        []string // file names in load order
	hash         string
}

// Error is one validation error: "file: domain.key=value.key: message".
//
// Path is where in the config the error is: the domain and the key or
// key=value of each descriptor level, dot-joined. For errors not tied to a
// descriptor it is the domain, a YAML field name ("domain"), "line N" for
// syntax errors, or empty when the error concerns the whole file. Line is
// the 1-based line of the offending YAML node, 0 when unknown.
type Error struct {
	File    string
	Path    string
	Message string
	Line    int
}

func (e *Error) Error() string {
	if e.Path == "" {
		return e.File + ": " + e.Message
	}
	return e.File + ": " + e.Path + ": " + e.Message
}

// Errors lists every validation error of one load, in file order.
type Errors []*Error

func (e Errors) Error() string {
	var b strings.Builder
	for i, x := range e {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(x.Error())
	}
	return b.String()
}

// Load reads a file, or every *.yaml/*.yml file of a directory, and parses
// them with Parse. A directory is read without recursing, in name order;
// names starting with '.' are skipped (so is Kubernetes' ..data), symlinks
// are followed (a ConfigMap mounts each file as a symlink) and
// subdirectories are skipped. A single file is read whatever its name.
//
// Reading errors are returned as "config: ..." errors; validation errors as
// Errors.
func Load(path string, opts Options) (*Config, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("config: load: %w", err)
	}
	if !fi.IsDir() {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: load: %w", err)
		}
		return Parse([]File{{Name: path, Data: data}}, opts)
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("config: load: %w", err)
	}
	var files []File
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || !isYAMLName(name) {
			continue
		}
		full := filepath.Join(path, name)
		st, err := os.Stat(full) // follows symlinks
		if err != nil {
			return nil, fmt.Errorf("config: load: %w", err)
		}
		if st.IsDir() {
			continue
		}
		data, err := os.ReadFile(full)
		if err != nil {
			return nil, fmt.Errorf("config: load: %w", err)
		}
		files = append(files, File{Name: full, Data: data})
	}
	return Parse(files, opts)
}

func isYAMLName(name string) bool {
	ext := strings.ToLower(filepath.Ext(name))
	return ext == ".yaml" || ext == ".yml"
}

// Parse parses and validates files and compiles them. It returns every
// error found, as Errors, and a nil *Config when there is any. Files are
// read in the order given; no files make an empty, valid Config.
func Parse(files []File, opts Options) (*Config, error) {
	p := &parser{opts: opts, domains: map[string]*domainState{}}
	for _, f := range files {
		p.parseFile(f)
	}
	p.finish()
	if len(p.errs) > 0 {
		return nil, p.errs
	}
	c := &Config{
		domains:      make(map[string]*node, len(p.domains)),
		settings:     make(map[string]*Domain, len(p.domains)),
		trailingOnly: opts.TrailingWildcardsOnly,
	}
	for name, d := range p.domains {
		c.domains[name] = d.root
		d.settings.rules = d.rules
		c.settings[name] = d.settings
		c.names = append(c.names, name)
	}
	slices.Sort(c.names)
	for _, name := range c.names {
		c.rules = append(c.rules, p.domains[name].rules...)
	}
	for _, f := range files {
		c.files = append(c.files, f.Name)
	}
	c.hash = hashFiles(files)
	return c, nil
}

// HasDomain reports whether the config declares domain.
func (c *Config) HasDomain(domain string) bool {
	if c == nil {
		return false
	}
	_, ok := c.domains[domain]
	return ok
}

// Domains returns the declared domains, sorted. The caller may modify the
// returned slice.
func (c *Config) Domains() []string {
	if c == nil {
		return nil
	}
	return slices.Clone(c.names)
}

// LoadedFiles returns the names of the files the config was built from, in
// load order. The caller may modify the returned slice.
func (c *Config) LoadedFiles() []string {
	if c == nil {
		return nil
	}
	return slices.Clone(c.files)
}

// Rules returns every rule in config order (domains sorted by name; within
// a domain, descriptors in file order, parents before children). The slice
// is shared: do not modify it or its rules.
func (c *Config) Rules() []*Rule {
	if c == nil {
		return nil
	}
	return c.rules
}

// Hash is a hex SHA-256 over the sources, stable for equal input: the
// files' names and contents, sorted by name, each length-prefixed.
func (c *Config) Hash() string {
	if c == nil {
		return hashFiles(nil)
	}
	return c.hash
}

func hashFiles(files []File) string {
	sorted := slices.Clone(files)
	slices.SortStableFunc(sorted, func(a, b File) int { return strings.Compare(a.Name, b.Name) })
	h := sha256.New()
	var buf []byte
	for _, f := range sorted {
		buf = strconv.AppendInt(buf[:0], int64(len(f.Name)), 10)
		buf = append(buf, ':')
		buf = append(buf, f.Name...)
		buf = strconv.AppendInt(buf, int64(len(f.Data)), 10)
		buf = append(buf, ':')
		h.Write(buf)
		h.Write(f.Data)
	}
	return hex.EncodeToString(h.Sum(nil))
}
