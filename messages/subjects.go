// Package messages holds the worker's wire types: the NATS subjects, the
// request a producer sends, the result the worker publishes, and the rules
// that turn a payload into a request. It does no I/O.
package messages

import "strings"

// Subjects and subject prefixes producers and consumers agree on.
const (
	// SubjectPrefix begins every subject the worker uses.
	SubjectPrefix = "cckm.cancel."
	// SubjectRefresh carries requests to cancel an external-CM refresh.
	SubjectRefresh = SubjectPrefix + string(KindRefresh)
	// SubjectBulkJob carries requests to cancel an AWS KMS bulk job.
	SubjectBulkJob = SubjectPrefix + string(KindBulkJob)
	// SubjectResults matches every result subject.
	SubjectResults = SubjectPrefix + "*.result"
	// SubjectSettled matches every settled subject: the events of followed
	// cancels.
	SubjectSettled = SubjectPrefix + "*.settled"
)

// Header names the worker reads or writes.
const (
	// HeaderMsgID is JetStream's de-duplication key; a request's Nats-Msg-Id
	// is its request_id when the payload names none.
	HeaderMsgID = "Nats-Msg-Id"
	// HeaderReplyTo names a subject that also receives the request's result.
	HeaderReplyTo = "Cckm-Reply-To"
	// HeaderTraceparent is the W3C trace context header.
	HeaderTraceparent = "traceparent"
)

// RequestSubject is the subject producers publish this kind's requests on.
func (k Kind) RequestSubject() string { return SubjectPrefix + string(k) }

// ResultSubject is the subject this kind's results are published on.
func (k Kind) ResultSubject() string { return SubjectPrefix + string(k) + ".result" }

// SettledSubject is the subject this kind's settled events are published on.
func (k Kind) SettledSubject() string { return SubjectPrefix + string(k) + ".settled" }

// DeadLetterSubject is the subject a request of this kind is copied to when
// its last delivery failed.
func (k Kind) DeadLetterSubject() string { return SubjectPrefix + "dead." + string(k) }

// KindOfSubject returns the kind whose request subject is subject.
func KindOfSubject(subject string) (Kind, bool) {
	kind := Kind(strings.TrimPrefix(subject, SubjectPrefix))
	if len(kind) == len(subject) || !kind.Valid() {
		return "", false
	}
	return kind, true
}
