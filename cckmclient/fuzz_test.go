package cckmclient

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

// FuzzDecodeResponse feeds any body to the decoders of CipherTrust
// Manager's answers: the job decoder of a 2xx and the error decoder of
// anything else. They must never panic; a decoded job's Raw must be valid
// JSON and an object; abort is true only when the JSON says true.
func FuzzDecodeResponse(f *testing.F) {
	seeds := []string{
		`{"id":"8155fe39-570a-4132-92ca-e40b7640c7dc","abort":true,"overall_status":"in progress"}`,
		`{"application/json":{"id":"x","abort":true,"overall_status":"completed"}}`,
		`{"application/json":"not an object"}`,
		`{"abort":"true"}`,
		`{"abort":1}`,
		`{"code":16,"codeDesc":"NCERRResourceNotFound: Resource not found","message":"Resource not found","requestID":"r"}`,
		`{"code":"16","codeDesc":7}`,
		`[]`, `null`, ``, `{`, `<html></html>`, "\xff\xfe{}",
	}
	for _, s := range seeds {
		f.Add([]byte(s), "3")
	}
	f.Fuzz(func(t *testing.T, body []byte, retryAfter string) {
		job, err := DecodeJob(body)
		if err == nil {
			if !json.Valid(job.Raw) || !bytes.HasPrefix(bytes.TrimSpace(job.Raw), []byte("{")) {
				t.Fatalf("Raw %q is not a JSON object", job.Raw)
			}
			if job.Abort {
				var fields map[string]json.RawMessage
				if json.Unmarshal(job.Raw, &fields) != nil || string(bytes.TrimSpace(fields["abort"])) != "true" {
					t.Fatalf("abort true from %q", job.Raw)
				}
			}
		}
		apiErr := newAPIError("op", 503, http.Header{"Retry-After": {retryAfter}}, body, time.Now())
		if apiErr.RetryAfter < 0 {
			t.Fatalf("negative Retry-After %v", apiErr.RetryAfter)
		}
		_ = apiErr.Error()
	})
}
