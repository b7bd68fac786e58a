package main

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/internal/natstest"
	"github.com/cckm/cckm-cancel-worker/messages"
	"github.com/cckm/cckm-cancel-worker/worker"
)

func TestTheDeadLetterNamesAreTheWorkers(t *testing.T) {
	assert.Equal(t, worker.DeadLetterStream, deadLetterStream)
	assert.Equal(t, worker.HeaderDeadReason, headerDeadReason)
	assert.Equal(t, worker.HeaderDeadCode, headerDeadCode)
	assert.Equal(t, worker.HeaderDeadDeliveries, headerDeadDeliveries)
	assert.Equal(t, worker.HeaderDeadAttempts, headerDeadAttempts)
	assert.Equal(t, worker.HeaderRequestID, headerDeadRequestID)
	assert.Equal(t, worker.HeaderOrigSubject, headerOriginalSubject)
	assert.Equal(t, worker.HeaderDeadPayloadOmitted, headerDeadPayloadOmitted)
}

// failingCM is a fake CipherTrust Manager that answers every cancel of
// jobA with 500 until fixed.
func failingCM(t *testing.T) (*cckmtest.Server, *atomic.Bool) {
	t.Helper()
	cm := fakeCM(t)
	cm.AddJob(cckmtest.Refresh, jobA)
	failing := &atomic.Bool{}
	failing.Store(true)
	cm.SetFault(func(call cckmtest.Call) *cckmtest.Step {
		if call.Op == "cancel" && failing.Load() {
			return &cckmtest.Step{Status: 500}
		}
		return nil
	})
	return cm, failing
}

// deadLetterOf sends a request for jobA that fails, and waits until its
// dead letter is stored.
func deadLetterOf(t *testing.T, ns *server.Server, c *cli) {
	t.Helper()
	res := c.run(t, "refresh", "--request-prefix", "first-", jobA)
	require.Equal(t, exitNotCanceled, res.code, res.stderr)
	rows := tableRows(t, res.stdout)
	require.Len(t, rows, 1)
	require.Equal(t, "failed", rows[0]["STATUS"])
	js, err := jetstream.New(natstest.Connect(t, ns))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		stream, err := js.Stream(context.Background(), deadLetterStream)
		return err == nil && stream.CachedInfo().State.Msgs == 1
	}, 10*time.Second, 10*time.Millisecond, "no dead letter")
}

func TestDeadLsListsTheDeadLettersWithinOneHundredColumns(t *testing.T) {
	ns := natstest.RunServer(t, nil)
	cm, _ := failingCM(t)
	startWorker(t, ns, cm, worker.ModeJetStream)
	c := newCLI(t, ns)
	deadLetterOf(t, ns, c)

	res := c.run(t, "dead", "ls")

	require.Equal(t, exitCanceled, res.code, res.stderr)
	assert.Less(t, res.elapsed, fetchWait, "the listing ends at the last dead letter, without waiting for more")
	assert.Empty(t, res.stderr)
	requireFits(t, res.stdout)
	rows := tableRows(t, res.stdout)
	require.Len(t, rows, 1, res.stdout)
	assert.Equal(t, "refresh", rows[0]["KIND"])
	assert.Equal(t, jobA, rows[0]["ID"])
	assert.Equal(t, "first-1", rows[0]["REQUEST_ID"])
	assert.True(t, strings.HasPrefix(rows[0]["WHY"], "server_error: "), rows[0]["WHY"])
	when, err := time.Parse(whenLayout, rows[0]["WHEN_UTC"])
	require.NoError(t, err, rows[0]["WHEN_UTC"])
	now := time.Now().UTC()
	assert.Equal(t, now.Format("Jan 02"), when.Format("Jan 02"))

	res = c.run(t, "dead", "ls", "--json")
	require.Equal(t, exitCanceled, res.code, res.stderr)
	var letter deadLetter
	require.NoError(t, json.Unmarshal([]byte(strings.TrimSpace(res.stdout)), &letter), res.stdout)
	assert.Equal(t, messages.KindRefresh, letter.Kind)
	assert.Equal(t, jobA, letter.ID)
	assert.Equal(t, "first-1", letter.RequestID)
	assert.Equal(t, messages.SubjectRefresh, letter.Subject)
	assert.Equal(t, string(messages.CodeServerError), letter.Code)
	assert.Equal(t, 2, letter.Deliveries)
	assert.WithinDuration(t, time.Now(), letter.StoredAt, time.Minute)

	again := c.run(t, "dead", "ls")
	assert.Equal(t, res.code, again.code)
	assert.Len(t, tableRows(t, again.stdout), 1, "listing changes nothing")
}

func TestDeadLsWithoutADeadLetterStreamSaysThereAreNone(t *testing.T) {
	ns := natstest.RunServer(t, nil)

	res := newCLI(t, ns).run(t, "dead", "ls")

	assert.Equal(t, exitCanceled, res.code)
	assert.Empty(t, res.stdout)
	assert.Equal(t, "cckm-cancel: no dead letters in CCKM_CANCEL_DEAD\n", res.stderr)
}

func TestDeadRetrySendsANewRequestAndRemovesTheDeadLetterOnceItsResultIsStored(t *testing.T) {
	ns := natstest.RunServer(t, nil)
	cm, failing := failingCM(t)
	startWorker(t, ns, cm, worker.ModeJetStream)
	c := newCLI(t, ns)
	deadLetterOf(t, ns, c)
	failing.Store(false) // CipherTrust Manager is fixed
	watch := watchRequests(t, ns, messages.KindRefresh)

	res := c.run(t, "dead", "retry", "--all", "--request-prefix", "retry-")

	require.Equal(t, exitCanceled, res.code, res.stderr)
	assert.Less(t, res.elapsed, fetchWait, "finding the stored result does not wait for more")
	rows := tableRows(t, res.stdout)
	require.Len(t, rows, 1, res.stdout)
	assert.Equal(t, "retry-1", rows[0]["REQUEST_ID"])
	assert.Equal(t, jobA, rows[0]["ID"])
	assert.Equal(t, "canceled", rows[0]["STATUS"])
	assert.Equal(t, "cckm-cancel: 1 of 1 dead letters removed (their retry has a stored result)\n", res.stderr)

	sent := nextRequests(t, watch, 1)[0]
	var payload map[string]any
	require.NoError(t, json.Unmarshal(sent.Data, &payload))
	assert.Equal(t, map[string]any{"id": jobA, "request_id": "retry-1", "retry_of": "first-1"}, payload)
	assert.Regexp(t, `^CCKM_CANCEL_DEAD\.1\.\d+\.retry$`, sent.Header.Get(messages.HeaderMsgID),
		"the de-duplication key names the dead letter, so that two runs send it once")

	js, err := jetstream.New(natstest.Connect(t, ns))
	require.NoError(t, err)
	results, err := js.Stream(context.Background(), worker.ResultStream)
	require.NoError(t, err)
	stored, err := results.GetLastMsgForSubject(context.Background(), messages.KindRefresh.ResultSubject())
	require.NoError(t, err)
	var result messages.Result
	require.NoError(t, json.Unmarshal(stored.Data, &result))
	assert.Equal(t, "retry-1", result.RequestID)
	assert.Equal(t, messages.StatusCanceled, result.Status)
	job, _ := cm.Job(cckmtest.Refresh, jobA)
	assert.True(t, job.Abort, "the job is canceled")

	res = c.run(t, "dead", "ls")
	assert.Empty(t, res.stdout, "the dead letter is gone")
	dead, err := js.Stream(context.Background(), deadLetterStream)
	require.NoError(t, err)
	assert.Zero(t, dead.CachedInfo().State.Msgs)
}

func TestADeadRetryWithoutAStoredResultKeepsTheDeadLetter(t *testing.T) {
	ns := natstest.RunServer(t, nil)
	cm, failing := failingCM(t)
	stop := startWorker(t, ns, cm, worker.ModeJetStream)
	c := newCLI(t, ns)
	deadLetterOf(t, ns, c)
	failing.Store(false)
	stop() // no worker: the retry stays queued

	res := c.run(t, "dead", "retry", "--timeout", "300ms", "--request-prefix", "late-", "first…")

	assert.Equal(t, exitNotCanceled, res.code)
	rows := tableRows(t, res.stdout)
	require.Len(t, rows, 1, res.stdout)
	assert.Equal(t, "late-1", rows[0]["REQUEST_ID"])
	assert.Equal(t, "timeout", rows[0]["STATUS"])
	assert.Contains(t, res.stderr, "cckm-cancel: 1 request stays queued in stream CCKM_CANCEL and will still be answered; "+
		`watch for the results with: nats sub 'cckm.cancel.refresh.result' | grep -F '"request_id":"late-1"'`+"\n")
	assert.Contains(t, res.stderr, "cckm-cancel: 0 of 1 dead letters removed (their retry has a stored result); 1 kept (no stored result for their retry yet)\n")

	ls := c.run(t, "dead", "ls")
	rows = tableRows(t, ls.stdout)
	require.Len(t, rows, 1, ls.stdout)
	assert.Equal(t, "first-1", rows[0]["REQUEST_ID"], "the dead letter is kept")
}

func TestDeadRetryOfAnUnknownRequestIDSendsNothing(t *testing.T) {
	ns := natstest.RunServer(t, nil)
	cm, _ := failingCM(t)
	startWorker(t, ns, cm, worker.ModeJetStream)
	c := newCLI(t, ns)
	deadLetterOf(t, ns, c)
	watch := watchRequests(t, ns, messages.KindRefresh)

	res := c.run(t, "dead", "retry", "first-1", "nobody")

	assert.Equal(t, exitUsage, res.code)
	assert.Empty(t, res.stdout)
	assert.Equal(t, `cckm-cancel: no dead letter has request id "nobody" (cckm-cancel dead ls lists them)`+"\n"+
		"cckm-cancel: 1 of 2 request ids name no one dead letter; nothing was sent\n", res.stderr)
	_, err := watch.NextMsg(200 * time.Millisecond)
	assert.Error(t, err, "nothing was sent")
}

func TestDeadLettersAreChosenByRequestIDOrAStartOfOne(t *testing.T) {
	letters := []deadLetter{
		{Sequence: 1, RequestID: "8155fe39-570a-4132-92ca-e40b7640c7dc"},
		{Sequence: 2, RequestID: "8155fe39-1111-4132-92ca-e40b7640c7dc"},
		{Sequence: 3, RequestID: "ir-7"},
		{Sequence: 4, RequestID: "ir-7"}, // one request dead twice
		{Sequence: 5, RequestID: "ir-77"},
	}
	tests := []struct {
		name  string
		names []string
		want  []uint64 // sequences; nil for an error
	}{
		{"a whole request id", []string{"8155fe39-570a-4132-92ca-e40b7640c7dc"}, []uint64{1}},
		{"the start the table shows, with its …", []string{"8155fe39-570a…"}, []uint64{1}},
		{"a start of two request ids is refused", []string{"8155fe39"}, nil},
		{"a whole id wins over longer ones it starts", []string{"ir-7"}, []uint64{3, 4}},
		{"a name given twice is retried once", []string{"ir-77", "ir-77"}, []uint64{5}},
		{"an unknown one refuses them all", []string{"ir-77", "ir-8"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr strings.Builder
			chosen, err := chooseDeadLetters(letters, tt.names, false, &stderr)
			if tt.want == nil {
				assert.Error(t, err)
				assert.NotEmpty(t, stderr.String())
				return
			}
			require.NoError(t, err, stderr.String())
			var got []uint64
			for _, d := range chosen {
				got = append(got, d.Sequence)
			}
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestDeadUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"dead"}, "dead wants ls or retry"},
		{[]string{"dead", "rm"}, `dead wants ls or retry, got "rm"`},
		{[]string{"dead", "retry"}, "dead retry wants --all or the request ids"},
		{[]string{"dead", "retry", "--all", "ir-7"}, "not both"},
		{[]string{"dead", "ls", "--all"}, "--all is for dead retry"},
		{[]string{"refresh", "--all", jobA}, "--all is for dead retry"},
		{[]string{"dead", "retry", "--follow", "--all"}, "--follow is not for dead retry"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			res := newCLI(t, nil).run(t, tt.args...)
			assert.Equal(t, exitUsage, res.code)
			assert.Empty(t, res.stdout)
			assert.Equal(t, 1, strings.Count(res.stderr, "\n"), res.stderr)
			assert.Contains(t, res.stderr, tt.want)
		})
	}
}

func TestARetryThatFailsAgainIsDeadLetteredUnderItsNewRequestID(t *testing.T) {
	ns := natstest.RunServer(t, nil)
	cm, _ := failingCM(t) // never fixed
	startWorker(t, ns, cm, worker.ModeJetStream)
	c := newCLI(t, ns)
	deadLetterOf(t, ns, c)

	res := c.run(t, "dead", "retry", "--request-prefix", "again-", "first-1")

	assert.Equal(t, exitNotCanceled, res.code)
	rows := tableRows(t, res.stdout)
	require.Len(t, rows, 1, res.stdout)
	assert.Equal(t, "failed", rows[0]["STATUS"])
	assert.Contains(t, res.stderr, "1 of 1 dead letters removed", "the retry's failed result is its answer")
	var letters []deadLetter
	require.Eventually(t, func() bool {
		ls := c.run(t, "dead", "ls", "--json")
		letters = nil
		for line := range strings.SplitSeq(strings.TrimSpace(ls.stdout), "\n") {
			var d deadLetter
			if json.Unmarshal([]byte(line), &d) == nil {
				letters = append(letters, d)
			}
		}
		return len(letters) == 1 && letters[0].RequestID == "again-1"
	}, 10*time.Second, 20*time.Millisecond, "the retry is not dead-lettered under its new id: %+v", letters)
	assert.Equal(t, "first-1", letters[0].RetryOf, "the link to the old request travels with the dead letter")
	assert.Equal(t, jobA, letters[0].ID)
}
