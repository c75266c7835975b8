// Package logserver is the controller's central log: it reads every agent's
// log records as agent/logframe frames, tags each with its node and writes
// avocado-vt's unified line to the log file, one file per node and a sink
// the runner hands on to the test's logs.
//
// Start with Server (New, Start or ServeConn, Close) and Config
// (DefaultConfig); UnifiedLine and LogSafe are the one way a record
// becomes a line, shared with the runner's test log.
//
// It uses nothing else of package cluster, so the runner, the CLI's
// `logs serve` and the tests take it alone.
package logserver
