// Package agent is the node daemon of vtcluster.
//
// The agent speaks XML-RPC exactly as Python's xmlrpc module does, so that
// avocado-vt's Python controller can drive it and our controller can drive
// avocado-vt's Python agent. It knows nothing of clusters or resources:
// other domains register services through the Service interface, and the
// bridge package assembles the daemon. What both ends of the wire share is
// in leaf subpackages the controller imports without this one:
// agent/xmlrpc (the codec and Fault), agent/logframe (log records and
// their frames), agent/py (Python's values, repr and json.dumps) and
// agent/pgroup (process groups).
//
// Where to start reading:
//
//   - Run and DaemonConfig (daemon.go): the daemon's life, from the data
//     dir to the pid file, signals and shutdown; DaemonConfig.Services
//     builds the services from the Daemon it is handed.
//   - Server and Config (server.go): the XML-RPC endpoint: credentials,
//     limits, dispatch to a Registry of Methods, graceful Shutdown, Close.
//   - Service, Method and Args (service.go): what a service is; Args
//     reads positional parameters and raises Python's TypeErrors.
//   - DataDir (datadir.go): the agent's directory, its logs and the
//     rotating agent.log.
//   - LogStreamer (logstream.go): service.log and the forwarding of every
//     service record to the controller's log server.
//   - The services: core (svc_core.go: is_alive, log redirection, job
//     and suite data, quit; also under upstream's agent.services.core),
//     host (svc_host.go), examples (svc_examples.go), process
//     (svc_process.go) and owner (svc_owner.go: the one test that holds
//     the node, under a lease its controller renews; a hand-over to
//     another owner is refused while it runs).
//
// Files: guard.go (the token throttle and refusal logging), listener.go
// (TCP or a private Unix socket; peer identity, the uid of a Unix-socket
// peer or of a local TCP peer's socket, in peercred_*.go),
// host_*.go (uname's machine field for the host service).
//
// Commands on the node run under agent/pgroup, the one process-group
// supervisor (also used by the runner's test bodies and by resource
// backings): svc_process.go is the process service, proc.go launches and
// supervises through pgroup, and proc_record.go keeps the on-node record
// with which a new agent stops what a dead one left.
package agent
