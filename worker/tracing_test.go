package worker

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

// spanAttribute returns a span's attribute by name, as a string.
func spanAttribute(span sdktrace.ReadOnlySpan, name string) string {
	for _, kv := range span.Attributes() {
		if string(kv.Key) == name {
			return kv.Value.Emit()
		}
	}
	return ""
}

// tracedClient is env's client traced by provider.
func (e *testEnv) tracedClient(t *testing.T, provider trace.TracerProvider) *cckmclient.Client {
	t.Helper()
	cfg := e.clientConfig()
	cfg.TracerProvider = provider
	client, err := cckmclient.New(cfg)
	require.NoError(t, err)
	return client
}

func TestATracedRequestIsAConsumerSpanUnderItsTraceparentAndItsResultNamesThatSpan(t *testing.T) {
	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	for _, mode := range []Mode{ModeJetStream, ModeCore} {
		t.Run(string(mode), func(t *testing.T) {
			recorder := tracetest.NewSpanRecorder()
			provider := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
			t.Cleanup(func() { _ = provider.Shutdown(t.Context()) })
			env := newTestEnv(t, cckmtest.Options{AnyJob: true, SettleAfter: 50 * time.Millisecond})
			results := env.watchResults(t, messages.SubjectResults)
			settledEvents := env.watchResults(t, messages.SubjectSettled)
			cfg := followConfig(mode)
			cfg.TracerProvider = provider
			env.startWorker(t, cfg, env.tracedClient(t, provider))

			id := messages.NewRequestID()
			header := nats.Header{messages.HeaderTraceparent: {"00-" + traceID + "-" + parentID + "-01"}}
			payload := `{"id":"` + id + `","request_id":"traced-` + string(mode) + `","follow":true}`
			if mode == ModeCore {
				require.NoError(t, env.nc.PublishMsg(&nats.Msg{Subject: messages.KindRefresh.RequestSubject(), Data: []byte(payload), Header: header}))
			} else {
				env.publish(t, messages.KindRefresh, payload, header)
			}
			result, resultMsg := results.next(t)
			require.Equal(t, messages.StatusCanceled, result.Status)
			_, settledMsg := settledEvents.next(t)

			var request sdktrace.ReadOnlySpan
			require.Eventually(t, func() bool {
				for _, span := range recorder.Ended() {
					if span.SpanKind() == trace.SpanKindConsumer && span.Name() == "process "+messages.KindRefresh.RequestSubject() {
						request = span
						return true
					}
				}
				return false
			}, 5*time.Second, 5*time.Millisecond, "no request span")
			assert.Equal(t, traceID, request.SpanContext().TraceID().String(), "the request span's trace")
			assert.Equal(t, parentID, request.Parent().SpanID().String(), "the request span's parent")
			assert.Equal(t, "nats", spanAttribute(request, "messaging.system"))
			assert.Equal(t, messages.KindRefresh.RequestSubject(), spanAttribute(request, "messaging.destination.name"))
			assert.Equal(t, id, spanAttribute(request, "cckm.job_id"))
			assert.Equal(t, "traced-"+string(mode), spanAttribute(request, "cckm.request_id"))
			assert.Equal(t, string(messages.KindRefresh), spanAttribute(request, "cckm.kind"))
			assert.Equal(t, "canceled", spanAttribute(request, "cckm.status"))

			requestTP := "00-" + traceID + "-" + request.SpanContext().SpanID().String() + "-01"
			assert.Equal(t, requestTP, resultMsg.Header.Get(messages.HeaderTraceparent), "the result's traceparent")
			assert.Equal(t, requestTP, resultMsg.Header.Get("ce-traceparent"), "the result's ce-traceparent")
			assert.Equal(t, requestTP, settledMsg.Header.Get(messages.HeaderTraceparent), "the settled event's traceparent")

			// Under the request span: the cancel attempt and the result's and
			// follow task's publishes; the settled event's publish is under a
			// follow poll, in the same trace.
			var cancels, produced []string
			require.Eventually(t, func() bool {
				cancels, produced = nil, nil
				for _, span := range recorder.Ended() {
					if span.SpanContext().TraceID().String() != traceID {
						continue
					}
					switch {
					case span.SpanKind() == trace.SpanKindClient && spanAttribute(span, "cckm.operation") == "cancel":
						assert.Equal(t, request.SpanContext().SpanID(), span.Parent().SpanID(), "the cancel attempt's parent")
						cancels = append(cancels, span.Name())
					case span.SpanKind() == trace.SpanKindProducer:
						produced = append(produced, spanAttribute(span, "cckm.output"))
					}
				}
				return strings.Contains(strings.Join(produced, ","), "settled")
			}, 5*time.Second, 5*time.Millisecond, "no settled publish span in the trace")
			assert.Equal(t, []string{"POST"}, cancels, "one client span for the one cancel attempt")
			assert.Contains(t, produced, "result")
			if mode == ModeJetStream {
				assert.Contains(t, produced, "follow_task")
			}
		})
	}
}

func TestATracedRequestWithoutTraceparentStartsATrace(t *testing.T) {
	recorder := tracetest.NewSpanRecorder()
	provider := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	t.Cleanup(func() { _ = provider.Shutdown(t.Context()) })
	env := newTestEnv(t, cckmtest.Options{AnyJob: true})
	results := env.watchResults(t, messages.SubjectResults)
	cfg := testConfig(ModeJetStream)
	cfg.TracerProvider = provider
	env.startWorker(t, cfg, env.tracedClient(t, provider))

	env.publish(t, messages.KindRefresh, messages.NewRequestID(), nil)
	_, msg := results.next(t)
	tp := msg.Header.Get(messages.HeaderTraceparent)
	require.True(t, messages.ValidTraceparent(tp), "the result's traceparent %q", tp)
	var request sdktrace.ReadOnlySpan
	require.Eventually(t, func() bool {
		for _, span := range recorder.Ended() {
			if span.SpanKind() == trace.SpanKindConsumer {
				request = span
				return true
			}
		}
		return false
	}, 5*time.Second, 5*time.Millisecond, "no request span")
	assert.False(t, request.Parent().IsValid(), "a request without traceparent has a parent span")
	assert.Equal(t, "00-"+request.SpanContext().TraceID().String()+"-"+request.SpanContext().SpanID().String()+"-01", tp)
}

// With tracing off, the spans of a request and its publish cost no
// allocation: the hot path pays nothing for tracing.
func TestUntracedSpansAllocateNothing(t *testing.T) {
	off := newTracing(nil)
	header := messages.Header{messages.HeaderTraceparent: {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}
	out := outcome{request: messages.Request{RequestID: "r", ID: "j"}, result: messages.Result{Status: messages.StatusCanceled}}
	ctx := t.Context()
	allocs := testing.AllocsPerRun(1000, func() {
		reqCtx, span := off.startConsumer(ctx, "cckm.cancel.refresh", header, messages.KindRefresh, 1)
		_, pub := off.startProducer(reqCtx, "cckm.cancel.refresh.result", "result")
		endProducer(pub, 1, nil)
		if traceparentOf(span) != "" {
			t.Fatal("an untraced span has a traceparent")
		}
		endRequest(span, &out)
	})
	assert.Zero(t, allocs, "allocations per untraced request")
}

// Every traceparent the worker takes as valid is the parent of the request
// span, whatever its flags (the reserved bits are cleared, as a forwarder
// must) and whatever tracestate comes with it: one that breaks the rules,
// such as a 100 KB one, is dropped, never the parent with it.
func TestEveryValidTraceparentIsTheRequestSpansParent(t *testing.T) {
	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	recorder := tracetest.NewSpanRecorder()
	provider := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	t.Cleanup(func() { _ = provider.Shutdown(t.Context()) })
	on := newTracing(provider)
	for _, tc := range []struct {
		name, flags, state, wantFlags, wantState string
	}{
		{"sampled", "01", "", "01", ""},
		{"not sampled", "00", "", "00", ""},
		{"sampled and random", "03", "", "03", ""},
		{"a reserved bit", "05", "", "01", ""},
		{"every bit", "ff", "", "03", ""},
		{"a tracestate", "01", "vendor=abc", "01", "vendor=abc"},
		{"a 100 KB tracestate", "01", "vendor=" + strings.Repeat("a", 100<<10), "01", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := "00-" + traceID + "-" + parentID + "-" + tc.flags
			require.True(t, messages.ValidTraceparent(tp))
			header := messages.Header{messages.HeaderTraceparent: {tp}}
			if tc.state != "" {
				header["tracestate"] = []string{tc.state}
			}
			_, span := on.startConsumer(t.Context(), "cckm.cancel.refresh", header, messages.KindRefresh, 1)
			span.End()
			sc := span.SpanContext()
			assert.Equal(t, traceID, sc.TraceID().String(), "the request span's trace")
			assert.Equal(t, tc.wantFlags, sc.TraceFlags().String(), "the request span's flags")
			assert.Equal(t, tc.wantState, sc.TraceState().String(), "the request span's tracestate")
			if ro, ok := span.(sdktrace.ReadOnlySpan); ok {
				assert.Equal(t, parentID, ro.Parent().SpanID().String(), "the request span's parent")
				assert.True(t, ro.Parent().IsRemote(), "the parent is remote")
			} else {
				assert.Equal(t, "00", tc.wantFlags, "a sampled parent gives a recording span")
			}
		})
	}
}
