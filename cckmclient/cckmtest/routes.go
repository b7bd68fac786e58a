package cckmtest

import (
	"net/http"
	"time"

	"github.com/cckm/cckm-cancel-worker/messages"
)

// Paths of the endpoints the fake serves: the token endpoint, and below each kind's
// collection a job ({id}) and its cancel action.
const (
	tokensPath   = "/api/v1/auth/tokens"
	jobSuffix    = "/{id}"
	cancelSuffix = "/cancel"
)

// routes builds the request multiplexer. Every served path also has a method-less pattern
// that answers 405, and "/" answers 404, so that every answer carries a CM error body.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	for _, path := range []string{tokensPath, tokensPath + "/{$}"} {
		mux.HandleFunc("POST "+path, s.handleTokens)
		mux.HandleFunc(path, s.methodNotAllowed(http.MethodPost))
	}
	for _, info := range messages.KindTable() {
		kind, path := info.Kind, info.Collection+jobSuffix
		mux.HandleFunc("POST "+path+cancelSuffix, s.handleJob(opCancel, kind))
		mux.HandleFunc(path+cancelSuffix, s.methodNotAllowed(http.MethodPost))
		mux.HandleFunc("GET "+path, s.handleJob(opGet, kind))
		mux.HandleFunc(path, s.methodNotAllowed(http.MethodGet))
	}
	mux.HandleFunc("/", s.notFound)
	return mux
}

// methodNotAllowed answers 405 for a known path requested with the wrong method.
func (s *Server) methodNotAllowed(allowed string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, index := s.begin(r, Call{Op: opOther})
		w.Header().Set("Allow", allowed)
		status := writeCMError(w, http.StatusMethodNotAllowed, "")
		s.finish(r, index, status)
	}
}

// notFound answers 404 for any path the fake does not serve.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	_, index := s.begin(r, Call{Op: opOther})
	status := writeCMError(w, http.StatusNotFound, "")
	s.finish(r, index, status)
}

// finish records the status a request was answered with and logs it.
func (s *Server) finish(r *http.Request, index int, status int) {
	s.record.end(index, status)
	if s.opts.Logf != nil {
		text := http.StatusText(status)
		if status == 0 {
			text = "no answer"
		}
		s.logf("cckmtest: %s %s -> %d %s", r.Method, r.URL.Path, status, text)
	}
}

// sleep waits for d, returning false early when the client goes away or the server closes.
func (s *Server) sleep(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-r.Context().Done():
		return false
	case <-s.closing:
		return false
	}
}
