// Package xmlrpc is the wire of the agent: the XML-RPC codec and
// avocado-vt's fault convention.
//
// It mirrors CPython's xmlrpc.client byte for byte on the way out and
// accepts what Python's unmarshaller accepts on the way in, so that our
// controller drives avocado-vt's Python agent and avocado-vt's controller
// drives ours. Both sides import it: the daemon (package agent) to serve
// calls, the controller (package cluster) to make them, without the
// controller importing the daemon.
//
// encode.go writes calls and responses, decode.go reads them within the
// limits a server sets (CallLimits), and fault.go holds Fault, the
// exception a method raises, as avocado-vt's JSON fault string.
//
// Why a codec of our own: kolo/xmlrpc is client-only and marshals nil as
// an empty string, which Python reads as ” instead of None.
package xmlrpc
