package node

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/vtcluster/vtcluster/agent"
)

// L5 of the audit: one mutex was held across every external command, so
// a hung NFS mount stalled every resource call of the node. Now a mount
// holds only its pool's lock. The "hung" mount is a command that blocks
// until the test lets it go (this machine cannot mount NFS).
func TestService_hungMountStallsOnlyItsPool(t *testing.T) {
	data := t.TempDir()
	entered, release := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var ran [][]string
	s := newNode(t, data, func(ctx context.Context, argv []string) error {
		mu.Lock()
		ran = append(ran, argv)
		mu.Unlock()
		if argv[0] == "mount" {
			close(entered)
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	nfs := map[string]any{"meta": map[string]any{"uuid": "n1", "type": "nfs"},
		"spec": map[string]any{"server": "192.0.2.9", "export": "/srv/a"}}
	done := make(chan any)
	go func() { done <- call(t, s, MethodCreatePool, nfs) }()
	<-entered

	// Everything on another pool goes on while the mount hangs.
	mustOK(t, call(t, s, MethodCreatePool, dirPool("p1", "")))
	b := mustOK(t, call(t, s, MethodCreateBacking, volume("r1", "p1", "a.raw"))).(map[string]any)
	mustOK(t, call(t, s, MethodUpdate, b["backing"], "allocate", map[string]any{"size": "1M"}))
	c := mustOK(t, call(t, s, MethodCreateBacking, volume("r2", "p1", "b.raw"))).(map[string]any)
	mustOK(t, call(t, s, MethodClone, c["backing"], map[string]any{"source": b["backing"]}))
	if got := call(t, s, MethodQuery, "r1"); got != b["backing"] {
		t.Errorf("query during the hung mount = %v", got)
	}

	// A call on the hung pool waits for its lock, and gives up with a
	// busy error when its own call ends.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	m := s.Methods()[MethodDestroyPool]
	v, err := m(ctx, agent.Args{"n1"})
	if err != nil {
		t.Fatal(err)
	}
	if code, o := out(t, v); code != 1 || !contains(o, "is busy with another operation") {
		t.Errorf("destroy of the pool being mounted = [%d, %v], want busy", code, o)
	}
	_, berr := s.locks.lock(ctx, "pool/n1")
	var busy *BusyError
	if !errors.As(berr, &busy) {
		t.Errorf("lock of the busy pool: %v", berr)
	}

	close(release)
	mustOK(t, <-done)
	// The clone copied in the agent: no command ran for it, so no command
	// timeout can kill a long clone.
	mu.Lock()
	defer mu.Unlock()
	if len(ran) != 1 || ran[0][0] != "mount" {
		t.Errorf("commands run: %q, want only the mount", ran)
	}
}

func contains(v any, sub string) bool {
	s, _ := v.(string)
	return strings.Contains(s, sub)
}
