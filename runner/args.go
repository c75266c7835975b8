package runner

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/vtcluster/vtcluster/agent/py"
)

// Subcommand names, in the order argparse lists them.
const (
	cmdCapabilities      = "capabilities"
	cmdRunnableRun       = "runnable-run"
	cmdRunnableRunRecipe = "runnable-run-recipe"
	cmdTaskRun           = "task-run"
	cmdTaskRunRecipe     = "task-run-recipe"
)

// kind is the runnable kind this runner handles.
const kind = "multihost"

// commands lists the subcommands, as reported by capabilities.
var commands = []string{cmdCapabilities, cmdRunnableRun, cmdRunnableRunRecipe, cmdTaskRun, cmdTaskRunRecipe}

// usageError is a command line mistake: the runner prints Error() on
// stderr and exits 2, like argparse.
type usageError struct {
	Prog  string // "avocado-runner-multihost task-run"
	Usage string // the argparse usage block, starting with "usage: "
	Msg   string
}

func (e *usageError) Error() string {
	return fmt.Sprintf("%s\n%s: error: %s", e.Usage, e.Prog, e.Msg)
}

// invocation is a parsed runner command line.
type invocation struct {
	// Command is one of commands.
	Command string
	// Help is set when -h/--help was given: print it on stdout, exit 0.
	Help string
	// Args holds the option values of runnable-run and task-run.
	Args commandArgs
	// Recipe is the recipe path of the *-recipe commands.
	Recipe string
}

// commandArgs are the raw values of runnable-run and task-run, before
// decoding (base64:, json:, -c).
type commandArgs struct {
	Kind       string
	URI        *string
	Config     string // JSON text, default "{}"
	Args       []string
	KeyVals    []string // KEY=VAL as given
	Identifier string   // task-run
	Category   string   // task-run, default "test"
	StatusURIs []string // task-run
	JobID      *string  // task-run
}

var kindFromProg = regexp.MustCompile(`^avocado-runner-(.+)$`)

// negativeNumber is argparse's _negative_number_matcher: such tokens are
// values, not options, because no runner option looks like a number.
var negativeNumber = regexp.MustCompile(`^-\d+$|^-\d*\.\d+$`)

type optSpec struct {
	short, long string
	dest        string
	metavar     string
	help        string
	repeat      bool // action="append"
	required    bool
	isHelp      bool
}

func (o *optSpec) names() string { return o.short + "/" + o.long }

type posSpec struct {
	metavar string
	help    string
	many    bool // nargs="*"
}

type cmdSpec struct {
	name string
	help string // first docstring line, shown by the top-level --help
	opts []*optSpec
	pos  *posSpec
}

// parser holds the command table for one program name.
type parser struct {
	prog        string // ProgName
	defaultKind string // from the program name; "" makes -k required
	cmds        []*cmdSpec
	width       int // argparse's formatter width (COLUMNS-2)
}

// progName is the program name shown in usage text whatever argv[0] is,
// like PROG_NAME of Avocado's runners.
const progName = "avocado-runner-" + kind

func newParser(argv0 string) *parser {
	p := &parser{prog: progName, width: 78}
	base := argv0
	if i := strings.LastIndexByte(base, '/'); i >= 0 {
		base = base[i+1:]
	}
	if m := kindFromProg.FindStringSubmatch(base); m != nil {
		p.defaultKind = m[1]
	}
	if c, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && c > 2 {
		p.width = c - 2
	}
	helpOpt := &optSpec{short: "-h", long: "--help", help: "show this help message and exit", isHelp: true}
	kindHelp := "Kind of runnable"
	if p.defaultKind != "" {
		kindHelp += fmt.Sprintf(", defaults to %q", p.defaultKind)
	}
	runnableOpts := []*optSpec{
		{short: "-k", long: "--kind", dest: "kind", metavar: "KIND", help: kindHelp, required: p.defaultKind == ""},
		{short: "-u", long: "--uri", dest: "uri", metavar: "URI", help: "URI of runnable"},
		{short: "-c", long: "--config", dest: "config", metavar: "CONFIG", help: "A config JSON data"},
		{short: "-a", long: "--arg", dest: "arg", metavar: "ARG", help: "Simple arguments to runnable", repeat: true},
	}
	keyVal := &posSpec{metavar: "KEY_VAL", help: "Keyword (key=val) arguments to runnable", many: true}
	taskOpts := []*optSpec{
		{short: "-i", long: "--identifier", dest: "identifier", metavar: "IDENTIFIER", help: "Task unique identifier", required: true},
		{short: "-t", long: "--category", dest: "category", metavar: "CATEGORY", help: `The category for tasks. Only tasks with category set to "test" (the default) will be included in the test results of its parent job. Other categories may be used for purposes that do include test results such as requirements resolution tasks`},
		{short: "-s", long: "--status-uri", dest: "status_uri", metavar: "STATUS_URI", help: "URIs of status services to report to", repeat: true},
		{short: "-j", long: "--job-id", dest: "job_id", metavar: "JOB_ID", help: "Identifier of Job this task belongs to"},
	}
	p.cmds = []*cmdSpec{
		{name: cmdCapabilities, help: "Outputs capabilities, including runnables and commands", opts: []*optSpec{helpOpt}},
		{name: cmdRunnableRun, help: "Runs a runnable definition from arguments", opts: append([]*optSpec{helpOpt}, runnableOpts...), pos: keyVal},
		{name: cmdRunnableRunRecipe, help: "Runs a runnable definition from a recipe", opts: []*optSpec{helpOpt}, pos: &posSpec{metavar: "recipe", help: "Path to the runnable recipe file"}},
		{name: cmdTaskRun, help: "Runs a task from arguments", opts: append(append([]*optSpec{helpOpt}, taskOpts...), runnableOpts...), pos: keyVal},
		{name: cmdTaskRunRecipe, help: "Runs a task from a recipe", opts: []*optSpec{helpOpt}, pos: &posSpec{metavar: "recipe", help: "Path to the task recipe file"}},
	}
	return p
}

// The runner command line is parsed by hand instead of with urfave/cli v3
// (which the rest of vtcluster uses). Avocado drives runners through
// Python argparse semantics that urfave/cli does not have, and Avocado's
// interface selftests check them:
//   - "-a -c" must be a usage error ("expected one argument"): urfave/cli
//     takes "-c" as the value;
//   - "-kVALUE" and "-ab" (value glued to a short option) are accepted by
//     argparse and rejected by urfave/cli ("flag provided but not defined");
//   - argparse accepts unambiguous prefixes of long options ("--ident x")
//     and reports ambiguous ones;
//   - values starting with "-" that look like negative numbers, or contain
//     a space, are arguments, not options;
//   - usage errors print argparse's usage block and exit 2.
//
// It implements exactly that subset of argparse (Python 3.11) for
// the five runner subcommands. One deliberate difference: argparse rejects
// KEY=VAL positionals that come after an option once earlier positionals
// were consumed ("a=1 -s S b=2"); here positionals and options mix freely.
//
// parseCommandLine parses argv (argv[0] is the program path) the way
// Avocado's argparse-based runners do. It returns a *usageError for
// command line mistakes.
func parseCommandLine(argv []string) (*invocation, error) {
	if len(argv) == 0 {
		argv = []string{""}
	}
	p := newParser(argv[0])
	return p.parse(argv[1:])
}

func (p *parser) topUsageError(msg string) *usageError {
	return &usageError{Prog: p.prog, Usage: p.topUsage(), Msg: msg}
}

func (p *parser) parse(args []string) (*invocation, error) {
	top := &cmdSpec{opts: []*optSpec{{short: "-h", long: "--help", isHelp: true}}}
	var unknown []string
	for i, a := range args {
		if a == "--" {
			// argparse drops the first "--"; the subcommand must follow.
			if i+1 < len(args) {
				return p.parseSub(args[i+1], args[i+2:], unknown)
			}
			break
		}
		kind, opt, explicit, err := top.classify(a)
		if err != "" {
			return nil, p.topUsageError(err)
		}
		switch {
		case kind == argPositional:
			return p.parseSub(a, args[i+1:], unknown)
		case kind == argOption && opt.isHelp:
			if explicit != nil {
				return nil, p.topUsageError(fmt.Sprintf("argument -h/--help: ignored explicit argument %s", py.Repr(*explicit)))
			}
			return &invocation{Help: p.topHelp()}, nil
		default:
			unknown = append(unknown, a)
		}
	}
	return nil, p.topUsageError("the following arguments are required: subcommand")
}

func (p *parser) parseSub(name string, args, unknown []string) (*invocation, error) {
	var cmd *cmdSpec
	for _, c := range p.cmds {
		if c.name == name {
			cmd = c
		}
	}
	if cmd == nil {
		quoted := make([]string, len(p.cmds))
		for i, c := range p.cmds {
			quoted[i] = py.Repr(c.name)
		}
		return nil, p.topUsageError(fmt.Sprintf("argument subcommand: invalid choice: %s (choose from %s)", py.Repr(name), strings.Join(quoted, ", ")))
	}
	prog := p.prog + " " + cmd.name
	usageErr := func(msg string) error {
		return &usageError{Prog: prog, Usage: p.subUsage(cmd), Msg: msg}
	}
	values := map[string][]string{}
	var positionals []string
	dashdash := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		if dashdash {
			positionals = append(positionals, a)
			continue
		}
		if a == "--" {
			dashdash = true
			continue
		}
		kind, opt, explicit, err := cmd.classify(a)
		if err != "" {
			return nil, usageErr(err)
		}
		switch kind {
		case argPositional:
			positionals = append(positionals, a)
		case argUnknownOption:
			unknown = append(unknown, a)
		case argOption:
			if opt.isHelp {
				if explicit != nil {
					return nil, usageErr(fmt.Sprintf("argument %s: ignored explicit argument %s", opt.names(), py.Repr(*explicit)))
				}
				return &invocation{Command: cmd.name, Help: p.subHelp(cmd)}, nil
			}
			var v string
			switch {
			case explicit != nil:
				v = *explicit
			case i+1 < len(args) && args[i+1] != "--":
				if k, _, _, _ := cmd.classify(args[i+1]); k != argPositional {
					return nil, usageErr(fmt.Sprintf("argument %s: expected one argument", opt.names()))
				}
				i++
				v = args[i]
			default:
				return nil, usageErr(fmt.Sprintf("argument %s: expected one argument", opt.names()))
			}
			if opt.repeat {
				values[opt.dest] = append(values[opt.dest], v)
			} else {
				values[opt.dest] = []string{v}
			}
		}
	}
	inv := &invocation{Command: cmd.name}
	if cmd.pos != nil && cmd.pos.many {
		for _, kv := range positionals {
			if !strings.Contains(kv, "=") {
				return nil, usageErr(fmt.Sprintf(`argument KEY_VAL: Invalid keyword parameter: "%s". Valid option must be a "KEY=VALUE" like expression`, kv))
			}
		}
	}
	var missing []string
	for _, o := range cmd.opts {
		if o.required && len(values[o.dest]) == 0 {
			missing = append(missing, o.names())
		}
	}
	if cmd.pos != nil && !cmd.pos.many && len(positionals) == 0 {
		missing = append(missing, cmd.pos.metavar)
	}
	if len(missing) > 0 {
		return nil, usageErr("the following arguments are required: " + strings.Join(missing, ", "))
	}
	if cmd.pos != nil && !cmd.pos.many {
		inv.Recipe = positionals[0]
		unknown = append(unknown, positionals[1:]...)
	} else if cmd.pos == nil {
		unknown = append(unknown, positionals...)
	}
	if len(unknown) > 0 {
		return nil, p.topUsageError("unrecognized arguments: " + strings.Join(unknown, " "))
	}
	last := func(dest, def string) string {
		if v := values[dest]; len(v) > 0 {
			return v[len(v)-1]
		}
		return def
	}
	inv.Args = commandArgs{
		Kind:       last("kind", p.defaultKind),
		Config:     last("config", "{}"),
		Args:       values["arg"],
		KeyVals:    positionals,
		Identifier: last("identifier", ""),
		Category:   last("category", "test"),
		StatusURIs: values["status_uri"],
	}
	if v := values["uri"]; len(v) > 0 {
		inv.Args.URI = &v[len(v)-1]
	}
	if v := values["job_id"]; len(v) > 0 {
		inv.Args.JobID = &v[len(v)-1]
	}
	if cmd.pos == nil || !cmd.pos.many {
		inv.Args.KeyVals = nil
	}
	return inv, nil
}

type argKind int

const (
	argPositional argKind = iota
	argOption
	argUnknownOption
)

// classify is argparse's _parse_optional: is a a value, one of cmd's
// options (with a value glued to it), or an option nobody knows?
// A non-empty errMsg reports an ambiguous prefix.
func (c *cmdSpec) classify(a string) (kind argKind, opt *optSpec, explicit *string, errMsg string) {
	if a == "" || a[0] != '-' {
		return argPositional, nil, nil, ""
	}
	if o := c.exact(a); o != nil {
		return argOption, o, nil, ""
	}
	if len(a) == 1 {
		return argPositional, nil, nil, ""
	}
	if name, val, ok := strings.Cut(a, "="); ok {
		if o := c.exact(name); o != nil {
			return argOption, o, &val, ""
		}
	}
	type match struct {
		opt      *optSpec
		name     string
		explicit *string
	}
	var matches []match
	if strings.HasPrefix(a, "--") {
		prefix, val, hasVal := strings.Cut(a, "=")
		for _, o := range c.opts {
			for _, n := range []string{o.short, o.long} {
				if strings.HasPrefix(n, prefix) {
					m := match{opt: o, name: n}
					if hasVal {
						m.explicit = &val
					}
					matches = append(matches, m)
				}
			}
		}
	} else {
		short, rest := a[:2], a[2:]
		for _, o := range c.opts {
			for _, n := range []string{o.short, o.long} {
				switch {
				case n == short:
					matches = append(matches, match{opt: o, name: n, explicit: &rest})
				case strings.HasPrefix(n, a):
					matches = append(matches, match{opt: o, name: n})
				}
			}
		}
	}
	if len(matches) > 1 {
		names := make([]string, len(matches))
		for i, m := range matches {
			names[i] = m.name
		}
		return 0, nil, nil, fmt.Sprintf("ambiguous option: %s could match %s", strings.SplitN(a, "=", 2)[0], strings.Join(names, ", "))
	}
	if len(matches) == 1 {
		return argOption, matches[0].opt, matches[0].explicit, ""
	}
	if negativeNumber.MatchString(a) || strings.Contains(a, " ") {
		return argPositional, nil, nil, ""
	}
	return argUnknownOption, nil, nil, ""
}

func (c *cmdSpec) exact(a string) *optSpec {
	for _, o := range c.opts {
		if a == o.short || a == o.long {
			return o
		}
	}
	return nil
}
