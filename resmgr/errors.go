//lint:file-ignore ST1005 these errors reach users as upstream worded them (callers and tests compare the texts)

package resmgr

import (
	"errors"
	"fmt"
	"strings"

	"github.com/vtcluster/vtcluster/cluster"
	"github.com/vtcluster/vtcluster/resmgr/node"
)

// Errors with upstream's texts where they are sensible.
var (
	// ErrPoolBusy: a pool still attached to nodes cannot be destroyed.
	ErrPoolBusy = errors.New("The pool is still in use")
	// ErrPoolNotAvailable: no pool meets a resource's request.
	ErrPoolNotAvailable = errors.New("Cannot find available pools")
	// ErrAllocated and ErrBound: destroy refused.
	ErrAllocated = errors.New("Cannot destroy an allocated resource object")
	ErrBound     = errors.New("Cannot destroy a bound resource object")
)

// NotFoundError is an unknown pool or resource id (upstream raised
// AttributeError on None).
type NotFoundError struct {
	Kind, ID string
}

func (e *NotFoundError) Error() string { return fmt.Sprintf("no %s %q", e.Kind, e.ID) }

// UnknownPoolTypeError is upstream's UnknownPoolType.
type UnknownPoolTypeError struct{ Type string }

func (e *UnknownPoolTypeError) Error() string { return "Unknown pool type " + e.Type }

// UnsupportedCommandError is upstream's "Unsupported command X for a Y
// resource".
type UnsupportedCommandError struct{ Command, Type string }

func (e *UnsupportedCommandError) Error() string {
	return fmt.Sprintf("Unsupported command %s for a %s resource", e.Command, e.Type)
}

// NodeError is a failure reported by a node's resource service.
type NodeError struct {
	Node, Method string
	Msg          string
}

func (e *NodeError) Error() string {
	return fmt.Sprintf("node %s: resource.%s: %s", e.Node, e.Method, e.Msg)
}

// RefusedError is a request the manager will not carry out because it
// would hurt another resource or the node (two resources on one file).
type RefusedError struct{ Msg string }

func (e *RefusedError) Error() string { return e.Msg }

// NotConnectedError is a pool that is not attached to a node that needs
// it, and could not be attached there (Err says why).
type NotConnectedError struct {
	Pool, Node string
	Err        error
}

func (e *NotConnectedError) Error() string {
	return fmt.Sprintf("pool %s is not connected on node %s and attaching it failed: %v; fix that, then attach it with: vtcluster pool attach %s", e.Pool, e.Node, e.Err, e.Pool)
}

func (e *NotConnectedError) Unwrap() error { return e.Err }

// Error is what the package's public methods return: the cause, with
// the package's prefix added once; errors.As and errors.Is see through it
// to the typed cause.
type Error struct{ Err error }

func (e *Error) Error() string { return "resmgr: " + e.Err.Error() }

func (e *Error) Unwrap() error { return e.Err }

// UnknownResourceTypeError is a resource type that is neither volume nor
// port (a typo, mostly).
type UnknownResourceTypeError struct{ Type string }

func (e *UnknownResourceTypeError) Error() string {
	return fmt.Sprintf("unknown resource type %q (known: %s)", e.Type, strings.Join(resourceTypes, ", "))
}

// NoPoolError is upstream's "Cannot find available pools", saying what
// was asked and why each pool did not fit. errors.Is(err,
// ErrPoolNotAvailable) holds.
type NoPoolError struct {
	Type       string
	Selectors  []cluster.Selector
	Nodes      []string
	Considered []string
}

func (e *NoPoolError) Error() string {
	msg := fmt.Sprintf("%s for a %s", ErrPoolNotAvailable, e.Type)
	if len(e.Selectors) > 0 {
		var sels []string
		for _, s := range e.Selectors {
			sels = append(sels, fmt.Sprintf("%s %s %v", s.Key, s.Operator, s.Values))
		}
		msg += " with selectors [" + strings.Join(sels, "; ") + "]"
	}
	if len(e.Nodes) > 0 {
		msg += " reachable from " + strings.Join(e.Nodes, ", ")
	}
	if len(e.Considered) == 0 {
		return msg + ": there are no pools; define them in the cluster config's pools section or with vtcluster pool create"
	}
	return msg + "; pools considered: " + strings.Join(e.Considered, "; ")
}

func (e *NoPoolError) Is(target error) bool { return target == ErrPoolNotAvailable }

// CapacityError is a volume larger than its pool's free space.
type CapacityError struct {
	Resource, Pool, Node string
	Size, Free, Total    int64
}

func (e *CapacityError) Error() string {
	return fmt.Sprintf("resource %s needs %s but pool %s has %s free (of %s, on %s); choose a smaller image_size or another pool, free space, or set overcommit on the pool to allow sparse volumes beyond it",
		e.Resource, node.HumanSize(e.Size), e.Pool, node.HumanSize(e.Free), node.HumanSize(e.Total), e.Node)
}
