package server

import (
	"bufio"
	"io"
	"net/http"
	"strconv"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
)

// maxJSONBody bounds a /json request body.
const maxJSONBody = 1 << 20

// HTTPHandler serves:
//
//	/healthcheck  envoyproxy/ratelimit's health check: 200 "OK" while SERVING, else 500
//	/healthz      liveness: always 200 "ok"
//	/readyz       readiness: 200 "ready" once a config is loaded and SetServing(true) and
//	              Options.Ready (if set) returns nil, else 503 with the reason
//	/json         envoyproxy/ratelimit's JSON gateway: the body is a RateLimitRequest in
//	              protojson; the answer is the RateLimitResponse in protojson with 200 when
//	              OK and 429 when OVER_LIMIT. A body that does not parse or a request that is
//	              invalid is 400; no config or a failing backend is 503; anything else 500.
//	              (The reference answers 400 for every service error; 503 lets clients retry.)
//	/metrics      the Prometheus registry
//	/rlconfig     the loaded rules, one per line
func (s *Server) HTTPHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthcheck", func(w http.ResponseWriter, r *http.Request) {
		if !s.ready() {
			http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "OK")
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		switch {
		case s.Config() == nil:
			http.Error(w, "not ready: no rate limit configuration loaded", http.StatusServiceUnavailable)
		case !s.ready():
			http.Error(w, "not ready: not serving", http.StatusServiceUnavailable)
		default:
			if s.o.Ready != nil {
				if err := s.o.Ready(r.Context()); err != nil {
					http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
					return
				}
			}
			io.WriteString(w, "ready\n")
		}
	})
	mux.HandleFunc("/json", s.serveJSON)
	mux.Handle("/metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/rlconfig", s.serveRLConfig)
	return mux
}

func (s *Server) serveJSON(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxJSONBody))
	if err != nil {
		http.Error(w, http.StatusText(http.StatusBadRequest), http.StatusBadRequest)
		return
	}
	var req rlsv3.RateLimitRequest
	if err := protojson.Unmarshal(body, &req); err != nil {
		http.Error(w, http.StatusText(http.StatusBadRequest), http.StatusBadRequest)
		return
	}
	resp, err := s.ShouldRateLimit(r.Context(), &req)
	if err != nil {
		st, _ := status.FromError(err)
		code := httpStatus(st.Code())
		http.Error(w, st.Message(), code)
		return
	}
	out, err := protojson.Marshal(resp)
	if err != nil {
		http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if resp.OverallCode == rlsv3.RateLimitResponse_OVER_LIMIT {
		w.WriteHeader(http.StatusTooManyRequests)
	}
	w.Write(out)
}

// serveRLConfig lists the rules as envoyproxy/ratelimit's /rlconfig does
// ("<key>: unit=<UNIT> requests_per_unit=<n>, shadow_mode: <bool>"), with
// ratelimitd's extra attributes after it.
func (s *Server) serveRLConfig(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	c := s.Config()
	if c == nil {
		return
	}
	bw := bufio.NewWriter(w)
	var b []byte
	for _, rule := range c.Rules() {
		b = append(b[:0], rule.StatKey...)
		b = append(b, ": unit="...)
		b = append(b, rlsv3.RateLimitResponse_RateLimit_Unit(rule.Unit).String()...)
		b = append(b, " requests_per_unit="...)
		b = strconv.AppendUint(b, uint64(rule.RequestsPerUnit), 10)
		b = append(b, ", shadow_mode: "...)
		b = strconv.AppendBool(b, rule.ShadowMode)
		if rule.Name != "" {
			b = append(b, ", name: "...)
			b = append(b, rule.Name...)
		}
		if rule.Unlimited {
			b = append(b, ", unlimited: true"...)
		}
		if rule.QuotaMode {
			b = append(b, ", quota_mode: true"...)
		}
		for i, rep := range rule.Replaces {
			if i == 0 {
				b = append(b, ", replaces: "...)
			} else {
				b = append(b, ',')
			}
			b = append(b, rep...)
		}
		b = append(b, '\n')
		bw.Write(b)
	}
	bw.Flush()
}
