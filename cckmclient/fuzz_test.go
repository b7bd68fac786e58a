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

// decodeJobWithMap is DecodeJob written with encoding/json and a map: the
// reference FuzzDecodeJobMatchesMap holds the fast decoder to.
func decodeJobWithMap(body []byte) (*Job, error) {
	raw := bytes.TrimSpace(body)
	var fields map[string]json.RawMessage
	if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &fields) != nil {
		return nil, errNotAnObject
	}
	wrapped, hasWrapper := fields[docWrapperKey]
	_, hasID := fields["id"]
	_, hasAbort := fields["abort"]
	_, hasStatus := fields["overall_status"]
	if hasWrapper && !hasID && !hasAbort && !hasStatus && len(wrapped) > 0 && wrapped[0] == '{' {
		raw = wrapped
		fields = nil
		if err := json.Unmarshal(raw, &fields); err != nil {
			return nil, err
		}
	}
	if bytes.ContainsAny(raw, "\n\r") {
		var compact bytes.Buffer
		if err := json.Compact(&compact, raw); err == nil {
			raw = compact.Bytes()
		}
	}
	job := &Job{Raw: json.RawMessage(raw), Abort: string(fields["abort"]) == "true"}
	_ = json.Unmarshal(fields["id"], &job.ID)
	_ = json.Unmarshal(fields["overall_status"], &job.OverallStatus)
	return job, nil
}

// FuzzDecodeJobMatchesMap checks DecodeJob, which walks the object's top
// level by hand, against decodeJobWithMap.
func FuzzDecodeJobMatchesMap(f *testing.F) {
	for _, s := range []string{
		`{"id":"8155fe39-570a-4132-92ca-e40b7640c7dc","abort":true,"overall_status":"in progress"}`,
		`{"application/json":{"id":"x","abort":true,"overall_status":"completed"}}`,
		`{"application/json" : [1] , "x":{}}`,
		`{"abort":true,"abort":false}`,
		`{"ABORT":true,"Id":"x"}`,
		`{"\u0069d":"esc\u00e9ped","over\u0061ll_status":"a\"b","ab\/ort":true}`,
		`{"id":"\xff\xfe","overall_status":7}`,
		"{ \"n\" : [ {\"abort\" : true} , \"}\" , \"\\\\\" ] ,\n\"abort\"\t:\r\ntrue }",
		`{"a":1.5e-3,"b":null,"c":false,"d":"","id":""}`,
		`{}`, `{"x":{"y":{"z":[[[]]]}}}`, `[]`, `{`, `{"a":1}x`, `{"a" 1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, gotErr := DecodeJob(body)
		want, wantErr := decodeJobWithMap(body)
		if (gotErr != nil) != (wantErr != nil) {
			t.Fatalf("body %q: error %v, the map decoder's %v", body, gotErr, wantErr)
		}
		if gotErr != nil {
			return
		}
		if string(got.Raw) != string(want.Raw) || got.ID != want.ID ||
			got.OverallStatus != want.OverallStatus || got.Abort != want.Abort {
			t.Fatalf("body %q:\n got %+v\nwant %+v", body, *got, *want)
		}
	})
}
