package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/cckm/cckm-cancel-worker/internal/telemetry"
)

// Tracing in the benchmark (-tracing on): the workers run with tracing on,
// exporting over OTLP/HTTP to a receiver inside this process that reads
// each export and throws it away, so that the figures show what tracing
// costs the worker with a collector at hand. The floor is never traced.
const (
	tracingOff = "off"
	tracingOn  = "on"
)

// maxSinkBody bounds what the receiver reads of one export; the SDK's
// batches are far smaller.
const maxSinkBody = 64 << 20

// sink is the OTLP receiver of -tracing on; nil with tracing off.
var sink *otlpSink

// otlpSink accepts OTLP/HTTP exports and discards them, counting them.
type otlpSink struct {
	server  *http.Server
	url     string
	exports atomic.Int64
	bytes   atomic.Int64
}

// startOTLPSink listens on a loopback port and serves until close.
func startOTLPSink() (*otlpSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &otlpSink{url: "http://" + ln.Addr().String()}
	s.server = &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n, _ := io.Copy(io.Discard, io.LimitReader(r.Body, maxSinkBody))
			s.exports.Add(1)
			s.bytes.Add(n)
			w.Header().Set("Content-Type", "application/x-protobuf")
		}),
	}
	go func() {
		if err := s.server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, "cckm-bench: OTLP receiver:", err)
		}
	}()
	return s, nil
}

// env is what a worker needs to export to the sink: the endpoint, and a
// schedule delay at the SDK's default (named, so that the run says it).
func (s *otlpSink) env() []string {
	return []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + s.url, "OTEL_BSP_SCHEDULE_DELAY=5000"}
}

// report prints what the sink received.
func (s *otlpSink) report() {
	fmt.Printf("\ntracing: the OTLP receiver got %d exports, %.1f MiB\n", s.exports.Load(), float64(s.bytes.Load())/(1<<20))
}

func (s *otlpSink) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.server.Shutdown(ctx)
}

// inProcessTracing starts the tracing of an in-process worker: the SDK
// exporting to the sink with -tracing on, a no-op provider without.
func inProcessTracing() (*telemetry.Tracing, trace.TracerProvider, error) {
	settings := telemetry.Settings{}
	if sink != nil {
		for _, kv := range sink.env() {
			name, value, _ := strings.Cut(kv, "=")
			if err := os.Setenv(name, value); err != nil { // the SDK reads its variables itself
				return nil, nil, err
			}
		}
		var err error
		if settings, err = telemetry.ReadSettings(os.Getenv); err != nil {
			return nil, nil, err
		}
	}
	tracing, err := telemetry.Start(context.Background(), settings, zerolog.Nop())
	if err != nil {
		return nil, nil, err
	}
	return tracing, tracing.TracerProvider(), nil
}
