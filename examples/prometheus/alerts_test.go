// The test of examples/prometheus: alerts.yaml is a valid Prometheus rule
// file whose expressions parse (with Prometheus's own PromQL parser) and
// name only metrics and labels that ratelimitd serves, as the metrics table
// of docs/operations.md lists them (a test in cmd/ratelimitd keeps that
// table true to a running ratelimitd).
//
// The file is read into a few small structs rather than with Prometheus's
// rulefmt package: rulefmt would bring most of the Prometheus module's
// dependencies into go.mod, the parser alone brings three modules.
package prometheus_test

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/template"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
)

type ruleFile struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Rules    []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Record      string            `yaml:"record"`
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// documented is one row of the metrics table: its type and labels.
type documented struct {
	typ    string
	labels []string
}

// docMetrics reads the metrics table of docs/operations.md.
func docMetrics(t *testing.T) map[string]documented {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	row := regexp.MustCompile("^\\| `([a-z_:][a-z0-9_:]*)` \\| ([a-z]+) \\|([^|]*)\\|")
	label := regexp.MustCompile("`([a-z_]+)`")
	out := map[string]documented{}
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "### Metrics":
			in = true
			continue
		case strings.HasPrefix(line, "#"):
			in = false
		}
		if m := row.FindStringSubmatch(line); in && m != nil {
			d := documented{typ: m[2]}
			for _, l := range label.FindAllStringSubmatch(m[3], -1) {
				d.labels = append(d.labels, l[1])
			}
			out[m[1]] = d
		}
	}
	if len(out) == 0 {
		t.Fatal("no metrics table under ### Metrics in docs/operations.md")
	}
	return out
}

// targetLabels are the labels Prometheus adds to every scraped series.
var targetLabels = []string{"job", "instance"}

// templateFuncs stand in for the functions Prometheus offers alert
// templates, so that annotations parse and run.
var templateFuncs = template.FuncMap{
	"humanize":           func(v any) string { return "1" },
	"humanize1024":       func(v any) string { return "1" },
	"humanizeDuration":   func(v any) string { return "1s" },
	"humanizePercentage": func(v any) string { return "1%" },
	"humanizeTimestamp":  func(v any) string { return "0" },
	"toUpper":            strings.ToUpper,
	"toLower":            strings.ToLower,
	"title":              strings.ToTitle,
}

func TestAlerts(t *testing.T) {
	data, err := os.ReadFile("alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true) // a misspelt key (expresion:) is an error, as in Prometheus
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	metrics := docMetrics(t)
	p := parser.NewParser(parser.Options{})

	records := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				records[r.Record] = true
			}
		}
	}
	groups := map[string]bool{}
	alerts := map[string]bool{}
	for _, g := range rf.Groups {
		if g.Name == "" || groups[g.Name] {
			t.Errorf("group name %q empty or repeated", g.Name)
		}
		groups[g.Name] = true
		if g.Interval != "" {
			if _, err := model.ParseDuration(g.Interval); err != nil {
				t.Errorf("group %s: interval: %v", g.Name, err)
			}
		}
		for _, r := range g.Rules {
			name := r.Alert + r.Record
			if (r.Alert == "") == (r.Record == "") {
				t.Errorf("group %s: a rule needs one of alert and record: %+v", g.Name, r)
				continue
			}
			expr, err := p.ParseExpr(r.Expr)
			if err != nil {
				t.Errorf("%s: expr: %v", name, err)
				continue
			}
			parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
				vs, ok := n.(*parser.VectorSelector)
				if !ok {
					return nil
				}
				checkSelector(t, name, vs, metrics, records)
				return nil
			})
			if r.Record != "" {
				if !model.IsValidLegacyMetricName(r.Record) || len(r.Annotations)+len(r.Labels) != 0 || r.For != "" {
					t.Errorf("recording rule %s: bad name, or labels, annotations or for", r.Record)
				}
				continue
			}
			if alerts[r.Alert] {
				t.Errorf("alert %s defined twice", r.Alert)
			}
			alerts[r.Alert] = true
			if r.For != "" {
				if _, err := model.ParseDuration(r.For); err != nil {
					t.Errorf("%s: for: %v", name, err)
				}
			}
			if !slices.Contains([]string{"critical", "warning", "info"}, r.Labels["severity"]) {
				t.Errorf("%s: severity %q, want critical, warning or info", name, r.Labels["severity"])
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: needs a summary and a description", name)
			}
			for k, text := range r.Annotations {
				checkTemplate(t, name+" annotation "+k, text)
			}
		}
	}
	// What docs/operations.md and the README promise.
	for _, want := range []string{
		"RatelimitdConfigRejected", "RatelimitdBackendErrors", "RatelimitdFallbackInUse", "RatelimitdBreakerOpen",
		"RatelimitdOverLimitSpike", "RatelimitdDown", "RatelimitdNoTraffic", "RatelimitdAdminChange",
	} {
		if !alerts[want] {
			t.Errorf("alerts.yaml has no alert %s", want)
		}
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for a := range alerts {
		if !strings.Contains(string(readme), "`"+a+"`") {
			t.Errorf("README.md does not describe %s", a)
		}
	}
}

// checkSelector checks that vs names a metric ratelimitd serves (or a
// recording rule, or up) and only labels that metric has.
func checkSelector(t *testing.T, rule string, vs *parser.VectorSelector, metrics map[string]documented, records map[string]bool) {
	t.Helper()
	name := vs.Name
	if name == "" {
		t.Errorf("%s: a selector without a metric name: %s", rule, vs)
		return
	}
	if records[name] {
		return
	}
	if name == "up" {
		return
	}
	d, ok := metrics[name]
	if !ok {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, cut := strings.CutSuffix(name, suffix); cut && metrics[base].typ == "histogram" {
				d, ok = metrics[base], true
				if suffix == "_bucket" {
					d.labels = append(slices.Clone(d.labels), "le")
				}
			}
		}
	}
	if !ok {
		t.Errorf("%s: %s is not in the metrics table of docs/operations.md", rule, name)
		return
	}
	for _, m := range vs.LabelMatchers {
		if m.Name != "__name__" && !slices.Contains(d.labels, m.Name) && !slices.Contains(targetLabels, m.Name) {
			t.Errorf("%s: %s has no label %s (documented: %v)", rule, name, m.Name, d.labels)
		}
	}
}

// checkTemplate parses and runs an annotation as Prometheus does: with
// $labels, $externalLabels and $value defined.
func checkTemplate(t *testing.T, what, text string) {
	t.Helper()
	const defs = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$value := .Value}}"
	tmpl, err := template.New(what).Option("missingkey=zero").Funcs(templateFuncs).Parse(defs + text)
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	data := struct {
		Labels, ExternalLabels map[string]string
		Value                  float64
	}{Labels: map[string]string{"instance": "i", "job": "j"}, Value: 1}
	var b strings.Builder
	if err := tmpl.Execute(&b, data); err != nil {
		t.Errorf("%s: %v", what, err)
	}
}
