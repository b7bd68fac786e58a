package cckmtest

import (
	"strings"

	"github.com/cckm/cckm-cancel-worker/messages"
)

// family is what the fake knows of one job family beyond the kinds table: how the job
// object CipherTrust Manager answers for it reads. A kind without a row here is served
// all the same, shaped by defaultFamily.
type family struct {
	cloud      string // the job's "cloud" field
	scope      string // the name of the job's array of what it works on
	uriPrefix  string // the job's "uri" is uriPrefix followed by its id
	operation  string // a bulk job's "operation"; "" for synchronizations and refreshes
	itemDone   string // the detailed_status text of an item of a job that completed
	itemFailed string // the detailed_status text of an item of a job that failed
}

// The uri prefixes CipherTrust Manager gives jobs: every synchronization and refresh is
// a "synchronize" resource; the bulk jobs have their own.
const (
	uriSynchronize  = "kylo:kylo:cckm:synchronize:"
	uriBulkJob      = "kylo:kylo:cckm:bulkjob:"
	uriAzureBulkJob = "kylo:kylo:cckm:azure-bulkjob:"
)

// The detailed_status texts of finished items: a domain refresh writes sentences, the
// other families a word.
const (
	itemSuccess        = "Success"
	itemFailure        = "Failed"
	domainSynchronized = "domain synchronized successfully"
	domainFailed       = "domain synchronization failed"
	itemAborted        = "aborted"
	itemRunning        = "in_progress"
)

// families holds the job shape of each family, as the CipherTrust Manager documentation
// shows it where it does (cloud names such as "AzureCloud" and "gcp", the scope arrays,
// the uri prefixes); where it is silent (Luna's scope, the custom key stores') the
// names are plausible ones.
var families = map[messages.Kind]family{
	messages.KindRefresh:     {"externalCM", "domains", uriSynchronize, "", domainSynchronized, domainFailed},
	messages.KindBulkJob:     {"aws", "keys", uriBulkJob, "disablekey", itemSuccess, itemFailure},
	"aws-sync":               {"aws", "kms", uriSynchronize, "", itemSuccess, itemFailure},
	"aws-cks-sync":           {"aws", "custom_key_stores", uriSynchronize, "", itemSuccess, itemFailure},
	"azure-sync":             {"AzureCloud", "key_vaults", uriSynchronize, "", itemSuccess, itemFailure},
	"azure-certificate-sync": {"AzureCloud", "key_vaults", uriSynchronize, "", itemSuccess, itemFailure},
	"azure-secret-sync":      {"AzureCloud", "key_vaults", uriSynchronize, "", itemSuccess, itemFailure},
	"azure-bulkjob":          {"AzureCloud", "keys", uriAzureBulkJob, "delete-key-backups", itemSuccess, itemFailure},
	"google-sync":            {"gcp", "key_rings", uriSynchronize, "", itemSuccess, itemFailure},
	"oci-sync":               {"oci", "vaults", uriSynchronize, "", itemSuccess, itemFailure},
	"sap-sync":               {"sap", "groups", uriSynchronize, "", itemSuccess, itemFailure},
	"sfdc-key-sync":          {"sfdc", "organizations", uriSynchronize, "", itemSuccess, itemFailure},
	"sfdc-certificate-sync":  {"sfdc", "organizations", uriSynchronize, "", itemSuccess, itemFailure},
	"luna-refresh":           {"luna", "partitions", uriSynchronize, "", itemSuccess, itemFailure},
	"luna-sync":              {"luna", "partitions", uriSynchronize, "", itemSuccess, itemFailure},
	"dsm-refresh":            {"dsm", "domains", uriSynchronize, "", domainSynchronized, domainFailed},
}

// collectionRoot is where every CCKM collection lives.
const collectionRoot = "/api/v1/cckm/"

// familyOf returns the job shape of kind: its row of families, else a synchronization
// job whose cloud is the first segment of its collection ("aws" for /api/v1/cckm/aws/…)
// and whose scope is "keys".
func familyOf(kind Kind) family {
	if shape, known := families[kind]; known {
		return shape
	}
	cloud, _, _ := strings.Cut(strings.TrimPrefix(kind.Collection(), collectionRoot), "/")
	return family{cloud, "keys", uriSynchronize, "", itemSuccess, itemFailure}
}

// runningStatus returns how overall_status is spelled for a running job of kind: as the
// kinds table says, else "in_progress".
func runningStatus(kind Kind) string {
	if info, known := kind.Info(); known && info.Running != "" {
		return info.Running
	}
	return StatusBulkJobRunning
}
