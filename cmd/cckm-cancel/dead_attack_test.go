package main

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/internal/natstest"
	"github.com/cckm/cckm-cancel-worker/messages"
	"github.com/cckm/cckm-cancel-worker/worker"
)

// cancelsOf counts the cancel calls CipherTrust Manager got for id.
func cancelsOf(cm *cckmtest.Server, id string) int {
	n := 0
	for _, call := range cm.CallsFor(id) {
		if call.Op == "cancel" {
			n++
		}
	}
	return n
}

func TestTwoDeadRetriesAtOnceSendTheDeadLetterOnce(t *testing.T) {
	ns := natstest.RunServer(t, nil)
	cm, failing := failingCM(t)
	startWorker(t, ns, cm, worker.ModeJetStream)
	c := newCLI(t, ns)
	deadLetterOf(t, ns, c)
	failing.Store(false)
	before := cancelsOf(cm, jobA)

	// Two operators, two terminals, the same dead letter.
	var wg sync.WaitGroup
	var runs [2]cliResult
	for i := range runs {
		wg.Go(func() { runs[i] = c.run(t, "dead", "retry", "first-1") })
	}
	wg.Wait()

	codes := []int{runs[0].code, runs[1].code}
	assert.ElementsMatch(t, []int{exitCanceled, exitNotCanceled}, codes, "one run retries, the other says it was beaten: %+v", runs)
	for _, res := range runs {
		assert.NotContains(t, res.stderr, "cannot remove", "a dead letter the other run removed is no error")
		if res.code == exitCanceled {
			assert.Equal(t, "cckm-cancel: 1 of 1 dead letters removed (their retry has a stored result)\n", res.stderr)
			continue
		}
		rows := tableRows(t, res.stdout)
		require.Len(t, rows, 1, res.stdout)
		assert.Equal(t, "unsent", rows[0]["STATUS"])
		assert.Contains(t, res.stderr, "1 left to the run that retried them at the same time", "and not 'kept'")
		assert.NotContains(t, res.stderr, "kept")
	}
	assert.Equal(t, 1, cancelsOf(cm, jobA)-before, "the job is asked to cancel once")
	js, err := jetstream.New(natstest.Connect(t, ns))
	require.NoError(t, err)
	dead, err := js.Stream(context.Background(), deadLetterStream)
	require.NoError(t, err)
	assert.Zero(t, dead.CachedInfo().State.Msgs, "the dead letter is removed")
}

// forgeDeadLetter stores a dead letter as anyone allowed to publish on the
// dead-letter subjects could.
func forgeDeadLetter(t *testing.T, ns *server.Server, data string, headers map[string]string) {
	t.Helper()
	js, err := jetstream.New(natstest.Connect(t, ns))
	require.NoError(t, err)
	msg := nats.NewMsg(messages.KindRefresh.DeadLetterSubject())
	msg.Data = []byte(data)
	for name, value := range headers {
		msg.Header.Set(name, value)
	}
	_, err = js.PublishMsg(context.Background(), msg)
	require.NoError(t, err)
}

// requireNoTerminalControls checks that out holds no escape, C1 control or
// bidirectional override: nothing that a terminal would act on.
func requireNoTerminalControls(t *testing.T, out string) {
	t.Helper()
	for _, bad := range []string{"\x1b", "\u009b", "\a", "\u202e", "\u2066"} {
		assert.NotContains(t, out, bad, "%q reached the terminal: %q", bad, out)
	}
}

func TestDeadLettersWithHostileHeadersAreListedAndRetriedWithoutEscapes(t *testing.T) {
	ns := natstest.RunServer(t, nil)
	cm := fakeCM(t)
	cm.AddJob(cckmtest.Refresh, jobA)
	startWorker(t, ns, cm, worker.ModeJetStream)
	forgeDeadLetter(t, ns, jobA, map[string]string{ // a bare id, no original subject
		headerDeadRequestID: "\x1b[31mred\x1b]0;title\a",
		headerDeadReason:    "\x1b[2J\u009b2Jcleared \u202eexe.txt",
	})
	forgeDeadLetter(t, ns, `{not json`, map[string]string{headerDeadRequestID: "\x1b[1mbold"})
	c := newCLI(t, ns)

	ls := c.run(t, "dead", "ls")

	require.Equal(t, exitCanceled, ls.code, ls.stderr)
	requireNoTerminalControls(t, ls.stdout+ls.stderr)
	rows := tableRows(t, ls.stdout)
	require.Len(t, rows, 2, ls.stdout)
	assert.Equal(t, "dead-1", rows[0]["REQUEST_ID"], "a request id that is no valid one is named for its sequence")
	assert.Equal(t, "dead-2", rows[1]["REQUEST_ID"])
	assert.Contains(t, rows[0]["WHY"], "cleared")
	assert.Equal(t, ls.stdout, c.run(t, "dead", "ls").stdout, "the same names on every listing")

	lines := c.run(t, "dead", "ls", "--json")

	require.Equal(t, exitCanceled, lines.code, lines.stderr)
	requireNoTerminalControls(t, lines.stdout+lines.stderr)
	var first deadLetter
	require.NoError(t, json.Unmarshal([]byte(strings.SplitN(lines.stdout, "\n", 2)[0]), &first))
	assert.Equal(t, "\x1b[2J\u009b2Jcleared \u202eexe.txt", first.Reason, "the JSON escapes the reason, and keeps it whole")

	res := c.run(t, "dead", "retry", "--all", "--request-prefix", "r-")

	requireNoTerminalControls(t, res.stdout+res.stderr)
	assert.Equal(t, exitNotCanceled, res.code, "one could not be sent")
	assert.Contains(t, res.stderr, "cckm-cancel: dead letter dead-2 (sequence 2) cannot be sent again: its payload names no valid job id; it is kept\n")
	rows = tableRows(t, res.stdout)
	require.Len(t, rows, 1, res.stdout)
	assert.Equal(t, "canceled", rows[0]["STATUS"])
	job, _ := cm.Job(cckmtest.Refresh, jobA)
	assert.True(t, job.Abort)
}

func TestADeadRetryKeepsTheRequestsFollow(t *testing.T) {
	ns := natstest.RunServer(t, nil)
	cm := fakeCM(t)
	cm.AddJob(cckmtest.Refresh, jobA)
	startWorker(t, ns, cm, worker.ModeJetStream)
	forgeDeadLetter(t, ns, `{"id":"`+jobA+`","request_id":"ir-7","follow":true,"ticket":{"n":1}}`,
		map[string]string{headerOriginalSubject: messages.SubjectRefresh})
	watch := watchRequests(t, ns, messages.KindRefresh)

	res := newCLI(t, ns).run(t, "dead", "retry", "--request-prefix", "r-", "ir-7")

	require.Equal(t, exitCanceled, res.code, res.stderr)
	var payload map[string]any
	require.NoError(t, json.Unmarshal(nextRequests(t, watch, 1)[0].Data, &payload))
	assert.Equal(t, map[string]any{"id": jobA, "request_id": "r-1", "retry_of": "ir-7", "follow": true}, payload,
		"whoever asked to follow the job still gets its settled event")
}

func TestDeadLsOfTenThousandDeadLettersIsQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("stores 10,000 messages")
	}
	ns := natstest.RunServer(t, nil)
	nc := natstest.Connect(t, ns)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	_, err = js.CreateStream(context.Background(), jetstream.StreamConfig{Name: deadLetterStream, Subjects: []string{"cckm.cancel.dead.*"}})
	require.NoError(t, err)
	const letters = 10_000
	for i := range letters {
		_, err := js.PublishAsync(messages.KindRefresh.DeadLetterSubject(), []byte(jobA),
			jetstream.WithMsgID(""), jetstream.WithExpectStream(deadLetterStream))
		require.NoError(t, err, "letter %d", i)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(20 * time.Second):
		t.Fatal("could not store the dead letters")
	}

	res := newCLI(t, ns).run(t, "dead", "ls", "--json")

	require.Equal(t, exitCanceled, res.code, res.stderr)
	assert.Equal(t, letters, strings.Count(res.stdout, "\n"))
	assert.Less(t, res.elapsed, 10*time.Second)
}
