// Package cckmtest is a fake Thales CipherTrust Manager for tests, benchmarks and dev mode,
// in the manner of net/http/httptest: NewServer starts a real HTTP(S) server on a loopback
// port that answers the token endpoint and the CCKM job endpoints the cancellation worker
// uses, with scripted behaviour on top.
//
// Served, under the base URL:
//
//	POST /api/v1/auth/tokens[/]      password and refresh_token grants
//	POST {collection}/{id}/cancel    for the collection of every kind in messages.KindTable
//	GET  {collection}/{id}           such as /api/v1/cckm/external-cm/refresh/{id} (refresh),
//	                                 /api/v1/cckm/aws/bulkjob/{id} (bulkjob) and
//	                                 /api/v1/cckm/azure/bulkjobs/{id} (azure-bulkjob)
//
// Job bodies and error bodies follow the shapes in the CipherTrust Manager documentation:
// bare job objects, and {"code","codeDesc","message","requestID"} errors. Each job is shaped
// like its family: its "cloud" (externalCM, aws, AzureCloud, gcp, oci, sap, sfdc, luna, dsm),
// its scope array (domains, keys, kms, key_vaults, key_rings, vaults, groups,
// organizations, partitions), its "uri" (kylo:kylo:cckm:synchronize:<id> for
// synchronizations and refreshes, kylo:kylo:cckm:bulkjob:<id> and
// kylo:kylo:cckm:azure-bulkjob:<id> for the bulk jobs, which also have an "operation"), and
// an overall_status spelled as its family spells a running job: "in progress" for an
// external-CM refresh, "in_progress" for the others. A kind added to messages.KindTable is
// served at once, shaped like a synchronization.
//
// A cancel sets abort=true and leaves the job running; the job turns "completed"
// Options.SettleAfter later, computed lazily when the job is next read. With Options.AnyJob
// any UUID is a running job of whatever kind it is asked for as, except the ids given to
// Server.MarkUnknown, which answer 404.
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
// Every request is recorded (Server.Calls, Server.CallsFor) unless Options.NoRecord is set:
// its method, path and request target as sent (Call.RequestURI), headers, body size, kind,
// job id and the status answered.
//
// A Server is safe for concurrent use.
package cckmtest
