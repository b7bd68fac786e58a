package telemetry

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace/noop"
)

// receiver is an OTLP/HTTP endpoint that counts the trace exports it gets.
func receiver(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var exports atomic.Int64
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.Method == http.MethodPost && r.URL.Path == "/v1/traces" {
			exports.Add(1)
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(server.Close)
	return server, &exports
}

// env is a getenv of a fixed set of variables.
func env(vars map[string]string) func(string) string {
	return func(name string) string { return vars[name] }
}

// traceOnce starts tracing as the variables say (the SDK reads them from
// the process environment too), makes one span and shuts down, which
// flushes it.
func traceOnce(t *testing.T, vars map[string]string) (*Tracing, bool) {
	t.Helper()
	for name, value := range vars {
		t.Setenv(name, value)
	}
	settings, err := ReadSettings(env(vars))
	require.NoError(t, err)
	tracing, err := Start(t.Context(), settings, zerolog.Nop())
	require.NoError(t, err)
	_, span := tracing.TracerProvider().Tracer("test").Start(context.Background(), "one")
	recording := span.IsRecording()
	span.End()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, tracing.Shutdown(ctx))
	return tracing, recording
}

func TestWithoutAnEndpointOrTurnedOffTracingIsANoOpThatSendsNothing(t *testing.T) {
	server, exports := receiver(t)
	for _, tc := range []struct {
		name string
		vars map[string]string
	}{
		{"no endpoint set", map[string]string{"OTEL_SERVICE_NAME": "x"}},
		{"OTEL_TRACES_EXPORTER=none", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": server.URL, "OTEL_TRACES_EXPORTER": "none"}},
		{"OTEL_SDK_DISABLED=true", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": server.URL + "/v1/traces", "OTEL_SDK_DISABLED": "true"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tracing, recording := traceOnce(t, tc.vars)
			assert.IsType(t, noop.TracerProvider{}, tracing.TracerProvider())
			assert.False(t, recording, "a span records")
			assert.Zero(t, exports.Load(), "spans were sent")
		})
	}
}

func TestWithAnEndpointSpansAreExportedByShutdown(t *testing.T) {
	for _, name := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		t.Run(name, func(t *testing.T) {
			server, exports := receiver(t)
			endpoint := server.URL
			if name == "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" {
				endpoint += "/v1/traces"
			}
			_, recording := traceOnce(t, map[string]string{name: endpoint, "OTEL_BSP_SCHEDULE_DELAY": "60000"})
			assert.True(t, recording, "the span does not record")
			assert.Equal(t, int64(1), exports.Load(), "exports after the shutdown's flush")
		})
	}
}

func TestBadTracingSettingsAreErrorsNamingTheVariable(t *testing.T) {
	for _, tc := range []struct {
		vars    map[string]string
		setting string
	}{
		{map[string]string{"OTEL_TRACES_EXPORTER": "zipkin", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "OTEL_TRACES_EXPORTER"},
		{map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "c:4318"}, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://user:otlp-secret-77@%zz"}, "OTEL_EXPORTER_OTLP_ENDPOINT"},
		// What the SDK would only warn about, and then trace otherwise than
		// asked: attributes left out, every span sampled.
		{map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "otlp-secret-77", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "OTEL_RESOURCE_ATTRIBUTES"},
		{map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "team=a,,b", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "OTEL_RESOURCE_ATTRIBUTES"},
		{map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "team=otlp-secret-77%zz", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "OTEL_RESOURCE_ATTRIBUTES"},
		// The SDK would print the bad part on standard error, secret and all.
		{map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "Authorization: Bearer otlp-secret-77", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "OTEL_EXPORTER_OTLP_HEADERS"},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_HEADERS": "api-key=otlp-secret-77%zz", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "OTEL_EXPORTER_OTLP_TRACES_HEADERS"},
		{map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "api key=otlp-secret-77", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "OTEL_EXPORTER_OTLP_HEADERS"},
		{map[string]string{"OTEL_EXPORTER_OTLP_TIMEOUT": "10s", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "OTEL_EXPORTER_OTLP_TIMEOUT"},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "-1", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"},
		{map[string]string{"OTEL_TRACES_SAMPLER": "sometimes", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "OTEL_TRACES_SAMPLER"},
		{map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "10%", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "OTEL_TRACES_SAMPLER_ARG"},
		{map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "OTEL_TRACES_SAMPLER_ARG"},
	} {
		t.Run(tc.setting, func(t *testing.T) {
			_, err := ReadSettings(env(tc.vars))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.setting)
			assert.NotContains(t, err.Error(), "otlp-secret-77")
		})
	}
}

// What the SDK takes is taken; with tracing off the variables it would
// read are not checked.
func TestGoodTracingSettingsAreTaken(t *testing.T) {
	for _, vars := range []map[string]string{
		{"OTEL_RESOURCE_ATTRIBUTES": "service.name=x, deployment.environment=prod%20eu,team=", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"},
		{"OTEL_TRACES_SAMPLER": " ParentBased_TraceIDRatio ", "OTEL_TRACES_SAMPLER_ARG": "0.25", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"},
		{"OTEL_TRACES_SAMPLER": "always_off", "OTEL_TRACES_SAMPLER_ARG": "ignored", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"},
		{"OTEL_EXPORTER_OTLP_HEADERS": "api-key=abc%3D, x-team = a b ", "OTEL_EXPORTER_OTLP_TIMEOUT": " 5000 ", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"},
		{"OTEL_RESOURCE_ATTRIBUTES": "foo", "OTEL_TRACES_SAMPLER": "sometimes", "OTEL_EXPORTER_OTLP_HEADERS": "x"},
	} {
		_, err := ReadSettings(env(vars))
		assert.NoError(t, err, "%v", vars)
	}
}

func TestTheLoggedEndpointMasksItsPasswordAndQuery(t *testing.T) {
	for _, endpoint := range []string{
		"https://user:otlp-secret-77@collector:4318",
		"https://collector:4318/?api_key=otlp-secret-77",
		"https://collector:4318?otlp-secret-77",
		"https://otlp-secret-77@collector:4318",
		"https://collector:4318/#otlp-secret-77",
	} {
		settings, err := ReadSettings(env(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}))
		require.NoError(t, err, endpoint)
		assert.True(t, settings.Enabled, endpoint)
		assert.NotContains(t, settings.Endpoint, "otlp-secret-77", endpoint)
		assert.Contains(t, settings.Endpoint, "collector:4318", endpoint)
	}
}
