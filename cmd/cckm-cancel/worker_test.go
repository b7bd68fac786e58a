package main

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
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

func TestRunningJobsAreCanceledThroughAJetStreamWorker(t *testing.T) {
	ns := natstest.RunServer(t, nil)
	cm := fakeCM(t)
	for _, id := range []string{jobA, jobB, jobC} {
		cm.AddJob(cckmtest.Refresh, id)
	}
	startWorker(t, ns, cm, worker.ModeJetStream)
	watch := watchRequests(t, ns, messages.KindRefresh)

	res := newCLI(t, ns).run(t, "refresh", jobA, jobB, jobC)

	require.Equal(t, exitCanceled, res.code, res.stderr)
	assert.Empty(t, res.stderr)
	rows := tableRows(t, res.stdout)
	require.Len(t, rows, 3)
	requestIDs := map[string]bool{}
	for i, id := range []string{jobA, jobB, jobC} {
		assert.Equal(t, id, rows[i]["ID"], "rows are in the order of the ids")
		assert.NotContains(t, rows[i], "KIND", "one kind: no KIND column")
		assert.Equal(t, "canceled", rows[i]["STATUS"])
		assert.Equal(t, "200", rows[i]["HTTP"])
		assert.Equal(t, "in progress", rows[i]["OVERALL"])
		assert.Equal(t, "-", rows[i]["ERROR"])
		assert.Regexp(t, `^[0-9a-f]{8}-`+strconv.Itoa(i+1)+`$`, rows[i]["REQUEST_ID"], "the run prefix and the position")
		requestIDs[rows[i]["REQUEST_ID"]] = true
		job, _ := cm.Job(cckmtest.Refresh, id)
		assert.True(t, job.Abort, "job %s was not canceled", id)
	}

	replyTo := ""
	for _, msg := range nextRequests(t, watch, 3) {
		msgID := msg.Header.Get(messages.HeaderMsgID)
		assert.True(t, requestIDs[msgID], "Nats-Msg-Id %q is not a request_id of the table", msgID)
		var payload struct {
			ID        string `json:"id"`
			RequestID string `json:"request_id"`
		}
		require.NoError(t, json.Unmarshal(msg.Data, &payload))
		assert.Equal(t, msgID, payload.RequestID, "the payload's request_id is the Nats-Msg-Id")
		assert.Contains(t, []string{jobA, jobB, jobC}, payload.ID)
		assert.NotContains(t, string(msg.Data), "follow")
		assert.True(t, strings.HasPrefix(msg.Header.Get(messages.HeaderReplyTo), "_INBOX."), msg.Header)
		if replyTo != "" {
			assert.Equal(t, replyTo, msg.Header.Get(messages.HeaderReplyTo), "one reply subject for the run")
		}
		replyTo = msg.Header.Get(messages.HeaderReplyTo)
	}
}

func TestJSONLinesAreTheResultsAsReceived(t *testing.T) {
	ns := natstest.RunServer(t, nil)
	cm := fakeCM(t)
	for _, id := range []string{jobA, jobB, jobC} {
		cm.AddJob(cckmtest.BulkJob, id)
	}
	startWorker(t, ns, cm, worker.ModeJetStream)

	res := newCLI(t, ns).run(t, "bulkjob", "--json", "--request-prefix", "ir-2291-", jobA, jobB, jobC)

	require.Equal(t, exitCanceled, res.code, res.stderr)
	results := jsonLines(t, res.stdout)
	require.Len(t, results, 3)
	byRequestID := map[string]messages.Result{}
	for _, r := range results {
		byRequestID[r.RequestID] = r
	}
	for i, id := range []string{jobA, jobB, jobC} {
		r, ok := byRequestID["ir-2291-"+string(rune('1'+i))]
		require.True(t, ok, "no result for request %d in %s", i+1, res.stdout)
		assert.Equal(t, id, r.ID)
		assert.Equal(t, messages.KindBulkJob, r.Kind)
		assert.Equal(t, messages.StatusCanceled, r.Status)
		assert.True(t, r.Abort)
		assert.NotEmpty(t, r.Job, "the job object is passed on")
		assert.False(t, r.CompletedAt.IsZero())
	}
}

func TestAnUnknownJobFailsTheRunWithNotFound(t *testing.T) {
	ns := natstest.RunServer(t, nil)
	cm := fakeCM(t)
	cm.AddJob(cckmtest.Refresh, jobA)
	startWorker(t, ns, cm, worker.ModeJetStream)

	res := newCLI(t, ns).run(t, "refresh", jobA, jobB)

	assert.Equal(t, exitNotCanceled, res.code)
	rows := tableRows(t, res.stdout)
	require.Len(t, rows, 2)
	assert.Equal(t, "canceled", rows[0]["STATUS"])
	assert.Equal(t, "failed", rows[1]["STATUS"])
	assert.Equal(t, "404", rows[1]["HTTP"])
	assert.True(t, strings.HasPrefix(rows[1]["ERROR"], "not_found"), rows[1]["ERROR"])
	assert.Equal(t, "cckm-cancel: 1 of 2 requests did not end canceled\n", res.stderr)
}

func TestACoreModeWorkerIsReachedWithoutAStream(t *testing.T) {
	ns := natstest.RunServer(t, nil)
	cm := fakeCM(t)
	cm.AddJob(cckmtest.Refresh, jobA)
	cm.AddJob(cckmtest.Refresh, jobB)
	startWorker(t, ns, cm, worker.ModeCore)
	watch := watchRequests(t, ns, messages.KindRefresh)

	res := newCLI(t, ns).run(t, "refresh", "--json", jobA, jobB)

	require.Equal(t, exitCanceled, res.code, res.stderr)
	results := jsonLines(t, res.stdout)
	require.Len(t, results, 2, "the copy sent to the reply subject is not printed twice")
	for _, r := range results {
		assert.Equal(t, messages.StatusCanceled, r.Status)
	}
	for _, msg := range nextRequests(t, watch, 2) {
		assert.NotEmpty(t, msg.Header.Get(messages.HeaderMsgID))
		assert.NotEmpty(t, msg.Header.Get(messages.HeaderReplyTo))
		assert.NotEmpty(t, msg.Reply, "a core publish carries a reply subject")
	}
	js, err := jetstream.New(natstest.Connect(t, ns))
	require.NoError(t, err)
	_, err = js.StreamNameBySubject(context.Background(), messages.SubjectRefresh)
	assert.ErrorIs(t, err, jetstream.ErrStreamNotFound)
}

func TestWithoutAWorkerQueuedRequestsTimeOut(t *testing.T) {
	ns := natstest.RunServer(t, nil)
	stop := startWorker(t, ns, fakeCM(t), worker.ModeJetStream) // creates CCKM_CANCEL
	stop()

	res := newCLI(t, ns).run(t, "refresh", "--timeout", "300ms", jobA, jobB)

	assert.Equal(t, exitNotCanceled, res.code)
	assert.GreaterOrEqual(t, res.elapsed, 300*time.Millisecond)
	assert.Less(t, res.elapsed, 5*time.Second)
	rows := tableRows(t, res.stdout)
	require.Len(t, rows, 2)
	for _, row := range rows {
		assert.Equal(t, "timeout", row["STATUS"])
		assert.Equal(t, "-", row["HTTP"])
		assert.Equal(t, "timeout: no result within 300ms", row["ERROR"])
	}
	run, _, _ := strings.Cut(rows[0]["REQUEST_ID"], "-")
	assert.Equal(t, "cckm-cancel: 2 of 2 requests did not end canceled\n"+
		"cckm-cancel: 2 requests stay queued in stream CCKM_CANCEL and will still be answered; "+
		`watch for the results with: nats sub 'cckm.cancel.refresh.result' | grep -F '"request_id":"`+run+`-'`+"\n", res.stderr)

	res = newCLI(t, ns).run(t, "refresh", "--timeout", "300ms", "--json", "--request-prefix", "it's-", jobC)
	assert.Equal(t, exitNotCanceled, res.code)
	assert.Contains(t, res.stderr, "1 request stays queued", "the line comes with --json too")
	assert.Contains(t, res.stderr, `grep -F '"request_id":"it'\''s-1"'`+"\n", "one request: its whole id, quoted for the shell")
	results := jsonLines(t, res.stdout)
	require.Len(t, results, 1)
	assert.Equal(t, statusTimeout, results[0].Status)
	assert.Equal(t, jobC, results[0].ID)
	require.NotNil(t, results[0].Error)
	assert.Equal(t, codeTimeout, results[0].Error.Code)
}

func TestWithoutAWorkerOrStreamRequestsHaveNoResponders(t *testing.T) {
	ns := natstest.RunServer(t, nil)

	res := newCLI(t, ns).run(t, "bulkjob", jobA, jobB)

	assert.Equal(t, exitNotCanceled, res.code)
	assert.Less(t, res.elapsed, 5*time.Second, "no responders is known at once, not after --timeout")
	rows := tableRows(t, res.stdout)
	require.Len(t, rows, 2)
	for _, row := range rows {
		assert.Equal(t, "unsent", row["STATUS"])
		assert.True(t, strings.HasPrefix(row["ERROR"], "no_responders: "), row["ERROR"])
	}
}

func TestARepeatedRequestIDIsReportedAsADuplicate(t *testing.T) {
	ns := natstest.RunServer(t, nil)
	cm := fakeCM(t)
	cm.AddJob(cckmtest.Refresh, jobA)
	startWorker(t, ns, cm, worker.ModeJetStream)
	c := newCLI(t, ns)

	first := c.run(t, "refresh", "--request-prefix", "ir-7-", jobA)
	require.Equal(t, exitCanceled, first.code, first.stderr)

	again := c.run(t, "refresh", "--request-prefix", "ir-7-", jobA)
	assert.Equal(t, exitNotCanceled, again.code)
	rows := tableRows(t, again.stdout)
	require.Len(t, rows, 1)
	assert.Equal(t, "ir-7-1", rows[0]["REQUEST_ID"])
	assert.Equal(t, "unsent", rows[0]["STATUS"])
	assert.True(t, strings.HasPrefix(rows[0]["ERROR"], "duplicate: "), rows[0]["ERROR"])
}

func TestManyIDsFromStdinShowAProgressLine(t *testing.T) {
	ns := natstest.RunServer(t, nil)
	cm := cckmtest.NewServer(cckmtest.Options{Username: "worker", Password: "worker-password", AnyJob: true, Latency: 5 * time.Millisecond})
	t.Cleanup(cm.Close)
	startWorker(t, ns, cm, worker.ModeJetStream)
	ids := make([]string, 25)
	for i := range ids {
		ids[i] = messages.NewRequestID() // any UUID is a running job
	}
	c := newCLI(t, ns)
	c.stdin = strings.Join(ids, "\n") + "\n"

	res := c.run(t, "refresh", "--progress", "always", "--concurrency", "3")

	require.Equal(t, exitCanceled, res.code, res.stderr)
	assert.Len(t, tableRows(t, res.stdout), 25)
	assert.Contains(t, res.stderr, "\r\033[Kcckm-cancel: 1/25 answered, 1 canceled, 0 not")
	assert.Contains(t, res.stderr, "\r\033[Kcckm-cancel: 25/25 answered, 25 canceled, 0 not")
	assert.True(t, strings.HasSuffix(res.stderr, "\r\033[K"), "the progress line is cleared at the end")
	cancels := 0
	for _, call := range cm.Calls() {
		if call.Op == "cancel" {
			cancels++
		}
	}
	assert.Equal(t, 25, cancels)
}

func TestAnInterruptReportsWhatIsOutstanding(t *testing.T) {
	ns := natstest.RunServer(t, nil)
	stop := startWorker(t, ns, fakeCM(t), worker.ModeJetStream)
	stop()
	// The stream's acknowledgement of the first request goes to an inbox:
	// once it is seen, the request is stored and waits.
	acks, err := natstest.Connect(t, ns).SubscribeSync("_INBOX.>")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for {
			msg, err := acks.NextMsg(10 * time.Second)
			if err != nil || strings.Contains(string(msg.Data), `"stream":"CCKM_CANCEL"`) {
				break
			}
		}
		cancel()
	}()

	res := newCLI(t, ns).runCtx(t, ctx, "refresh", "--concurrency", "1", "--json", "--request-prefix", "int-", jobA, jobB)

	assert.Equal(t, exitNotCanceled, res.code)
	assert.Less(t, res.elapsed, 5*time.Second)
	byRequestID := map[string]messages.Result{}
	for _, r := range jsonLines(t, res.stdout) {
		byRequestID[r.RequestID] = r
	}
	require.Len(t, byRequestID, 2, res.stdout)
	first, second := byRequestID["int-1"], byRequestID["int-2"]
	assert.Equal(t, statusInterrupted, first.Status)
	require.NotNil(t, first.Error)
	assert.Contains(t, []string{"stopped before the result came", "stopped while publishing"}, first.Error.Message)
	assert.Equal(t, statusInterrupted, second.Status)
	require.NotNil(t, second.Error)
	assert.Equal(t, "stopped before it was sent", second.Error.Message)
	if first.Error.Message == "stopped before the result came" { // almost always: the acknowledgement came first
		assert.Contains(t, res.stderr, "cckm-cancel: 1 request stays queued in stream CCKM_CANCEL and will still be answered; "+
			`watch for the results with: nats sub 'cckm.cancel.refresh.result' | grep -F '"request_id":"int-1"'`+"\n")
	} else {
		assert.NotContains(t, res.stderr, "queued", "a request stopped while publishing may not be stored")
	}
}

func TestACoreModeTimeoutSaysNothingOfAQueue(t *testing.T) {
	ns := natstest.RunServer(t, nil)
	nc := natstest.Connect(t, ns)
	_, err := nc.Subscribe(messages.SubjectRefresh, func(*nats.Msg) {}) // takes the request, never answers
	require.NoError(t, err)
	require.NoError(t, nc.Flush())

	res := newCLI(t, ns).run(t, "refresh", "--timeout", "200ms", jobA)

	assert.Equal(t, exitNotCanceled, res.code)
	assert.Equal(t, "cckm-cancel: 1 of 1 requests did not end canceled\n", res.stderr, "no stream holds a core request")
}
