package cckmclient_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/messages"
)

// A client that is done closes its idle connections at once, instead of
// leaving them (and a goroutine or two on each end) open for the idle
// timeout.
func TestCloseIdleConnectionsClosesTheConnectionsLeftOpen(t *testing.T) {
	var open atomic.Int64
	server := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id":"8155fe39-570a-4132-92ca-e40b7640c7dc","abort":true,"overall_status":"in progress"}`))
	}))
	server.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		switch state {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	server.Start()
	defer server.Close()

	client, err := cckmclient.New(cckmclient.Config{
		BaseURL:     server.URL,
		Credentials: cckmclient.Credentials{Token: "a-token"},
	})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = client.Cancel(ctx, messages.KindRefresh, "8155fe39-570a-4132-92ca-e40b7640c7dc")
	require.NoError(t, err)
	require.Equal(t, int64(1), open.Load(), "the call's connection is kept for the next call")

	client.CloseIdleConnections()
	require.Eventually(t, func() bool { return open.Load() == 0 }, 5*time.Second, 5*time.Millisecond,
		"the idle connection is still open at the server")
}
