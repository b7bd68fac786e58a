package main

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/internal/natstest"
	"github.com/cckm/cckm-cancel-worker/messages"
	"github.com/cckm/cckm-cancel-worker/worker"
)

func TestSplitModeTellsTheInProcessVariant(t *testing.T) {
	for mode, want := range map[string]struct {
		mode      worker.Mode
		inProcess bool
	}{
		"jetstream":        {worker.ModeJetStream, false},
		"core":             {worker.ModeCore, false},
		"jetstream-inproc": {worker.ModeJetStream, true},
		"core-inproc":      {worker.ModeCore, true},
	} {
		got, inProcess := splitMode(mode)
		require.Equal(t, want.mode, got, mode)
		require.Equal(t, want.inProcess, inProcess, mode)
	}
}

func TestTheInProcessWorkerAnswersRequests(t *testing.T) {
	ns := natstest.RunServer(t, natstest.Options(t))
	cm := cckmtest.NewServer(cckmtest.Options{Username: benchUser, Password: benchPassword, AnyJob: true, SettleAfter: -1})
	defer cm.Close()

	w, err := startInProcessWorker(ns.ClientURL(), cm.URL(), worker.ModeJetStream, 4)
	require.NoError(t, err)
	defer w.stop()

	nc := natstest.Connect(t, ns)
	results := make(chan *nats.Msg, 1)
	sub, err := nc.ChanSubscribe(messages.SubjectResults, results)
	require.NoError(t, err)
	defer func() { _ = sub.Unsubscribe() }()
	msg := &nats.Msg{Subject: messages.SubjectRefresh, Data: []byte(messages.NewRequestID()),
		Header: nats.Header{messages.HeaderMsgID: {"inproc-1"}}}
	require.NoError(t, nc.PublishMsg(msg))

	select {
	case result := <-results:
		require.Equal(t, "inproc-1", stringField(result.Data, "request_id"))
		require.Equal(t, string(messages.StatusCanceled), stringField(result.Data, "status"))
	case <-time.After(10 * time.Second):
		t.Fatal("no result from the in-process worker in 10 s")
	}
}
