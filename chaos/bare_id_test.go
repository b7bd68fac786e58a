package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/internal/natstest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

// The bare-id kill scenario.
const (
	// bareIDJobs is how many jobs are asked for, one request each.
	bareIDJobs = 200
	// bareIDHoldAfter is how many results must be stored before NATS's
	// replies are held and the worker is killed: enough to show the worker
	// is answering, few enough that most of the 200 are still in flight or
	// waiting (64 calls of 50–200 ms at a time).
	bareIDHoldAfter = 10
	// bareIDStoredWhileHeld is how many more results must be stored while
	// NATS's replies are held before the kill: each of them is stored and
	// not acknowledged, so it comes back after the restart.
	bareIDStoredWhileHeld = 20
	// cmBaseLatency and cmExtraLatency make each cancel take 50–200 ms, so
	// that a kill finds calls in flight.
	cmBaseLatency  = 50 * time.Millisecond
	cmExtraLatency = 150 * time.Millisecond
	// drainBound bounds the wait for the restarted worker to answer every
	// request: the ack wait (3 s) before the killed worker's requests come
	// back, plus 200 calls at 64 at a time, with a wide margin.
	drainBound = 2 * time.Minute
)

// A request given as the bare job id, as `nats pub cckm.cancel.refresh <id>`
// sends it, carries no request_id: the worker makes one up. A kill -9 after
// a result was stored but before the request was acknowledged brings the
// request back; its result must not be stored a second time under a
// request_id made up anew.
//
// A bare kill rarely lands in that window (between the result's storage
// and the acknowledgement, well under a millisecond). So, as when a worker
// hangs on a link that stalls one way and is then killed for it, the
// worker's NATS replies are held first: the results of the calls in flight
// are still stored, their acknowledgements never come back, the worker
// does not acknowledge the requests, and the kill finds them all unsettled.
func TestKillDash9With200BareIDRequestsInFlightThenRestart(t *testing.T) {
	requireChaos(t)
	ns := natstest.RunServer(t, nil)
	var cancels atomic.Int64
	cm := newCM(t, cckmtest.Options{
		Latency:     cmBaseLatency,
		SettleAfter: -1, // a job canceled before the kill still accepts the cancel after it
		Fault: func(call cckmtest.Call) *cckmtest.Step {
			if call.Op == "cancel" {
				cancels.Add(1)
			}
			return &cckmtest.Step{Delay: rand.N(cmExtraLatency)}
		},
	})
	link := startProxy(t, ns.Addr().String())
	worker := startWorker(t, workerEnv(link.URL(), cm.URL()))
	js := connect(t, ns.ClientURL())

	jobIDs := make([]string, bareIDJobs)
	for i := range jobIDs {
		jobIDs[i] = messages.NewRequestID() // a UUID, as CipherTrust Manager's job ids are
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		// No header at all: no Nats-Msg-Id, so no request_id from the producer.
		_, err := js.Publish(ctx, messages.SubjectRefresh, []byte(jobIDs[i]))
		cancel()
		require.NoError(t, err, "publishing request %d", i)
	}

	require.Eventually(t, func() bool { return streamMsgs(js, "CCKM_CANCEL_RESULTS") >= bareIDHoldAfter },
		30*time.Second, 5*time.Millisecond, "the worker stores its first results")
	link.holdReplies()
	storedAtHold := streamMsgs(js, "CCKM_CANCEL_RESULTS")
	require.Eventually(t, func() bool {
		return streamMsgs(js, "CCKM_CANCEL_RESULTS") >= storedAtHold+bareIDStoredWhileHeld
	}, 30*time.Second, 5*time.Millisecond, "results of the calls in flight stored while the replies are held")
	worker.kill(t)
	storedAtKill := streamMsgs(js, "CCKM_CANCEL_RESULTS")
	pendingAtKill := streamMsgs(js, "CCKM_CANCEL")
	require.True(t, storedAtKill >= 0 && pendingAtKill >= 0, "the streams' state after the kill")
	unsettled := storedAtKill - (bareIDJobs - pendingAtKill) // stored, not acknowledged
	t.Logf("killed with %d results stored (%d while the replies were held), %d requests not acknowledged (%d of them with a stored result), %d cancel calls made",
		storedAtKill, storedAtKill-storedAtHold, pendingAtKill, unsettled, cancels.Load())
	require.Less(t, storedAtKill, bareIDJobs, "requests were still in flight at the kill")
	require.Positive(t, unsettled, "the kill found requests whose result was stored and that were not acknowledged")

	// The new process has a link of its own, straight to the server.
	env := workerEnv(ns.ClientURL(), cm.URL())
	startWorker(t, env)
	require.Eventually(t, func() bool { return streamMsgs(js, "CCKM_CANCEL") == 0 },
		drainBound, 50*time.Millisecond, "every request acknowledged after the restart")

	// Every request is acknowledged, and the worker acknowledges only after
	// storing the result: nothing more can arrive, so this read is complete.
	results := storedResults(t, js)
	perJob := map[string][]string{} // job id -> the request_ids of its results
	statuses := map[messages.Status]int{}
	for _, r := range results {
		perJob[r.ID] = append(perJob[r.ID], r.RequestID)
		statuses[r.Status]++
	}
	lost, duplicates, renamed := 0, 0, 0
	for _, id := range jobIDs {
		requestIDs := perJob[id]
		switch n := len(requestIDs); {
		case n == 0:
			lost++
		case n > 1:
			duplicates += n - 1
			renamed += len(distinct(requestIDs)) - 1
			t.Errorf("job %s has %d results, under request_ids %v", id, n, requestIDs)
		}
	}
	report := fmt.Sprintf("chaos %s: sent %d, results %d, lost %d, duplicates %d (%d under a new request_id), statuses %v, cancel calls %d",
		t.Name(), len(jobIDs), len(results), lost, duplicates, renamed, statuses, cancels.Load())
	t.Log(report)
	fmt.Println(report)
	assert.Equal(t, bareIDJobs, len(results), "CCKM_CANCEL_RESULTS holds one result per request")
	assert.Equal(t, bareIDJobs, len(perJob), "every job id has a result, and no other id appears")
	assert.Zero(t, lost, "job ids without a result")
	assert.Zero(t, duplicates, "job ids with a second result")
	assert.Equal(t, map[messages.Status]int{messages.StatusCanceled: len(results)}, statuses, "every result is canceled")
	assert.Zero(t, streamMsgs(js, "CCKM_CANCEL"), "the request stream is empty")
}

// streamMsgs is how many messages stream holds now, or -1 when that cannot
// be told (the stream does not exist yet, or NATS did not answer). It does
// not fail the test, so that require.Eventually may call it.
func streamMsgs(js jetstream.JetStream, stream string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return -1
	}
	info, err := s.Info(ctx)
	if err != nil {
		return -1
	}
	return int(info.State.Msgs)
}

// distinct returns the different values of values.
func distinct(values []string) map[string]bool {
	set := map[string]bool{}
	for _, v := range values {
		set[v] = true
	}
	return set
}
