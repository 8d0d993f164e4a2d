package main

import (
	"context"
	"io"
	"strings"
	"testing"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestGRPCMaxRecvMsgSize(t *testing.T) {
	grpcAddr, _, stop := runInProcess(t, map[string]string{
		"RATELIMITD_GRPC_ADDR":              "127.0.0.1:0",
		"RATELIMITD_HTTP_ADDR":              "127.0.0.1:0",
		"RATELIMITD_CONFIG":                 configDir(t, e2eConfig(1)),
		"RATELIMITD_LOG_FORMAT":             "json",
		"RATELIMITD_GRPC_MAX_RECV_MSG_SIZE": "4096",
	})
	c := dial(t, grpcAddr)
	call := func(valueLen int) error {
		ctx, cancel := context.WithTimeout(context.Background(), patience)
		defer cancel()
		_, err := c.rl.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: "e2e",
			Descriptors: []*ratelimitv3.RateLimitDescriptor{descriptor("user", strings.Repeat("u", valueLen))}})
		return err
	}
	if err := call(3000); err != nil {
		t.Errorf("a request under the limit: %v", err)
	}
	err := call(5000)
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), "4096") {
		t.Errorf("a request over the limit: %v, want RESOURCE_EXHAUSTED naming the limit 4096", err)
	}
	if err := call(10); err != nil {
		t.Errorf("the connection after a refused request: %v", err)
	}
	if code := stop(); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}

func TestGRPCMaxRecvMsgSizeBounds(t *testing.T) {
	for _, v := range []string{"0", "-1", "2147483647"} {
		if _, err := parseSettings([]string{"-grpc-max-recv-msg-size", v}, env(nil), io.Discard); err == nil || !strings.Contains(err.Error(), "-grpc-max-recv-msg-size") {
			t.Errorf("-grpc-max-recv-msg-size %s: error %v, want one naming the flag", v, err)
		}
	}
	s, err := parseSettings(nil, env(nil), io.Discard)
	if err != nil || s.grpcMaxRecvMsgSize != 4<<20 {
		t.Errorf("default %d (%v), want 4 MiB", s.grpcMaxRecvMsgSize, err)
	}
}
