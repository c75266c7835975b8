package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/vtcluster/vtcluster/cluster"
)

// The job's SSH connection holder (cluster/holder.go): the pre-tests hook
// starts it, detached, the job's runners reach their nodes through it, and
// the post-tests hook ends it. It also ends by itself when the job's
// avocado process is gone or no runner has used it for a while.

// holderStartTimeout bounds the wait for a started holder to answer.
const holderStartTimeout = 5 * time.Second

func holderCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:   "holder",
		Usage:  "hold one SSH connection per node for an Avocado job (started by pre-tests)",
		Hidden: true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "job-id", Required: true, Usage: "the Avocado job's unique `ID`"},
			&cli.StringFlag{Name: "owner", Usage: "the job's process, as `JSON` (exit when it is gone)"},
			&cli.DurationFlag{Name: "idle", Value: cluster.DefaultHolderIdle, Usage: "exit after this long with no runner connected"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			sock, err := cluster.HolderSocket(cmd.String("job-id"))
			if err != nil {
				return err
			}
			cfg := cluster.HolderConfig{Socket: sock, Idle: cmd.Duration("idle"),
				Logger: slog.New(slog.NewTextHandler(e.stderr, nil))}
			if s := cmd.String("owner"); s != "" {
				var o cluster.Owner
				if err := json.Unmarshal([]byte(s), &o); err != nil {
					return flagError("owner", "%v", err)
				}
				cfg.Owner = &o
			}
			ctx, stop := withSignals(ctx)
			defer stop()
			return cluster.ServeHolder(ctx, cfg, func() { cfg.Logger.Info("holder: listening", "socket", sock) })
		},
	}
}

// startHolder starts the job's holder, detached in its own session with
// its output in DIR/cluster/holder.log, waits until it answers and has
// connected to every tunnel-mode node, and returns. Its failure only costs
// speed: runners without a holder connect on their own.
func startHolder(ctx context.Context, jobID string, owner cluster.Owner, logdir string, nodes []cluster.Node) error {
	sock, err := cluster.HolderSocket(jobID)
	if err != nil {
		return err
	}
	if _, err := cluster.OpenHolder(ctx, sock); err == nil {
		return nil // a second pre-tests call for the same job
	}
	exe, err := executable()
	if err != nil {
		return err
	}
	ownerJSON, err := json.Marshal(owner)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(logdir, "cluster"), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(filepath.Join(logdir, "cluster", "holder.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.Command(exe, "hooks", "holder", "--job-id", jobID, "--owner", string(ownerJSON))
	cmd.Dir = "/"
	// Never the hook's own pipes: the shim waits for them to close.
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(holderStartTimeout)
	var h *cluster.Holder
	for {
		if h, err = cluster.OpenHolder(ctx, sock); err == nil {
			break
		}
		select {
		case <-exited:
			return fmt.Errorf("the SSH connection holder exited at start; see %s", out.Name())
		case <-ctx.Done():
			cmd.Process.Kill()
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			return fmt.Errorf("the SSH connection holder did not answer within %v; see %s", holderStartTimeout, out.Name())
		}
	}
	// The first test then finds its nodes connected.
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for i, n := range nodes {
		if n.AgentBind == cluster.AgentBindDirect {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = h.Warm(ctx, n)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// quitHolder ends the job's holder, if it runs.
func quitHolder(ctx context.Context, jobID string) {
	sock, err := cluster.HolderSocket(jobID)
	if err != nil {
		return
	}
	h, err := cluster.OpenHolder(ctx, sock)
	if err != nil {
		return
	}
	_ = h.Quit(ctx)
}
