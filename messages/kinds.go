package messages

// Kind names the sort of CipherTrust Manager job a request cancels. It is
// the last token of the request subject and the "kind" field of a result.
type Kind string

// KindInfo is one row of the kinds table: everything the worker, the fake
// CipherTrust Manager and the command line know of one CCKM job family.
// Adding a family is adding a row; nothing else in production code names a
// kind.
type KindInfo struct {
	// Kind is the request subject's last token.
	Kind Kind
	// Collection is the family's path on CipherTrust Manager: a job is
	// Collection/{id}, and its cancel Collection/{id}/cancel.
	Collection string
	// Job says what a job of the family is, for people.
	Job string
	// Running is how the family spells a running job's overall_status
	// (the external-CM refresh writes "in progress", the others
	// "in_progress"); either spelling counts as running everywhere.
	Running string
}

// The kinds whose constants other code uses by name.
const (
	// KindRefresh is a refresh of external CipherTrust Manager domains.
	KindRefresh Kind = "refresh"
	// KindBulkJob is an AWS KMS bulk job.
	KindBulkJob Kind = "bulkjob"
)

// kindTable lists every CCKM job family CipherTrust Manager can cancel.
// Note the irregular paths: bulkjob for AWS but bulkjobs for Azure, and
// synchronize for Luna.
var kindTable = []KindInfo{
	{KindRefresh, "/api/v1/cckm/external-cm/refresh", "a refresh of external CipherTrust Manager domains", "in progress"},
	{KindBulkJob, "/api/v1/cckm/aws/bulkjob", "an AWS KMS bulk job", "in_progress"},
	{"aws-sync", "/api/v1/cckm/aws/synchronization-jobs", "an AWS KMS key synchronization", "in_progress"},
	{"aws-cks-sync", "/api/v1/cckm/aws/custom-key-stores/synchronization-jobs", "an AWS custom key store synchronization", "in_progress"},
	{"azure-sync", "/api/v1/cckm/azure/synchronization-jobs", "an Azure key synchronization", "in_progress"},
	{"azure-certificate-sync", "/api/v1/cckm/azure/certificates/synchronization-jobs", "an Azure certificate synchronization", "in_progress"},
	{"azure-secret-sync", "/api/v1/cckm/azure/secrets/synchronization-jobs", "an Azure secret synchronization", "in_progress"},
	{"azure-bulkjob", "/api/v1/cckm/azure/bulkjobs", "an Azure bulk job", "in_progress"},
	{"google-sync", "/api/v1/cckm/google/synchronization-jobs", "a Google Cloud key synchronization", "in_progress"},
	{"oci-sync", "/api/v1/cckm/oci/synchronization-jobs", "an Oracle Cloud key synchronization", "in_progress"},
	{"sap-sync", "/api/v1/cckm/sap/synchronization-jobs", "an SAP Data Custodian key synchronization", "in_progress"},
	{"sfdc-key-sync", "/api/v1/cckm/sfdc/keys/synchronization-jobs", "a Salesforce tenant secret synchronization", "in_progress"},
	{"sfdc-certificate-sync", "/api/v1/cckm/sfdc/certificates/synchronization-jobs", "a Salesforce certificate synchronization", "in_progress"},
	{"luna-refresh", "/api/v1/cckm/hsm/luna/refresh", "a Luna HSM refresh", "in_progress"},
	{"luna-sync", "/api/v1/cckm/hsm/luna/synchronize", "a Luna HSM synchronization", "in_progress"},
	{"dsm-refresh", "/api/v1/cckm/dsm/refresh", "a DSM domain refresh", "in_progress"},
}

// Kinds lists every kind, in the table's order.
var Kinds = func() []Kind {
	kinds := make([]Kind, len(kindTable))
	for i, info := range kindTable {
		kinds[i] = info.Kind
	}
	return kinds
}()

var kindIndex = func() map[Kind]KindInfo {
	index := make(map[Kind]KindInfo, len(kindTable))
	for _, info := range kindTable {
		index[info.Kind] = info
	}
	return index
}()

// KindTable returns a copy of the kinds table, in order.
func KindTable() []KindInfo { return append([]KindInfo(nil), kindTable...) }

// Info returns the kind's row of the table.
func (k Kind) Info() (KindInfo, bool) {
	info, ok := kindIndex[k]
	return info, ok
}

// Collection is the kind's path on CipherTrust Manager, or "" for an
// unknown kind.
func (k Kind) Collection() string { return kindIndex[k].Collection }

// Valid reports whether k is in the kinds table.
func (k Kind) Valid() bool {
	_, ok := kindIndex[k]
	return ok
}
