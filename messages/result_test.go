package messages

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestResultJSONIsTheContractsShape(t *testing.T) {
	received := time.Date(2026, 11, 22, 11, 0, 0, 1, time.FixedZone("CET", 3600))
	tests := []struct {
		name   string
		result Result
		want   string
	}{
		{
			name: "a canceled job carries the job and no error",
			result: Result{
				RequestID: "ir-2291-7", Kind: KindRefresh, ID: jobID, Status: StatusCanceled,
				Abort: true, OverallStatus: "in progress", HTTPStatus: 200, Attempts: 1,
				Job:         json.RawMessage(`{"id":"` + jobID + `","abort":true,"overall_status":"in progress"}`),
				ReceivedAt:  NewTimestamp(received),
				CompletedAt: NewTimestamp(received.Add(120 * time.Millisecond)),
			},
			want: `{"request_id":"ir-2291-7","kind":"refresh","id":"` + jobID + `","status":"canceled",` +
				`"abort":true,"overall_status":"in progress","http_status":200,"attempts":1,` +
				`"job":{"id":"` + jobID + `","abort":true,"overall_status":"in progress"},` +
				`"received_at":"2026-11-22T10:00:00.000000001Z","completed_at":"2026-11-22T10:00:00.120000001Z"}`,
		},
		{
			name: "a rejected request omits job and overall_status and has zeros",
			result: Result{
				RequestID: "r", Kind: KindBulkJob, Status: StatusRejected,
				Error:       &Error{Code: CodeInvalidRequest, Message: "invalid request: empty payload"},
				ReceivedAt:  NewTimestamp(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)),
				CompletedAt: NewTimestamp(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)),
			},
			want: `{"request_id":"r","kind":"bulkjob","id":"","status":"rejected","abort":false,` +
				`"http_status":0,"attempts":0,` +
				`"error":{"code":"invalid_request","message":"invalid request: empty payload","retryable":false},` +
				`"received_at":"2026-01-02T03:04:05.000000000Z","completed_at":"2026-01-02T03:04:05.000000000Z"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := json.Marshal(tt.result)
			require.NoError(t, err)
			assert.JSONEq(t, tt.want, string(got))
			assert.Equal(t, tt.want, string(got), "fields in the published order")
		})
	}
}

func TestResultRoundTrips(t *testing.T) {
	settled := true
	in := Result{
		RequestID: "r", Kind: KindBulkJob, ID: jobID, Status: StatusFailed, HTTPStatus: 503, Attempts: 4,
		Error:       &Error{Code: CodeServerError, Message: "service unavailable", Retryable: true},
		ReceivedAt:  NewTimestamp(time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)),
		CompletedAt: NewTimestamp(time.Date(2026, 1, 2, 3, 4, 6, 7, time.UTC)),
		Settled:     &settled,
	}
	b, err := json.Marshal(in)
	require.NoError(t, err)
	assert.Contains(t, string(b), `"settled":true`)
	var out Result
	require.NoError(t, json.Unmarshal(b, &out))
	assert.Equal(t, in.CompletedAt.UnixNano(), out.CompletedAt.UnixNano())
	out.ReceivedAt, out.CompletedAt = in.ReceivedAt, in.CompletedAt
	assert.Equal(t, in, out)
}

func TestSubjectsAndKinds(t *testing.T) {
	assert.Equal(t, "cckm.cancel.refresh", KindRefresh.RequestSubject())
	assert.Equal(t, "cckm.cancel.bulkjob", KindBulkJob.RequestSubject())
	assert.Equal(t, "cckm.cancel.refresh.result", KindRefresh.ResultSubject())
	assert.Equal(t, "cckm.cancel.bulkjob.result", KindBulkJob.ResultSubject())
	assert.Equal(t, "cckm.cancel.bulkjob.settled", KindBulkJob.SettledSubject())
	assert.Equal(t, "cckm.cancel.dead.refresh", KindRefresh.DeadLetterSubject())
	assert.Equal(t, SubjectRefresh, KindRefresh.RequestSubject())
	assert.Equal(t, SubjectBulkJob, KindBulkJob.RequestSubject())
	assert.Equal(t, "ir-1.result", ResultMsgID("ir-1"))

	for _, kind := range Kinds {
		got, ok := KindOfSubject(kind.RequestSubject())
		assert.True(t, ok)
		assert.Equal(t, kind, got)
	}
	for _, subject := range []string{"cckm.cancel.azure", "cckm.cancel.refresh.result", "refresh", "x.cancel.refresh", ""} {
		_, ok := KindOfSubject(subject)
		assert.False(t, ok, subject)
	}
}
