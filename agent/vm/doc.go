// Package vm is the agent's "vm" service: QEMU guests on the node, started
// from a declarative Spec (never a shell string), supervised through the
// agent's process service (agent.ProcessService.StartSupervised), so that
// each QEMU carries its owner (the partition), is stopped by a hand-over
// (process.stop_others), dies with the agent and is named in the agent's
// process record.
//
// Start with Spec (spec.go: the description and the QEMU command line it
// becomes), then Service (service.go: the XML-RPC methods), qmp.go (the
// QMP client on the VM's Unix socket) and migrate.go (live migration and
// its figures). wire.go holds the typed replies the controller decodes.
//
// Each VM has a directory <data>/vm/<name>/ (mode 0700, as is <data>/vm):
// the QMP socket, the serial console file and the QMP event log. Only the
// agent's user can reach them; nothing there is ever opened through a
// symlink, and the directory goes when the VM is removed.
//
// The service imports agent, agent/xmlrpc and agent/pgroup only; it is
// registered in bridge/cmd_agent.go. docs/vms.md is the user's side.
package vm
