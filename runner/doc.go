// Package runner implements Avocado's nrunner runner protocol for the
// "multihost" kind and the per-test lifecycle: partition, logs, resources,
// body, collection and teardown. The lifecycle is an ordered list of
// stages (lifecycle.go, testRun.stages); each has a setup and a teardown,
// and the teardowns of the stages that set up run in reverse order on
// every path, so a new concern is one more stage, not another defer.
//
// The vtcluster binary behaves as this runner when started as
// avocado-runner-multihost (Main). Avocado runs
//
//	avocado-runner-multihost task-run -i ID -j JOB -k multihost -u SPEC.json -c CONFIG \
//	    output_dir=DIR test=NAME -s STATUS_URI
//
// and learns everything from the status messages: started, running
// (heartbeats, stdout/stderr chunks, log lines) and exactly one finished.
//
// A Runnable names one test of a spec file (spec.go): uri is the spec file
// path, the keyword argument test is the test's name, and the identifier
// Avocado shows is "<file>:<name>". `vtcluster tests list --json` lists
// exactly these, for the Python shim's resolver.
//
// Files: args.go/usage.go (argparse-compatible command line), runnable.go
// (decoding -a/-c/KEY=VAL and recipes), message.go (messages on the
// wire; printed with py.Repr), status.go/report.go (delivery), spec.go
// and jsontree.go (test files, read through py's JSON tree), resources.go
// (a spec's volumes and tap ports), lifecycle.go (the Cluster seam and the
// per-test stages),
// body.go (the controller-side body process), app.go (Main), and the
// Cluster over package cluster split by concern: backend.go (open,
// allocate, hand-over, lease renewal, release), agentproxy.go (the body's
// per-test, secret-guarded proxy to each agent), backend_logs.go (log
// forwarding into the test), backend_exec.go (commands and collection),
// backend_watch.go (health checks) and backend_resources.go (resources
// through package resmgr). VMs (docs/vms.md): vms.go (a spec's "vms" and
// their per-node agent spec), vmsteps.go (wait_console, qmp, migrate
// steps), vmstage.go (start before the body, stop every VM of the
// partition before the resources go), vmdriver.go (MigrateVM, also used by
// `vtcluster vm migrate`) and backend_vms.go (agent calls).
//
// For whoever debugs a test: events.go (the per-test record of what
// happened when and where; other code records through EventsFrom(ctx)),
// record.go and timeline.go (events.json and the timeline page, written
// for every test), timing.go (the stage breakdown, timing.json: another
// view of the same record), bundle.go (what the nodes say when a test fails) and
// hold.go (multihost.hold_on_failure keeps a failed test's partition);
// docs/debugging-failures.md is the user's side.
//
// Synchronisation (docs/sync.md): sync.go is the test's hub (barriers,
// messages and, in sync_mutex.go, mutexes, whose waits fail at once when
// a peer is lost or finished),
// sync_wire.go its Unix-socket wire and client (`vtcluster sync`, the
// LAVA/Beaker aliases and the Python body use it), sync_stage.go the
// stage that serves it to the body and, through backend_sync.go, to the
// nodes, and records sync.json; sync_spec.go and sync_steps.go are the
// spec's barrier/send/wait/lock/background/together steps.
package runner
