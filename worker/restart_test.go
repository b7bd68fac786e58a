package worker

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/internal/natstest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

func TestANATSServerRestartMidStreamLosesNothing(t *testing.T) {
	opts := natstest.Options(t)
	first, err := server.NewServer(opts)
	require.NoError(t, err)
	first.Start()
	require.True(t, first.ReadyForConnections(10*time.Second))
	// The restarted server must come back on the same port and store.
	opts.Port = first.Addr().(*net.TCPAddr).Port

	env := newTestEnvOn(t, first, cckmtest.Options{AnyJob: true, NoRecord: true, Latency: 5 * time.Millisecond})
	cfg := testConfig(ModeJetStream)
	w := env.startWorker(t, cfg, env.client(t, nil))

	// Publish in the background; a request counts as sent once the stream
	// acknowledged it.
	const requests = 300
	sent := make(chan string, requests)
	publisherDone := make(chan struct{})
	go func() {
		defer close(publisherDone)
		defer close(sent)
		for i := range requests {
			requestID := "restart-" + strconv.Itoa(i)
			payload := `{"id":"` + messages.NewRequestID() + `","request_id":"` + requestID + `"}`
			deadline := time.Now().Add(20 * time.Second)
			for time.Now().Before(deadline) {
				ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
				_, err := env.js.Publish(ctx, messages.SubjectRefresh, []byte(payload), jetstream.WithMsgID(requestID))
				cancel()
				if err == nil {
					sent <- requestID
					break
				}
			}
			time.Sleep(2 * time.Millisecond) // pace the stream so the restart falls mid-stream
		}
	}()

	// Restart the server once a third of the requests are in.
	require.Eventually(t, func() bool { return len(sent) >= requests/3 }, 20*time.Second, 5*time.Millisecond)
	first.Shutdown()
	first.WaitForShutdown()
	require.Eventually(t, func() bool { return w.Ready() != nil }, 5*time.Second, 5*time.Millisecond,
		"not ready while NATS is down")
	second := natstest.RunServer(t, opts)
	require.Eventually(t, func() bool { return w.Ready() == nil }, 20*time.Second, 10*time.Millisecond,
		"ready again after NATS came back")
	<-publisherDone

	var want []string
	for requestID := range sent {
		want = append(want, requestID)
	}
	require.Greater(t, len(want), requests/3)

	env2 := &testEnv{ns: second, nc: env.nc, js: env.js, cm: env.cm}
	require.Eventually(t, func() bool {
		return len(env2.storedResults(t)) >= len(want)
	}, 30*time.Second, 50*time.Millisecond)
	got := map[string]int{}
	for _, r := range env2.storedResults(t) {
		got[r.RequestID]++
	}
	for _, requestID := range want {
		assert.Equal(t, 1, got[requestID], "one stored result for %s", requestID)
	}
}
