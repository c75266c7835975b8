package runner

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vtcluster/vtcluster/agent/py"
)

// The failure bundle: when a test fails, errors, loses a node or runs
// into its timeout (worthDebugging), the
// runner gathers from every node it can still reach what usually explains
// it, into <results>/failure/<tag>/, before anything is torn down:
//
//	agent-service.log  the agent's log from a little before the test began
//	dmesg.txt          the end of the kernel log
//	processes.txt      what the test's processes (its partition's) are
//	                   doing: the agent's record and their ps lines
//	network.txt        addresses and routes
//	console/           VM consoles in the agent's data directory
//
// Everything is bounded: bytes per file, files per node, time per command
// and for the whole bundle, so a sick node cannot hold the teardown up.
const (
	bundleDir         = "failure"
	bundleTimeout     = 60 * time.Second
	bundleCmdTimeout  = 10 * time.Second
	bundleFileBytes   = 256 << 10
	bundleLogBytes    = 1 << 20
	bundleDmesgLines  = 300
	bundleMaxConsoles = 16
	// bundleLogSlack reaches back before the test began, for what the
	// agent logged while the nodes were handed over.
	bundleLogSlack = 5 * time.Second
)

// agentCaller is implemented by clusters that can call a node's agent
// directly (backend_exec.go): the VM service's calls (vmstage.go), and what
// the failure bundle needs that Exec does not give: the agent's paths, its
// process record, output not echoed into the node's log.
type agentCaller interface {
	CallAgent(ctx context.Context, node PartitionNode, method string, args ...any) (any, error)
}

// bundleStage is a teardown: it runs after the body and before the
// collection, the resources and the partition go.
func (r *testRun) bundleStage(ctx context.Context, rs *runState, out *outcome) {
	if !worthDebugging(ctx, *out) || len(rs.part.Nodes) == 0 {
		return
	}
	ac, ok := rs.cl.(agentCaller)
	if !ok {
		return
	}
	bctx, cancel := teardownCtx(ctx, bundleTimeout)
	defer cancel()
	dir := filepath.Join(r.outputDir, bundleDir)
	notes := make([]string, len(rs.part.Nodes))
	var wg sync.WaitGroup
	for i, n := range rs.part.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer r.trap.catch()
			b := nodeBundle{ac: ac, node: n, owner: rs.part.ID, dir: filepath.Join(dir, n.Tag), since: r.events.Start().Add(-bundleLogSlack)}
			notes[i] = fmt.Sprintf("%s (%s): %s", n.Tag, n.Name, b.collect(bctx))
		}()
	}
	wg.Wait()
	summary := fmt.Sprintf("Failure bundle of %s, written %s.\nTest outcome: %s\n\n%s\n",
		r.test.Name, time.Now().Format(time.RFC3339), outcomeText(*out), strings.Join(notes, "\n"))
	if err := os.MkdirAll(dir, 0o755); err == nil {
		os.WriteFile(filepath.Join(dir, "README.txt"), []byte(summary), 0o644)
	}
	// The teardown stage's span shows how long it took; this says what
	// it got.
	r.events.Add(Event{Kind: KindBundle, Name: "failure bundle", Detail: dir + "\n" + strings.Join(notes, "\n")})
	r.logf(ctx, "failure bundle (what the nodes said when the test failed): %s", dir)
	for _, n := range notes {
		r.logf(ctx, "failure bundle: %s", n)
	}
}

// nodeBundle collects one node's part.
type nodeBundle struct {
	ac    agentCaller
	node  PartitionNode
	owner string
	dir   string
	since time.Time

	got, failed []string
}

// collect writes what it can and says what it got and what it could not.
func (b *nodeBundle) collect(ctx context.Context) string {
	if err := os.MkdirAll(b.dir, 0o755); err != nil {
		return err.Error()
	}
	if _, err := b.ac.CallAgent(ctx, b.node, "core.is_alive"); err != nil {
		b.note("agent", err)
		return b.summary()
	}
	b.agentLog(ctx)
	b.command(ctx, "dmesg.txt", []string{"dmesg"}, tailLines(bundleDmesgLines))
	b.processes(ctx)
	b.network(ctx)
	b.consoles(ctx)
	return b.summary()
}

func (b *nodeBundle) summary() string {
	s := "collected " + strings.Join(b.got, ", ")
	if len(b.got) == 0 {
		s = "nothing collected"
	}
	if len(b.failed) > 0 {
		s += "; not: " + strings.Join(b.failed, "; ")
	}
	return s
}

func (b *nodeBundle) note(what string, err error) {
	b.failed = append(b.failed, what+": "+oneLine(err))
}

func (b *nodeBundle) write(name string, data []byte) {
	if err := os.WriteFile(filepath.Join(b.dir, name), data, 0o644); err != nil {
		b.note(name, err)
		return
	}
	b.got = append(b.got, name)
}

// run runs argv on the node without the agent echoing its output into
// its log (which the test's debug.log receives), keeping the last max
// bytes of stdout.
func (b *nodeBundle) run(ctx context.Context, argv []string, max int) ([]byte, error) {
	args := make([]any, len(argv))
	for i, a := range argv {
		args[i] = a
	}
	cctx, cancel := context.WithTimeout(ctx, bundleCmdTimeout+5*time.Second)
	defer cancel()
	v, err := b.ac.CallAgent(cctx, b.node, "process.run", args,
		map[string]any{"log_output": false, "owner": b.owner, "timeout": bundleCmdTimeout.Seconds(), "max_output": max})
	if err != nil {
		return nil, err
	}
	m, _ := v.(map[string]any)
	out, _ := m["stdout"].([]byte)
	code, _ := py.Int(m["exit_code"])
	if code != 0 {
		errOut, _ := m["stderr"].([]byte)
		return out, fmt.Errorf("%s exited with status %d: %s", argv[0], code, lastBytes(errOut, 300))
	}
	return out, nil
}

// command writes argv's output to name, through filter when not nil.
func (b *nodeBundle) command(ctx context.Context, name string, argv []string, filter func([]byte) []byte) {
	out, err := b.run(ctx, argv, bundleFileBytes)
	if err != nil {
		b.note(name, err)
		if len(out) == 0 {
			return
		}
	}
	if filter != nil {
		out = filter(out)
	}
	b.write(name, out)
}

// agentLog keeps the agent's service log from shortly before the test.
func (b *nodeBundle) agentLog(ctx context.Context) {
	v, err := b.ac.CallAgent(ctx, b.node, "core.get_service_log_filename")
	p, _ := v.(string)
	if err != nil || p == "" {
		b.note("agent-service.log", fmt.Errorf("no service log: %v", err))
		return
	}
	out, err := b.run(ctx, []string{"tail", "-c", strconv.Itoa(bundleLogBytes), p}, bundleLogBytes)
	if err != nil {
		b.note("agent-service.log", err)
		return
	}
	b.write("agent-service.log", logSince(out, b.since))
}

// asctimeRE is the start of a line of the agent's log: Python's asctime.
var asctimeRE = regexp.MustCompile(`^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) `)

// logSince drops the lines logged before since (the agent writes local
// time); a log with no line it can date is kept whole.
func logSince(data []byte, since time.Time) []byte {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), len(data)+1)
	var out bytes.Buffer
	keeping := false
	dated := false
	for sc.Scan() {
		line := sc.Bytes()
		if m := asctimeRE.FindSubmatch(line); m != nil {
			dated = true
			if t, err := time.ParseInLocation("2006-01-02 15:04:05", string(m[1]), time.Local); err == nil {
				keeping = !t.Add(time.Second).Before(since)
			}
		}
		if keeping {
			out.Write(line)
			out.WriteByte('\n')
		}
	}
	if !dated {
		return data
	}
	return out.Bytes()
}

// tailLines keeps the last n lines.
func tailLines(n int) func([]byte) []byte {
	return func(b []byte) []byte {
		lines := bytes.SplitAfter(b, []byte("\n"))
		if len(lines) > n+1 {
			lines = lines[len(lines)-n-1:]
		}
		return bytes.Join(lines, nil)
	}
}

// processes records the agent's processes of this test's partition and,
// for those still running, the ps lines of their process groups (each
// command the agent starts leads its own group).
func (b *nodeBundle) processes(ctx context.Context) {
	v, err := b.ac.CallAgent(ctx, b.node, "process.list")
	if err != nil {
		b.note("processes.txt", err)
		return
	}
	var buf bytes.Buffer
	groups := map[string]bool{}
	fmt.Fprintf(&buf, "Processes the agent started for partition %s:\n", b.owner)
	n := 0
	for _, x := range asList(v) {
		p, _ := x.(map[string]any)
		if owner, _ := p["owner"].(string); owner != b.owner {
			continue
		}
		n++
		running, _ := p["running"].(bool)
		pid, _ := py.Int(p["pid"])
		state := fmt.Sprintf("exit status %v", p["exit_code"])
		if running {
			state = "running"
			groups[strconv.FormatInt(pid, 10)] = true
		}
		fmt.Fprintf(&buf, "  pid %d, %s: %s\n", pid, state, py.Repr(p["argv"]))
	}
	if n == 0 {
		buf.WriteString("  none (commands that ran to their end are not kept)\n")
	}
	if len(groups) > 0 {
		out, err := b.run(ctx, []string{"ps", "-eo", "pid,ppid,pgid,user,stat,etime,args"}, bundleFileBytes)
		if err != nil {
			fmt.Fprintf(&buf, "\nps: %v\n", err)
		}
		buf.WriteString("\nTheir process groups:\n")
		for i, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if i == 0 || (len(f) > 2 && groups[f[2]]) {
				buf.WriteString(line + "\n")
			}
		}
	}
	b.write("processes.txt", buf.Bytes())
}

func (b *nodeBundle) network(ctx context.Context) {
	var buf bytes.Buffer
	for _, argv := range [][]string{{"ip", "addr"}, {"ip", "route"}} {
		out, err := b.run(ctx, argv, bundleFileBytes/4)
		fmt.Fprintf(&buf, "$ %s\n%s", strings.Join(argv, " "), out)
		if err != nil {
			fmt.Fprintf(&buf, "(%v)\n", err)
		}
		buf.WriteString("\n")
	}
	b.write("network.txt", buf.Bytes())
}

// consoleNameRE is what a console file may be called in the bundle.
var consoleNameRE = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// consoles copies the end of every console file (a VM's serial console)
// under the agent's data directory.
func (b *nodeBundle) consoles(ctx context.Context) {
	v, err := b.ac.CallAgent(ctx, b.node, "core.get_log_dir")
	logDir, _ := v.(string)
	if err != nil || logDir == "" {
		b.note("console", fmt.Errorf("no agent data directory: %v", err))
		return
	}
	dataDir := path.Dir(logDir)
	out, err := b.run(ctx, []string{"find", dataDir, "-maxdepth", "4", "-type", "f", "-name", "*console*"}, 64<<10)
	if err != nil {
		b.note("console", err)
		return
	}
	files := slices.DeleteFunc(strings.Split(strings.TrimSpace(string(out)), "\n"), func(s string) bool { return s == "" })
	if len(files) == 0 {
		return
	}
	slices.Sort(files)
	if len(files) > bundleMaxConsoles {
		b.failed = append(b.failed, fmt.Sprintf("console: %d more files left out", len(files)-bundleMaxConsoles))
		files = files[:bundleMaxConsoles]
	}
	cdir := filepath.Join(b.dir, "console")
	if err := os.MkdirAll(cdir, 0o755); err != nil {
		b.note("console", err)
		return
	}
	for _, f := range files {
		// The name comes from the node: it is made a plain file name here.
		rel := strings.TrimPrefix(strings.TrimPrefix(f, dataDir), "/")
		name := strings.Trim(consoleNameRE.ReplaceAllString(strings.ReplaceAll(rel, "/", "_"), "_"), ".")
		data, err := b.run(ctx, []string{"tail", "-c", strconv.Itoa(bundleFileBytes), f}, bundleFileBytes)
		if err != nil {
			b.note("console/"+name, err)
			continue
		}
		b.write(filepath.Join("console", name), data)
	}
}
