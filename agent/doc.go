// Package agent is the node daemon of vtcluster and its XML-RPC wire.
//
// The agent speaks XML-RPC exactly as Python's xmlrpc module does, so that
// avocado-vt's Python controller can drive it and our controller can drive
// avocado-vt's Python agent. It knows nothing of clusters or resources:
// other domains register services through the Service interface, and the
// bridge package assembles the daemon.
//
// Commands on the node run under agent/pgroup, the one process-group
// supervisor (also used by the runner's test bodies and by resource
// backings): svc_process.go is the process service, proc.go launches and
// supervises through pgroup, and proc_record.go keeps the on-node record
// with which a new agent stops what a dead one left.
package agent
