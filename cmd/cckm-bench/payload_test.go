package main

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/messages"
)

func TestBigPayloadIsARequestOfTheSizeAsked(t *testing.T) {
	make60KiB := bigPayload(61440)
	first, second := make60KiB(), make60KiB()
	require.Len(t, first, 61440)
	require.Len(t, bigPayload(bigPayloadMin)(), bigPayloadMin, "no padding at the minimum")

	var body struct{ ID, Pad string }
	require.NoError(t, json.Unmarshal(first, &body))
	require.Len(t, body.Pad, 61440-bigPayloadMin)
	req, err := messages.ParseRequest(messages.KindRefresh, first, messages.Header{messages.HeaderMsgID: {"big-1"}}, "")
	require.NoError(t, err, "the worker takes it as a request")
	require.Equal(t, body.ID, req.ID)
	require.Equal(t, "big-1", req.RequestID)
	require.NotEqual(t, first[:50], second[:50], "each request its own job id")
}
