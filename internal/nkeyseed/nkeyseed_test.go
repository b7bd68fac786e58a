package nkeyseed

import (
	"strings"
	"testing"
)

func TestLooksTellsASeedFromAFileName(t *testing.T) {
	seed := "SU" + strings.Repeat("A2", 28)
	if !Looks(seed) {
		t.Fatalf("%d characters of base32 starting with S is a seed", len(seed))
	}
	for _, name := range []string{"", "/etc/nats/user.nk", seed[:57], seed + "A", "su" + seed[2:], "SU" + strings.Repeat("a1", 28)} {
		if Looks(name) {
			t.Errorf("%q is not a seed", name)
		}
	}
}
