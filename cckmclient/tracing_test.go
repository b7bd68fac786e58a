package cckmclient_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

// spanAttr returns a span's attribute by name, as a string.
func spanAttr(span sdktrace.ReadOnlySpan, name string) (string, bool) {
	for _, kv := range span.Attributes() {
		if string(kv.Key) == name {
			return kv.Value.Emit(), true
		}
	}
	return "", false
}

func TestEveryAttemptIsAClientSpanUnderTheCallersSpanAndCarriesItsTraceparent(t *testing.T) {
	server := passwordServer(t, cckmtest.Options{})
	id := addJob(server, cckmtest.Refresh)
	server.Script(id, cckmtest.Step{Status: http.StatusServiceUnavailable})
	recorder := tracetest.NewSpanRecorder()
	provider := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	t.Cleanup(func() { _ = provider.Shutdown(t.Context()) })
	client := newClient(t, server, cckmclient.Config{Credentials: passwordCreds, TracerProvider: provider})

	ctx, parent := provider.Tracer("test").Start(testContext(t), "request")
	// A traceparent given as well must lose to the attempt span's own.
	ctx = cckmclient.WithTraceparent(ctx, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	resp, err := client.Cancel(ctx, messages.KindRefresh, id)
	parent.End()
	require.NoError(t, err)
	require.Equal(t, 2, resp.Attempts)

	var attempts []sdktrace.ReadOnlySpan
	var grants int
	for _, span := range recorder.Ended() {
		if span.SpanKind() != trace.SpanKindClient {
			continue
		}
		assert.Equal(t, parent.SpanContext().TraceID(), span.SpanContext().TraceID(), "a client span in another trace")
		assert.Equal(t, parent.SpanContext().SpanID(), span.Parent().SpanID(), "a client span not under the caller's")
		for _, kv := range span.Attributes() {
			for _, secret := range []string{testPassword, testUser, "eyJ"} {
				assert.NotContains(t, kv.Value.Emit(), secret, "attribute %s holds a secret", kv.Key)
			}
		}
		if op, _ := spanAttr(span, "cckm.operation"); op == "token" {
			grants++
			continue
		}
		attempts = append(attempts, span)
	}
	assert.Equal(t, 1, grants, "token grant spans")
	require.Len(t, attempts, 2, "one client span per attempt")
	for i, want := range []string{"503", "200"} {
		span := attempts[i]
		status, _ := spanAttr(span, "http.response.status_code")
		assert.Equal(t, want, status)
		method, _ := spanAttr(span, "http.request.method")
		assert.Equal(t, http.MethodPost, method)
		url, _ := spanAttr(span, "url.full")
		assert.True(t, strings.HasPrefix(url, server.URL()+"/"), "url.full %q", url)
		assert.True(t, strings.HasSuffix(url, id+"/cancel"), "url.full %q", url)
	}
	assert.Equal(t, codes.Error, attempts[0].Status().Code, "the 503 attempt's status")
	assert.NotEqual(t, codes.Error, attempts[1].Status().Code, "the 200 attempt's status")

	calls := server.CallsFor(id)
	require.Len(t, calls, 2)
	for i, call := range calls {
		got := call.Header.Get("traceparent")
		want := "00-" + attempts[i].SpanContext().TraceID().String() + "-" + attempts[i].SpanContext().SpanID().String() + "-01"
		assert.Equal(t, want, got, "attempt %d's traceparent", i+1)
	}
}

func TestWithoutATracerProviderTheGivenTraceparentIsForwarded(t *testing.T) {
	server := newServer(t, cckmtest.Options{StaticToken: testStatic})
	id := addJob(server, cckmtest.Refresh)
	client := newClient(t, server, cckmclient.Config{Credentials: staticCreds})
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	_, err := client.Cancel(cckmclient.WithTraceparent(testContext(t), tp), messages.KindRefresh, id)
	require.NoError(t, err)
	calls := server.CallsFor(id)
	require.Len(t, calls, 1)
	assert.Equal(t, tp, calls[0].Header.Get("traceparent"))
}
