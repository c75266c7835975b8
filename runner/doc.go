// Package runner implements Avocado's nrunner runner protocol for the
// "multihost" kind and the per-test lifecycle: partition, logs, body,
// collection and teardown.
package runner
