package main

// The PNG charts, drawn with gonum.org/v1/plot: each is two panels side
// by side, calls/s (with the no-op ceilings as dashed lines) and p99.

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// series is one line of a chart.
type series struct {
	name string
	ms   []*measurement
	x    func(*measurement) float64
}

// chartSize is the size of a two-panel chart (96 dpi: 960 × 384 pixels).
const (
	chartWidth  = 10 * vg.Inch
	chartHeight = 4 * vg.Inch
)

// charts draws every chart that has data into -img and returns their
// paths by name.
func (su *suite) charts() (map[string]string, error) {
	if err := os.MkdirAll(su.s.img, 0o755); err != nil {
		return nil, err
	}
	out := map[string]string{}
	save := func(name string, left, right *plot.Plot, err error) error {
		if err != nil || left == nil {
			return err
		}
		path := filepath.Join(su.s.img, "bench-"+name+".png")
		if err := savePanels(path, left, right); err != nil {
			return err
		}
		out[name] = path
		return nil
	}
	descr := func(m *measurement) float64 { return float64(m.Descriptors) }
	keys := func(m *measurement) float64 { return float64(m.Keys) }
	reps := func(m *measurement) float64 { return float64(m.Replicas) }

	left, right, err := su.linePanels("descriptors per request", []series{
		{"memory", su.scenario(scDescriptors, beMemory), descr},
		{"Redis", su.scenario(scDescriptors, beRedis), descr},
	}, false)
	if err := save("descriptors", left, right, err); err != nil {
		return nil, err
	}
	left, right, err = su.linePanels("live keys", []series{
		{"memory", su.scenario(scLiveKeys, beMemory), keys},
		{"Redis", su.scenario(scLiveKeys, beRedis), keys},
	}, true)
	if err := save("live-keys", left, right, err); err != nil {
		return nil, err
	}
	left, right, err = su.linePanels("ratelimitd replicas on one Redis", []series{
		{"Redis, 1 descriptor", su.scenario(scReplicas), reps},
	}, false)
	if err := save("replicas", left, right, err); err != nil {
		return nil, err
	}
	left, right, err = su.clusterPanels()
	if err := save("cluster", left, right, err); err != nil {
		return nil, err
	}
	return out, nil
}

// linePanels returns a calls/s panel and a p99 panel of ss against x, or
// nils when no series has a point.
func (su *suite) linePanels(xLabel string, ss []series, logX bool) (*plot.Plot, *plot.Plot, error) {
	tput, lat := newPanel("throughput", xLabel, "calls/s"), newPanel("p99 latency", xLabel, "p99 (ms)")
	var ticks plot.ConstantTicks
	var maxCPS, maxP99 float64
	seen := map[float64]bool{}
	lines := 0
	for i, s := range ss {
		if len(s.ms) == 0 {
			continue
		}
		var cps, p99 plotter.XYs
		for _, m := range s.ms {
			x := s.x(m)
			cps = append(cps, plotter.XY{X: x, Y: m.Median.CallsPerSecond})
			p99 = append(p99, plotter.XY{X: x, Y: m.Median.P99 / 1000})
			maxCPS, maxP99 = max(maxCPS, m.Median.CallsPerSecond), max(maxP99, m.Median.P99/1000)
			if !seen[x] {
				seen[x] = true
				ticks = append(ticks, plot.Tick{Value: x, Label: tickLabel(x)})
			}
		}
		for _, panel := range []struct {
			p   *plot.Plot
			xys plotter.XYs
		}{{tput, cps}, {lat, p99}} {
			l, pts, err := plotter.NewLinePoints(panel.xys)
			if err != nil {
				return nil, nil, err
			}
			l.Color, l.Width = plotutil.Color(i), vg.Points(1.5)
			pts.Color, pts.Shape = plotutil.Color(i), plotutil.Shape(i)
			panel.p.Add(l, pts)
			panel.p.Legend.Add(s.name, l, pts)
		}
		lines++
	}
	if lines == 0 {
		return nil, nil, nil
	}
	for _, p := range []*plot.Plot{tput, lat} {
		p.X.Tick.Marker = ticks
		if logX {
			p.X.Scale = plot.LogScale{}
		}
		if len(ticks) == 1 { // a single x: give the axis some width
			p.X.Min, p.X.Max = ticks[0].Value*0.5, ticks[0].Value*1.5
		}
	}
	headroom(tput, max(maxCPS, su.addCeilings(tput)))
	headroom(lat, maxP99)
	return tput, lat, nil
}

// headroom sets p's y axis from 0 to above top, leaving the upper part
// of the panel to the legend.
func headroom(p *plot.Plot, top float64) {
	if top > 0 {
		p.Y.Max = top * 1.5
	}
}

// clusterPanels returns grouped bars of one Redis and the Cluster at 1
// and 16 descriptors, or nils when the Cluster did not run.
func (su *suite) clusterPanels() (*plot.Plot, *plot.Plot, error) {
	if len(su.scenario(scCluster)) == 0 {
		return nil, nil, nil
	}
	tput, lat := newPanel("throughput", "", "calls/s"), newPanel("p99 latency", "", "p99 (ms)")
	counts := []int{1, 16}
	var maxCPS, maxP99 float64
	w := vg.Points(28)
	for i, kind := range []struct{ name, prefix string }{{"one Redis", "redis-d"}, {"Redis Cluster (3 masters)", "cluster-d"}} {
		var cps, p99 plotter.Values
		for _, d := range counts {
			var f figures
			if m := su.get(kind.prefix + strconv.Itoa(d)); m != nil {
				f = m.Median
			}
			cps = append(cps, f.CallsPerSecond)
			p99 = append(p99, f.P99/1000)
			maxCPS, maxP99 = max(maxCPS, f.CallsPerSecond), max(maxP99, f.P99/1000)
		}
		for _, panel := range []struct {
			p  *plot.Plot
			vs plotter.Values
		}{{tput, cps}, {lat, p99}} {
			bars, err := plotter.NewBarChart(panel.vs, w)
			if err != nil {
				return nil, nil, err
			}
			bars.Color, bars.LineStyle.Width = plotutil.Color(i), 0
			bars.Offset = w * vg.Length(2*i-1) / 2
			panel.p.Add(bars)
			panel.p.Legend.Add(kind.name, bars)
		}
	}
	for _, p := range []*plot.Plot{tput, lat} {
		p.NominalX("1 descriptor", "16 descriptors")
		p.X.Min, p.X.Max = -0.6, 1.6 // room for both bars of each group
	}
	headroom(tput, max(maxCPS, su.addCeilings(tput)))
	headroom(lat, maxP99)
	return tput, lat, nil
}

// addCeilings draws the no-op ceilings on a calls/s panel as dashed
// horizontal lines and returns the highest.
func (su *suite) addCeilings(p *plot.Plot) float64 {
	top := 0.0
	for i, c := range []struct{ id, name string }{{"noop-process", "no-op, separate process"}, {"noop-inprocess", "no-op, in-process"}} {
		m := su.get(c.id)
		if m == nil {
			continue
		}
		v := m.Median.CallsPerSecond
		f := plotter.NewFunction(func(float64) float64 { return v })
		f.Color = plotutil.Color(4 + i)
		f.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		f.Width = vg.Points(1)
		p.Add(f)
		p.Legend.Add(c.name, f)
		top = max(top, v)
	}
	return top
}

// labelTicks are gonum's default ticks with labels written by label.
type labelTicks struct{ label func(float64) string }

func (t labelTicks) Ticks(min, max float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(min, max)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = t.label(ts[i].Value)
		}
	}
	return ts
}

// newPanel returns an empty panel with its titles and a y axis from 0.
func newPanel(title, xLabel, yLabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xLabel
	p.Y.Label.Text = yLabel
	p.Y.Min = 0
	p.Y.Tick.Marker = labelTicks{func(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) }}
	if yLabel == "calls/s" {
		p.Y.Tick.Marker = labelTicks{fmtCount}
	}
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	return p
}

// tickLabel writes an x value as 1, 16, 1k, 100k, 1M, 10M.
func tickLabel(x float64) string {
	switch {
	case x >= 1e6 && int64(x)%1_000_000 == 0:
		return strconv.FormatInt(int64(x)/1_000_000, 10) + "M"
	case x >= 1e3 && int64(x)%1_000 == 0:
		return strconv.FormatInt(int64(x)/1_000, 10) + "k"
	}
	return strconv.FormatFloat(x, 'g', -1, 64)
}

// savePanels writes left and right side by side as a PNG.
func savePanels(path string, left, right *plot.Plot) error {
	img := vgimg.New(chartWidth, chartHeight)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Millimeter * 6, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 4}
	plots := [][]*plot.Plot{{left, right}}
	canvases := plot.Align(plots, tiles, dc)
	left.Draw(canvases[0][0])
	right.Draw(canvases[0][1])
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}
