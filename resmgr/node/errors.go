//lint:file-ignore ST1005 these errors reach users as upstream worded them (callers and tests compare the texts)

package node

import (
	"errors"
	"fmt"
)

// ErrPoolInUse is destroy_pool_connection's refusal of a pool that still
// has backings on this node (upstream closed it anyway).
var ErrPoolInUse = errors.New("The pool is still in use")

// BusyError is an operation that could not take the lock of what it
// works on before its call ended: another operation on the same pool or
// backing (a slow mount, a long copy) still runs.
type BusyError struct {
	What string
	Err  error
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("%s is busy with another operation (%v); try again when it is done", e.What, e.Err)
}

func (e *BusyError) Unwrap() error { return e.Err }

// RefusedError is an operation the node will not do because it could be
// turned against the node or another resource: a symlink in a pool, a
// file or interface that is not this backing's, a pool directory others
// may write.
type RefusedError struct{ Msg string }

func (e *RefusedError) Error() string { return e.Msg + ": refused" }

func refusedf(format string, a ...any) error { return &RefusedError{Msg: fmt.Sprintf(format, a...)} }

// DisabledError answers every call of a service whose record could not
// be read: the rest of the agent runs on.
type DisabledError struct {
	File string
	Err  error
}

func (e *DisabledError) Error() string {
	return fmt.Sprintf("the resource service is disabled: %s: %v; move the file away and restart the agent to start empty (the volumes and taps it lists are then not cleaned up)", e.File, e.Err)
}

func (e *DisabledError) Unwrap() error { return e.Err }

// NoRoomError is a volume larger than its pool's free space.
type NoRoomError struct {
	Path              string
	Size, Free, Total int64
}

func (e *NoRoomError) Error() string {
	return fmt.Sprintf("%s needs %s but its pool has %s free (of %s); choose a smaller image_size or another pool, free space, or set overcommit on the pool to allocate sparse volumes beyond it", e.Path, HumanSize(e.Size), HumanSize(e.Free), HumanSize(e.Total))
}

// HumanSize writes bytes for a message: 20.0 GiB (21474836480 bytes).
func HumanSize(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%s (%d bytes)", ShortSize(n), n)
}

// ShortSize writes bytes for a table: in the largest binary unit that
// keeps the number at 1 or more, one decimal (20.0 GiB, 512 B).
func ShortSize(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	f, i := float64(n), 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}
