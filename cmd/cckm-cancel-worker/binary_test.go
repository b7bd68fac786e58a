package main

// Black-box tests of the built binary: exit statuses, signals and what the
// process prints. The helpers here start it; the tests that need NATS and a
// CipherTrust Manager are in binary_drain_test.go and binary_secrets_test.go.

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/internal/syncbuf"
)

// binaryPath is the binary TestMain builds.
var binaryPath string

func TestMain(m *testing.M) { os.Exit(buildAndRun(m)) }

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "cckm-cancel-worker-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binaryPath = filepath.Join(dir, "cckm-cancel-worker")
	build := exec.Command("go", "build", "-o", binaryPath, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "building the binary: %v\n", err)
		return 1
	}
	return m.Run()
}

// syncBuffer captures output written from several goroutines.
type syncBuffer = syncbuf.Buffer

// process is a running binary with its output captured.
type process struct {
	cmd            *exec.Cmd
	stdout, stderr syncBuffer
	done           chan struct{} // closed when the process has exited
}

// startBinary runs the binary with exactly env as its environment. The
// process is killed when the test ends, if it still runs.
func startBinary(t *testing.T, env map[string]string, args ...string) *process {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	p := &process{cmd: exec.CommandContext(ctx, binaryPath, args...), done: make(chan struct{})}
	for name, value := range env {
		p.cmd.Env = append(p.cmd.Env, name+"="+value)
	}
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	p.cmd.WaitDelay = 5 * time.Second
	if err := p.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting the binary: %v", err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		cancel() // kills the process if it still runs
		<-p.done
		if t.Failed() {
			t.Logf("binary stdout:\n%s\nbinary stderr:\n%s", p.stdout.String(), p.stderr.String())
		}
	})
	return p
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitCode waits for the process to exit within timeout and returns its
// exit status.
func (p *process) exitCode(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("the binary did not exit within %s", timeout)
		return -1
	}
}

// output is everything the process printed.
func (p *process) output() string { return p.stdout.String() + p.stderr.String() }

// logLines returns the JSON log lines printed so far.
func (p *process) logLines() []map[string]any {
	var lines []map[string]any
	for _, line := range strings.Split(p.stdout.String(), "\n") {
		var fields map[string]any
		if json.Unmarshal([]byte(line), &fields) == nil {
			lines = append(lines, fields)
		}
	}
	return lines
}

// logLine returns the first log line with the message, or nil.
func (p *process) logLine(message string) map[string]any {
	for _, line := range p.logLines() {
		if line["message"] == message {
			return line
		}
	}
	return nil
}

// waitUntilConsuming waits until the worker consumes requests: it says so,
// the durable consumer exists, and /readyz answers 200.
func (p *process) waitUntilConsuming(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	require.Eventually(t, func() bool { return p.exited() || p.logLine("consuming requests") != nil },
		20*time.Second, 20*time.Millisecond, "the worker did not start consuming")
	require.False(t, p.exited(), "the binary exited")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := js.Consumer(ctx, "CCKM_CANCEL", "cckm-cancel-worker")
	require.NoError(t, err, "the durable consumer")

	serving := p.logLine("serving /healthz, /readyz and /metrics")
	require.NotNil(t, serving)
	resp, err := http.Get(fmt.Sprintf("http://%s/readyz", serving["addr"]))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, "/readyz of a consuming worker")
}

// workerEnv is the environment of a worker using ns and cm, plus more.
func workerEnv(ns *server.Server, cm *cckmtest.Server, more map[string]string) map[string]string {
	env := map[string]string{
		"NATS_URL":  ns.ClientURL(),
		"CCKM_URL":  cm.URL(),
		"HTTP_ADDR": "127.0.0.1:0",
		"LOG_LEVEL": "debug",
	}
	maps.Copy(env, more)
	return env
}

// newUUID returns a random version 4 UUID.
func newUUID(t *testing.T) string {
	t.Helper()
	var b [16]byte
	_, err := rand.Read(b[:])
	require.NoError(t, err)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// countCalls counts the calls cm received with the operation op.
func countCalls(cm *cckmtest.Server, op string) int {
	n := 0
	for _, call := range cm.Calls() {
		if call.Op == op {
			n++
		}
	}
	return n
}

// nkeySeedExample has the shape of an NKey user seed.
const nkeySeedExample = "SUAMK2FG4MI6UE3ACF3FK3OIQBCEIEZV7NSWFFEW63UXMRLFM2XLAXK4GY"

func TestABadSettingExitsTwoWithOneLineNamingIt(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	valid := map[string]string{
		"NATS_URL": "nats://127.0.0.1:1", "CCKM_URL": "http://127.0.0.1:1",
		"CCKM_USERNAME": "worker", "CCKM_PASSWORD": "pw", "HTTP_ADDR": "127.0.0.1:0",
	}
	with := func(more map[string]string, drop ...string) map[string]string {
		env := maps.Clone(valid)
		maps.Copy(env, more)
		for _, name := range drop {
			delete(env, name)
		}
		return env
	}
	for _, tc := range []struct {
		name    string
		env     map[string]string
		setting string
	}{
		{"a missing CCKM_URL", with(nil, "CCKM_URL"), "CCKM_URL"},
		{"WORKER_MODE=bogus", with(map[string]string{"WORKER_MODE": "bogus"}), "WORKER_MODE"},
		{"WORKER_CONCURRENCY=abc", with(map[string]string{"WORKER_CONCURRENCY": "abc"}), "WORKER_CONCURRENCY"},
		{"CCKM_MAX_IN_FLIGHT=0", with(map[string]string{"CCKM_MAX_IN_FLIGHT": "0"}), "CCKM_MAX_IN_FLIGHT"},
		{"CCKM_RATE_LIMIT=-1", with(map[string]string{"CCKM_RATE_LIMIT": "-1"}), "CCKM_RATE_LIMIT"},
		{"CCKM_RATE_BURST=0", with(map[string]string{"CCKM_RATE_BURST": "0"}), "CCKM_RATE_BURST"},
		{"CCKM_PASSWORD_FILE naming a missing file", with(map[string]string{"CCKM_PASSWORD_FILE": missing}, "CCKM_PASSWORD"), "CCKM_PASSWORD_FILE"},
		{"an NKey seed itself in NATS_NKEY", with(map[string]string{"NATS_NKEY": nkeySeedExample}), "NATS_NKEY"},
		{"OTEL_EXPORTER_OTLP_PROTOCOL=grpc", with(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}), "OTEL_EXPORTER_OTLP_PROTOCOL"},
	} {
		t.Run(tc.name+" exits 2 with one line naming it", func(t *testing.T) {
			t.Parallel()
			p := startBinary(t, tc.env)
			assert.Equal(t, 2, p.exitCode(t, 10*time.Second))
			assert.Empty(t, p.stdout.String(), "stdout")
			stderr := p.stderr.String()
			assert.Equal(t, 1, strings.Count(stderr, "\n"), "stderr is one line: %q", stderr)
			assert.True(t, strings.HasSuffix(stderr, "\n"), "stderr ends its line: %q", stderr)
			assert.Contains(t, stderr, tc.setting)
			assert.NotContains(t, stderr, nkeySeedExample, "stderr shows the NKey seed")
		})
	}
}

func TestHelpAndUnknownFlags(t *testing.T) {
	secrets := map[string]string{
		"CCKM_URL": "https://cm.example.com", "CCKM_USERNAME": "worker",
		"CCKM_PASSWORD": "help-password-5b1c2d", "NATS_TOKEN": "help-nats-token-7e6d5c",
		"NATS_URL": "nats://alice:help-nats-password-a1b2@127.0.0.1:4222",
	}
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		want     []string
	}{
		{"--help exits 0 and lists the flags", []string{"--help"}, 0, []string{"-cckm-url", "-worker-concurrency", "-dev"}},
		{"an unknown flag exits 2 and names it", []string{"--no-such-flag"}, 2, []string{"no-such-flag"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := startBinary(t, secrets, tc.args...)
			assert.Equal(t, tc.wantCode, p.exitCode(t, 10*time.Second))
			assert.Empty(t, p.stdout.String(), "stdout")
			for _, want := range tc.want {
				assert.Contains(t, p.stderr.String(), want)
			}
			if tc.wantCode != 0 {
				assert.Equal(t, 1, strings.Count(p.stderr.String(), "\n"), "stderr is one line: %q", p.stderr.String())
			}
			for _, secret := range []string{"help-password-5b1c2d", "help-nats-token-7e6d5c", "help-nats-password-a1b2"} {
				assert.False(t, strings.Contains(p.output(), secret), "the output shows the secret %q", secret)
			}
		})
	}
}
