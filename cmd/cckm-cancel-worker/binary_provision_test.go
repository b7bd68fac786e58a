package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/internal/natstest"
)

// A stream the worker may not correct (WORKER_PROVISION=false) is a bad
// setting like the process's own: exit status 2, one line naming it, and
// the stream left as it was.
func TestAStreamItMayNotCorrectStopsTheBinaryWithExitTwoAndOneLine(t *testing.T) {
	ns := natstest.RunServer(t, nil)
	js, err := jetstream.New(natstest.Connect(t, ns))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "CCKM_CANCEL", Subjects: []string{"cckm.cancel.refresh"},
		Retention: jetstream.WorkQueuePolicy})
	require.NoError(t, err)
	cm := cckmtest.NewServer(cckmtest.Options{StaticToken: "static-token"})
	t.Cleanup(cm.Close)

	p := startBinary(t, workerEnv(ns, cm, map[string]string{"CCKM_TOKEN": "static-token", "WORKER_PROVISION": "false"}))
	assert.Equal(t, 2, p.exitCode(t, 20*time.Second))
	stderr := p.stderr.String()
	assert.Equal(t, 1, strings.Count(stderr, "\n"), "stderr is one line: %q", stderr)
	assert.Contains(t, stderr, "stream CCKM_CANCEL: subjects lacks cckm.cancel.bulkjob")
	assert.Contains(t, stderr, "WORKER_PROVISION=false")
	assert.NotContains(t, p.output(), "static-token")

	stream, err := js.Stream(ctx, "CCKM_CANCEL")
	require.NoError(t, err)
	assert.Equal(t, []string{"cckm.cancel.refresh"}, stream.CachedInfo().Config.Subjects, "not corrected")
}
