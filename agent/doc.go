// Package agent is the node daemon of vtcluster and its XML-RPC wire.
//
// The agent speaks XML-RPC exactly as Python's xmlrpc module does, so that
// avocado-vt's Python controller can drive it and our controller can drive
// avocado-vt's Python agent. It knows nothing of clusters or resources:
// other domains register services through the Service interface, and the
// bridge package assembles the daemon.
package agent
