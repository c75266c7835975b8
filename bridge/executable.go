package bridge

import "os"

// executable is the vtcluster binary that vtcluster starts again (the
// job's connection holder, a detached agent), deploys, links (the sync
// aliases) or names (printed commands, the runner's VTCLUSTER_BIN). It is
// os.Executable, but a variable: in bridge's own tests the running binary
// is bridge.test, and bridge.test started as "vtcluster hooks holder" runs
// the whole test suite, detached, in its own session, and is killed with
// the agents it started left behind. TestMain (main_test.go) points it at
// the built vtcluster.
var executable = os.Executable
