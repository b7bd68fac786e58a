package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/internal/natstest"
)

// maxExportBody bounds what the test receiver reads of one export.
const maxExportBody = 16 << 20

// otlpReceiver is an OTLP/HTTP trace endpoint: it decodes every export
// (protobuf, gzipped or not) and keeps the spans with their resource's
// service.name.
type otlpReceiver struct {
	*httptest.Server
	mu       sync.Mutex
	spans    []*tracepb.Span
	services []string
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	r := &otlpReceiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" {
			http.NotFound(w, req)
			return
		}
		var body io.Reader = io.LimitReader(req.Body, maxExportBody)
		if req.Header.Get("Content-Encoding") == "gzip" {
			gz, err := gzip.NewReader(body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = gz
		}
		raw, err := io.ReadAll(body)
		var export collectortrace.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(raw, &export)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		for _, rs := range export.GetResourceSpans() {
			service := attributeOf(rs.GetResource().GetAttributes(), "service.name")
			for _, ss := range rs.GetScopeSpans() {
				for _, span := range ss.GetSpans() {
					r.spans = append(r.spans, span)
					r.services = append(r.services, service)
				}
			}
		}
		r.mu.Unlock()
		out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(r.Close)
	return r
}

// received returns the spans and their service names received so far.
func (r *otlpReceiver) received() ([]*tracepb.Span, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*tracepb.Span(nil), r.spans...), append([]string(nil), r.services...)
}

// attributeOf is an attribute's value as text, or "".
func attributeOf(attributes []*commonpb.KeyValue, key string) string {
	for _, kv := range attributes {
		if kv.GetKey() != key {
			continue
		}
		switch v := kv.GetValue().GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			return v.StringValue
		case *commonpb.AnyValue_IntValue:
			return strconv.FormatInt(v.IntValue, 10)
		}
	}
	return ""
}

func TestWithAnOTLPEndpointARequestIsTracedUnderItsTraceparent(t *testing.T) {
	t.Parallel()
	const (
		traceID  = "4bf92f3577b34da6a3ce929d0e0e4736"
		parentID = "00f067aa0ba902b7"
		password = "tracing-password-9c8b7a"
	)
	ns := natstest.RunServer(t, nil)
	cm := cckmtest.NewServer(cckmtest.Options{Username: "worker", Password: password})
	t.Cleanup(cm.Close)
	id := newUUID(t)
	cm.AddJob(cckmtest.Refresh, id)
	cm.Script(id, cckmtest.Step{Status: http.StatusServiceUnavailable}) // then the job's own answer, 200
	receiver := newOTLPReceiver(t)
	nc := natstest.Connect(t, ns)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	results := subscribeResults(t, nc)

	p := startBinary(t, workerEnv(ns, cm, map[string]string{
		"CCKM_USERNAME": "worker", "CCKM_PASSWORD": password,
		"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.URL,
		"OTEL_BSP_SCHEDULE_DELAY":     "50", // milliseconds: spans arrive at once
	}))
	p.waitUntilConsuming(t, js)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msg := nats.NewMsg("cckm.cancel.refresh")
	msg.Data = []byte(id)
	msg.Header.Set("traceparent", "00-"+traceID+"-"+parentID+"-01")
	_, err = js.PublishMsg(ctx, msg)
	require.NoError(t, err)
	resultMsg := receiveResults(t, results, 1, 15*time.Second)[0]
	got := decodeResult(t, resultMsg)
	require.Equal(t, "canceled", got.Status, "result %s", resultMsg.Data)

	// The request span, and under it a client span per attempt and the
	// result's producer span.
	var request *tracepb.Span
	var attempts []*tracepb.Span
	var services []string
	require.Eventually(t, func() bool {
		var spans []*tracepb.Span
		spans, services = receiver.received()
		request, attempts = nil, nil
		for _, span := range spans {
			if span.GetKind() == tracepb.Span_SPAN_KIND_CONSUMER && attributeOf(span.GetAttributes(), "cckm.job_id") == id {
				request = span
			}
		}
		if request == nil {
			return false
		}
		published := false
		for _, span := range spans {
			if !bytes.Equal(span.GetParentSpanId(), request.GetSpanId()) {
				continue
			}
			switch {
			case span.GetKind() == tracepb.Span_SPAN_KIND_CLIENT && attributeOf(span.GetAttributes(), "cckm.operation") == "cancel":
				attempts = append(attempts, span)
			case span.GetKind() == tracepb.Span_SPAN_KIND_PRODUCER && attributeOf(span.GetAttributes(), "cckm.output") == "result":
				published = true
			}
		}
		return len(attempts) == 2 && published
	}, 15*time.Second, 20*time.Millisecond, "the request span with two attempts and a result publish")

	assert.Equal(t, traceID, hex.EncodeToString(request.GetTraceId()), "the request span's trace")
	assert.Equal(t, parentID, hex.EncodeToString(request.GetParentSpanId()), "the request span's parent")
	attrs := request.GetAttributes()
	assert.Equal(t, "nats", attributeOf(attrs, "messaging.system"))
	assert.Equal(t, "cckm.cancel.refresh", attributeOf(attrs, "messaging.destination.name"))
	assert.Equal(t, "refresh", attributeOf(attrs, "cckm.kind"))
	assert.Equal(t, got.RequestID, attributeOf(attrs, "cckm.request_id"))
	assert.Equal(t, "canceled", attributeOf(attrs, "cckm.status"))
	for _, service := range services {
		assert.Equal(t, "cckm-cancel-worker", service, "service.name")
	}

	calls := cm.CallsFor(id)
	require.Len(t, calls, 2)
	statuses := map[string]bool{}
	attemptIDs := map[string]bool{}
	for _, span := range attempts {
		assert.Equal(t, traceID, hex.EncodeToString(span.GetTraceId()))
		a := span.GetAttributes()
		assert.Equal(t, "POST", attributeOf(a, "http.request.method"))
		statuses[attributeOf(a, "http.response.status_code")] = true
		assert.Equal(t, cm.URL()+calls[0].RequestURI, attributeOf(a, "url.full"))
		attemptIDs[hex.EncodeToString(span.GetSpanId())] = true
	}
	assert.Equal(t, map[string]bool{"503": true, "200": true}, statuses, "the attempts' statuses")
	failed := attempts[0]
	if attributeOf(failed.GetAttributes(), "http.response.status_code") != "503" {
		failed = attempts[1]
	}
	assert.Equal(t, tracepb.Status_STATUS_CODE_ERROR, failed.GetStatus().GetCode(), "the 503 attempt's status")

	// The result names the request span; CipherTrust Manager saw each
	// attempt's own span.
	assert.Equal(t, "00-"+traceID+"-"+hex.EncodeToString(request.GetSpanId())+"-01", resultMsg.Header.Get("traceparent"))
	for _, call := range calls {
		parts := strings.Split(call.Header.Get("traceparent"), "-")
		require.Len(t, parts, 4, "CipherTrust Manager's traceparent %q", call.Header.Get("traceparent"))
		assert.Equal(t, traceID, parts[1])
		assert.True(t, attemptIDs[parts[2]], "CipherTrust Manager's traceparent names no attempt span: %s", parts[2])
	}

	// No span holds a secret: not the password, not a token.
	spans, _ := receiver.received()
	for _, span := range spans {
		for _, kv := range span.GetAttributes() {
			value := kv.GetValue().GetStringValue()
			assert.NotContains(t, value, password, "span %s attribute %s", span.GetName(), kv.GetKey())
			assert.NotContains(t, value, jwtPrefix, "span %s attribute %s", span.GetName(), kv.GetKey())
		}
	}
}

// An OTLP collector that takes the connection and never answers must not
// slow requests down, and a stop still ends within WORKER_SHUTDOWN_TIMEOUT
// of the work's end, with exit 0 and the lost spans named in the log.
func TestAHangingCollectorSlowsNoRequestAndHoldsNoStop(t *testing.T) {
	t.Parallel()
	const shutdownTimeout = 2 * time.Second
	ns := natstest.RunServer(t, nil)
	cm := cckmtest.NewServer(cckmtest.Options{Username: "worker", Password: "hang-password", AnyJob: true})
	t.Cleanup(cm.Close)
	var exports atomic.Int32
	hang := make(chan struct{})
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		exports.Add(1)
		select {
		case <-hang:
		case <-req.Context().Done():
		}
	}))
	t.Cleanup(collector.Close)
	t.Cleanup(func() { close(hang) }) // runs first: the handlers return, then the server closes
	nc := natstest.Connect(t, ns)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	results := subscribeResults(t, nc)

	p := startBinary(t, workerEnv(ns, cm, map[string]string{
		"CCKM_USERNAME": "worker", "CCKM_PASSWORD": "hang-password",
		"OTEL_EXPORTER_OTLP_ENDPOINT": collector.URL,
		"OTEL_BSP_SCHEDULE_DELAY":     "10", // milliseconds: exports start at once, and hang
		"WORKER_SHUTDOWN_TIMEOUT":     shutdownTimeout.String(),
	}))
	p.waitUntilConsuming(t, js)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const requests = 20
	for range requests {
		_, err := js.Publish(ctx, "cckm.cancel.refresh", []byte(newUUID(t)))
		require.NoError(t, err)
		// Each result comes as fast as without tracing: the export that
		// hangs is not in the request's way.
		msg := receiveResults(t, results, 1, 5*time.Second)[0]
		require.Equal(t, "canceled", decodeResult(t, msg).Status, "result %s", msg.Data)
	}
	require.Eventually(t, func() bool { return exports.Load() > 0 }, 10*time.Second, 10*time.Millisecond,
		"no export reached the collector")

	stopAt := time.Now()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	assert.Equal(t, 0, p.exitCode(t, 4*shutdownTimeout), "exit status after SIGTERM")
	// Nothing was in flight: the stop takes the pull's end (at most 2 s) and
	// the flush's bound, not the exporter's own timeouts (10 s and more).
	assert.Less(t, time.Since(stopAt), 2*time.Second+shutdownTimeout+time.Second, "time from SIGTERM to exit")
	assert.NotNil(t, p.logLine("tracing: cannot export the last spans"), "the lost spans are named in the log")
}
