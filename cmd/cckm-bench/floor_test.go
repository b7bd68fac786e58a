package main

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/internal/natstest"
	"github.com/cckm/cckm-cancel-worker/messages"
	"github.com/cckm/cckm-cancel-worker/worker"
)

// TestMain lets the test binary be the floor, as the benchmark's binary
// is when startFloor runs it again with floorEnv set.
func TestMain(m *testing.M) {
	if os.Getenv(floorEnv) != "" {
		floorChild()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestTheFloorAnswersARequestAndAcksIt(t *testing.T) {
	ns := natstest.RunServer(t, nil)
	cm := cckmtest.NewServer(cckmtest.Options{Username: benchUser, Password: benchPassword, AnyJob: true, SettleAfter: -1})
	defer cm.Close()

	// The worker makes the streams and the consumer, as in the benchmark.
	w, err := startInProcessWorker(ns.ClientURL(), cm.URL(), worker.ModeJetStream, 4)
	require.NoError(t, err)
	w.stop()

	floor, err := startFloor(ns.ClientURL(), cm.URL(), 4)
	require.NoError(t, err)
	defer floor.stop()

	nc := natstest.Connect(t, ns)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	results := make(chan *nats.Msg, 1)
	sub, err := nc.ChanSubscribe(messages.SubjectResults, results)
	require.NoError(t, err)
	defer func() { _ = sub.Unsubscribe() }()

	// The benchmark's own producer and collector.
	jobID := messages.NewRequestID()
	collected := newCollector(1)
	collected.publishing("floor-1")
	s := sender{nc: nc, js: js, acked: true, payload: func() []byte { return []byte(jobID) }}
	require.NoError(t, s.send("floor-1"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, s.flush(ctx))

	select {
	case result := <-results:
		collected.onResult(result)
		var got messages.Result
		require.NoError(t, json.Unmarshal(result.Data, &got), "%s", result.Data)
		assert.Equal(t, "floor-1", got.RequestID)
		assert.Equal(t, messages.KindRefresh, got.Kind)
		assert.Equal(t, jobID, got.ID)
		assert.Equal(t, messages.StatusCanceled, got.Status)
		assert.Contains(t, string(got.Job), jobID)
	case <-time.After(10 * time.Second):
		t.Fatal("no result from the floor in 10 s")
	}
	require.Len(t, collected.latencies, 1, "the collector takes the floor's result as the worker's")
	require.Zero(t, collected.failures)
	require.Len(t, collected.legs, 1, "the result's times split the latency")

	cancels := 0
	for _, call := range cm.CallsFor(jobID) {
		if call.Op == "cancel" {
			cancels++
		}
	}
	require.Equal(t, 1, cancels, "one cancel call for the request")

	// The result is stored in the result stream under its Nats-Msg-Id.
	resultStream, err := js.Stream(ctx, worker.ResultStream)
	require.NoError(t, err)
	stored, err := resultStream.GetLastMsgForSubject(ctx, messages.KindRefresh.ResultSubject())
	require.NoError(t, err)
	require.Equal(t, messages.ResultMsgID("floor-1"), stored.Header.Get(messages.HeaderMsgID))

	// The request is acked: the work queue has let it go, nothing pending.
	requests, err := js.Stream(ctx, worker.RequestStream)
	require.NoError(t, err)
	cons, err := js.Consumer(ctx, worker.RequestStream, worker.ConsumerName)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, err := cons.Info(ctx)
		if err != nil || info.NumAckPending != 0 || info.NumPending != 0 || info.AckFloor.Stream < 1 {
			return false
		}
		streamInfo, err := requests.Info(ctx)
		return err == nil && streamInfo.State.Msgs == 0
	}, 10*time.Second, 20*time.Millisecond, "the request is acked and gone from %s", worker.RequestStream)
}

func TestTheFloorNeedsItsSettings(t *testing.T) {
	env := map[string]string{"NATS_URL": "nats://127.0.0.1:4222", "CCKM_URL": "http://127.0.0.1:1",
		"HTTP_ADDR": "127.0.0.1:0", "WORKER_CONCURRENCY": "8", "HTTP_PPROF": "true"}
	cfg, err := floorConfigFromEnv(func(name string) string { return env[name] })
	require.NoError(t, err)
	require.Equal(t, floorConfig{natsURL: env["NATS_URL"], cmURL: env["CCKM_URL"], addr: env["HTTP_ADDR"],
		concurrency: 8, pprof: true}, cfg)

	for name, value := range map[string]string{"WORKER_CONCURRENCY": "0", "NATS_URL": "", "HTTP_ADDR": ""} {
		bad := map[string]string{}
		for k, v := range env {
			bad[k] = v
		}
		bad[name] = value
		_, err := floorConfigFromEnv(func(name string) string { return bad[name] })
		require.Error(t, err, "%s=%q", name, value)
	}
}

func TestRatioToFloorIsTheThroughputOverTheFloorsOfTheRound(t *testing.T) {
	// The machine slowed down between the floor and jetstream: each is
	// held to its own limits, but the ratio to the floor is of throughputs.
	rows := []row{
		{name: limitName, throughput: 16000, ratio: 1},
		{name: modeFloor, throughput: 8000, ratio: 0.5},
		{name: limitName, throughput: 16000, ratio: 1},
		{name: "jetstream", throughput: 6000, ratio: 0.6},
		{name: limitName, throughput: 4000, ratio: 1},
	}
	setRatioToFloor(rows)
	assert.InDelta(t, 1, rows[1].ratioFloor, 1e-9)
	assert.InDelta(t, 0.75, rows[3].ratioFloor, 1e-9)
	assert.Zero(t, rows[0].ratioFloor, "the limit has no ratio to the floor")

	noFloor := []row{{name: limitName, throughput: 10000, ratio: 1}, {name: "jetstream", throughput: 6000, ratio: 0.6}}
	setRatioToFloor(noFloor)
	assert.Zero(t, noFloor[1].ratioFloor, "no floor measured: no ratio")
}
