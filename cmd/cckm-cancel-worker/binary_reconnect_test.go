package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/internal/natstest"
)

// A token in NATS_URL is user information nats.go's own redaction shows;
// the worker prints it nowhere, not in the configuration line, not when it
// connects, not when NATS goes away, and not when it reconnects.
func TestATokenInNATSURLNeverReachesTheOutputThroughARestart(t *testing.T) {
	token := "url-token-" + strings.ReplaceAll(newUUID(t), "-", "")[:16]
	opts := natstest.Options(t)
	opts.Authorization = token
	first, err := server.NewServer(opts)
	require.NoError(t, err)
	first.Start()
	require.True(t, first.ReadyForConnections(10*time.Second), "the first NATS server")
	t.Cleanup(first.Shutdown)
	// The second server comes back on the same port, store and token.
	port := first.Addr().(*net.TCPAddr).Port
	opts.Port = port

	cm := cckmtest.NewServer(cckmtest.Options{StaticToken: "cm-token", AnyJob: true})
	t.Cleanup(cm.Close)
	env := workerEnv(first, cm, map[string]string{
		"NATS_URL":   fmt.Sprintf("nats://%s@127.0.0.1:%d", token, port),
		"CCKM_TOKEN": "cm-token",
	})
	p := startBinary(t, env)
	nc := natstest.Connect(t, first, nats.Token(token))
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	p.waitUntilConsuming(t, js)
	connected := p.logLine("connected to NATS")
	require.NotNil(t, connected, "the worker says it connected")
	assert.Equal(t, fmt.Sprintf("nats://xxxxx@127.0.0.1:%d", port), connected["server"], "the server it connected to")

	first.Shutdown()
	first.WaitForShutdown()
	require.Eventually(t, func() bool { return p.logLine("disconnected from NATS; reconnecting") != nil },
		10*time.Second, 20*time.Millisecond, "the worker did not notice NATS going away")
	second := natstest.RunServer(t, opts)
	require.Eventually(t, func() bool { return p.exited() || p.logLine("reconnected to NATS") != nil },
		20*time.Second, 20*time.Millisecond, "the worker did not reconnect")
	require.False(t, p.exited(), "the binary exited")
	reconnected := p.logLine("reconnected to NATS")
	assert.Equal(t, fmt.Sprintf("nats://xxxxx@127.0.0.1:%d", port), reconnected["server"], "the server it reconnected to")

	// The reconnected worker still works: a request gets its result.
	nc2 := natstest.Connect(t, second, nats.Token(token))
	js2, err := jetstream.New(nc2)
	require.NoError(t, err)
	results := subscribeResults(t, nc2)
	id := newUUID(t)
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := js2.Publish(ctx, "cckm.cancel.refresh", []byte(id), jetstream.WithMsgID(newUUID(t)))
		return err == nil
	}, 10*time.Second, 50*time.Millisecond, "publishing to the restarted server")
	msgs := receiveResults(t, results, 1, 15*time.Second)
	assert.Equal(t, "canceled", decodeResult(t, msgs[0]).Status, "the result after the restart")

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	assert.Equal(t, 0, p.exitCode(t, 20*time.Second), "exit status after SIGTERM")
	output := p.output()
	assert.NotContains(t, output, token, "the output shows the NATS token")
	assert.Contains(t, p.logLine("configuration")["nats_url"], "xxxxx", "the configuration line's NATS_URL")
}
