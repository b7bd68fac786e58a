package cckmtest_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

// A test starts a fake CipherTrust Manager, registers a job, scripts one failure and
// points the code under test at URL.
func Example() {
	server := cckmtest.NewServer(cckmtest.Options{TLS: true, StaticToken: "token"})
	defer server.Close()
	const id = "8155fe39-570a-4132-92ca-e40b7640c7dc"
	server.AddJob(cckmtest.Refresh, id)
	server.Script(id, cckmtest.Step{Status: http.StatusServiceUnavailable, RetryAfter: "1"})

	for range 2 {
		request, _ := http.NewRequest(http.MethodPost,
			server.URL()+"/api/v1/cckm/external-cm/refresh/"+id+"/cancel", nil)
		request.Header.Set("Authorization", "Bearer token")
		answer, err := server.Client().Do(request)
		if err != nil {
			fmt.Println(err)
			return
		}
		body, _ := io.ReadAll(answer.Body)
		answer.Body.Close()
		fmt.Println(answer.StatusCode, strings.Contains(string(body), `"abort":true`))
	}
	job, _ := server.Job(cckmtest.Refresh, id)
	fmt.Println(job.OverallStatus, job.Abort, len(server.CallsFor(id)))
	// Output:
	// 503 false
	// 200 true
	// in progress true 2
}

// With AnyJob every UUID is a running job of whatever kind it is asked for as, at the
// kind's collection, except the ids marked unknown.
func Example_anyKind() {
	server := cckmtest.NewServer(cckmtest.Options{StaticToken: "token", AnyJob: true})
	defer server.Close()
	const unknown = "00000000-0000-4000-8000-000000000000"
	server.MarkUnknown(unknown)

	kind := messages.Kind("google-sync")
	for _, id := range []string{"2b1c7d1e-3f4a-4b5c-8d6e-7f8091a2b3c4", unknown} {
		request, _ := http.NewRequest(http.MethodPost, server.URL()+kind.Collection()+"/"+id+"/cancel", nil)
		request.Header.Set("Authorization", "Bearer token")
		answer, err := server.Client().Do(request)
		if err != nil {
			fmt.Println(err)
			return
		}
		body, _ := io.ReadAll(answer.Body)
		answer.Body.Close()
		fmt.Println(answer.StatusCode, strings.Contains(string(body), `"cloud":"gcp"`))
	}
	call := server.Calls()[0]
	fmt.Println(call.Method, call.RequestURI, call.BodySize)
	// Output:
	// 200 true
	// 404 false
	// POST /api/v1/cckm/google/synchronization-jobs/2b1c7d1e-3f4a-4b5c-8d6e-7f8091a2b3c4/cancel 0
}
