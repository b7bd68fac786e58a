package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/internal/natstest"
	"github.com/cckm/cckm-cancel-worker/messages"
	"github.com/cckm/cckm-cancel-worker/worker"
)

// Job ids used across the tests.
const (
	jobA = "8155fe39-570a-4132-92ca-e40b7640c7dc"
	jobB = "5b1c2d3e-4f5a-4b6c-9d7e-8f9a0b1c2d3e"
	jobC = "0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"
)

// cliResult is what one run of the command did.
type cliResult struct {
	code           int
	stdout, stderr string
	elapsed        time.Duration
}

// cli runs the command in the test process against a NATS server.
type cli struct {
	env   map[string]string
	stdin string // nil reader when empty
}

// newCLI returns a command environment that points at ns and has a HOME
// of its own, so that no real nats context is read.
func newCLI(t *testing.T, ns *server.Server) *cli {
	t.Helper()
	env := map[string]string{"HOME": t.TempDir()}
	if ns != nil {
		env["NATS_URL"] = ns.ClientURL()
	}
	return &cli{env: env}
}

// run runs the command with args, bounded to 30 s.
func (c *cli) run(t *testing.T, args ...string) cliResult {
	t.Helper()
	return c.runCtx(t, context.Background(), args...)
}

func (c *cli) runCtx(t *testing.T, ctx context.Context, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var stdin *strings.Reader
	if c.stdin != "" {
		stdin = strings.NewReader(c.stdin)
	}
	var stdout, stderr bytes.Buffer
	start := time.Now()
	var code int
	if stdin == nil {
		code = run(ctx, args, c.getenv, nil, &stdout, &stderr)
	} else {
		code = run(ctx, args, c.getenv, stdin, &stdout, &stderr)
	}
	require.NotErrorIs(t, ctx.Err(), context.DeadlineExceeded, "the command outlived its 30 s; stderr: %s", stderr.String())
	return cliResult{code: code, stdout: stdout.String(), stderr: stderr.String(), elapsed: time.Since(start)}
}

func (c *cli) getenv(name string) string { return c.env[name] }

// tableRows parses the table on stdout into one map per row, by column
// (positions counted in characters, as the table aligns them).
func tableRows(t *testing.T, stdout string) []map[string]string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
	require.NotEmpty(t, lines)
	header := lines[0]
	names := strings.Fields(header)
	var starts []int
	offset := 0
	for _, name := range names {
		at := offset + strings.Index(header[offset:], name)
		starts = append(starts, at) // the header is ASCII: bytes are characters
		offset = at + len(name)
	}
	var rows []map[string]string
	for _, text := range lines[1:] {
		line := []rune(text)
		row := map[string]string{}
		for i, name := range names {
			end := len(line)
			if i+1 < len(starts) {
				end = min(starts[i+1], len(line))
			}
			row[name] = strings.TrimSpace(string(line[min(starts[i], len(line)):end]))
		}
		rows = append(rows, row)
	}
	return rows
}

// jsonLines parses stdout as JSON lines of results.
func jsonLines(t *testing.T, stdout string) []messages.Result {
	t.Helper()
	var results []messages.Result
	for line := range strings.SplitSeq(strings.TrimRight(stdout, "\n"), "\n") {
		var r messages.Result
		require.NoError(t, json.Unmarshal([]byte(line), &r), line)
		results = append(results, r)
	}
	return results
}

// fakeCM starts a fake CipherTrust Manager that lets the test worker in.
func fakeCM(t *testing.T) *cckmtest.Server {
	t.Helper()
	cm := cckmtest.NewServer(cckmtest.Options{Username: "worker", Password: "worker-password", SettleAfter: -1})
	t.Cleanup(cm.Close)
	return cm
}

// startWorker runs a real worker in mode against ns and cm until the test
// ends, and waits until it is ready.
func startWorker(t *testing.T, ns *server.Server, cm *cckmtest.Server, mode worker.Mode) (stop func()) {
	t.Helper()
	return startWorkerAt(t, ns, cm.URL(), cckmclient.Credentials{Username: "worker", Password: "worker-password"}, mode)
}

// startWorkerAt runs a real worker in mode against ns and the CipherTrust
// Manager at baseURL, logging in with creds, until the test ends, and
// waits until it is ready.
func startWorkerAt(t *testing.T, ns *server.Server, baseURL string, creds cckmclient.Credentials, mode worker.Mode) (stop func()) {
	t.Helper()
	client, err := cckmclient.New(cckmclient.Config{
		BaseURL:     baseURL,
		Credentials: creds,
		Timeout:     2 * time.Second,
		MaxAttempts: 2,
		RetryBudget: 5 * time.Second,
		BaseBackoff: time.Millisecond,
		MaxBackoff:  5 * time.Millisecond,
	})
	require.NoError(t, err)
	nc := natstest.Connect(t, ns)
	w, err := worker.New(worker.Config{
		Mode:            mode,
		Concurrency:     8,
		Provision:       true,
		AckWait:         2 * time.Second,
		MaxDeliveries:   2,
		RetryDelay:      20 * time.Millisecond,
		MaxRetryDelay:   100 * time.Millisecond,
		ShutdownTimeout: 5 * time.Second,
	}, nc, client, zerolog.Nop(), nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(15 * time.Second):
				t.Error("worker did not stop in 15 s")
			}
		})
	}
	t.Cleanup(stop)
	require.Eventually(t, func() bool { return w.Ready() == nil }, 10*time.Second, 5*time.Millisecond, "worker not ready")
	return stop
}

// requestWatch records the requests published on a kind's subject, seen
// on core NATS.
func watchRequests(t *testing.T, ns *server.Server, kind messages.Kind) *nats.Subscription {
	t.Helper()
	nc := natstest.Connect(t, ns)
	sub, err := nc.SubscribeSync(kind.RequestSubject())
	require.NoError(t, err)
	require.NoError(t, nc.Flush())
	return sub
}

// nextRequests returns the next n requests seen by sub.
func nextRequests(t *testing.T, sub *nats.Subscription, n int) []*nats.Msg {
	t.Helper()
	msgs := make([]*nats.Msg, 0, n)
	for range n {
		msg, err := sub.NextMsg(5 * time.Second)
		require.NoError(t, err)
		msgs = append(msgs, msg)
	}
	return msgs
}
