package node

import (
	"context"
	"sync"
)

// keyedLocks are the service's per-name locks: one per pool ("pool/ID")
// and one per backing ("backing/ID"). An operation that waits on a slow
// command (a hung NFS mount, a long copy) holds only the locks of what it
// works on, so every other pool and backing of the node stays usable; a
// waiter gives up when its call's context ends.
type keyedLocks struct {
	mu sync.Mutex
	m  map[string]*keyedLock
}

type keyedLock struct {
	ch    chan struct{} // holds one token while locked
	users int           // holders and waiters; the entry goes at zero
}

// lock takes key's lock, or fails when ctx ends first.
func (k *keyedLocks) lock(ctx context.Context, key string) (unlock func(), err error) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedLock{}
	}
	l := k.m[key]
	if l == nil {
		l = &keyedLock{ch: make(chan struct{}, 1)}
		k.m[key] = l
	}
	l.users++
	k.mu.Unlock()
	drop := func() {
		k.mu.Lock()
		if l.users--; l.users == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
	select {
	case l.ch <- struct{}{}:
	case <-ctx.Done():
		drop()
		return nil, &BusyError{What: key, Err: context.Cause(ctx)}
	}
	return func() { <-l.ch; drop() }, nil
}

// lockAll takes several keys' locks in sorted order (so two callers
// never wait on each other crosswise); keys must be sorted and distinct.
func (k *keyedLocks) lockAll(ctx context.Context, keys ...string) (unlock func(), err error) {
	var held []func()
	release := func() {
		for i := len(held) - 1; i >= 0; i-- {
			held[i]()
		}
	}
	for _, key := range keys {
		u, err := k.lock(ctx, key)
		if err != nil {
			release()
			return nil, err
		}
		held = append(held, u)
	}
	return release, nil
}
