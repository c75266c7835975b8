package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vtcluster/vtcluster/internal/atomicfile"
)

// Banner starts the line an agent prints once it serves, followed by its
// pid: upstream's controllers wait for "Agent daemon starting with PID".
const Banner = "Agent daemon starting with PID"

// ErrStoppedAtOnce is Run's error when a second signal cut the graceful
// shutdown short.
var ErrStoppedAtOnce = errors.New("stopped at once on a second signal")

// DaemonConfig is what Run needs to be the node daemon.
type DaemonConfig struct {
	// DataDir is the agent's data directory (OpenDataDir).
	DataDir string
	// Server configures the XML-RPC server; Run sets its Logger.
	Server Config
	// PidFile, written once the address is held and removed on exit while
	// it still holds our pid.
	PidFile string
	// Version is logged at start.
	Version string
	// Stderr gets Info and up of the agent's log (agent.log gets Debug and
	// up); Stdout gets the banner line.
	Stdout, Stderr io.Writer
	// Ready, if not nil, also gets the banner line and is then closed: a
	// detaching parent waits on it.
	Ready io.WriteCloser
	// Services builds the services once the data dir and the logs exist,
	// and registers them on srv. Closers passed to d.CloseOnStop are closed
	// at exit, last first, before the pid file goes.
	Services func(d *Daemon, srv *Server) error
}

// Daemon is what Run hands to DaemonConfig.Services: the running daemon's
// data dir and logs, and the way for a service to stop it.
type Daemon struct {
	Data   *DataDir
	Logs   *LogStreamer
	Logger *slog.Logger // the agent's own log

	quit    func()
	closers []io.Closer
}

// ServiceLogger is the logger of service name: its records go to
// service.log and to the controller's log server as avocado.service.<name>.
func (d *Daemon) ServiceLogger(name string) *slog.Logger {
	return slog.New(d.Logs.Handler("avocado.service." + name))
}

// Quit starts a graceful shutdown, as a signal does (core.quit).
func (d *Daemon) Quit() { d.quit() }

// CloseOnStop has c closed when the daemon stops, whatever the reason.
func (d *Daemon) CloseOnStop(c io.Closer) { d.closers = append(d.closers, c) }

func (d *Daemon) closeAll() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		_ = d.closers[i].Close()
	}
	d.closers = nil
}

// Run is the node daemon: it opens the data dir and the logs, builds and
// registers the services, binds, writes the pid file, prints the banner
// and serves until ctx ends, a SIGTERM, SIGINT or SIGHUP arrives, or a
// service calls Quit. Calls in flight then get cfg.Server.ShutdownTimeout;
// a second signal cuts that short (ErrStoppedAtOnce). The services are
// closed before the pid file goes, so that a controller that sees it gone
// finds the node quiet.
func Run(ctx context.Context, cfg DaemonConfig) (err error) {
	// The agent keeps Go's GOGC (100; the environment may set another).
	// Its live heap is about 1 MB, so the collector's 4 MB minimum goal
	// decides; GOGC=50 halves that goal and under 16 clients cost about
	// 15% more CPU per call and 20% fewer calls/s for 1 MiB less RSS
	// (docs/performance.md).
	started := time.Now()
	pid := os.Getpid()
	ready := cfg.Ready
	defer func() {
		if ready != nil {
			ready.Close()
		}
	}()

	dd, err := OpenDataDir(cfg.DataDir, started, nil)
	if err != nil {
		return err
	}
	defer dd.Close()
	logger, logFile, err := openDaemonLog(dd.AgentLog(), cfg.Stderr)
	if err != nil {
		return err
	}
	// Closed last, after every other deferred log line: it writes what is
	// still buffered (groupWriter).
	defer logFile.Close()
	dd.onFlushLogs(logFile.Flush)
	defer func() {
		if err != nil {
			logger.Error("agent: stopped with an error", "err", err)
		}
	}()
	where := cfg.Server.Addr
	if cfg.Server.SocketPath != "" {
		where = cfg.Server.SocketPath
	}
	logger.Info("agent: starting", "pid", pid, "addr", where, "data_dir", dd.Path(), "version", cfg.Version)

	streamer, err := NewLogStreamer(dd.ServiceLog(), logger.With("component", "logstream"))
	if err != nil {
		return err
	}
	defer streamer.Close()
	dd.onFlushLogs(streamer.Flush)

	quitCh := make(chan struct{})
	d := &Daemon{Data: dd, Logs: streamer, Logger: logger, quit: sync.OnceFunc(func() { close(quitCh) })}
	defer d.closeAll()
	scfg := cfg.Server
	scfg.Logger = logger
	srv, err := New(scfg)
	if err != nil {
		return err
	}
	if cfg.Services != nil {
		if err := cfg.Services(d, srv); err != nil {
			return err
		}
	}

	if err := srv.Listen(); err != nil {
		var dirErr *SocketDirError
		switch {
		case errors.As(err, &dirErr):
			return fmt.Errorf("agent: refusing to listen on %s: %w", cfg.Server.SocketPath, dirErr)
		case errors.Is(err, syscall.EADDRINUSE):
			return fmt.Errorf("agent: cannot bind to %s: address already in use; another agent instance may be running", where)
		}
		return fmt.Errorf("agent: cannot bind to %s: %w", where, err)
	}
	if err := writePidFile(cfg.PidFile, pid); err != nil {
		_ = srv.Shutdown(context.Background())
		return err
	}
	defer removePidFile(cfg.PidFile, pid, logger)

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	// Serve shuts the server down gracefully when serveCtx ends.
	serveCtx, stopServing := context.WithCancel(context.Background())
	defer stopServing()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(serveCtx) }()

	banner := fmt.Sprintf("%s %d", Banner, pid)
	if cfg.Stdout != nil {
		fmt.Fprintln(cfg.Stdout, banner)
	}
	logger.Info(banner, "addr", srv.Addr().String())
	if ready != nil {
		fmt.Fprintln(ready, banner)
		ready.Close()
		ready = nil
	}
	releaseStartupPages()

	grace := []any{"timeout_seconds", scfg.ShutdownTimeout.Seconds()}
	select {
	case s := <-sigs:
		logger.Info("agent: received "+signalName(s)+", shutting down gracefully", grace...)
	case <-quitCh:
		logger.Info("agent: core.quit called, shutting down gracefully", grace...)
	case <-ctx.Done():
		logger.Info("agent: context ended, shutting down gracefully", grace...)
	case err := <-served:
		srv.Close()
		return err // Serve's error says "agent: serve: …"
	}
	stopServing()
	select {
	case err := <-served:
		if err != nil {
			return err
		}
		if err := srv.shutdownErr(); err != nil {
			logger.Warn("agent: calls did not finish in time", "err", err)
		}
	case s := <-sigs:
		// The operator insists: skip the grace period, keep only the
		// cleanup (services, pid file).
		logger.Warn("agent: received " + signalName(s) + " again, exiting at once")
		srv.Close()
		<-served
		return ErrStoppedAtOnce
	}
	d.closeAll()
	logger.Info("agent: stopped")
	return nil
}

func signalName(s os.Signal) string {
	if sig, ok := s.(syscall.Signal); ok {
		if n := unix.SignalName(sig); n != "" {
			return n
		}
	}
	return s.String()
}

// openDaemonLog logs Debug and up to agent.log and Info and up to stderr
// (if not nil), as text. agent.log rotates by size while the agent runs
// (upstream rotates at 10 MiB too), so a long-lived node does not fill its
// disk. Records reach the file through a groupWriter, off the path of the
// call that logs them.
func openDaemonLog(path string, stderr io.Writer) (*slog.Logger, *groupWriter, error) {
	rf, err := OpenRotatingFile(path, LogMaxBytes, LogGenerations)
	if err != nil {
		return nil, nil, err
	}
	f := newGroupWriter(rf, logBufferBytes)
	var h slog.Handler = slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug})
	if stderr != nil {
		h = slog.NewMultiHandler(h, slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(h), f, nil
}

// writePidFile writes "<pid>\n" atomically, so a reader never sees a
// partial file.
func writePidFile(path string, pid int) error {
	// Not durable: a pid outlives no reboot.
	data := strconv.AppendInt(nil, int64(pid), 10)
	if err := atomicfile.WriteFile(path, append(data, '\n'), 0o644, atomicfile.NotDurable()); err != nil {
		return fmt.Errorf("agent: pid file %s: %w", path, err)
	}
	return nil
}

// removePidFile removes the pid file only while it still holds our pid:
// another agent may have taken it over since.
func removePidFile(path string, pid int, logger *slog.Logger) {
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	if strings.TrimSpace(string(data)) != strconv.Itoa(pid) {
		logger.Info("agent: pid file now belongs to another process; leaving it", "path", path)
		return
	}
	if err := os.Remove(path); err != nil {
		logger.Warn("agent: cannot remove pid file", "path", path, "err", err)
	}
}
