package loadrig

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// Sample is one line of the Prometheus text format.
type Sample struct {
	Name   string
	Labels map[string]string // nil when the line has none
	Value  float64
}

// Metrics is one scrape of /metrics, its samples in the order served.
type Metrics []Sample

// Scrape reads and parses http://addr/metrics.
func Scrape(addr string) (Metrics, error) {
	resp, err := httpClient.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return ParseMetrics(string(b))
}

// ParseMetrics parses the Prometheus text format as client_golang writes
// it: "name{k="v",...} value", without timestamps. Comment lines are
// skipped.
func ParseMetrics(text string) (Metrics, error) {
	var m Metrics
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			return nil, fmt.Errorf("metrics: no value in %q", line)
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics: %q: %v", line, err)
		}
		s := Sample{Name: line[:sp], Value: v}
		if i := strings.IndexByte(s.Name, '{'); i >= 0 {
			if s.Labels, err = parseLabels(s.Name[i+1 : len(s.Name)-1]); err != nil {
				return nil, fmt.Errorf("metrics: %q: %v", line, err)
			}
			s.Name = s.Name[:i]
		}
		m = append(m, s)
	}
	return m, nil
}

// parseLabels parses `k="v",k2="v2"` with Go-style escapes in values.
func parseLabels(s string) (map[string]string, error) {
	labels := map[string]string{}
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq < 0 || eq+1 >= len(s) || s[eq+1] != '"' {
			return nil, errors.New("bad label")
		}
		k := s[:eq]
		rest := s[eq+1:]
		end := 1
		for end < len(rest) && rest[end] != '"' {
			if rest[end] == '\\' {
				end++
			}
			end++
		}
		if end >= len(rest) {
			return nil, errors.New("unterminated label value")
		}
		v, err := strconv.Unquote(rest[:end+1])
		if err != nil {
			return nil, err
		}
		labels[k] = v
		s = strings.TrimPrefix(rest[end+1:], ",")
	}
	return labels, nil
}

// get returns the sum of the samples named name whose labels include the
// pairs kv (name, value, ...), and whether there was any.
func (m Metrics) get(name string, kv ...string) (float64, bool) {
	sum, found := 0.0, false
	for _, s := range m {
		if s.Name != name || !s.has(kv) {
			continue
		}
		sum += s.Value
		found = true
	}
	return sum, found
}

// Value returns the sum of the samples named name whose labels include
// the pairs kv (label name, value, ...), or -1 when there is none.
func (m Metrics) Value(name string, kv ...string) float64 {
	if v, ok := m.get(name, kv...); ok {
		return v
	}
	return -1
}

// All returns the samples named name, whatever their labels.
func (m Metrics) All(name string) []Sample {
	var out []Sample
	for _, s := range m {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// has reports whether s has every label pair of kv (name, value, ...).
func (s Sample) has(kv []string) bool {
	for i := 0; i+1 < len(kv); i += 2 {
		if s.Labels[kv[i]] != kv[i+1] {
			return false
		}
	}
	return true
}
