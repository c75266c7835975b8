//go:build !linux

package pgroup

// Supervising a group needs Linux interfaces (waitid without reaping,
// /proc, the parent-death signal). Elsewhere the package builds and
// refuses to start anything rather than leak or misreport it.

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"syscall"
	"time"
)

var errUnsupported = fmt.Errorf("process groups are supervised on Linux only, not %s: %w", runtime.GOOS, errors.ErrUnsupported)

// Group is one started command and its process group.
type Group struct{}

// Start fails: see errUnsupported.
func Start(argv []string, o Options) (*Group, error) { return nil, errUnsupported }

// Run fails: see errUnsupported.
func Run(ctx context.Context, argv []string, o Options) (Result, error) {
	return Result{}, errUnsupported
}

func (g *Group) Pid() int                                       { return 0 }
func (g *Group) Ident() Ident                                   { return Ident{} }
func (g *Group) Started() time.Time                             { return time.Time{} }
func (g *Group) Done() <-chan struct{}                          { return nil }
func (g *Group) Signal(sig syscall.Signal) (bool, error)        { return false, errUnsupported }
func (g *Group) Wait(ctx context.Context) Result                { return Result{Err: errUnsupported} }
func LiveMembers(pgid int) ([]int, error)                       { return nil, errUnsupported }
func StopLeftover(id Ident, grace time.Duration) ([]int, error) { return nil, errUnsupported }

// Stat is what /proc/PID/stat says of a process.
type Stat struct {
	State     byte
	Ppid      int
	Pgrp      int
	StartTick uint64
}

func ReadStat(pid int) (Stat, error) { return Stat{}, errUnsupported }
func BootID() string                 { return "" }
func Self() Ident                    { return Ident{} }
func Alive(id Ident) bool            { return false }
