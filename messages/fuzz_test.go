package messages

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParseRequest checks the parser's promises on any payload: it never
// panics, always yields a usable request_id, accepts only UUIDs, and any id
// it echoes is short, printable text.
func FuzzParseRequest(f *testing.F) {
	seeds := []string{
		jobID,
		" " + jobID + "\n",
		strings.ToUpper(jobID),
		`"` + jobID + `"`,
		`{"id":"` + jobID + `","request_id":"ir-2291-7"}`,
		`{"id":"` + jobID + `","follow":true,"x":[1,{"y":null}]}`,
		`{"id":null}`,
		`{"id":42}`,
		`{"request_id":7}`,
		`{"id":"` + jobID,
		`[]`,
		`null`,
		``,
		"\x00",
		"../../../etc/passwd",
		jobID + "/cancel",
		`{"id":"\u0000"}`,
		"\xff\xfe",
	}
	for _, s := range seeds {
		f.Add([]byte(s), "msg-1")
	}
	f.Fuzz(func(t *testing.T, payload []byte, msgID string) {
		req, err := ParseRequest(KindRefresh, payload, Header{HeaderMsgID: {msgID}}, "")
		if !ValidRequestID(req.RequestID) {
			t.Fatalf("request_id %q is not valid", req.RequestID)
		}
		if req.Kind != KindRefresh {
			t.Fatalf("kind %q", req.Kind)
		}
		if len(req.ID) > maxEchoedIDLength || !utf8.ValidString(req.ID) {
			t.Fatalf("echoed id %q", req.ID)
		}
		if err == nil {
			if !IsUUID(req.ID) {
				t.Fatalf("accepted id %q is not a UUID", req.ID)
			}
			if _, jsonErr := json.Marshal(req.ID); jsonErr != nil {
				t.Fatal(jsonErr)
			}
		}
	})
}
