package messages

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const jobID = "8155fe39-570a-4132-92ca-e40b7640c7dc"

func TestParseRequestAcceptsTheContractsForms(t *testing.T) {
	tests := []struct {
		name    string
		payload string
		header  Header
		want    Request
	}{
		{
			name:    "a bare id is the whole payload",
			payload: jobID,
			want:    Request{Kind: KindRefresh, ID: jobID},
		},
		{
			name:    "white space around a bare id is ignored",
			payload: " \t" + jobID + "\r\n",
			want:    Request{Kind: KindRefresh, ID: jobID},
		},
		{
			name:    "an upper-case id is kept as given",
			payload: strings.ToUpper(jobID),
			want:    Request{Kind: KindRefresh, ID: strings.ToUpper(jobID)},
		},
		{
			name:    "a JSON string is a bare id",
			payload: `"` + jobID + `"`,
			want:    Request{Kind: KindRefresh, ID: jobID},
		},
		{
			name:    "a JSON object gives id and request_id",
			payload: `{"id": "` + jobID + `", "request_id": "ir-2291-7"}`,
			want:    Request{Kind: KindRefresh, ID: jobID, RequestID: "ir-2291-7"},
		},
		{
			name:    "unknown JSON fields are ignored",
			payload: `{"id": "` + jobID + `", "reason": "incident", "n": [1,2]}`,
			want:    Request{Kind: KindRefresh, ID: jobID},
		},
		{
			name:    "follow is read from JSON",
			payload: `{"id": "` + jobID + `", "follow": true}`,
			want:    Request{Kind: KindRefresh, ID: jobID, Follow: true},
		},
		{
			name:    "the payload's request_id wins over Nats-Msg-Id",
			payload: `{"id": "` + jobID + `", "request_id": "from-payload"}`,
			header:  Header{"Nats-Msg-Id": {"from-header"}},
			want:    Request{Kind: KindRefresh, ID: jobID, RequestID: "from-payload"},
		},
		{
			name:    "Nats-Msg-Id is the request_id when the payload has none",
			payload: jobID,
			header:  Header{"Nats-Msg-Id": {"from-header"}},
			want:    Request{Kind: KindRefresh, ID: jobID, RequestID: "from-header"},
		},
		{
			name:    "an empty request_id falls back to Nats-Msg-Id",
			payload: `{"id": "` + jobID + `", "request_id": ""}`,
			header:  Header{"Nats-Msg-Id": {"from-header"}},
			want:    Request{Kind: KindRefresh, ID: jobID, RequestID: "from-header"},
		},
		{
			name:    "a null request_id falls back to Nats-Msg-Id",
			payload: `{"id": "` + jobID + `", "request_id": null}`,
			header:  Header{"Nats-Msg-Id": {"from-header"}},
			want:    Request{Kind: KindRefresh, ID: jobID, RequestID: "from-header"},
		},
		{
			name:    "traceparent and Cckm-Reply-To are carried, in any case",
			payload: jobID,
			header: Header{
				"Traceparent":   {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
				"cckm-reply-to": {"_INBOX.abc"},
			},
			want: Request{
				Kind: KindRefresh, ID: jobID,
				Traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
				ReplyTo:     "_INBOX.abc",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRequest(KindRefresh, []byte(tt.payload), tt.header, "")
			require.NoError(t, err)
			if tt.want.RequestID == "" {
				assert.True(t, IsUUID(got.RequestID), "a generated request_id is a UUID, got %q", got.RequestID)
				tt.want.RequestID = got.RequestID
			}
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestParseRequestGeneratesDistinctRequestIDs(t *testing.T) {
	a, err := ParseRequest(KindBulkJob, []byte(jobID), nil, "")
	require.NoError(t, err)
	b, err := ParseRequest(KindBulkJob, []byte(jobID), nil, "")
	require.NoError(t, err)
	assert.NotEqual(t, a.RequestID, b.RequestID)
}

func TestParseRequestRejectsWithAReason(t *testing.T) {
	tests := []struct {
		name       string
		payload    string
		header     Header
		wantID     string
		wantReason string
	}{
		{name: "an empty payload", payload: "", wantReason: "empty payload"},
		{name: "a blank payload", payload: " \n\t ", wantReason: "empty payload"},
		{name: "a bare id that is not a UUID", payload: "not-a-uuid", wantID: "not-a-uuid", wantReason: `id "not-a-uuid" is not a UUID`},
		{name: "a UUID without dashes", payload: "8155fe39570a413292cae40b7640c7dc", wantID: "8155fe39570a413292cae40b7640c7dc", wantReason: "is not a UUID"},
		{name: "a UUID with a non-hex digit", payload: "8155fe39-570a-4132-92ca-e40b7640c7dg", wantID: "8155fe39-570a-4132-92ca-e40b7640c7dg", wantReason: "is not a UUID"},
		{name: "a UUID in braces", payload: "{" + jobID + "}", wantReason: "not valid JSON"},
		{name: "a path traversal attempt", payload: "../../auth/tokens", wantID: "../../auth/tokens", wantReason: "is not a UUID"},
		{name: "a UUID followed by a path", payload: jobID + "/cancel", wantID: jobID + "/cancel", wantReason: "is not a UUID"},
		{name: "two ids", payload: jobID + " " + jobID, wantID: jobID + " " + jobID, wantReason: "is not a UUID"},
		{name: "broken JSON", payload: `{"id": "` + jobID, wantReason: "not valid JSON"},
		{name: "a JSON array", payload: `[1]`, wantID: "[1]", wantReason: "is not a UUID"},
		{name: "JSON without id", payload: `{"request_id": "r1"}`, wantReason: `missing field "id"`},
		{name: "JSON with a null id", payload: `{"id": null}`, wantReason: `missing field "id"`},
		{name: "JSON with a numeric id", payload: `{"id": 42}`, wantReason: "id must be a string"},
		{name: "JSON with a bad id", payload: `{"id": "nope"}`, wantID: "nope", wantReason: `id "nope" is not a UUID`},
		{name: "JSON with white space in the id", payload: `{"id": " ` + jobID + `"}`, wantID: " " + jobID, wantReason: "is not a UUID"},
		{name: "JSON with a numeric request_id", payload: `{"id": "` + jobID + `", "request_id": 7}`, wantID: jobID, wantReason: "request_id must be a string"},
		{name: "JSON with an unprintable request_id", payload: `{"id": "` + jobID + `", "request_id": "a\nb"}`, wantID: jobID, wantReason: "request_id must be"},
		{name: "JSON with a huge request_id", payload: `{"id": "` + jobID + `", "request_id": "` + strings.Repeat("r", 300) + `"}`, wantID: jobID, wantReason: "request_id must be"},
		{name: "JSON with a non-boolean follow", payload: `{"id": "` + jobID + `", "follow": "yes"}`, wantID: jobID, wantReason: "follow must be true or false"},
		{name: "a JSON number", payload: `"` + jobID + `" 1`, wantReason: "not valid JSON"},
		{name: "an id too long to echo", payload: strings.Repeat("a", 200), wantReason: "neither a JSON object nor a job id"},
		{name: "an id with control characters", payload: "ab\x00cd", wantReason: "neither a JSON object nor a job id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRequest(KindBulkJob, []byte(tt.payload), tt.header, "")
			var reqErr *RequestError
			require.ErrorAs(t, err, &reqErr)
			assert.Contains(t, err.Error(), tt.wantReason)
			assert.Equal(t, KindBulkJob, got.Kind)
			assert.Equal(t, tt.wantID, got.ID, "the id as given, empty when unparseable")
			assert.True(t, ValidRequestID(got.RequestID), "a rejected request still has a request_id")
		})
	}
}

func TestParseRequestKeepsTheRequestIDOfARejectedRequest(t *testing.T) {
	got, err := ParseRequest(KindRefresh, []byte(`{"id": "bad", "request_id": "ir-1"}`), nil, "")
	require.Error(t, err)
	assert.Equal(t, "ir-1", got.RequestID)

	got, err = ParseRequest(KindRefresh, []byte(`garbage`), Header{"Nats-Msg-Id": {"m-1"}}, "")
	require.Error(t, err)
	assert.Equal(t, "m-1", got.RequestID)
}

func TestParseRequestRejectsAnUnknownKind(t *testing.T) {
	_, err := ParseRequest(Kind("azure"), []byte(jobID), nil, "")
	assert.ErrorContains(t, err, `unknown kind "azure"`)
}

func TestCanonicalIDIsLowerCase(t *testing.T) {
	assert.Equal(t, jobID, Request{ID: strings.ToUpper(jobID)}.CanonicalID())
}

func TestIsUUID(t *testing.T) {
	valid := []string{jobID, strings.ToUpper(jobID), "00000000-0000-0000-0000-000000000000", "ABCDEF01-abcd-ABcd-0123-456789abcdef"}
	for _, s := range valid {
		assert.True(t, IsUUID(s), s)
	}
	invalid := []string{"", jobID[:35], jobID + "0", "8155fe39_570a-4132-92ca-e40b7640c7dc", "8155fe39-570a-4132-92ca-e40b7640c7d\u00e9"[:36], "g155fe39-570a-4132-92ca-e40b7640c7dc", "8155fe395-70a-4132-92ca-e40b7640c7dc"}
	for _, s := range invalid {
		assert.False(t, IsUUID(s), s)
	}
}

func TestNewRequestIDIsAVersion4UUID(t *testing.T) {
	id := NewRequestID()
	require.True(t, IsUUID(id), id)
	assert.Equal(t, byte('4'), id[14])
	assert.Contains(t, "89ab", string(id[19]))
}
