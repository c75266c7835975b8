// Package runner implements Avocado's nrunner runner protocol for the
// "multihost" kind and the per-test lifecycle: partition, logs, body,
// collection and teardown.
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
// and jsontree.go (test files, read through py's JSON tree), lifecycle.go (the Cluster seam and the per-test sequence),
// body.go (the controller-side body process), app.go (Main), backend.go
// (the Cluster over package cluster).
package runner
