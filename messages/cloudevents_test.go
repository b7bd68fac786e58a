package messages

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestSetCloudEventGivesTheBindingsAttributes(t *testing.T) {
	done := time.Date(2026, 11, 22, 10, 0, 0, 120000001, time.UTC)
	result := Result{RequestID: "ir 7", Kind: KindRefresh, ID: jobID, CompletedAt: NewTimestamp(done)}
	header := map[string][]string{}
	SetCloudEvent(header, &result, "ir 7.result", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	want := map[string]string{
		"ce-specversion":     "1.0",
		"ce-id":              "ir%207.result",
		"ce-source":          "cckm-cancel-worker",
		"ce-type":            "com.github.cckm.cancel.result",
		"ce-subject":         jobID,
		"ce-time":            "2026-11-22T10:00:00.120000001Z",
		"ce-datacontenttype": "application/json",
		"ce-traceparent":     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	}
	for name, value := range want {
		assert.Equal(t, []string{value}, header[name], name)
	}
	assert.Len(t, header, len(want))

	yes := true
	settled := result
	settled.Settled = &yes
	header = map[string][]string{}
	SetCloudEvent(header, &settled, "ir.settled", "")
	assert.Equal(t, []string{"com.github.cckm.cancel.settled"}, header["ce-type"])
	assert.NotContains(t, header, "ce-traceparent", "no traceparent, no extension")
}

func TestPercentEncodeLeavesPrintableASCIIAlone(t *testing.T) {
	assert.Equal(t, "ir-2291-7.result", percentEncode("ir-2291-7.result"))
	assert.Equal(t, "a%20b%22c%25d%C3%A9%0A", percentEncode("a b\"c%dé\n"))
}
