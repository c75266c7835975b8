package runner

import (
	"fmt"
	"strings"

	"github.com/vtcluster/vtcluster/cluster"
	"github.com/vtcluster/vtcluster/cluster/etcdstore"
)

// The names of the body's environment that only the runner sets; the ones
// the CLI reads too are in cluster/paths.go and etcdstore.
const (
	envNodes      = "VTCLUSTER_NODES"
	envOutputDir  = "VTCLUSTER_OUTPUT_DIR"
	envTestName   = "VTCLUSTER_TEST_NAME"
	envSpecFile   = "VTCLUSTER_SPEC_FILE"
	envBinary     = "VTCLUSTER_BIN"
	envNodePrefix = "VTCLUSTER_NODE_"
	envResPrefix  = "VTCLUSTER_RESOURCE_"
	envAvocadoOut = "AVOCADO_TEST_OUTPUTDIR"
	envAvocadoWD  = "AVOCADO_TEST_WORKDIR"
)

// envVar is one entry of the body's environment: Name, or a pattern with
// <TAG>/<NAME> for one variable per node or resource.
type envVar struct {
	Name string
	// Prefix, for a pattern, is what every variable of it starts with
	// (mergeEnv drops inherited ones, so a body never sees another
	// test's nodes).
	Prefix string
	Doc    string
}

// bodyEnv is the one table of what a test body (a spec's command, a
// MultiHostTest's child) finds in its environment besides what it
// inherits, and the keyword arguments of the test. writePartition sets
// these and nothing else of ours; docs/test-environment.md is written from
// this table (TestBodyEnv_docs keeps the two the same).
var bodyEnv = []envVar{
	{Name: cluster.EnvPartitionFile, Doc: "path of `partition.json` (0600): each tag's name, address, `agent_url` (with the test's proxy secret), properties, and `resources`"},
	{Name: cluster.EnvPartitionID, Doc: "the partition's id; commands the body starts on nodes carry it as their owner, so the next test's hand-over stops what outlives this one"},
	{Name: envNodes, Doc: "the partition's tags, separated by spaces"},
	{Name: envNodePrefix + "<TAG>_NAME", Prefix: envNodePrefix, Doc: "the registered node name behind a tag (tag upper-cased, other characters than A–Z and 0–9 as `_`)"},
	{Name: envNodePrefix + "<TAG>_ADDRESS", Prefix: envNodePrefix, Doc: "the node's address"},
	{Name: envNodePrefix + "<TAG>_URL", Prefix: envNodePrefix, Doc: "the agent's URL for this test, through its per-test proxy (carries the proxy's secret)"},
	{Name: envResPrefix + "<NAME>_<TAG>", Prefix: envResPrefix, Doc: "a declared resource on a tag: a volume's path or a tap port's interface name"},
	{Name: envOutputDir, Doc: "the test's output directory (what Avocado calls the test's outputdir)"},
	{Name: envAvocadoOut, Doc: "the same, under the name Avocado's exec-test uses"},
	{Name: envAvocadoWD, Doc: "the test's scratch directory, removed afterwards unless `run.keep_tmp`"},
	{Name: envTestName, Doc: "the test's name in its spec file or class"},
	{Name: envSpecFile, Doc: "the spec file (or Python file) the test comes from"},
	{Name: etcdstore.EnvState, Doc: "the state store the runner uses (`multihost.state`), when set"},
	{Name: cluster.EnvStateDir, Doc: "the state directory (`multihost.state_dir`), when set"},
	{Name: cluster.EnvCluster, Doc: "the cluster name (`multihost.cluster`), when set"},
	{Name: envBinary, Doc: "the vtcluster binary the body should call (`multihost.binary`)"},
}

// bodyEnvName reports whether name is one of bodyEnv's (a pattern's
// variables included).
func bodyEnvName(name string) bool {
	for _, v := range bodyEnv {
		if name == v.Name || (v.Prefix != "" && strings.HasPrefix(name, v.Prefix)) {
			return true
		}
	}
	return false
}

// bodyEnvMarkdown renders bodyEnv for docs/test-environment.md.
func bodyEnvMarkdown() string {
	var b strings.Builder
	b.WriteString("# The environment of a test body\n\n")
	b.WriteString("What the runner sets for a spec's `command` and a `MultiHostTest`'s child, besides the\n")
	b.WriteString("environment it inherits and the test's keyword arguments (as Avocado's exec-test does).\n")
	b.WriteString("Inherited variables that start with `VTCLUSTER_NODE_`, `VTCLUSTER_PARTITION_` or\n")
	b.WriteString("`VTCLUSTER_RESOURCE_` are dropped, so a body never sees another test's nodes.\n\n")
	b.WriteString("Generated from `runner/bodyenv.go`; `go test ./runner -run TestBodyEnv_docs -update` rewrites it.\n\n")
	b.WriteString("| variable | what it holds |\n|---|---|\n")
	for _, v := range bodyEnv {
		fmt.Fprintf(&b, "| `%s` | %s |\n", v.Name, v.Doc)
	}
	return b.String()
}
