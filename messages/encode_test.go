package messages

import (
	"encoding/json"
	"testing"
	"time"
)

// shadowResult has Result's fields and tags but none of its methods, so
// encoding/json encodes it by reflection: the reference AppendJSON must
// match byte for byte.
type shadowResult struct {
	RequestID     string          `json:"request_id"`
	Kind          Kind            `json:"kind"`
	ID            string          `json:"id"`
	Status        Status          `json:"status"`
	Abort         bool            `json:"abort"`
	OverallStatus string          `json:"overall_status,omitempty"`
	HTTPStatus    int             `json:"http_status"`
	Attempts      int             `json:"attempts"`
	Job           json.RawMessage `json:"job,omitempty"`
	Error         *Error          `json:"error,omitempty"`
	ReceivedAt    string          `json:"received_at"`
	CompletedAt   string          `json:"completed_at"`
	Settled       *bool           `json:"settled,omitempty"`
}

func reference(t *testing.T, r Result) string {
	t.Helper()
	b, err := json.Marshal(shadowResult{
		RequestID: r.RequestID, Kind: r.Kind, ID: r.ID, Status: r.Status, Abort: r.Abort,
		OverallStatus: r.OverallStatus, HTTPStatus: r.HTTPStatus, Attempts: r.Attempts, Job: r.Job,
		Error: r.Error, ReceivedAt: r.ReceivedAt.String(), CompletedAt: r.CompletedAt.String(), Settled: r.Settled,
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// FuzzResultJSON checks AppendJSON against encoding/json for any strings,
// numbers and flags (the job is kept compact, as DecodeJob leaves it).
func FuzzResultJSON(f *testing.F) {
	f.Add("ir-2291-7", "8155fe39-570a-4132-92ca-e40b7640c7dc", "in progress", "NCERRConflict: <job> & \"x\"\n", 409, 2, true, true, int64(1))
	f.Add("\u2028\x00\xff", "\t", "", "", 0, 0, false, false, int64(-1))
	f.Fuzz(func(t *testing.T, requestID, id, overall, message string, status, attempts int, abort, withJob bool, nanos int64) {
		at := time.Unix(1_800_000_000, nanos%1e9)
		r := Result{RequestID: requestID, Kind: KindBulkJob, ID: id, Status: StatusFailed, Abort: abort,
			OverallStatus: overall, HTTPStatus: status, Attempts: attempts,
			ReceivedAt: NewTimestamp(at), CompletedAt: NewTimestamp(at.Add(time.Millisecond))}
		if withJob {
			r.Job = json.RawMessage(`{"id":"x","abort":true,"n":[1,2.5,null]}`)
			settled := abort
			r.Settled = &settled
		}
		if message != "" {
			r.Error = &Error{Code: CodeConflict, Message: message, Retryable: abort}
		}
		got := string(r.AppendJSON(nil))
		if want := reference(t, r); got != want {
			t.Fatalf("AppendJSON\n got %s\nwant %s", got, want)
		}
	})
}

func TestMarshalJSONRefusesAnInvalidJob(t *testing.T) {
	_, err := json.Marshal(Result{Job: json.RawMessage(`{"broken"`)})
	if err == nil {
		t.Fatal("an invalid job must not be marshaled")
	}
}
