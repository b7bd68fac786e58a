package messages

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTruncateMessageCutsAt1KiBWithAnEllipsis(t *testing.T) {
	assert.Equal(t, "short", TruncateMessage("short"))
	exact := strings.Repeat("a", MaxErrorMessage)
	assert.Equal(t, exact, TruncateMessage(exact), "exactly 1 KiB is kept")

	long := strings.Repeat("é", 100_000) // two bytes each: a cut must not split one
	got := TruncateMessage(long)
	assert.LessOrEqual(t, len(got), MaxErrorMessage)
	assert.True(t, strings.HasSuffix(got, "…"))
	assert.True(t, utf8.ValidString(got))
	assert.Greater(t, len(got), MaxErrorMessage-8, "cut close to the bound")
}

func TestValidTraceparent(t *testing.T) {
	valid := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	assert.True(t, ValidTraceparent(valid))
	for _, bad := range []string{
		"",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\x01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\n",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
		"00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
	} {
		assert.False(t, ValidTraceparent(bad), "%q", bad)
	}
}

func TestAnInvalidTraceparentIsIgnoredNotForwarded(t *testing.T) {
	req, err := ParseRequest(KindRefresh, []byte(jobID),
		Header{"traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\x01"}}, "")
	require.NoError(t, err, "a bad traceparent does not reject the request")
	assert.Empty(t, req.Traceparent)
}

func TestCckmReplyToMustBeALiteralSubjectOutsideTheWorkersOwn(t *testing.T) {
	for _, ok := range []string{"_INBOX.abc", "ops.answers.ir-7", strings.Repeat("a", MaxReplySubjectLength)} {
		req, err := ParseRequest(KindRefresh, []byte(jobID), Header{HeaderReplyTo: {ok}}, "")
		require.NoError(t, err, ok)
		assert.Equal(t, ok, req.ReplyTo)
	}
	for _, bad := range []string{
		"ops.*", "ops.>", ">", "ops..x", ".ops", "ops.", "ops x", "ops\tx", "ops\x00x",
		"$JS.API.STREAM.DELETE.CCKM_CANCEL", "cckm.cancel.refresh", "cckm.cancel.x.result",
		strings.Repeat("a", MaxReplySubjectLength+1),
	} {
		req, err := ParseRequest(KindRefresh, []byte(jobID), Header{HeaderReplyTo: {bad}}, "")
		var reqErr *RequestError
		require.ErrorAs(t, err, &reqErr, "%q", bad)
		assert.Contains(t, err.Error(), "Cckm-Reply-To")
		assert.Empty(t, req.ReplyTo, "nothing is sent to %q", bad)
		assert.Equal(t, jobID, req.ID, "the id is still echoed")
	}
}

func TestARequestOver64KiBIsRejected(t *testing.T) {
	payload := `{"id":"` + jobID + `","pad":"` + strings.Repeat("x", MaxRequestSize) + `"}`
	req, err := ParseRequest(KindRefresh, []byte(payload), Header{HeaderMsgID: {"m-big"}}, "")
	var reqErr *RequestError
	require.ErrorAs(t, err, &reqErr)
	assert.Contains(t, err.Error(), "over the limit of 65536 bytes")
	assert.Equal(t, "m-big", req.RequestID)

	fits := `{"id":"` + jobID + `","pad":"` + strings.Repeat("x", MaxRequestSize-100) + `"}`
	_, err = ParseRequest(KindRefresh, []byte(fits), nil, "")
	assert.NoError(t, err)
}

func TestAGeneratedRequestIDIsTheDefaultGiven(t *testing.T) {
	stored := time.Date(2026, 12, 1, 8, 0, 0, 5, time.UTC)
	derived := DerivedRequestID("CCKM_CANCEL", 42, stored)
	require.True(t, IsUUID(derived))
	assert.Equal(t, derived, DerivedRequestID("CCKM_CANCEL", 42, stored), "stable")
	assert.NotEqual(t, derived, DerivedRequestID("CCKM_CANCEL", 43, stored))
	assert.NotEqual(t, derived, DerivedRequestID("CCKM_CANCEL", 42, stored.Add(time.Nanosecond)),
		"a stream created again reuses sequences, not times")

	req, err := ParseRequest(KindRefresh, []byte(jobID), nil, derived)
	require.NoError(t, err)
	assert.Equal(t, derived, req.RequestID)
	req, err = ParseRequest(KindRefresh, []byte(jobID), Header{HeaderMsgID: {"m-1"}}, derived)
	require.NoError(t, err)
	assert.Equal(t, "m-1", req.RequestID, "Nats-Msg-Id comes first")
}

func TestAJobOver256KiBIsLeftOutOfTheResult(t *testing.T) {
	var r Result
	small := []byte(`{"abort":true}`)
	r.SetJob(small)
	assert.Equal(t, string(small), string(r.Job))
	assert.False(t, r.JobOmitted)

	big := []byte(`{"abort":true,"pad":"` + strings.Repeat("x", MaxJobSize) + `"}`)
	r.SetJob(big)
	assert.Nil(t, r.Job)
	assert.True(t, r.JobOmitted)
	out := string(r.AppendJSON(nil))
	assert.Contains(t, out, `"job_omitted":true`)
	assert.NotContains(t, out, `"job":`)
	assert.Less(t, len(out), 1024)
}

func TestDistinctResultMsgID(t *testing.T) {
	assert.Equal(t, "ir-1.17.result", DistinctResultMsgID("ir-1", "17"))
}
