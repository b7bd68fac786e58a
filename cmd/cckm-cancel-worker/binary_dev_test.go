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
)

// Dev mode as a newcomer meets it: `cckm-cancel-worker --dev` with nothing
// else, then the commands it prints. It needs 127.0.0.1:4222, so it is
// skipped where that port is taken.
func TestDevModeRunsEverythingAndPrintsHowToSendARequest(t *testing.T) {
	probe, err := net.Listen("tcp", "127.0.0.1:4222")
	if err != nil {
		t.Skip("127.0.0.1:4222 is in use; dev mode needs it")
	}
	require.NoError(t, probe.Close())
	httpAddr := freeAddr(t)

	p := startBinary(t, map[string]string{"HTTP_ADDR": httpAddr, "LOG_LEVEL": "info"}, "--dev")
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 20*time.Millisecond, "dev mode becomes ready")

	running := cckmtest.SampleJobs[0]
	try := "nats pub cckm.cancel.refresh " + running.ID
	require.Eventually(t, func() bool { return strings.Contains(p.stdout.String(), try) }, 5*time.Second,
		20*time.Millisecond, "the exact command to try") // the log writer flushes every 100 ms
	out := p.stdout.String()
	for _, job := range cckmtest.SampleJobs {
		assert.Contains(t, out, job.ID, "every sample job is listed")
	}

	nc, err := nats.Connect("nats://127.0.0.1:4222")
	require.NoError(t, err)
	defer nc.Close()
	results := subscribeResults(t, nc)
	require.NoError(t, nc.Publish("cckm.cancel.refresh", []byte(running.ID)))
	got := decodeResult(t, receiveResults(t, results, 1, 10*time.Second)[0])
	assert.Equal(t, "canceled", got.Status)
	assert.Equal(t, running.ID, got.ID)

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	assert.Equal(t, 0, p.exitCode(t, 30*time.Second))
	assert.False(t, strings.Contains(p.output(), cckmtest.SamplePassword), "the dev password is not printed")
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}
