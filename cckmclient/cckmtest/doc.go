// Package cckmtest is a fake Thales CipherTrust Manager for tests, benchmarks and dev mode,
// in the manner of net/http/httptest: NewServer starts a real HTTP(S) server on a loopback
// port that answers the token endpoint and the CCKM job endpoints the cancellation worker
// uses, with scripted behaviour on top.
//
// Served, under the base URL:
//
//	POST /api/v1/auth/tokens[/]                      password and refresh_token grants
//	POST /api/v1/cckm/external-cm/refresh/{id}/cancel
//	GET  /api/v1/cckm/external-cm/refresh/{id}
//	POST /api/v1/cckm/aws/bulkjob/{id}/cancel
//	GET  /api/v1/cckm/aws/bulkjob/{id}
//
// Job bodies and error bodies follow the shapes in the CipherTrust Manager documentation:
// bare job objects, and {"code","codeDesc","message","requestID"} errors. A cancel sets
// abort=true and leaves the job running; the job turns "completed" Options.SettleAfter later,
// computed lazily when the job is next read.
//
// Behaviour can be scripted per job id with Server.Script (status codes, Retry-After, delays,
// hangs, dropped connections, a 200 without abort, a job padded to Step.JobSize bytes, an
// error message of Step.MessageSize bytes) or for every request with Options.Fault.
//
// The token endpoint is scripted the same way with Server.ScriptTokens, one TokenStep per
// token request, or for every token request with Options.TokenFault: status codes (5xx, 429
// with Retry-After), delays, hangs and dropped connections instead of a grant; or a grant whose
// answer misleads about its lifetime while the server still accepts the JWT for its real
// lifetime: iat and exp as a clock ahead or behind writes them (TokenStep.ClockOffset), no iat,
// a duration of 0, negative or huge. Server.TokenRequests counts every token request, failed,
// hung and dropped ones included; Server.Grants counts those that got a token.
//
//	server.ScriptTokens(cckmtest.TokenStep{Status: 429, RetryAfter: "2"}) // then normal
//	server.SetTokenFault(func(cckmtest.Call) *cckmtest.TokenStep {        // a clock behind
//		return &cckmtest.TokenStep{ClockOffset: -time.Hour, NoIssuedAt: true, NoDuration: true}
//	})
//
// Every request is recorded (Server.Calls) unless Options.NoRecord is set.
//
// A Server is safe for concurrent use.
package cckmtest
