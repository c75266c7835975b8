package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v3"
	"golang.org/x/sys/unix"

	"github.com/vtcluster/vtcluster/cluster"
	"github.com/vtcluster/vtcluster/resmgr"
)

func cpCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "cp",
		Usage:     "copy files and trees between this machine and nodes, or between nodes",
		ArgsUsage: "SRC... DST",
		Description: `Each SRC and DST is a local path or NODE:PATH (NODE|TAG resolved as for
"vtcluster call": inside a test body, partition tags work). A relative PATH
on a node is relative to the login user's home. A local path with a ':'
before any '/' is written ./name.

As cp does: with one SRC, DST is the copy itself unless it is an existing
directory, into which SRC is copied under its own name; with several, DST
must be an existing directory. Directories need -r. Permission bits are
kept; symlinks inside a tree are copied as symlinks, a symlink given as SRC
is followed. Node to node goes through this machine, streamed.

Every file is hashed (SHA-256) as it is read and compared with the hash of
the copy once written; a mismatching copy is removed and the command fails.
Runs of zeros are not written, so sparse files stay sparse, and holes in a
local file are not even read.

Where the copy writes, nothing that another user could have placed is
followed: a symlink where a directory goes, or an existing directory owned
by another user or writable by others, is refused (the rest of the copy goes
on), files are replaced rather than written through a link, and modes are
set on the open file. Copied directories lose group and other write bits.
A file larger than --max-size (default 64G) is refused, and the whole copy
gives up after --timeout (default 1h; 0 for none).

Progress of large files goes to stderr when it is a terminal, or with
--progress. --json prints what was copied.

Examples:
   vtcluster cp -r ./testdata node1:/var/tmp/testdata
   vtcluster cp node1:/var/log/messages node2:/var/log/messages ./logs/
   vtcluster cp -r src:/var/tmp/results dst:/var/tmp/   # in a test body`,
		Flags: slices.Concat([]cli.Flag{
			&cli.BoolFlag{Name: "recursive", Aliases: []string{"r"}, Usage: "copy directories and their content"},
			&cli.BoolFlag{Name: "progress", Usage: "show progress on stderr even when it is not a terminal"},
			&cli.StringFlag{Name: "max-size", Value: "64G", Usage: "refuse a file whose apparent size is above `SIZE` (K, M, G, T units)"},
			// What a copy asks the binary deployed on a node about a file
			// there, so the file's holes do not cross the network.
			&cli.BoolFlag{Name: "extents", Hidden: true, Usage: "print where the data of the local file PATH lies, as JSON"},
			// And what it asks it to check a copy written there.
			&cli.BoolFlag{Name: "sha256", Hidden: true, Usage: "print the SHA-256 of the local file PATH"},
			// And what streams a file to or from it (cluster/copy_stream.go).
			&cli.BoolFlag{Name: "receive", Hidden: true, Usage: "write the file streamed on stdin to the local PATH, print its SHA-256"},
			&cli.Int64Flag{Name: "size", Hidden: true, Usage: "with --receive: the file's size"},
			&cli.StringFlag{Name: "mode", Hidden: true, Value: "0600", Usage: "with --receive: the file's permission bits, octal"},
			&cli.BoolFlag{Name: "send", Hidden: true, Usage: "stream the local file PATH on stdout"},
			jsonFlag(),
		}, sshFlags(), []cli.Flag{timeoutFlag(time.Hour)}),
		Action: func(ctx context.Context, cmd *cli.Command) error { return runCp(ctx, e, cmd) },
	}
}

// cpEndpoint is one SRC or DST argument.
type cpEndpoint struct {
	node string // "" for this machine
	path string
}

// parseCpArg splits NODE:PATH; a ':' after a '/' is part of a local path.
func parseCpArg(s string) (cpEndpoint, error) {
	i := strings.IndexByte(s, ':')
	if i < 0 || strings.Contains(s[:i], "/") {
		if s == "" {
			return cpEndpoint{}, errors.New("empty path")
		}
		return cpEndpoint{path: s}, nil
	}
	if i == 0 {
		return cpEndpoint{}, fmt.Errorf("%q: no node before ':' (write ./%s for a local file)", s, s)
	}
	p := s[i+1:]
	if p == "" {
		p = "." // the login user's home, as scp does
	}
	return cpEndpoint{node: s[:i], path: p}, nil
}

// cpSummaryJSON is "cp --json"'s output.
type cpSummaryJSON struct {
	Files    int          `json:"files"`
	Dirs     int          `json:"dirs"`
	Symlinks int          `json:"symlinks"`
	Bytes    int64        `json:"bytes"`
	Seconds  float64      `json:"seconds"`
	Items    []cpItemJSON `json:"items"`
	Error    string       `json:"error,omitempty"`
}

// cpItemJSON is one file, directory or symlink in "cp --json".
type cpItemJSON struct {
	Src     string `json:"src"`
	Dst     string `json:"dst"`
	Kind    string `json:"kind"`
	Mode    string `json:"mode,omitempty"` // octal, as chmod takes it
	Size    int64  `json:"size,omitempty"`
	SHA256  string `json:"sha256,omitempty"`
	Read    int64  `json:"read,omitempty"`
	Written int64  `json:"written,omitempty"`
	Via     string `json:"via,omitempty"` // "stream" or "sftp" for a file on a node
}

func runCp(ctx context.Context, e *env, cmd *cli.Command) error {
	args := cmd.Args().Slice()
	if cmd.Bool("extents") {
		if len(args) != 1 {
			return usageError{errors.New("cp --extents: want one PATH")}
		}
		size, ext, err := cluster.FileExtents(args[0])
		if err != nil {
			return fmt.Errorf("cp --extents: %w", err)
		}
		b, err := json.Marshal(struct {
			Size    int64      `json:"size"`
			Extents [][2]int64 `json:"extents"`
		}{size, ext})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(e.stdout, "%s\n", b)
		return err
	}
	if cmd.Bool("sha256") {
		if len(args) != 1 {
			return usageError{errors.New("cp --sha256: want one PATH")}
		}
		sum, err := cluster.FileSHA256(args[0])
		if err != nil {
			return fmt.Errorf("cp --sha256: %w", err)
		}
		_, err = fmt.Fprintln(e.stdout, sum)
		return err
	}
	if cmd.Bool("receive") || cmd.Bool("send") {
		return cpStreamed(ctx, e, cmd, args)
	}
	if len(args) < 2 {
		return usageError{errors.New("cp: want SRC... DST (see --help)")}
	}
	eps := make([]cpEndpoint, len(args))
	for i, a := range args {
		ep, err := parseCpArg(a)
		if err != nil {
			return usageError{fmt.Errorf("cp: %w", err)}
		}
		eps[i] = ep
	}
	ctx, cancel, maxSize, err := cpLimits(ctx, cmd)
	if err != nil {
		return err
	}
	defer cancel()

	// One SFTP session per node, shared by every argument naming it.
	sides := map[string]*cluster.CopyFS{"": cluster.LocalFS()}
	var conns []*cluster.NodeConn
	defer func() {
		for _, f := range sides {
			f.Close()
		}
		for _, nc := range conns {
			nc.Close()
		}
	}()
	for _, ep := range eps {
		if _, ok := sides[ep.node]; ok {
			continue
		}
		nc, err := connectTarget(ctx, e, cmd, ep.node)
		if err != nil {
			return fmt.Errorf("cp: %w", err)
		}
		conns = append(conns, nc)
		f, err := nc.OpenCopyFS(ctx)
		if err != nil {
			return fmt.Errorf("cp: %w", err)
		}
		sides[ep.node] = f
	}

	dst, srcs := eps[len(eps)-1], eps[:len(eps)-1]
	to := sides[dst.node]
	dstInfo, statErr := to.Stat(dst.path)
	dstIsDir := statErr == nil && dstInfo.IsDir()
	switch {
	case len(srcs) > 1 && !dstIsDir:
		return fmt.Errorf("cp: %s: with several sources the destination must be an existing directory", to.Label(dst.path))
	case statErr != nil && !errors.Is(statErr, fs.ErrNotExist):
		return fmt.Errorf("cp: %s: %w", to.Label(dst.path), statErr)
	case !dstIsDir && strings.HasSuffix(dst.path, "/"):
		return fmt.Errorf("cp: %s: no such directory", to.Label(dst.path))
	}

	opts := cluster.CopyOptions{Recursive: cmd.Bool("recursive"), MaxSize: maxSize}
	var prog *cluster.TermProgress
	if cmd.Bool("progress") || isTerminal(e.stderr) {
		prog = &cluster.TermProgress{W: e.stderr, MinSize: 8 << 20, Interval: 200 * time.Millisecond}
		opts.Progress = prog
	}
	start := time.Now()
	var items []cluster.CopyItem
	var errs []error
	for _, src := range srcs {
		from := sides[src.node]
		target := dst.path
		if dstIsDir {
			target = to.Join(dst.path, from.Base(src.path))
		}
		got, err := cluster.CopyTree(ctx, from, src.path, to, target, opts)
		items = append(items, got...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if prog != nil {
		prog.Done()
	}
	sum := cpSummaryJSON{Items: []cpItemJSON{}, Seconds: time.Since(start).Seconds()}
	for _, it := range items {
		j := cpItemJSON{Src: it.Src, Dst: it.Dst, Kind: it.Kind, Size: it.Size, SHA256: it.SHA256, Read: it.Read, Written: it.Written, Via: it.Via}
		if it.Kind != "symlink" {
			j.Mode = fmt.Sprintf("%04o", uint32(it.Mode.Perm()))
		}
		sum.Items = append(sum.Items, j)
		switch it.Kind {
		case "file":
			sum.Files++
			sum.Bytes += it.Size
		case "dir":
			sum.Dirs++
		case "symlink":
			sum.Symlinks++
		}
	}
	err = errors.Join(errs...)
	if cmd.Bool(flagJSON) {
		if err != nil {
			sum.Error = err.Error()
		}
		if jerr := writeJSON(e.stdout, sum); jerr != nil {
			return jerr
		}
	} else if err == nil || len(items) > 0 {
		// A failure with nothing copied says only what failed.
		what := "copied"
		if err != nil {
			what = "partial copy:"
		}
		fmt.Fprintf(e.stderr, "vtcluster: %s %d files (%d bytes, SHA-256 checked), %d directories, %d symlinks in %.1fs\n",
			what, sum.Files, sum.Bytes, sum.Dirs, sum.Symlinks, sum.Seconds)
	}
	if err != nil {
		return fmt.Errorf("cp: %w", err)
	}
	return nil
}

// isTerminal reports whether w is a terminal, where progress lines that
// redraw themselves make sense.
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// cpLimits are cp's bounds, --timeout and --max-size, which hold on the
// node's end of a streamed copy as on the controller's.
func cpLimits(ctx context.Context, cmd *cli.Command) (context.Context, context.CancelFunc, int64, error) {
	maxSize, err := resmgr.ParseSize(cmd.String("max-size"))
	if err != nil {
		return ctx, func() {}, 0, flagError("max-size", "%v", err)
	}
	ctx, cancel, err := withTimeout(ctx, cmd)
	return ctx, cancel, maxSize, err
}
