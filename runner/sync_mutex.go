package runner

// Mutexes of the sync hub (sync.go): held by a tag until it unlocks, so a
// section can span several steps or processes of that tag.

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/vtcluster/vtcluster/agent/py"
)

// Lock takes mutex name for tag, waiting while another tag holds it. A
// tag holds a mutex until it unlocks it; if the holder is lost or
// finishes meanwhile, the waiters fail at once naming it, rather than
// waiting for an unlock that cannot come.
func (h *syncHub) Lock(ctx context.Context, tag, name string, timeout time.Duration) error {
	if err := checkName("mutex", name); err != nil {
		return err
	}
	start := h.now()
	h.mu.Lock()
	mx := h.mutexes[name]
	if mx == nil {
		if len(h.mutexes) >= maxSyncKeys {
			h.mu.Unlock()
			return syncErrorf("mutex %s: the test already has %d mutexes", py.Repr(name), maxSyncKeys)
		}
		mx = &syncMutex{}
		h.mutexes[name] = mx
	}
	if mx.holder == tag {
		h.mu.Unlock()
		return syncErrorf("mutex %s: tag %s holds it already", py.Repr(name), py.Repr(tag))
	}
	h.record(tag, "lock", name, "", 0)
	h.mu.Unlock()
	what := fmt.Sprintf("mutex %s", py.Repr(name))
	err := h.waitUntil(ctx, timeout, what, func() (bool, error) {
		if mx.holder == "" {
			mx.holder, mx.since = tag, h.now()
			return true, nil
		}
		if why := h.member(mx.holder).gone(); why != "" {
			return false, syncErrorf("%s: its holder %s", what, strings.Replace(why, "without reaching it", "without unlocking it", 1))
		}
		return false, nil
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		h.record(tag, "fail", name, err.Error(), h.now().Sub(start))
		return err
	}
	h.record(tag, "locked", name, "", h.now().Sub(start))
	return nil
}

// Unlock frees mutex name, which tag must hold.
func (h *syncHub) Unlock(tag, name string) error {
	if err := checkName("mutex", name); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	mx := h.mutexes[name]
	switch {
	case mx == nil || mx.holder == "":
		return syncErrorf("mutex %s is not locked", py.Repr(name))
	case mx.holder != tag:
		return syncErrorf("mutex %s is held by tag %s, not %s", py.Repr(name), py.Repr(mx.holder), py.Repr(tag))
	}
	held := h.now().Sub(mx.since)
	mx.holder = ""
	h.record(tag, "unlock", name, fmt.Sprintf("held %.3f s", held.Seconds()), 0)
	h.notify()
	return nil
}
