package cckmtest

import "github.com/cckm/cckm-cancel-worker/messages"

// newUUID returns a random (version 4) UUID in its canonical lower-case form.
func newUUID() string { return messages.NewRequestID() }

// isUUID reports whether s has the 8-4-4-4-12 hex digit form, in either case.
func isUUID(s string) bool { return messages.IsUUID(s) }
