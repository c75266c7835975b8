package agent

import (
	"crypto/sha256"
	"fmt"
	"os"
	"strings"
	"testing"
)

// trimProbe lives in the executable's writable data segment, which
// releaseStartupPages must leave alone: dropping it would zero it.
var trimProbe = [4]int64{1, 2, 3, 4}

func rssFileKB(t *testing.T) int {
	t.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		var kb int
		if _, err := fmt.Sscanf(line, "RssFile: %d kB", &kb); err == nil {
			return kb
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}

func TestReleaseStartupPages_keepsDataAndCode(t *testing.T) {
	trimProbe[2] = 42
	before := sha256.Sum256([]byte("vtcluster"))
	high := rssFileKB(t)
	releaseStartupPages()
	// The executable's pages that start-up mapped are gone from this
	// process; reading the figure maps back only what that takes.
	if low := rssFileKB(t); low >= high {
		t.Errorf("RssFile %d kB before the release, %d kB after", high, low)
	}
	if trimProbe != [4]int64{1, 2, 42, 4} {
		t.Fatalf("the data segment changed: %v", trimProbe)
	}
	// Code and read-only tables come back from the file on first use.
	if after := sha256.Sum256([]byte("vtcluster")); after != before {
		t.Fatal("code run after the release computes something else")
	}
}
