package cckmtest

import (
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
)

// Server is a running fake CipherTrust Manager. Create it with NewServer and stop it with
// Close. All methods are safe for concurrent use.
type Server struct {
	opts       Options
	httpServer *httptest.Server
	baseURL    string

	closing   chan struct{} // closed by Close to end delays and hangs
	closeOnce sync.Once

	fault      atomic.Pointer[func(Call) *Step]
	tokenFault atomic.Pointer[func(Call) *TokenStep]

	tokenScript   tokenScript
	tokenRequests atomic.Int64

	tokens  *tokenStore
	jobs    *jobStore
	scripts *scriptQueue
	record  *callRecord

	// Cancels and GETs of jobs being answered now, and the most at once.
	jobCallsNow, jobCallsPeak atomic.Int64
}

// PeakJobCalls is the most cancels and GETs of jobs (token requests aside)
// the server has been answering at once, from a request's arrival until
// its answer was written: what a bound on calls in flight must keep to.
func (s *Server) PeakJobCalls() int64 { return s.jobCallsPeak.Load() }

// jobCallBegins counts a job call in; the returned function counts it out.
func (s *Server) jobCallBegins() func() {
	n := s.jobCallsNow.Add(1)
	for peak := s.jobCallsPeak.Load(); n > peak && !s.jobCallsPeak.CompareAndSwap(peak, n); peak = s.jobCallsPeak.Load() {
	}
	return func() { s.jobCallsNow.Add(-1) }
}

// NewServer starts a fake CipherTrust Manager configured by opts. Like httptest.NewServer it
// panics when it cannot listen.
func NewServer(opts Options) *Server {
	opts = opts.withDefaults()
	s := &Server{
		opts:    opts,
		closing: make(chan struct{}),
		tokens:  newTokenStore(opts),
		jobs:    newJobStore(opts.SettleAfter),
		scripts: newScriptQueue(),
		record:  newCallRecord(!opts.NoRecord),
	}
	if opts.Fault != nil {
		s.fault.Store(&opts.Fault)
	}
	if opts.TokenFault != nil {
		s.tokenFault.Store(&opts.TokenFault)
	}
	s.httpServer = httptest.NewUnstartedServer(s.routes())
	if opts.Addr != "" {
		listener, err := net.Listen("tcp", opts.Addr)
		if err != nil {
			panic(fmt.Sprintf("cckmtest: failed to listen on %s: %v", opts.Addr, err))
		}
		s.httpServer.Listener.Close()
		s.httpServer.Listener = listener
	}
	if opts.TLS {
		s.httpServer.StartTLS()
	} else {
		s.httpServer.Start()
	}
	s.baseURL = reachableURL(s.httpServer.URL)
	return s
}

// URL returns the base URL, such as https://127.0.0.1:34567, with no trailing slash.
// A wildcard listen address is reported as 127.0.0.1, which the TLS certificate covers.
func (s *Server) URL() string { return s.baseURL }

// Close ends pending delays and hangs, stops the server and waits for its handlers to
// return. It may be called more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.httpServer.Close()
	})
}

// Client returns an HTTP client that trusts the server's TLS certificate, as
// httptest.Server.Client does. It is a plain client when the server does not use TLS.
func (s *Server) Client() *http.Client { return s.httpServer.Client() }

// CACertPEM returns the server's TLS certificate in PEM form, ready to be written to a CA
// file, or nil when the server does not use TLS.
func (s *Server) CACertPEM() []byte {
	cert := s.httpServer.Certificate()
	if cert == nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
}

// SetFault replaces Options.Fault while the server runs; nil removes the hook.
func (s *Server) SetFault(fault func(Call) *Step) {
	if fault == nil {
		s.fault.Store(nil)
		return
	}
	s.fault.Store(&fault)
}

// logf passes a line to Options.Logf when one is set.
func (s *Server) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf(format, args...)
	}
}

// reachableURL replaces an unspecified listen host (0.0.0.0 or ::) with 127.0.0.1.
func reachableURL(raw string) string {
	parsed, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	host, port, err := net.SplitHostPort(parsed.Host)
	if err != nil {
		return raw
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		parsed.Host = net.JoinHostPort("127.0.0.1", port)
	}
	return parsed.String()
}
