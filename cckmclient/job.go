package cckmclient

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
)

// Job is a CipherTrust Manager job as a cancel or GET call returned it.
type Job struct {
	// Raw is the job object exactly as CipherTrust Manager sent it (without
	// the documentation's {"application/json": ...} wrapper, if present).
	Raw json.RawMessage
	// ID, OverallStatus and Abort are decoded from Raw.
	ID            string
	OverallStatus string
	Abort         bool
}

// Terminal reports whether OverallStatus says the job has ended:
// "completed" or "failed", in any case.
func (j *Job) Terminal() bool {
	switch strings.ToLower(strings.TrimSpace(j.OverallStatus)) {
	case "completed", "failed":
		return true
	}
	return false
}

// errNotAnObject says that a 2xx body held no job object.
var errNotAnObject = errors.New("response is not a JSON object")

// docWrapperKey is the key the CCKM documentation wraps some examples in.
const docWrapperKey = "application/json"

// jobFields are the fields DecodeJob reads. Decoding into a struct skips
// the rest of the object without building it, which matters on the hot path.
type jobFields struct {
	ID            json.RawMessage `json:"id"`
	OverallStatus json.RawMessage `json:"overall_status"`
	Abort         json.RawMessage `json:"abort"`
	DocWrapper    json.RawMessage `json:"application/json"`
}

// DecodeJob decodes a job from a response body. It keeps the object's raw
// bytes (compacted if they hold line breaks, so that a result stays one
// line), reads abort and overall_status leniently (abort counts only as the
// JSON value true), and unwraps {"application/json": {...}}.
func DecodeJob(body []byte) (*Job, error) {
	raw := bytes.TrimSpace(body)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, errNotAnObject
	}
	var fields jobFields
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, errNotAnObject
	}
	if fields.DocWrapper != nil && fields.ID == nil && fields.Abort == nil && fields.OverallStatus == nil {
		inner := bytes.TrimSpace(fields.DocWrapper)
		if len(inner) > 0 && inner[0] == '{' {
			raw = inner
			fields = jobFields{}
			if err := json.Unmarshal(raw, &fields); err != nil {
				return nil, errNotAnObject
			}
		}
	}
	if bytes.ContainsAny(raw, "\n\r") {
		var compact bytes.Buffer
		if err := json.Compact(&compact, raw); err == nil {
			raw = compact.Bytes()
		}
	}
	job := &Job{Raw: json.RawMessage(raw)}
	job.Abort = string(bytes.TrimSpace(fields.Abort)) == "true"
	_ = json.Unmarshal(fields.ID, &job.ID)
	_ = json.Unmarshal(fields.OverallStatus, &job.OverallStatus)
	return job, nil
}
