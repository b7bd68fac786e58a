package messages

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTheKindsTableHasEveryCancellableCCKMJobFamily(t *testing.T) {
	want := map[Kind]string{
		"refresh":                "/api/v1/cckm/external-cm/refresh",
		"bulkjob":                "/api/v1/cckm/aws/bulkjob",
		"aws-sync":               "/api/v1/cckm/aws/synchronization-jobs",
		"aws-cks-sync":           "/api/v1/cckm/aws/custom-key-stores/synchronization-jobs",
		"azure-sync":             "/api/v1/cckm/azure/synchronization-jobs",
		"azure-certificate-sync": "/api/v1/cckm/azure/certificates/synchronization-jobs",
		"azure-secret-sync":      "/api/v1/cckm/azure/secrets/synchronization-jobs",
		"azure-bulkjob":          "/api/v1/cckm/azure/bulkjobs",
		"google-sync":            "/api/v1/cckm/google/synchronization-jobs",
		"oci-sync":               "/api/v1/cckm/oci/synchronization-jobs",
		"sap-sync":               "/api/v1/cckm/sap/synchronization-jobs",
		"sfdc-key-sync":          "/api/v1/cckm/sfdc/keys/synchronization-jobs",
		"sfdc-certificate-sync":  "/api/v1/cckm/sfdc/certificates/synchronization-jobs",
		"luna-refresh":           "/api/v1/cckm/hsm/luna/refresh",
		"luna-sync":              "/api/v1/cckm/hsm/luna/synchronize",
		"dsm-refresh":            "/api/v1/cckm/dsm/refresh",
	}
	require.Len(t, Kinds, len(want))
	for _, kind := range Kinds {
		assert.Equal(t, want[kind], kind.Collection(), "%s", kind)
		info, ok := kind.Info()
		require.True(t, ok)
		assert.NotEmpty(t, info.Job)
		assert.Contains(t, []string{"in progress", "in_progress"}, info.Running)
		assert.True(t, kind.Valid())

		got, ok := KindOfSubject(kind.RequestSubject())
		assert.True(t, ok)
		assert.Equal(t, kind, got)
		assert.Equal(t, "cckm.cancel."+string(kind)+".result", kind.ResultSubject())
		assert.Equal(t, "cckm.cancel.dead."+string(kind), kind.DeadLetterSubject())
		assert.False(t, strings.ContainsAny(string(kind), ".*> "), "a kind is one subject token")
	}
	for _, bad := range []Kind{"", "azure", "dead", "worker", "REFRESH", "aws-bulkjob"} {
		assert.False(t, bad.Valid(), "%q", bad)
		assert.Empty(t, bad.Collection())
	}
	refresh, _ := KindRefresh.Info()
	assert.Equal(t, "in progress", refresh.Running, "the external-CM refresh spells it with a space")
}
