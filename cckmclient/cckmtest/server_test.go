package cckmtest

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestTLSServerIsTrustedOnlyThroughItsCertificate(t *testing.T) {
	server := newTestServer(t, Options{TLS: true})
	server.AddJob(Refresh, refreshID)
	require.True(t, strings.HasPrefix(server.URL(), "https://127.0.0.1:"), server.URL())

	require.Equal(t, http.StatusOK, getJob(t, server, Refresh, refreshID, testStatic).status)

	plain := &http.Client{Transport: &http.Transport{}}
	_, err := send(t, plain, http.MethodGet, jobURL(server, Refresh, refreshID, false), testStatic, nil)
	var unknownAuthority x509.UnknownAuthorityError
	require.ErrorAs(t, err, &unknownAuthority)

	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(server.CACertPEM()))
	withCA := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	answer := mustSend(t, withCA, http.MethodGet, jobURL(server, Refresh, refreshID, false), testStatic, nil)
	require.Equal(t, http.StatusOK, answer.status)
}

func TestPlainServerHasNoCertificate(t *testing.T) {
	server := newTestServer(t, Options{})
	require.True(t, strings.HasPrefix(server.URL(), "http://127.0.0.1:"), server.URL())
	require.Nil(t, server.CACertPEM())
}

func TestAddrIsListenedOn(t *testing.T) {
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := probe.Addr().String()
	require.NoError(t, probe.Close())

	server := newTestServer(t, Options{Addr: addr, TLS: true})
	require.Equal(t, "https://"+addr, server.URL())
	require.Equal(t, http.StatusOK, requestToken(t, server, map[string]any{
		"grant_type": "password", "username": testUser, "password": testPassword,
	}).status)

	require.Panics(t, func() { NewServer(Options{Addr: addr}) }, "the address is taken")
}

func TestWildcardAddrIsReportedAsLoopback(t *testing.T) {
	require.Equal(t, "https://127.0.0.1:8443", reachableURL("https://[::]:8443"))
	require.Equal(t, "http://127.0.0.1:80", reachableURL("http://0.0.0.0:80"))
	require.Equal(t, "http://127.0.0.1:80", reachableURL("http://127.0.0.1:80"))
}

func TestCallsAreRecordedInOrder(t *testing.T) {
	var lines atomic.Int32
	server := newTestServer(t, Options{Logf: func(string, ...any) { lines.Add(1) }})
	server.AddJob(BulkJob, bulkID)
	token := login(t, server)
	cancelJob(t, server, BulkJob, bulkID, token.JWT)
	getJob(t, server, Refresh, refreshID, token.JWT)
	requestToken(t, server, map[string]any{"grant_type": "refresh_token", "refresh_token": token.RefreshToken})

	calls := server.Calls()
	require.Len(t, calls, 4)
	cancelPath := "/api/v1/cckm/aws/bulkjob/" + bulkID + "/cancel"
	getPath := "/api/v1/cckm/external-cm/refresh/" + refreshID
	want := []Call{
		{Method: "POST", Path: tokensPath, RequestURI: tokensPath, Op: "token", Grant: "password", Status: 200},
		{Method: "POST", Path: cancelPath, RequestURI: cancelPath, Op: "cancel", Kind: BulkJob, ID: bulkID, Status: 200},
		{Method: "GET", Path: getPath, RequestURI: getPath, Op: "get", Kind: Refresh, ID: refreshID, Status: 404},
		{Method: "POST", Path: tokensPath, RequestURI: tokensPath, Op: "token", Grant: "refresh_token", Status: 200},
	}
	for i, call := range calls {
		require.False(t, call.Time.IsZero())
		require.NotNil(t, call.Header)
		if call.Op == "token" {
			require.Positive(t, call.BodySize, "call %d: a token request has a body", i)
		} else {
			require.Zero(t, call.BodySize, "call %d: a cancel or get has none", i)
		}
		call.Time, call.Header, call.BodySize = time.Time{}, nil, 0
		require.Equal(t, want[i], call, "call %d", i)
	}
	require.Equal(t, "Bearer "+token.JWT, calls[1].Header.Get("Authorization"))
	require.Equal(t, "application/json", calls[1].Header.Get("Accept"))
	require.Len(t, server.CallsFor(bulkID), 1)
	require.Equal(t, map[string]int{"password": 1, "refresh_token": 1}, server.Grants())
	require.EqualValues(t, 4, lines.Load())
}

func TestNoRecordKeepsNoCalls(t *testing.T) {
	server := newTestServer(t, Options{NoRecord: true})
	server.AddJob(BulkJob, bulkID)
	login(t, server)
	for range 10 {
		getJob(t, server, BulkJob, bulkID, testStatic)
	}
	require.Empty(t, server.Calls())
	require.Empty(t, server.CallsFor(bulkID))
	require.Equal(t, map[string]int{"password": 1}, server.Grants(), "grants are still counted")
}

func TestConcurrentRequests(t *testing.T) {
	server := newTestServer(t, Options{TLS: true, AnyJob: true, SettleAfter: time.Millisecond})
	server.SetFault(func(call Call) *Step {
		if strings.HasPrefix(call.ID, "f") {
			return &Step{Status: http.StatusServiceUnavailable}
		}
		return nil
	})
	client := server.Client()
	client.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
	status := func(method, url, token string, body string) (int, error) {
		request, err := http.NewRequest(method, url, strings.NewReader(body))
		if err != nil {
			return 0, err
		}
		request.Header.Set("Authorization", "Bearer "+token)
		answer, err := client.Do(request)
		if err != nil {
			return 0, err
		}
		defer answer.Body.Close()
		_, err = io.Copy(io.Discard, answer.Body)
		return answer.StatusCode, err
	}

	const workers, perWorker = 200, 5
	login := `{"grant_type":"password","username":"` + testUser + `","password":"` + testPassword + `"}`
	var wg sync.WaitGroup
	var failures atomic.Int32
	stopReading := make(chan struct{})
	wg.Go(func() { // readers of the state run alongside the requests
		for {
			select {
			case <-stopReading:
				return
			default:
				server.Jobs()
				server.Calls()
				server.Grants()
			}
		}
	})
	var clients sync.WaitGroup
	for worker := range workers {
		clients.Go(func() {
			if code, err := status(http.MethodPost, server.URL()+"/api/v1/auth/tokens", "", login); err != nil || code != 200 {
				failures.Add(1)
			}
			for n := range perWorker {
				prefix, expected := 'a', http.StatusOK
				if worker%10 == 0 {
					prefix, expected = 'f', http.StatusServiceUnavailable
				}
				id := fmt.Sprintf("%c%07x-0000-4000-8000-%012x", prefix, worker, n)
				for _, url := range []string{jobURL(server, BulkJob, id, true), jobURL(server, BulkJob, id, false)} {
					method := http.MethodGet
					if strings.HasSuffix(url, "/cancel") {
						method = http.MethodPost
					}
					if code, err := status(method, url, testStatic, ""); err != nil || code != expected {
						failures.Add(1)
					}
				}
			}
		})
	}
	clients.Wait()
	close(stopReading)
	wg.Wait()
	require.Zero(t, failures.Load())
	require.Len(t, server.Calls(), workers*(1+2*perWorker))
	require.Equal(t, workers, server.Grants()["password"])
	require.Len(t, server.Jobs(), (workers-workers/10)*perWorker, "faulted requests never reach the store")
}

func BenchmarkCancel(b *testing.B) {
	server := NewServer(Options{StaticToken: testStatic, AnyJob: true, NoRecord: true, SettleAfter: -1})
	defer server.Close()
	client := server.Client()
	client.Transport.(*http.Transport).MaxIdleConnsPerHost = 100
	url := jobURL(server, BulkJob, bulkID, true)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			request, _ := http.NewRequest(http.MethodPost, url, nil)
			request.Header.Set("Authorization", "Bearer "+testStatic)
			answer, err := client.Do(request)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = answer.Body.Read(make([]byte, 4096))
			answer.Body.Close()
		}
	})
}

// TestPeakJobCallsIsTheMostAnsweredAtOnce: five GETs side by side on a
// server with latency peak at five, one after another at one, and token
// requests do not count.
func TestPeakJobCallsIsTheMostAnsweredAtOnce(t *testing.T) {
	server := newTestServer(t, Options{AnyJob: true, Latency: 100 * time.Millisecond})
	token := login(t, server).JWT
	id := "2f1f5a6e-53a9-4bbf-bbbd-2b4b8a9b0c11"
	getJob(t, server, Refresh, id, token)
	getJob(t, server, Refresh, id, token)
	require.Equal(t, int64(1), server.PeakJobCalls(), "one after another")

	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() { getJob(t, server, Refresh, id, token) })
	}
	wg.Wait()
	require.Equal(t, int64(5), server.PeakJobCalls(), "side by side")
}
