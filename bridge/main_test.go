package bridge

import (
	"testing"

	"github.com/vtcluster/vtcluster/internal/testbin"
)

// TestMain points what vtcluster starts again at the built binary (see
// executable), and fails loudly if something still starts this test
// binary as vtcluster.
func TestMain(m *testing.M) {
	executable = testbin.Build
	testbin.Main(m)
}
