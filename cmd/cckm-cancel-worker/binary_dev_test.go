package main

import (
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

// Dev mode as a newcomer meets it: `cckm-cancel-worker --dev` with nothing
// else, then the commands it prints: a fresh UUID of any kind is canceled,
// and the printed samples show conflict and not_found. It needs
// 127.0.0.1:4222, so it is skipped where that port is taken.
func TestDevModeCancelsAFreshUUIDOfAnyKindAndPrintsHowTo(t *testing.T) {
	httpAddr := freeAddr(t)

	// Any free port for the embedded NATS server, read back from the banner.
	p := startBinary(t, map[string]string{"HTTP_ADDR": httpAddr, "LOG_LEVEL": "info", "DEV_NATS_PORT": "0"}, "--dev")
	awaitReady(t, httpAddr)

	try := "nats pub " + cckmtest.SampleFreshKind.RequestSubject() + " $(uuidgen)"
	require.Eventually(t, func() bool { return strings.Contains(p.stdout.String(), try) }, 5*time.Second,
		20*time.Millisecond, "the exact command to try") // the log writer flushes every 100 ms
	out := p.stdout.String()
	for _, job := range cckmtest.SampleJobs {
		line, _ := lineWith(out, job.ID)
		assert.True(t, strings.HasPrefix(line, "  nats pub "+job.Kind.RequestSubject()+" "),
			"a command for the sample %s %s, got %q", job.Kind, job.ID, line)
	}

	natsLine, _ := lineWith(out, "NATS (JetStream on):")
	_, natsURL, found := strings.Cut(natsLine, "NATS (JetStream on):")
	require.True(t, found, "the banner names the NATS URL:\n%s", out)
	natsURL = strings.TrimSpace(natsURL)
	require.True(t, strings.HasPrefix(natsURL, "nats://127.0.0.1:"), natsURL)
	nc, err := nats.Connect(natsURL)
	require.NoError(t, err)
	defer nc.Close()
	results := subscribeResults(t, nc)

	type outcome struct {
		kind       messages.Kind
		status     string
		httpStatus int
		code       string
	}
	want := map[string]outcome{}
	for _, kind := range []messages.Kind{"google-sync", "azure-bulkjob", "luna-sync"} {
		want[messages.NewRequestID()] = outcome{kind, "canceled", http.StatusOK, ""}
	}
	for _, job := range cckmtest.SampleJobs {
		switch {
		case job.Unknown:
			want[job.ID] = outcome{job.Kind, "failed", http.StatusNotFound, "not_found"}
		case job.Finished:
			want[job.ID] = outcome{job.Kind, "failed", http.StatusConflict, "conflict"}
		}
	}
	for id, expected := range want {
		require.NoError(t, nc.Publish(expected.kind.RequestSubject(), []byte(id)))
	}
	for _, msg := range receiveResults(t, results, len(want), 20*time.Second) {
		got := decodeResult(t, msg)
		expected, asked := want[got.ID]
		require.True(t, asked, "a result for a job not asked for: %s", msg.Data)
		delete(want, got.ID)
		assert.Equal(t, string(expected.kind), got.Kind, got.ID)
		assert.Equal(t, expected.kind.ResultSubject(), msg.Subject, got.ID)
		assert.Equal(t, expected.status, got.Status, "%s %s", expected.kind, got.ID)
		assert.Equal(t, expected.httpStatus, got.HTTPStatus, "%s %s", expected.kind, got.ID)
		if expected.code == "" {
			assert.Nil(t, got.Error, "%s %s", expected.kind, got.ID)
		} else if assert.NotNil(t, got.Error, "%s %s", expected.kind, got.ID) {
			assert.Equal(t, expected.code, got.Error.Code, "%s %s", expected.kind, got.ID)
		}
	}

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	assert.Equal(t, 0, p.exitCode(t, 30*time.Second))
	assert.False(t, strings.Contains(p.output(), cckmtest.SamplePassword), "the dev password is not printed")
}

// awaitReady waits until the binary serving HTTP on httpAddr answers
// /readyz with 200.
func awaitReady(t *testing.T, httpAddr string) {
	t.Helper()
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 20*time.Millisecond, "dev mode becomes ready")
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}
