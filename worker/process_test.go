package worker

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/messages"
)

// scriptedCanceler answers Cancel and Get from fixed responses.
type scriptedCanceler struct {
	cancelResp cckmclient.Response
	cancelErr  error
	getResp    cckmclient.Response
	getErr     error
	gets       int
}

func (s *scriptedCanceler) Cancel(context.Context, messages.Kind, string) (cckmclient.Response, error) {
	return s.cancelResp, s.cancelErr
}

func (s *scriptedCanceler) Get(context.Context, messages.Kind, string) (cckmclient.Response, error) {
	s.gets++
	return s.getResp, s.getErr
}

func jobWith(abort bool, overall string) *cckmclient.Job {
	raw, _ := json.Marshal(map[string]any{"id": jobIDForTest, "abort": abort, "overall_status": overall})
	return &cckmclient.Job{Raw: raw, ID: jobIDForTest, Abort: abort, OverallStatus: overall}
}

const jobIDForTest = "8155fe39-570a-4132-92ca-e40b7640c7dc"

func TestAConflictOnARedeliveryChecksWhetherAnEarlierDeliveryCanceledTheJob(t *testing.T) {
	conflict := &cckmclient.APIError{Op: "cancel", StatusCode: 409, CodeDesc: "NCERRConflict: job is not in progress"}
	tests := []struct {
		name        string
		redelivered bool
		get         cckmclient.Response
		getErr      error
		wantStatus  messages.Status
		wantCode    messages.ErrorCode
		wantHTTP    int
		wantGets    int
		wantTries   int
	}{
		{
			name: "a first delivery's 409 is a conflict, without a look", redelivered: false,
			get:        cckmclient.Response{Job: jobWith(true, "completed"), HTTPStatus: 200, Attempts: 1},
			wantStatus: messages.StatusFailed, wantCode: messages.CodeConflict, wantHTTP: 409, wantGets: 0, wantTries: 1,
		},
		{
			name: "a redelivery's 409 on a job finished with abort true is canceled", redelivered: true,
			get:        cckmclient.Response{Job: jobWith(true, "completed"), HTTPStatus: 200, Attempts: 1},
			wantStatus: messages.StatusCanceled, wantHTTP: 200, wantGets: 1, wantTries: 2,
		},
		{
			name: "a redelivery's 409 on a job that finished without abort stays a conflict", redelivered: true,
			get:        cckmclient.Response{Job: jobWith(false, "completed"), HTTPStatus: 200, Attempts: 1},
			wantStatus: messages.StatusFailed, wantCode: messages.CodeConflict, wantHTTP: 409, wantGets: 1, wantTries: 2,
		},
		{
			name: "a redelivery's 409 stays a conflict when the look fails", redelivered: true,
			get:        cckmclient.Response{HTTPStatus: 503, Attempts: 2},
			getErr:     &cckmclient.APIError{StatusCode: 503},
			wantStatus: messages.StatusFailed, wantCode: messages.CodeConflict, wantHTTP: 409, wantGets: 1, wantTries: 3,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			canceler := &scriptedCanceler{
				cancelResp: cckmclient.Response{HTTPStatus: 409, Attempts: 1}, cancelErr: conflict,
				getResp: tt.get, getErr: tt.getErr,
			}
			d := delivery{kind: messages.KindBulkJob, payload: []byte(jobIDForTest), received: time.Now(),
				final: true, redelivered: tt.redelivered}
			out := process(context.Background(), canceler, d, time.Now)
			require.Equal(t, verdictDone, out.verdict)
			assert.Equal(t, tt.wantStatus, out.result.Status)
			assert.Equal(t, tt.wantHTTP, out.result.HTTPStatus)
			assert.Equal(t, tt.wantGets, canceler.gets)
			assert.Equal(t, tt.wantTries, out.result.Attempts, "the GET counts as an attempt")
			if tt.wantCode == "" {
				assert.Nil(t, out.result.Error)
				assert.True(t, out.result.Abort)
				assert.Equal(t, "completed", out.result.OverallStatus)
				assert.JSONEq(t, string(tt.get.Job.Raw), string(out.result.Job))
				return
			}
			require.NotNil(t, out.result.Error)
			assert.Equal(t, tt.wantCode, out.result.Error.Code)
			assert.Empty(t, out.result.Job)
		})
	}
}

func TestProcessLeavesATransientFailureForRedeliveryUnlessFinal(t *testing.T) {
	unavailable := &cckmclient.APIError{StatusCode: 503, RetryAfter: 3 * time.Second}
	canceler := &scriptedCanceler{cancelResp: cckmclient.Response{HTTPStatus: 503, Attempts: 4}, cancelErr: unavailable}
	d := delivery{kind: messages.KindRefresh, payload: []byte(jobIDForTest), received: time.Now(),
		prior: priorDeliveries{attempts: 4, httpStatus: 503}}

	out := process(context.Background(), canceler, d, time.Now)
	assert.Equal(t, verdictRetry, out.verdict)
	assert.Equal(t, 8, out.attempts)
	assert.Equal(t, 3*time.Second, out.retryAfter, "Retry-After is passed to the redelivery delay")

	d.final = true
	out = process(context.Background(), canceler, d, time.Now)
	assert.Equal(t, verdictDone, out.verdict)
	assert.True(t, out.deadLetter)
	assert.Equal(t, messages.CodeServerError, out.result.Error.Code)
	assert.True(t, out.result.Error.Retryable)
}

func TestRedeliveryDelayGrowsAndHonoursRetryAfter(t *testing.T) {
	cfg := Config{RetryDelay: time.Second, MaxRetryDelay: 10 * time.Second}
	assert.Equal(t, time.Second, cfg.redeliveryDelay(1, 0))
	assert.Equal(t, 2*time.Second, cfg.redeliveryDelay(2, 0))
	assert.Equal(t, 8*time.Second, cfg.redeliveryDelay(4, 0))
	assert.Equal(t, 10*time.Second, cfg.redeliveryDelay(5, 0), "capped")
	assert.Equal(t, 10*time.Second, cfg.redeliveryDelay(60, 0), "no overflow")
	assert.Equal(t, 5*time.Second, cfg.redeliveryDelay(1, 5*time.Second), "never sooner than Retry-After")
	assert.Equal(t, 10*time.Second, cfg.redeliveryDelay(1, 20*time.Second), "Retry-After capped at MaxRetryDelay")
	assert.Equal(t, 10*time.Second, cfg.redeliveryDelay(1, 86400*time.Second), "a day is capped too")
}

// TestLongFirstDelaysNeverOverflowToZero: a first delay longer than the
// cap (WORKER_RETRY_DELAY=1h, WORKER_FOLLOW_INTERVAL=1h) doubled over many
// deliveries or polls overflowed to a negative delay, that is none: late
// redeliveries and follow polls came at once, and the results stream's
// duplicate window was checked against a horizon made shorter by them.
func TestLongFirstDelaysNeverOverflowToZero(t *testing.T) {
	for _, first := range []time.Duration{time.Minute, time.Hour, 1000 * time.Hour} {
		cfg := Config{RetryDelay: first, MaxRetryDelay: 30 * time.Second, FollowInterval: first,
			FollowMaxInterval: 30 * time.Second, MaxDeliveries: 1000}
		for n := 1; n <= 1000; n++ {
			require.Equal(t, 30*time.Second, cfg.redeliveryDelay(n, 0), "first %v, delivery %d", first, n)
			require.Equal(t, 30*time.Second, cfg.followDelay(n), "first %v, poll %d", first, n)
		}
		assert.GreaterOrEqual(t, cfg.redeliveryHorizon(time.Minute), 1000*(time.Minute+30*time.Second),
			"the horizon counts every delay")
	}
	cfg := Config{RetryDelay: time.Minute, MaxRetryDelay: 1 << 62}
	for n := 2; n <= 64; n++ {
		require.GreaterOrEqual(t, cfg.redeliveryDelay(n, 0), cfg.redeliveryDelay(n-1, 0), "never shorter than the delay before, delivery %d", n)
	}
}
