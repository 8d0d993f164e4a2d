package loadrig

import "testing"

func TestParseMetrics(t *testing.T) {
	m, err := ParseMetrics(`# HELP go_goroutines Number of goroutines.
# TYPE go_goroutines gauge
go_goroutines 42
ratelimitd_requests_total{code="ok"} 10
ratelimitd_requests_total{code="over_limit"} 5
ratelimitd_config_info{hash="ab\"c",version="3"} 1
process_resident_memory_bytes 5.3805056e+07
`)
	if err != nil {
		t.Fatal(err)
	}
	if v := m.Value("go_goroutines"); v != 42 {
		t.Errorf("go_goroutines = %v", v)
	}
	if v := m.Value("ratelimitd_requests_total"); v != 15 {
		t.Errorf("sum of ratelimitd_requests_total = %v", v)
	}
	if v := m.Value("ratelimitd_requests_total", "code", "ok"); v != 10 {
		t.Errorf("ok = %v", v)
	}
	if v := m.Value("absent"); v != -1 {
		t.Errorf("absent = %v", v)
	}
	if s := m.All("ratelimitd_config_info"); len(s) != 1 || s[0].Labels["hash"] != `ab"c` || s[0].Labels["version"] != "3" {
		t.Errorf("config_info = %+v", s)
	}
	if v := m.Value("process_resident_memory_bytes"); v != 53805056 {
		t.Errorf("rss = %v", v)
	}
}
