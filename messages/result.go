package messages

import (
	"encoding/json"
	"time"
)

// Status is the outcome of a request, the "status" field of a result.
type Status string

// The three outcomes of a request.
const (
	// StatusCanceled: CipherTrust Manager answered 2xx with abort true.
	StatusCanceled Status = "canceled"
	// StatusFailed: an error answer, a 2xx without abort true, or no answer
	// within the retry budget.
	StatusFailed Status = "failed"
	// StatusRejected: the request was invalid and nothing was called.
	StatusRejected Status = "rejected"
)

// ErrorCode is the "code" of a result's error.
type ErrorCode string

// The error codes a failed or rejected result carries.
const (
	CodeInvalidRequest ErrorCode = "invalid_request" // unparseable payload or bad id
	CodeNotFound       ErrorCode = "not_found"       // 404
	CodeUnauthorized   ErrorCode = "unauthorized"    // 401 even after a fresh token
	CodeForbidden      ErrorCode = "forbidden"       // 403
	CodeConflict       ErrorCode = "conflict"        // 409
	CodeClientError    ErrorCode = "client_error"    // any other 4xx
	CodeServerError    ErrorCode = "server_error"    // 5xx after the retry budget
	CodeUnreachable    ErrorCode = "unreachable"     // no answer after the retry budget
	CodeAbortNotSet    ErrorCode = "abort_not_set"   // 2xx without abort true
)

// Error is a result's "error" object.
type Error struct {
	Code      ErrorCode `json:"code"`
	Message   string    `json:"message"`
	Retryable bool      `json:"retryable"`
}

// Result is the event published for every request. Its JSON form is the
// published one, field for field; Settled is set only on the settled
// events of followed cancels.
type Result struct {
	RequestID     string          `json:"request_id"`
	Kind          Kind            `json:"kind"`
	ID            string          `json:"id"`
	Status        Status          `json:"status"`
	Abort         bool            `json:"abort"`
	OverallStatus string          `json:"overall_status,omitempty"`
	HTTPStatus    int             `json:"http_status"`
	Attempts      int             `json:"attempts"`
	Job           json.RawMessage `json:"job,omitempty"`
	JobOmitted    bool            `json:"job_omitted,omitempty"`
	Error         *Error          `json:"error,omitempty"`
	ReceivedAt    Timestamp       `json:"received_at"`
	CompletedAt   Timestamp       `json:"completed_at"`
	Settled       *bool           `json:"settled,omitempty"`
}

// SetJob sets the job a result carries, leaving it out (JobOmitted) when it
// is larger than MaxJobSize.
func (r *Result) SetJob(job json.RawMessage) {
	if len(job) > MaxJobSize {
		r.Job, r.JobOmitted = nil, true
		return
	}
	r.Job, r.JobOmitted = job, false
}

// ResultMsgID is the Nats-Msg-Id a result for requestID is published with,
// so that a results stream drops the copy a redelivery publishes.
func ResultMsgID(requestID string) string { return requestID + ".result" }

// DistinctResultMsgID is the Nats-Msg-Id of a result for requestID that
// the results stream must keep although a result of another request with
// the same request_id is already in its duplicate window: requestID with
// what tells the two requests apart (the request's stream sequence, or a
// new UUID in core mode).
func DistinctResultMsgID(requestID, distinct string) string {
	return requestID + "." + distinct + ".result"
}

// SettledMsgID is the Nats-Msg-Id of the settled event for requestID.
func SettledMsgID(requestID string) string { return requestID + ".settled" }

// timestampLayout is RFC 3339 with all nine digits of nanoseconds, so every
// timestamp has the same width and sorts as text.
const timestampLayout = "2006-01-02T15:04:05.000000000Z07:00"

// Timestamp is a time that marshals as RFC 3339 in UTC with nanoseconds.
type Timestamp struct{ time.Time }

// NewTimestamp wraps t.
func NewTimestamp(t time.Time) Timestamp { return Timestamp{t} }

// String formats the timestamp as it appears in JSON, without quotes.
func (t Timestamp) String() string { return t.UTC().Format(timestampLayout) }

// MarshalJSON implements json.Marshaler.
func (t Timestamp) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, len(timestampLayout)+2)
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, timestampLayout)
	return append(b, '"'), nil
}

// UnmarshalJSON implements json.Unmarshaler; it accepts any RFC 3339 time.
func (t *Timestamp) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	parsed, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return err
	}
	t.Time = parsed
	return nil
}
