package cckmtest

import "time"

// DefaultTokenLifetime is the JWT lifetime used when Options.TokenLifetime is zero; it is
// the documented lifetime of a CipherTrust Manager API token.
const DefaultTokenLifetime = 300 * time.Second

// DefaultSettleAfter is how long a canceled job keeps running when Options.SettleAfter is zero.
const DefaultSettleAfter = 2 * time.Second

// Options configures a Server. The zero value serves plain HTTP on 127.0.0.1 with no
// accepted credentials; set Username and Password, RefreshToken or StaticToken to let a
// client in.
type Options struct {
	// TLS serves HTTPS with httptest's self-signed certificate, valid for 127.0.0.1, ::1 and
	// example.com. Use Client or CACertPEM to trust it.
	TLS bool
	// Addr is the listen address; "" means 127.0.0.1 on a free port.
	Addr string
	// Username and Password are the credentials the password grant accepts. With an empty
	// Username the password grant always fails.
	Username, Password string
	// Domain, when not empty, is the only domain the password grant accepts; when empty, any
	// domain (or none) is accepted.
	Domain string
	// RefreshToken is a refresh token that is valid from the start ("" = none).
	RefreshToken string
	// StaticToken is a bearer token that is always accepted and never expires ("" = none).
	StaticToken string
	// TokenLifetime is the lifetime of each issued JWT; zero means DefaultTokenLifetime.
	// Expiry is exact to the nanosecond; the response's duration is rounded up to seconds.
	TokenLifetime time.Duration
	// Latency is added before answering every cancel and GET of a job.
	Latency time.Duration
	// SettleAfter is how long after the first cancel a job turns "completed". Zero means
	// DefaultSettleAfter; a negative value means canceled jobs never finish.
	SettleAfter time.Duration
	// AnyJob makes an unknown job id that is a valid UUID exist, as an in-progress job of the
	// kind named by the path, on its first reference; except the ids given to
	// Server.MarkUnknown, which stay unknown (404).
	AnyJob bool
	// NoRecord turns the call record off, so that long benchmarks do not grow memory.
	NoRecord bool
	// Fault, when set, is consulted for every cancel and GET of a job that has no scripted
	// step; a non-nil Step it returns is applied. It may be called concurrently. Replace it
	// at run time with Server.SetFault.
	Fault func(call Call) *Step
	// TokenFault, when set, is consulted for every token request that has no step queued by
	// Server.ScriptTokens; a non-nil TokenStep it returns is applied. It may be called
	// concurrently. Replace it at run time with Server.SetTokenFault. A CipherTrust Manager
	// whose clock is an hour behind:
	//
	//	TokenFault: func(cckmtest.Call) *cckmtest.TokenStep {
	//		return &cckmtest.TokenStep{ClockOffset: -time.Hour}
	//	}
	TokenFault func(call Call) *TokenStep
	// Logf, when set, receives one line per answered request. It must stay usable until
	// Close returns.
	Logf func(format string, args ...any)
}

// withDefaults returns a copy of opts with zero durations replaced by their defaults.
func (opts Options) withDefaults() Options {
	if opts.TokenLifetime <= 0 {
		opts.TokenLifetime = DefaultTokenLifetime
	}
	if opts.SettleAfter == 0 {
		opts.SettleAfter = DefaultSettleAfter
	}
	return opts
}
