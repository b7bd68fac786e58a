package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/internal/natstest"
)

// A wrong CCKM_PASSWORD is said at start, naming the setting and never the
// password, and a gauge says so; the worker still runs and is ready, for
// readiness is about NATS.
func TestAWrongPasswordIsAnErrorLineNamingTheSettingAndTheWorkerStaysReady(t *testing.T) {
	const wrongPassword = "wrong-password-4f9d2c"
	ns := natstest.RunServer(t, nil)
	cm := cckmtest.NewServer(cckmtest.Options{Username: "worker", Password: "the-right-one"})
	t.Cleanup(cm.Close)
	p := startBinary(t, workerEnv(ns, cm, map[string]string{"CCKM_USERNAME": "worker", "CCKM_PASSWORD": wrongPassword}))
	js, err := jetstream.New(natstest.Connect(t, ns))
	require.NoError(t, err)
	p.waitUntilConsuming(t, js) // /readyz answers 200

	var refused map[string]any
	require.Eventually(t, func() bool {
		for _, line := range p.logLines() {
			if line["level"] == "error" && strings.Contains(fmt.Sprint(line["message"]), "refused the login") {
				refused = line
				return true
			}
		}
		return false
	}, 10*time.Second, 20*time.Millisecond, "an error line says the login was refused")
	assert.Contains(t, refused["message"], "CCKM_USERNAME/CCKM_PASSWORD", "the line names the setting")
	assert.Equal(t, "CCKM_USERNAME/CCKM_PASSWORD", refused["setting"])
	assert.False(t, p.exited(), "the worker keeps running")
	assert.NotContains(t, p.output(), wrongPassword, "the output shows the password")

	addr := p.logLine("serving /healthz, /readyz and /metrics")["addr"]
	resp, err := http.Get(fmt.Sprintf("http://%s/metrics", addr))
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.Contains(t, string(body), "\ncckm_cancel_cm_login_refused 1\n", "the gauge says the login was refused")

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	assert.Equal(t, 0, p.exitCode(t, 20*time.Second))
}

// A good login is logged at info, and the gauge reads 0.
func TestAGoodLoginIsLoggedAtStart(t *testing.T) {
	ns := natstest.RunServer(t, nil)
	cm := cckmtest.NewServer(cckmtest.Options{Username: "worker", Password: "the-right-one"})
	t.Cleanup(cm.Close)
	p := startBinary(t, workerEnv(ns, cm, map[string]string{"CCKM_USERNAME": "worker", "CCKM_PASSWORD": "the-right-one", "LOG_LEVEL": "info"}))
	require.Eventually(t, func() bool { return p.exited() || p.logLine("logged in to CipherTrust Manager") != nil },
		20*time.Second, 20*time.Millisecond, "the login is logged")
	require.False(t, p.exited())
	assert.Equal(t, "info", p.logLine("logged in to CipherTrust Manager")["level"])
	assert.Nil(t, p.logLine("configuration"), "the whole configuration is at debug")
	summary := p.logLine("starting")
	require.NotNil(t, summary, "the one-line summary at info")
	assert.Equal(t, "jetstream", summary["mode"])
	assert.Equal(t, strings.TrimPrefix(cm.URL(), "http://"), summary["cckm_host"])
}

// NATS that does not answer at start is named as such, with its URL
// redacted, and the worker waits for it.
func TestNATSUnreachableAtStartIsNamed(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close()) // nothing listens there now
	for _, format := range []string{"json", "console"} {
		t.Run(format, func(t *testing.T) {
			cm := cckmtest.NewServer(cckmtest.Options{StaticToken: "cm-token"})
			t.Cleanup(cm.Close)
			p := startBinary(t, map[string]string{
				"NATS_URL":   fmt.Sprintf("nats://alice:nats-secret-77a1@127.0.0.1:%d", port),
				"CCKM_URL":   cm.URL(),
				"CCKM_TOKEN": "cm-token",
				"HTTP_ADDR":  "127.0.0.1:0",
				"LOG_FORMAT": format,
			})
			want := fmt.Sprintf("NATS unreachable at nats://alice:xxxxx@127.0.0.1:%d", port)
			require.Eventually(t, func() bool { return strings.Contains(p.stdout.String(), want) },
				10*time.Second, 20*time.Millisecond, "the line naming NATS")
			assert.False(t, p.exited(), "the worker waits for NATS")
			out := p.output()
			assert.NotContains(t, out, "look up stream", "no JetStream error while NATS is away")
			assert.NotContains(t, out, "nats-secret-77a1", "the NATS password")
			if format == "console" {
				assert.NotContains(t, out, "\x1b[", "no colour codes when the output is not a terminal")
			} else {
				var line map[string]any
				for _, l := range p.logLines() {
					if strings.Contains(fmt.Sprint(l["message"]), "NATS unreachable") {
						line = l
					}
				}
				assert.Equal(t, "error", line["level"])
			}
			require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
			assert.Equal(t, 0, p.exitCode(t, 10*time.Second), "a stop while waiting for NATS")
		})
	}
}

// countingListener accepts connections and counts them.
func countingListener(t *testing.T) (string, *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	var accepted atomic.Int32
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			_ = conn.Close()
		}
	}()
	return l.Addr().String(), &accepted
}

// A port in use, HTTP_ADDR's or dev mode's NATS port, stops the worker at
// once with exit status 2 and one line naming it, before it connects to
// NATS.
func TestAPortInUseExitsTwoAtOnceWithOneLine(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = taken.Close() })
	takenAddr := taken.Addr().String()
	_, takenPort, _ := net.SplitHostPort(takenAddr)
	natsAddr, natsConnections := countingListener(t)

	for _, tc := range []struct {
		name    string
		env     map[string]string
		args    []string
		setting string
	}{
		{"HTTP_ADDR", map[string]string{
			"NATS_URL": "nats://" + natsAddr, "CCKM_URL": "http://127.0.0.1:1", "CCKM_TOKEN": "t", "HTTP_ADDR": takenAddr,
		}, nil, "HTTP_ADDR " + takenAddr},
		{"the dev NATS port", map[string]string{"HTTP_ADDR": "127.0.0.1:0", "DEV_NATS_PORT": takenPort},
			[]string{"--dev"}, "DEV_NATS_PORT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			started := time.Now()
			p := startBinary(t, tc.env, tc.args...)
			assert.Equal(t, 2, p.exitCode(t, 10*time.Second))
			assert.Less(t, time.Since(started), 3*time.Second, "at once, not after a wait")
			assert.Empty(t, p.stdout.String(), "stdout")
			stderr := p.stderr.String()
			assert.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
			assert.Contains(t, stderr, tc.setting)
			assert.Contains(t, stderr, takenAddr, "the address in use")
		})
	}
	assert.Zero(t, natsConnections.Load(), "the worker connected to NATS before checking HTTP_ADDR")
}
