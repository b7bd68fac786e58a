package main

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/messages"
	"github.com/cckm/cckm-cancel-worker/worker"
)

// fakeReadiness answers Ready with err.
type fakeReadiness struct{ err error }

func (f fakeReadiness) Ready() error { return f.err }

// get fetches url and returns the status, the content type and the body.
func get(t *testing.T, url string) (int, string, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(body)
}

func newTestHTTPServer(t *testing.T, ready readiness) (*httptest.Server, *worker.Metrics) {
	return newTestHTTPServerPprof(t, ready, false)
}

func newTestHTTPServerPprof(t *testing.T, ready readiness, withPprof bool) (*httptest.Server, *worker.Metrics) {
	t.Helper()
	registry, metrics, _ := newRegistry()
	srv := httptest.NewServer(newHTTPHandler(ready, registry, withPprof))
	t.Cleanup(srv.Close)
	return srv, metrics
}

func TestHealthzAnswersOKEvenWhenNotReady(t *testing.T) {
	srv, _ := newTestHTTPServer(t, fakeReadiness{err: errors.New("not connected to NATS")})
	status, _, body := get(t, srv.URL+"/healthz")
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, "ok\n", body)
}

func TestReadyz(t *testing.T) {
	for _, tc := range []struct {
		name       string
		ready      error
		wantStatus int
		wantBody   string
	}{
		{"a ready worker answers 200", nil, http.StatusOK, "ready"},
		{"a worker without NATS answers 503 with the reason", errors.New("not connected to NATS"), http.StatusServiceUnavailable, "not connected to NATS"},
		{"a worker without a consumer answers 503 with the reason", errors.New("consumer not bound"), http.StatusServiceUnavailable, "consumer not bound"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := newTestHTTPServer(t, fakeReadiness{err: tc.ready})
			status, _, body := get(t, srv.URL+"/readyz")
			assert.Equal(t, tc.wantStatus, status)
			assert.Contains(t, body, tc.wantBody)
		})
	}
}

func TestMetricsServesPrometheusTextWithTheWorkersMetrics(t *testing.T) {
	srv, metrics := newTestHTTPServer(t, fakeReadiness{})
	metrics.ObserveCall("cancel", messages.KindRefresh, 200, 40*time.Millisecond, false)

	status, contentType, body := get(t, srv.URL+"/metrics")
	assert.Equal(t, http.StatusOK, status)
	assert.True(t, strings.HasPrefix(contentType, "text/plain"), "content type %q", contentType)
	assert.Contains(t, body, "# TYPE cckm_cancel_in_flight gauge")
	assert.Contains(t, body, `cckm_cancel_cm_call_duration_seconds_count{kind="refresh",op="cancel"} 1`)
	assert.Contains(t, body, `cckm_cancel_cm_attempts_total{http_status="200",kind="refresh",op="cancel"} 1`)
}

func TestOtherPathsAndMethodsAreRefused(t *testing.T) {
	srv, _ := newTestHTTPServer(t, fakeReadiness{})
	status, _, _ := get(t, srv.URL+"/nothing-here")
	assert.Equal(t, http.StatusNotFound, status)

	resp, err := http.Post(srv.URL+"/healthz", "text/plain", nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}

func TestRedactedURLs(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"a URL without credentials is unchanged", "nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"a password is hidden, the user kept", "nats://alice:s3cret@nats:4222", "nats://alice:xxxxx@nats:4222"},
		{"a token in the user part is hidden", "nats://t0ken-value@nats:4222", "nats://xxxxx@nats:4222"},
		{"every URL of a list is redacted", "nats://a:pw1@n1:4222, nats://tok2@n2:4222,nats://n3:4222",
			"nats://a:xxxxx@n1:4222,nats://xxxxx@n2:4222,nats://n3:4222"},
		{"a password that does not parse is hidden too", "nats://alice:p%zz@nats:4222", "nats://xxxxx@nats:4222"},
		{"a URL without a scheme is read as nats://", "alice:s3cret@nats:4222", "nats://alice:xxxxx@nats:4222"},
		{"a host without a scheme gains nats://", "127.0.0.1:4222", "nats://127.0.0.1:4222"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, redactedURLs(tc.in))
		})
	}
}

func TestScrubURLsHidesTheUserInformationOfEachURLInAText(t *testing.T) {
	urls := "nats://t0ken-value@n1:4222, alice:s3cret@n2:4222,n3:4222"
	text := `parse "nats://t0ken-value@n1:4222": bad; dial alice:s3cret@n2:4222 and n3:4222`
	got := scrubURLs(text, urls)
	assert.Equal(t, `parse "nats://xxxxx@n1:4222": bad; dial nats://alice:xxxxx@n2:4222 and n3:4222`, got)
	assert.NotContains(t, got, "t0ken-value")
	assert.NotContains(t, got, "s3cret")
}

func TestPprofIsServedOnlyWhenAsked(t *testing.T) {
	off, _ := newTestHTTPServer(t, fakeReadiness{})
	status, _, _ := get(t, off.URL+"/debug/pprof/goroutine?debug=1")
	assert.Equal(t, http.StatusNotFound, status, "HTTP_PPROF=false must not expose the profiler")

	on, _ := newTestHTTPServerPprof(t, fakeReadiness{}, true)
	status, _, body := get(t, on.URL+"/debug/pprof/goroutine?debug=1")
	assert.Equal(t, http.StatusOK, status)
	assert.Contains(t, body, "goroutine profile:")
	status, _, _ = get(t, on.URL+"/debug/pprof/cmdline")
	assert.Equal(t, http.StatusNotFound, status, "the command line may hold a secret given as a flag")
	status, _, _ = get(t, on.URL+"/metrics")
	assert.Equal(t, http.StatusOK, status, "the usual endpoints stay")
}
