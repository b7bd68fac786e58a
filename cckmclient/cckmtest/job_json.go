package cckmtest

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// Fixed account fields of every job, as in the documentation's examples.
const (
	jobAccount     = "kylo:kylo:admin:accounts:kylo"
	jobApplication = "ncryptify:gemalto:admin:apps:kylo"
	jobDevAccount  = "ncryptify:gemalto:admin:accounts:gemalto"
)

// timestampLayout is RFC 3339 with microseconds, as CipherTrust Manager writes timestamps.
const timestampLayout = "2006-01-02T15:04:05.000000Z07:00"

// jobBody is the JSON object CipherTrust Manager answers for a job.
type jobBody struct {
	ID             string            `json:"id"`
	URI            string            `json:"uri"`
	Account        string            `json:"account"`
	Application    string            `json:"application"`
	DevAccount     string            `json:"devAccount"`
	CreatedAt      string            `json:"createdAt"`
	UpdatedAt      string            `json:"updatedAt"`
	CompletedAt    string            `json:"completed_at,omitempty"`
	OverallStatus  string            `json:"overall_status"`
	DetailedStatus map[string]string `json:"detailed_status"`
	Abort          bool              `json:"abort"`
	Cloud          string            `json:"cloud"`
	Domains        []string          `json:"domains,omitempty"`
	Keys           []string          `json:"keys,omitempty"`
	Operation      string            `json:"operation,omitempty"`
}

// body returns the JSON form of job.
func (j Job) body() jobBody {
	body := jobBody{
		ID:             j.ID,
		Account:        jobAccount,
		Application:    jobApplication,
		DevAccount:     jobDevAccount,
		CreatedAt:      timestamp(j.CreatedAt),
		UpdatedAt:      timestamp(j.UpdatedAt),
		OverallStatus:  j.OverallStatus,
		DetailedStatus: j.DetailedStatus,
		Abort:          j.Abort,
		Operation:      j.Operation,
	}
	if !j.CompletedAt.IsZero() {
		body.CompletedAt = timestamp(j.CompletedAt)
	}
	switch j.Kind {
	case Refresh:
		body.URI = "kylo:kylo:cckm:synchronize:" + j.ID
		body.Cloud = "externalCM"
		body.Domains = j.Items
	default:
		body.URI = "kylo:kylo:cckm:bulkjob:" + j.ID
		body.Cloud = "aws"
		body.Keys = j.Items
	}
	return body
}

// timestamp formats t in UTC as CipherTrust Manager does.
func timestamp(t time.Time) string {
	return t.UTC().Format(timestampLayout)
}

// writeJob answers 200 with body, padded to at least size bytes, and returns the status.
func writeJob(w http.ResponseWriter, body jobBody, size int) int {
	encoded, err := json.Marshal(body)
	if err != nil || len(encoded) >= size {
		return writeJSON(w, http.StatusOK, body)
	}
	return writeRaw(w, http.StatusOK, padJob(encoded, size))
}

// paddingField is what padJob adds before the padding itself.
const paddingField = `,"padding":""`

// padJob adds a "padding" string field to the JSON object encoded so that it is at least
// size bytes long: exactly size, unless the field alone makes it longer.
func padJob(encoded []byte, size int) []byte {
	padding := max(1, size-len(encoded)-len(paddingField))
	padded := make([]byte, 0, len(encoded)+len(paddingField)+padding)
	padded = append(padded, encoded[:len(encoded)-1]...) // without the closing brace
	padded = append(padded, `,"padding":"`...)
	padded = append(padded, strings.Repeat("x", padding)...)
	return append(padded, `"}`...)
}
