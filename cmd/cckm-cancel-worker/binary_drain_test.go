package main

import (
	"context"
	"encoding/json"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/internal/natstest"
)

// result is the part of a result event these tests read.
type result struct {
	RequestID  string `json:"request_id"`
	Kind       string `json:"kind"`
	ID         string `json:"id"`
	Status     string `json:"status"`
	HTTPStatus int    `json:"http_status"`
	Error      *struct {
		Code string `json:"code"`
	} `json:"error"`
}

// subscribeResults subscribes to every result subject.
func subscribeResults(t *testing.T, nc *nats.Conn) chan *nats.Msg {
	t.Helper()
	results := make(chan *nats.Msg, 256)
	sub, err := nc.ChanSubscribe("cckm.cancel.*.result", results)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	require.NoError(t, nc.Flush())
	return results
}

// receiveResults receives n result messages, failing the test when they do
// not all come within timeout.
func receiveResults(t *testing.T, results <-chan *nats.Msg, n int, timeout time.Duration) []*nats.Msg {
	t.Helper()
	deadline := time.After(timeout)
	var msgs []*nats.Msg
	for len(msgs) < n {
		select {
		case msg := <-results:
			msgs = append(msgs, msg)
		case <-deadline:
			t.Fatalf("received %d results of %d within %s", len(msgs), n, timeout)
		}
	}
	return msgs
}

func decodeResult(t *testing.T, msg *nats.Msg) result {
	t.Helper()
	var r result
	require.NoError(t, json.Unmarshal(msg.Data, &r), "result %s", msg.Data)
	return r
}

func TestSIGTERMWithTwentyCallsInFlightExitsZeroAndAllGetResults(t *testing.T) {
	t.Parallel()
	const requests = 20
	ns := natstest.RunServer(t, nil)
	cm := cckmtest.NewServer(cckmtest.Options{
		Username: "worker", Password: "drain-password", Latency: 2 * time.Second, AnyJob: true,
	})
	t.Cleanup(cm.Close)
	nc := natstest.Connect(t, ns)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	results := subscribeResults(t, nc)

	p := startBinary(t, workerEnv(ns, cm, map[string]string{
		"CCKM_USERNAME": "worker", "CCKM_PASSWORD": "drain-password", "WORKER_CONCURRENCY": "32",
	}))
	p.waitUntilConsuming(t, js)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ids := map[string]bool{}
	for i := range requests {
		id := newUUID(t)
		ids[id] = true
		subject := "cckm.cancel.refresh"
		if i%2 == 1 {
			subject = "cckm.cancel.bulkjob"
		}
		_, err := js.Publish(ctx, subject, []byte(id), jetstream.WithMsgID(id))
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return countCalls(cm, "cancel") >= requests },
		15*time.Second, 10*time.Millisecond, "CipherTrust Manager did not receive %d cancels", requests)
	require.Empty(t, results, "a result came before SIGTERM: the calls were not all in flight")

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	assert.Equal(t, 0, p.exitCode(t, 20*time.Second), "exit status after SIGTERM")

	got := map[string]bool{}
	for _, msg := range receiveResults(t, results, requests, 5*time.Second) {
		r := decodeResult(t, msg)
		assert.Equal(t, "canceled", r.Status, "result %s", msg.Data)
		assert.Equal(t, r.ID, r.RequestID, "the Nats-Msg-Id is the request id")
		assert.True(t, ids[r.ID], "a result for an id never sent: %s", r.ID)
		got[r.ID] = true
	}
	assert.Len(t, got, requests, "distinct ids with a result")
	assert.Equal(t, requests, countCalls(cm, "cancel"), "each request was called exactly once")

	stream, err := js.Stream(ctx, "CCKM_CANCEL_RESULTS")
	require.NoError(t, err)
	info, err := stream.Info(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(requests), info.State.Msgs, "results stored in CCKM_CANCEL_RESULTS")

	consumer, err := js.Consumer(ctx, "CCKM_CANCEL", "cckm-cancel-worker")
	require.NoError(t, err)
	consumerInfo, err := consumer.Info(ctx)
	require.NoError(t, err)
	assert.Zero(t, consumerInfo.NumAckPending, "requests left unacknowledged")
	assert.Zero(t, consumerInfo.NumPending, "requests left undelivered")

	for _, line := range p.logLines() {
		assert.NotEqual(t, "error", line["level"], "an error was logged: %v", line)
	}
}
