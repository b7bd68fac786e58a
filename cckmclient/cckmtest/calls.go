package cckmtest

import (
	"io"
	"net/http"
	"sync"
	"time"
)

// Values of Call.Op.
const (
	opToken  = "token"
	opCancel = "cancel"
	opGet    = "get"
	opOther  = "other"
)

// Call is one request as the server saw it, for assertions in tests.
type Call struct {
	// Time is when the request arrived.
	Time time.Time
	// Method and Path are the request's method and URL path.
	Method string
	Path   string
	// RequestURI is the request target exactly as the client sent it: the path with its
	// escapes as written, and any query.
	RequestURI string
	// Op is "token", "cancel", "get" or "other".
	Op string
	// Kind is the job kind of a cancel or get.
	Kind Kind
	// ID is the job id of a cancel or get.
	ID string
	// Grant is the grant_type of a token request: "password" or "refresh_token".
	Grant string
	// Status is the HTTP status answered; 0 while pending, and for dropped or hung requests.
	Status int
	// Header is a clone of the request headers, kept while calls are recorded or a fault
	// hook is set. It holds the client's bearer token: compare it, never print it.
	Header http.Header
	// BodySize is the size of the request body, read up to 1 MiB (a larger body counts as
	// about that). A cancel and a get have none.
	BodySize int64
}

// maxCountedBody bounds how much of a request body the fake reads: enough to tell an
// empty body from one that is not, without letting a client make it read forever.
const maxCountedBody = 1 << 20

// countBody reads the request body, up to maxCountedBody+1 bytes, and returns how many
// bytes there were.
func countBody(r *http.Request) int64 {
	n, _ := io.Copy(io.Discard, io.LimitReader(r.Body, maxCountedBody+1))
	return n
}

// callRecord keeps the calls in order of arrival; a disabled record keeps nothing.
type callRecord struct {
	enabled bool
	mu      sync.Mutex
	calls   []Call
}

// newCallRecord returns a record that keeps calls only when enabled.
func newCallRecord(enabled bool) *callRecord {
	return &callRecord{enabled: enabled}
}

// begin completes call from r, appends it to the record and returns it with its index in
// the record (-1 when the record is disabled). The headers are cloned only when someone can
// look at them.
func (s *Server) begin(r *http.Request, call Call) (Call, int) {
	call.Time = time.Now()
	call.Method = r.Method
	call.Path = r.URL.Path
	call.RequestURI = r.RequestURI
	if s.record.enabled || s.fault.Load() != nil || s.tokenFault.Load() != nil {
		call.Header = r.Header.Clone()
	}
	return call, s.record.add(call)
}

// add appends call and returns its index, or -1 when the record is disabled.
func (c *callRecord) add(call Call) int {
	if !c.enabled {
		return -1
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, call)
	return len(c.calls) - 1
}

// end stores the status answered to the call at index.
func (c *callRecord) end(index int, status int) {
	if index < 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls[index].Status = status
}

// snapshot returns a copy of the calls that match keep (all when keep is nil).
func (c *callRecord) snapshot(keep func(Call) bool) []Call {
	c.mu.Lock()
	defer c.mu.Unlock()
	calls := make([]Call, 0, len(c.calls))
	for _, call := range c.calls {
		if keep == nil || keep(call) {
			calls = append(calls, call)
		}
	}
	return calls
}

// Calls returns a copy of every recorded request in order of arrival; empty when
// Options.NoRecord is set. The Header maps are shared with the record: do not modify them.
func (s *Server) Calls() []Call { return s.record.snapshot(nil) }

// CallsFor returns the recorded cancels and gets of the job id, of any kind, in order.
func (s *Server) CallsFor(id string) []Call {
	return s.record.snapshot(func(call Call) bool { return call.ID == id })
}
