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

// DecodeJob decodes a job from a response body. It keeps the object's raw
// bytes, reads abort and overall_status leniently (abort counts only as the
// JSON value true), and unwraps {"application/json": {...}}.
func DecodeJob(body []byte) (*Job, error) {
	raw := bytes.TrimSpace(body)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, errNotAnObject
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, errNotAnObject
	}
	if inner, ok := fields[docWrapperKey]; ok && len(fields) == 1 {
		inner = bytes.TrimSpace(inner)
		if len(inner) > 0 && inner[0] == '{' {
			raw = inner
			fields = nil
			if err := json.Unmarshal(raw, &fields); err != nil {
				return nil, errNotAnObject
			}
		}
	}
	job := &Job{Raw: json.RawMessage(raw)}
	job.Abort = string(bytes.TrimSpace(fields["abort"])) == "true"
	_ = json.Unmarshal(fields["id"], &job.ID)
	_ = json.Unmarshal(fields["overall_status"], &job.OverallStatus)
	return job, nil
}
