// Package nkeyseed tells an NKey seed from the name of a file holding one,
// for the binaries that take NATS_NKEY / --nkey.
package nkeyseed

// seedLength is the length of an encoded NKey seed ("SU" and 56 more
// base32 characters).
const seedLength = 58

// Looks reports whether s is an NKey seed itself rather than the name of a
// file holding one: a mistake whose error would otherwise quote the seed,
// as nats.go quotes the file name it could not open.
func Looks(s string) bool {
	if len(s) != seedLength || s[0] != 'S' {
		return false
	}
	for _, r := range s {
		if (r < 'A' || r > 'Z') && (r < '2' || r > '7') {
			return false
		}
	}
	return true
}
