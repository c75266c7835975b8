package runner

import (
	"testing"

	"github.com/vtcluster/vtcluster/internal/testbin"
)

// TestMain fails loudly if test code starts this test binary as vtcluster
// (the runner's default binary is os.Executable, this test binary here).
func TestMain(m *testing.M) { testbin.Main(m) }
