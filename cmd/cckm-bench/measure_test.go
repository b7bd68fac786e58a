package main

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/cckm/cckm-cancel-worker/messages"
)

func TestStringFieldReadsWhatTheWorkerWrites(t *testing.T) {
	at := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	for _, result := range []messages.Result{
		{
			RequestID: "full-17", Kind: messages.KindRefresh, ID: messages.NewRequestID(),
			Status: messages.StatusCanceled, HTTPStatus: 200, Attempts: 1,
			// A job whose own fields come after the result's.
			Job:        json.RawMessage(`{"request_id":"not-this","status":"not-this","overall_status":"in progress"}`),
			ReceivedAt: messages.NewTimestamp(at), CompletedAt: messages.NewTimestamp(at),
		},
		{
			RequestID: "low-3", Kind: messages.KindBulkJob, ID: messages.NewRequestID(),
			Status: messages.StatusFailed, HTTPStatus: 503, Attempts: 4,
			Error:      &messages.Error{Code: messages.CodeServerError, Message: `"status":"canceled"`},
			ReceivedAt: messages.NewTimestamp(at), CompletedAt: messages.NewTimestamp(at),
		},
	} {
		data := result.AppendJSON(nil)
		var want struct {
			RequestID string `json:"request_id"`
			Status    string `json:"status"`
		}
		if err := json.Unmarshal(data, &want); err != nil {
			t.Fatal(err)
		}
		assert.Equal(t, want.RequestID, stringField(data, "request_id"), "%s", data)
		assert.Equal(t, want.Status, stringField(data, "status"), "%s", data)
	}
	assert.Empty(t, stringField([]byte(`{"kind":"refresh"}`), "status"))
	assert.Empty(t, stringField([]byte(`{"status":"cancel`), "status"), "cut short")
}
