package runner

// Live migration of a VM between two nodes, driven from the controller:
// the one implementation behind the spec's migrate step, MultiHostTest's
// migrate helper and `vtcluster vm migrate` (bridge).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vtcluster/vtcluster/agent/vm"
	"github.com/vtcluster/vtcluster/agent/xmlrpc"
)

// VMNode is one end of a migration: the node's tag (or name, outside a
// test), name, address as the other node reaches it, and how to call its
// agent.
type VMNode struct {
	Tag, Name, Address string
	Call               func(ctx context.Context, method string, args ...any) (any, error)
}

func (n VMNode) String() string {
	if n.Tag == "" || n.Tag == n.Name {
		return n.Name
	}
	return fmt.Sprintf("%s (%s)", n.Tag, n.Name)
}

// MigrateRequest is one migration.
type MigrateRequest struct {
	VM       string
	From, To VMNode
	// DestSpec is the VM as the destination runs it: the same devices,
	// with the destination's tap names. Its Incoming is set here.
	DestSpec vm.Spec
	Options  vm.MigrateOptions
	// Port, when set, replaces the destination's listening port in the
	// URI (a test of a migration that cannot connect).
	Port int
	// Logf gets the lifecycle lines; nil discards.
	Logf func(format string, args ...any)
}

// MigrateResult is a migration's outcome with QMP's figures.
type MigrateResult struct {
	VM       string `json:"vm"`
	From     string `json:"from"`
	To       string `json:"to"`
	FromNode string `json:"from_node"`
	ToNode   string `json:"to_node"`
	URI      string `json:"uri"`
	vm.Migration
}

// MigrationError is a migration that did not end with the destination
// running and the source paused; it names the VM, both nodes and QMP's
// error.
type MigrationError struct {
	VM       string
	From, To string
	Reason   string
}

func (e *MigrationError) Error() string {
	return fmt.Sprintf("vm %s: migration from %s to %s failed: %s", e.VM, e.From, e.To, e.Reason)
}

// destRunningTimeout bounds the wait for the destination to leave
// inmigrate once the source says completed.
const destRunningTimeout = 30 * time.Second

// MigrateVM starts the destination listening, migrates, checks that the
// destination runs and the source is paused (postmigrate), and stops the
// source (it stays listed, stopped, so its console can be collected). On
// failure both QEMUs are left for the caller's teardown, which stops
// every VM of the test.
func MigrateVM(ctx context.Context, req MigrateRequest) (MigrateResult, error) {
	logf := req.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	res := MigrateResult{VM: req.VM, From: req.From.Tag, To: req.To.Tag, FromNode: req.From.Name, ToNode: req.To.Name}
	fail := func(format string, args ...any) (MigrateResult, error) {
		return res, &MigrationError{VM: req.VM, From: req.From.String(), To: req.To.String(), Reason: fmt.Sprintf(format, args...)}
	}
	spec := req.DestSpec
	spec.Incoming = "tcp:0.0.0.0:0"
	raw, _ := json.Marshal(spec)
	v, err := req.To.Call(ctx, "vm.start", string(raw))
	if err != nil {
		return fail("starting the destination: %s", faultText(err))
	}
	started, err := vm.Decode[vm.Started](v)
	if err != nil {
		return fail("%v", err)
	}
	logf("vm %s: destination started on %s, pid %d, listening on %s", req.VM, req.To, started.Pid, started.Incoming)
	port := started.Incoming[strings.LastIndexByte(started.Incoming, ':')+1:]
	if req.Port != 0 {
		port = fmt.Sprint(req.Port)
	}
	host := req.To.Address
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	res.URI = "tcp:" + host + ":" + port
	opts, _ := json.Marshal(req.Options)
	logf("vm %s: migrating from %s to %s over %s", req.VM, req.From, req.To, res.URI)
	v, err = req.From.Call(ctx, "vm.migrate", req.VM, res.URI, string(opts))
	if err != nil {
		return fail("%s", faultText(err))
	}
	if res.Migration, err = vm.Decode[vm.Migration](v); err != nil {
		return fail("%v", err)
	}
	if res.Status != "completed" {
		return fail("QMP reports %s: %s", res.Status, res.Error)
	}
	logf("vm %s: migration completed: total %d ms, downtime %d ms, %d bytes", req.VM, res.TotalTimeMs, res.DowntimeMs, res.Transferred)

	// The source saying completed is not enough: a destination that
	// rejects the stream exits while the source reports completed.
	deadline := time.Now().Add(destRunningTimeout)
	for {
		st, err := vmStatus(ctx, req.To, req.VM)
		switch {
		case err != nil:
			return fail("destination status: %v", err)
		case st.Status == "running":
		case st.Status == "exited":
			return fail("the destination QEMU exited (status %d): %s", st.ExitCode, strings.TrimSpace(st.Stderr))
		case time.Now().After(deadline):
			return fail("the destination is %s, not running, %s after the migration completed", st.Status, destRunningTimeout)
		default:
			select {
			case <-ctx.Done():
				return fail("%v", context.Cause(ctx))
			case <-time.After(20 * time.Millisecond):
			}
			continue
		}
		break
	}
	st, err := vmStatus(ctx, req.From, req.VM)
	if err != nil {
		return fail("source status: %v", err)
	}
	if st.Status != "postmigrate" {
		return fail("the source is %s after the migration, not postmigrate (paused)", st.Status)
	}
	logf("vm %s: destination on %s is running, source on %s is paused (postmigrate)", req.VM, req.To, req.From)
	if _, err := req.From.Call(ctx, "vm.stop", req.VM, 0); err != nil {
		return fail("stopping the source: %s", faultText(err))
	}
	logf("vm %s: source on %s stopped", req.VM, req.From)
	return res, nil
}

func vmStatus(ctx context.Context, n VMNode, name string) (vm.Status, error) {
	v, err := n.Call(ctx, "vm.status", name)
	if err != nil {
		return vm.Status{}, errors.New(faultText(err))
	}
	return vm.Decode[vm.Status](v)
}

// faultText is an agent fault as Python shows it ("Type: message"),
// other errors as they are.
func faultText(err error) string {
	var f *xmlrpc.Fault
	if errors.As(err, &f) {
		return f.ExcType + ": " + f.ExcValue
	}
	return err.Error()
}
