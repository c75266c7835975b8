package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/vtcluster/vtcluster/agent/pgroup"
	"github.com/vtcluster/vtcluster/cluster/etcdstore"
)

// BuildID names one `make build`: it is set (-X) to the same random value
// in bin/vtcluster and in the agent-only bin/vtcluster-agent built beside
// it, so the deployer knows the lean agent is this very tree. Empty in a
// plain `go build`, which then always deploys itself.
var BuildID = ""

// LeanAgentName is the agent-only build (tag vtcluster_noetcd) that
// `make build` puts beside vtcluster: without the etcd client, whose
// package initialisation would grow every agent's memory.
const LeanAgentName = "vtcluster-agent"

// leanProbeTimeout bounds running the lean binary to ask its build.
const leanProbeTimeout = 5 * time.Second

// buildInfo is what the hidden build-info command prints.
type buildInfo struct {
	Version string `json:"version"`
	BuildID string `json:"build_id"`
	Etcd    bool   `json:"etcd"` // whether this build has the etcd client
}

func thisBuild() buildInfo {
	return buildInfo{Version: Version, BuildID: BuildID, Etcd: etcdstore.Linked}
}

// buildInfoCommand prints the build's identity as JSON, for the deployer
// choosing between a binary and its agent-only twin.
func buildInfoCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:   "build-info",
		Usage:  "print this binary's version, build id and whether it has the etcd client, as JSON",
		Hidden: true,
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if err := noArgs(cmd); err != nil {
				return err
			}
			return json.NewEncoder(e.stdout).Encode(thisBuild())
		},
	}
}

// chooseAgentBinary picks what to deploy as the agent when no
// --agent-binary is given: the agent-only build beside exe when it is the
// same build (same version and build id, asked from the binary itself),
// otherwise exe. why says which and why, for the user.
func chooseAgentBinary(ctx context.Context, exe string) (path, why string) {
	lean := filepath.Join(filepath.Dir(exe), LeanAgentName)
	if filepath.Base(exe) == LeanAgentName {
		return exe, "this binary is the agent-only build"
	}
	if BuildID == "" {
		return exe, "this binary has no build id (built without make), so it cannot tell whether " + lean + " is the same build"
	}
	fi, err := os.Stat(lean)
	if err != nil || !fi.Mode().IsRegular() {
		return exe, "no agent-only build beside it (" + lean + ")"
	}
	got, err := probeBuild(ctx, lean)
	if err != nil {
		return exe, fmt.Sprintf("%s does not say its build: %v", lean, err)
	}
	if got.Version != Version || got.BuildID != BuildID {
		return exe, fmt.Sprintf("%s is another build (version %s, build id %s; this one %s, %s)", lean, got.Version, got.BuildID, Version, BuildID)
	}
	return lean, "the agent-only build of this vtcluster (build id " + BuildID + ")"
}

// probeBuild runs bin build-info, bounded in time and output.
func probeBuild(ctx context.Context, bin string) (buildInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, leanProbeTimeout)
	defer cancel()
	var out bytes.Buffer
	res, err := pgroup.Run(ctx, []string{bin, "build-info"}, pgroup.Options{
		Path:   bin,
		Stdout: &limitedWriter{w: &out, n: 4096},
		// Nothing of ours (credentials) to a binary we only ask.
		Env:       []string{},
		WaitDelay: time.Second,
	})
	switch {
	case err != nil:
		return buildInfo{}, err
	case res.Err != nil:
		return buildInfo{}, res.Err
	case res.Stopped != nil:
		return buildInfo{}, fmt.Errorf("build-info: %w", res.Stopped)
	case res.ExitCode != 0:
		return buildInfo{}, fmt.Errorf("build-info: exit status %d", res.ExitCode)
	}
	var bi buildInfo
	if err := json.Unmarshal(out.Bytes(), &bi); err != nil {
		return buildInfo{}, fmt.Errorf("build-info: %w", err)
	}
	return bi, nil
}

// limitedWriter keeps the first n bytes and drops the rest.
type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if k := min(len(p), l.n); k > 0 {
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}
