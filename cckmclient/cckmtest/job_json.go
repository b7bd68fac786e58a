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

// jobFields are the fields every family's job has, in CipherTrust Manager's order.
type jobFields struct {
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
	Operation      string            `json:"operation,omitempty"`
}

// jobBody is the JSON object CipherTrust Manager answers for a job: the common fields,
// then the family's scope array under its own name.
type jobBody struct {
	fields jobFields
	scope  string   // the scope array's name, such as "domains" or "key_vaults"
	items  []string // its ids
}

// MarshalJSON encodes the common fields with the scope array added at the end.
func (b jobBody) MarshalJSON() ([]byte, error) {
	encoded, err := json.Marshal(b.fields)
	if err != nil {
		return nil, err
	}
	name, err := json.Marshal(b.scope)
	if err != nil {
		return nil, err
	}
	items, err := json.Marshal(append([]string{}, b.items...)) // [] rather than null
	if err != nil {
		return nil, err
	}
	object := append(encoded[:len(encoded)-1], ',') // without the closing brace
	object = append(object, name...)
	object = append(object, ':')
	object = append(object, items...)
	return append(object, '}'), nil
}

// body returns the JSON form of job, shaped like its family.
func (j Job) body() jobBody {
	shape := familyOf(j.Kind)
	fields := jobFields{
		ID:             j.ID,
		URI:            shape.uriPrefix + j.ID,
		Account:        jobAccount,
		Application:    jobApplication,
		DevAccount:     jobDevAccount,
		CreatedAt:      timestamp(j.CreatedAt),
		UpdatedAt:      timestamp(j.UpdatedAt),
		OverallStatus:  j.OverallStatus,
		DetailedStatus: j.DetailedStatus,
		Abort:          j.Abort,
		Cloud:          shape.cloud,
		Operation:      j.Operation,
	}
	if !j.CompletedAt.IsZero() {
		fields.CompletedAt = timestamp(j.CompletedAt)
	}
	return jobBody{fields: fields, scope: shape.scope, items: j.Items}
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
