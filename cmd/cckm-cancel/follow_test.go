package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/internal/natstest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

// followedRequest is a request as the fake worker read it.
type followedRequest struct {
	ID        string `json:"id"`
	RequestID string `json:"request_id"`
	Follow    bool   `json:"follow"`
	ReplyTo   string `json:"-"`
}

// fakeFollower stands in for a worker that follows jobs to their end and
// publishes settled events: it answers each refresh request on core
// NATS with a canceled result on Cckm-Reply-To, and lets the test decide
// what settled events to publish.
type fakeFollower struct {
	nc       *nats.Conn
	requests chan followedRequest
}

// startFakeFollower answers requests; answer publishes what the test wants
// for each, by default the result alone.
func startFakeFollower(t *testing.T, ns *server.Server, answer func(f *fakeFollower, req followedRequest)) *fakeFollower {
	t.Helper()
	f := &fakeFollower{nc: natstest.Connect(t, ns), requests: make(chan followedRequest, 100)}
	_, err := f.nc.Subscribe(messages.SubjectRefresh, func(msg *nats.Msg) {
		var req followedRequest
		if json.Unmarshal(msg.Data, &req) != nil {
			return
		}
		req.ReplyTo = msg.Header.Get(messages.HeaderReplyTo)
		f.requests <- req
		answer(f, req)
	})
	require.NoError(t, err)
	require.NoError(t, f.nc.Flush())
	return f
}

// event builds a result (settled nil) or a settled event of a request.
func event(req followedRequest, status messages.Status, overall string, settled *bool) []byte {
	r := messages.Result{
		RequestID: req.RequestID, Kind: messages.KindRefresh, ID: req.ID,
		Status: status, Abort: status == messages.StatusCanceled, OverallStatus: overall,
		HTTPStatus: 200, Attempts: 1, Settled: settled,
		ReceivedAt: messages.NewTimestamp(time.Now()), CompletedAt: messages.NewTimestamp(time.Now()),
	}
	if status == messages.StatusFailed {
		r.HTTPStatus = 404
		r.Error = &messages.Error{Code: messages.CodeNotFound, Message: "NCERRResourceNotFound: Resource not found"}
	}
	data, _ := json.Marshal(r)
	return data
}

func (f *fakeFollower) result(req followedRequest, status messages.Status) {
	_ = f.nc.Publish(req.ReplyTo, event(req, status, "in progress", nil))
}

func (f *fakeFollower) settle(subject string, req followedRequest, settled bool) {
	overall := "completed"
	if !settled {
		overall = "in progress"
	}
	_ = f.nc.Publish(subject, event(req, messages.StatusCanceled, overall, new(settled)))
}

// settleAs publishes a settled event of req as if it were of kind.
func (f *fakeFollower) settleAs(subject string, kind messages.Kind, req followedRequest, settled bool) {
	var r messages.Result
	_ = json.Unmarshal(event(req, messages.StatusCanceled, "completed", new(settled)), &r)
	r.Kind = kind
	data, _ := json.Marshal(r)
	_ = f.nc.Publish(subject, data)
}

const settledSubject = "cckm.cancel.refresh.settled"

func TestFollowWaitsForTheSettledEvents(t *testing.T) {
	tests := []struct {
		name    string
		answer  func(f *fakeFollower, req followedRequest)
		code    int
		settled string // the SETTLED column of every row
		overall string
		// followTimeout is --follow-timeout; "" means 300ms.
		followTimeout string
	}{
		{
			name: "settled true on the settled subject ends the run with 0",
			answer: func(f *fakeFollower, req followedRequest) {
				f.result(req, messages.StatusCanceled)
				decoy := req
				decoy.RequestID = "someone-else"
				f.settle(settledSubject, decoy, false)
				f.settle(settledSubject, req, true)
			},
			code: exitCanceled, settled: "true", overall: "completed",
		},
		{
			name: "a settled event that comes before the result still counts",
			answer: func(f *fakeFollower, req followedRequest) {
				f.settle(settledSubject, req, true)
				f.result(req, messages.StatusCanceled)
			},
			code: exitCanceled, settled: "true", overall: "completed",
		},
		{
			name: "a settled event on the Cckm-Reply-To subject counts",
			answer: func(f *fakeFollower, req followedRequest) {
				f.result(req, messages.StatusCanceled)
				f.settle(req.ReplyTo, req, true)
			},
			code: exitCanceled, settled: "true", overall: "completed",
		},
		{
			name: "another job's settled event with the same request_id is ignored",
			answer: func(f *fakeFollower, req followedRequest) {
				f.result(req, messages.StatusCanceled)
				decoy := req
				decoy.ID = jobC
				f.settle(settledSubject, decoy, true)
				f.settle(req.ReplyTo, decoy, true)
				f.settle(settledSubject, req, false)
			},
			code: exitNotCanceled, settled: "false", overall: "in progress",
		},
		{
			name: "another kind's settled event with the same request_id and job id is ignored",
			answer: func(f *fakeFollower, req followedRequest) {
				f.result(req, messages.StatusCanceled)
				f.settleAs(settledSubject, messages.KindBulkJob, req, true)
				f.settleAs(req.ReplyTo, messages.KindBulkJob, req, true)
				f.settle(settledSubject, req, false)
			},
			code: exitNotCanceled, settled: "false", overall: "in progress",
		},
		{
			name: "the job id of a settled event matches whatever its case",
			answer: func(f *fakeFollower, req followedRequest) {
				f.result(req, messages.StatusCanceled)
				upper := req
				upper.ID = strings.ToUpper(req.ID)
				f.settle(settledSubject, upper, true)
			},
			code: exitCanceled, settled: "true", overall: "completed",
		},
		{
			name: "settled false (the worker gave up) exits 1",
			answer: func(f *fakeFollower, req followedRequest) {
				f.result(req, messages.StatusCanceled)
				f.settle(settledSubject, req, false)
			},
			code: exitNotCanceled, settled: "false", overall: "in progress",
		},
		{
			name: "no settled event times out and exits 1",
			answer: func(f *fakeFollower, req followedRequest) {
				f.result(req, messages.StatusCanceled)
			},
			code: exitNotCanceled, settled: "timeout", overall: "in progress",
		},
		{
			name: "a failed cancel is not followed",
			answer: func(f *fakeFollower, req followedRequest) {
				f.result(req, messages.StatusFailed)
			},
			code: exitNotCanceled, settled: "-", overall: "in progress",
			followTimeout: "20s",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := natstest.RunServer(t, nil)
			f := startFakeFollower(t, ns, tt.answer)

			followTimeout := first(tt.followTimeout, "300ms")

			res := newCLI(t, ns).run(t, "refresh", "--follow", "--follow-timeout", followTimeout, "--timeout", "5s", jobA, jobB)

			assert.Equal(t, tt.code, res.code, res.stderr)
			rows := tableRows(t, res.stdout)
			require.Len(t, rows, 2, res.stdout)
			for _, row := range rows {
				assert.Equal(t, tt.settled, row["SETTLED"], res.stdout)
				assert.Equal(t, tt.overall, row["OVERALL"], res.stdout)
			}
			for range 2 {
				select {
				case req := <-f.requests:
					assert.True(t, req.Follow, "the request asks the worker to follow")
				case <-time.After(5 * time.Second):
					t.Fatal("the fake worker did not see the request")
				}
			}
			if tt.settled == "-" {
				assert.Less(t, res.elapsed, 10*time.Second, "a failed cancel waited for a settled event")
			}
		})
	}
}

func TestFollowPrintsTheSettledEventsAsJSONLines(t *testing.T) {
	ns := natstest.RunServer(t, nil)
	startFakeFollower(t, ns, func(f *fakeFollower, req followedRequest) {
		f.result(req, messages.StatusCanceled)
		f.settle(settledSubject, req, req.ID == jobA)
	})

	res := newCLI(t, ns).run(t, "refresh", "--json", "--follow", "--request-prefix", "f-", jobA, jobB)

	assert.Equal(t, exitNotCanceled, res.code)
	assert.Contains(t, res.stderr, "1 of 2 requests did not end canceled and settled")
	lines := jsonLines(t, res.stdout)
	require.Len(t, lines, 4, res.stdout)
	settled := map[string]bool{}
	for _, r := range lines {
		assert.Equal(t, messages.StatusCanceled, r.Status)
		if r.Settled != nil {
			settled[r.RequestID] = *r.Settled
		}
	}
	assert.Equal(t, map[string]bool{"f-1": true, "f-2": false}, settled)
	assert.Equal(t, 2, strings.Count(res.stdout, `"settled":`))
}
