package cluster

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/vtcluster/vtcluster/agent/py"
)

// Host parameter defaults. Ports and user match upstream's Node; the agent
// directory does not (see DefaultAgentBaseDir).
const (
	DefaultUsername  = "root"
	DefaultShellPort = 22
	DefaultProxyPort = 9999
	// DefaultAgentBaseDir deviates from upstream's /var/run/vt_agent_server
	// on purpose: /var/run is a tmpfs on current distributions, so upstream
	// loses the deployed agent at every reboot of a node.
	DefaultAgentBaseDir = "/var/lib/vtcluster/agents"
)

// Values of HostConfig.AgentBind.
const (
	// AgentBindTunnel: the agent listens on a Unix socket in its 0700
	// directory on the node (no TCP port) and the controller reaches it
	// through the SSH connection.
	AgentBindTunnel = "tunnel"
	// AgentBindDirect: the controller dials proxy_port on the node, as
	// upstream does.
	AgentBindDirect = "direct"
)

const (
	maxConfigSize  = 4 << 20 // far beyond any real cluster file; bounds memory on a wrong path
	maxConfigDepth = 64      // upstream's schema is 4 levels deep; this only stops pathological input
)

var (
	// A node name becomes a directory on the node (<agent_base_dir>/<name>)
	// and a state file key, so it is a strict file-name alphabet.
	nodeNameRE = regexp.MustCompile(`^[A-Za-z0-9._][A-Za-z0-9._-]*$`)
	labelKeyRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
	archRE     = regexp.MustCompile(`^[A-Za-z0-9_]+$`)
	plainKeyRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
)

// Config is a validated cluster config file: upstream avocado-vt's
// --vt-cluster-config JSON, plus vtcluster's per-host extensions.
type Config struct {
	// File is the path the config was loaded from, as given to LoadConfig.
	File string `json:"-"`
	// Hosts are the entries of "hosts", in file order, with defaults filled.
	Hosts []HostConfig `json:"hosts"`
	// Pools is the "pools" object verbatim, kept for the resource manager.
	// It is "{}" when the file has no "pools" (upstream crashes on that).
	Pools json.RawMessage `json:"pools"`
	// Warnings are problems that do not stop loading, such as unknown keys,
	// each formatted like a ConfigError.
	Warnings []string `json:"warnings,omitempty"`
}

// HostConfig is one entry of the config's "hosts" object.
type HostConfig struct {
	// Name is the key under "hosts": the node's registration name.
	Name string `json:"name"`
	// Address is the preferred SSH and agent target; empty if not given.
	Address string `json:"address,omitempty"`
	// Hostname is used when Address is empty.
	Hostname string `json:"hostname,omitempty"`
	// Username is the SSH user; "root" when not given, as upstream.
	Username string `json:"username"`
	// Password is the SSH password, empty if none. Upstream defaults it to
	// "root"; we have no default. It is never marshalled, so a config dump
	// or log line cannot leak it, and Node has no such field at all.
	Password string `json:"-"`
	// ShellPort is the SSH port, 22 when not given.
	ShellPort int `json:"shell_port"`
	// ProxyPort is the agent's XML-RPC port in direct mode, 9999 when not
	// given; a tunnelled agent listens on no port.
	ProxyPort int `json:"proxy_port"`
	// AgentBaseDir is the absolute directory on the node under which the
	// agent lives in <AgentBaseDir>/<Name>; DefaultAgentBaseDir if not given.
	AgentBaseDir string `json:"agent_base_dir"`
	// KeyFile is an SSH private key on the controller, absolute (relative
	// paths in the file are resolved against the file's directory); empty
	// means the SSH layer's defaults.
	KeyFile string `json:"key_file,omitempty"`
	// KnownHosts is the known_hosts file used to verify the node's host key,
	// absolute; empty means the SSH layer's default.
	KnownHosts string `json:"known_hosts,omitempty"`
	// AgentBind is AgentBindTunnel (default) or AgentBindDirect.
	AgentBind string `json:"agent_bind"`
	// TokenFile holds the agent's shared secret, absolute; empty if none.
	TokenFile string `json:"token_file,omitempty"`
	// Unauthenticated is set when AgentBind is direct and there is no
	// TokenFile: only an already running upstream agent, which has no
	// authentication, can serve such a node. The controller decides whether
	// to accept that; it must never start an agent like this itself.
	Unauthenticated bool `json:"unauthenticated,omitempty"`
	// Arch is the node's architecture as the user declares it (e.g.
	// "x86_64"); empty means "find out on the node".
	Arch string `json:"arch,omitempty"`
	// Labels are static node properties for selectors. Values are string,
	// bool, int or float64. Nil when the host has none.
	Labels map[string]any `json:"labels,omitempty"`
}

// DefaultHostConfig returns the parameters a host entry gets for every key
// it does not set.
func DefaultHostConfig(name string) HostConfig {
	return HostConfig{
		Name:         name,
		Username:     DefaultUsername,
		ShellPort:    DefaultShellPort,
		ProxyPort:    DefaultProxyPort,
		AgentBaseDir: DefaultAgentBaseDir,
		AgentBind:    AgentBindTunnel,
	}
}

// Host returns the connection target: Address, or Hostname if Address is empty.
func (h *HostConfig) Host() string {
	if h.Address != "" {
		return h.Address
	}
	return h.Hostname
}

// Node returns the state record for this host. The password is not
// carried over: state files never hold secrets.
func (h *HostConfig) Node() Node {
	n := Node{
		Name: h.Name, Address: h.Address, Hostname: h.Hostname, User: h.Username,
		ShellPort: h.ShellPort, ProxyPort: h.ProxyPort, AgentBaseDir: h.AgentBaseDir,
		KeyFile: h.KeyFile, KnownHosts: h.KnownHosts, AgentBind: h.AgentBind,
		TokenFile: h.TokenFile, Arch: h.Arch,
	}
	if h.Labels != nil {
		n.Labels = make(map[string]any, len(h.Labels))
		for k, v := range h.Labels {
			n.Labels[k] = v
		}
	}
	return n
}

// Host returns the host entry called name.
func (c *Config) Host(name string) (*HostConfig, bool) {
	for i := range c.Hosts {
		if c.Hosts[i].Name == name {
			return &c.Hosts[i], true
		}
	}
	return nil, false
}

// ConfigError is one problem in a cluster config file.
type ConfigError struct {
	// File is the config path as given to LoadConfig.
	File string
	// Path is the JSON path of the offending value, like
	// hosts.node1.shell_port; keys that are not plain words are quoted:
	// hosts["n1.example.com"]. Empty for file-level problems.
	Path string
	// Line and Column locate the problem (1-based, column in characters);
	// zero when unknown. Printed with the path: an editor jumps to the
	// line, a reader sees the key.
	Line, Column int
	// Msg says what is wrong and what was expected.
	Msg string
	// Err is the underlying error, if any (e.g. from reading the file).
	Err error
}

func (e *ConfigError) Error() string {
	return py.Locate(e.File, e.Line, e.Column, e.Path, e.Msg)
}

func (e *ConfigError) Unwrap() error { return e.Err }

// LoadConfig reads and validates a cluster config file. Nothing in it is
// used unless all of it is valid: on any problem it returns a nil Config and
// all problems found, joined, each a *ConfigError. Unknown keys are not
// errors; they are listed in Config.Warnings.
func LoadConfig(path string) (*Config, error) {
	data, err := readConfigFile(path)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, &ConfigError{File: path, Msg: "cannot resolve the config directory: " + err.Error(), Err: err}
	}
	l := &configLoader{file: path, dir: dir, data: data}
	cfg := l.load()
	if len(l.errs) > 0 {
		return nil, errors.Join(l.errs...)
	}
	cfg.File = path
	cfg.Warnings = l.warns
	return cfg, nil
}

func readConfigFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &ConfigError{File: path, Msg: "cannot read the config: " + unwrapPathError(err), Err: err}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, &ConfigError{File: path, Msg: "cannot read the config: " + unwrapPathError(err), Err: err}
	}
	if len(data) > maxConfigSize {
		return nil, &ConfigError{File: path, Msg: fmt.Sprintf("file is larger than %d bytes; is this really a cluster config?", maxConfigSize)}
	}
	return data, nil
}

// unwrapPathError drops the path that *fs.PathError repeats, since
// ConfigError already starts with it.
func unwrapPathError(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

type configLoader struct {
	file  string
	dir   string // absolute directory of the config file
	data  []byte
	errs  []error
	warns []string
}

func (l *configLoader) errorAt(v *py.Node, path, format string, args ...any) {
	line, col := 0, 0
	if v != nil {
		line, col = py.LineCol(l.data, v.Start)
	}
	l.errs = append(l.errs, &ConfigError{File: l.file, Path: path, Line: line, Column: col, Msg: fmt.Sprintf(format, args...)})
}

// treeError locates a problem ParseTree found.
func (l *configLoader) treeError(err error) error {
	var te *py.TreeError
	if !errors.As(err, &te) {
		return &ConfigError{File: l.file, Msg: err.Error()}
	}
	return &ConfigError{File: l.file, Path: te.Path, Line: te.Line, Column: te.Column, Msg: te.Msg}
}

// cfgTreePath is cfgPath for ParseTree: array elements as hosts.0.
func cfgTreePath(parent string, key any) string {
	if i, ok := key.(int); ok {
		return parent + "." + strconv.Itoa(i)
	}
	return cfgPath(parent, key.(string))
}

// warn records a warning at byte offset off of the file (-1: no place).
func (l *configLoader) warn(off int, path, format string, args ...any) {
	line, col := 0, 0
	if off >= 0 {
		line, col = py.LineCol(l.data, off)
	}
	l.warns = append(l.warns, (&ConfigError{File: l.file, Path: path, Line: line, Column: col, Msg: fmt.Sprintf(format, args...)}).Error())
}

func (l *configLoader) load() *Config {
	if len(bytes.TrimSpace(l.data)) == 0 {
		l.errs = append(l.errs, &ConfigError{File: l.file, Line: 1, Column: 1, Msg: "empty file: expected a JSON object with \"hosts\" and \"pools\""})
		return nil
	}
	top, dups, err := py.ParseTree(l.data, py.TreeOptions{MaxDepth: maxConfigDepth, Path: cfgTreePath})
	if err != nil {
		l.errs = append(l.errs, l.treeError(err))
		return nil
	}
	for _, d := range dups {
		l.errs = append(l.errs, l.treeError(d))
	}
	cfg := &Config{Pools: json.RawMessage("{}")}
	if top.Kind != py.JSONObject {
		l.errorAt(top, "", "expected a JSON object with \"hosts\" and \"pools\", got %s", cfgDescribe(top))
		return cfg
	}
	var hosts *py.Node
	for _, m := range top.Members {
		switch m.Key {
		case "hosts":
			hosts = m.Value
			cfg.Hosts = l.hosts(hosts)
		case "pools":
			if l.pools(m.Value) {
				cfg.Pools = json.RawMessage(l.data[m.Value.Start:m.Value.End])
			}
		default:
			l.warn(m.Start, cfgPath("", m.Key), "unknown key ignored (upstream reads only \"hosts\" and \"pools\")")
		}
	}
	if hosts == nil {
		l.warn(-1, "", "no \"hosts\": the cluster has no nodes")
	}
	return cfg
}

func (l *configLoader) hosts(v *py.Node) []HostConfig {
	if v.Kind != py.JSONObject {
		l.errorAt(v, "hosts", "expected an object of node name to host parameters, got %s", cfgDescribe(v))
		return nil
	}
	if len(v.Members) == 0 {
		l.warn(v.Start, "hosts", "no hosts: the cluster has no nodes")
	}
	var out []HostConfig
	for _, m := range v.Members {
		if h, ok := l.host(m.Key, m.Value); ok {
			out = append(out, h)
		}
	}
	return out
}

// pools checks the shape upstream's resource manager iterates over: groups
// of named pools, each pool a parameter object. The content of a pool is the
// resource manager's business.
func (l *configLoader) pools(v *py.Node) bool {
	if v.Kind != py.JSONObject {
		l.errorAt(v, "pools", "expected an object of pool groups, got %s", cfgDescribe(v))
		return false
	}
	ok := true
	for _, g := range v.Members {
		gp := cfgPath("pools", g.Key)
		if g.Value.Kind != py.JSONObject {
			l.errorAt(g.Value, gp, "expected an object of pool name to pool parameters, got %s", cfgDescribe(g.Value))
			ok = false
			continue
		}
		for _, p := range g.Value.Members {
			if p.Value.Kind != py.JSONObject {
				l.errorAt(p.Value, cfgPath(gp, p.Key), "expected an object of pool parameters, got %s", cfgDescribe(p.Value))
				ok = false
			}
		}
	}
	return ok
}

func (l *configLoader) host(name string, v *py.Node) (HostConfig, bool) {
	path := cfgPath("hosts", name)
	nerr := len(l.errs)
	h := DefaultHostConfig(name)
	if v.Kind != py.JSONObject {
		l.errorAt(v, path, "expected an object of host parameters, got %s", cfgDescribe(v))
		return h, false
	}
	// Types are checked here, where positions are known; what the values
	// may be is ValidateHost's, shared with "node add" and the state.
	typeErr := map[string]bool{}
	at := map[string]*py.Node{}
	var labels *py.Node
	for _, m := range v.Members {
		kp := cfgPath(path, m.Key)
		at[m.Key] = m.Value
		before := len(l.errs)
		switch m.Key {
		case "address":
			h.Address, _ = l.str(m.Value, kp)
		case "hostname":
			h.Hostname, _ = l.str(m.Value, kp)
		case "username":
			h.Username, _ = l.str(m.Value, kp)
		case "password":
			h.Password, _ = l.str(m.Value, kp)
		case "shell_port":
			h.ShellPort = l.port(m.Value, kp)
		case "proxy_port":
			h.ProxyPort = l.port(m.Value, kp)
		case "shell_prompt":
			// Accepted for upstream files; we run commands, not an
			// interactive shell, so there is no prompt to match.
			l.str(m.Value, kp)
		case "agent_base_dir":
			if s, ok := l.str(m.Value, kp); ok {
				h.AgentBaseDir = s
				if strings.HasPrefix(s, "/") && !slices.Contains(strings.Split(s, "/"), "..") {
					h.AgentBaseDir = filepath.Clean(s)
				}
			}
		case "key_file":
			h.KeyFile = l.localPath(m.Value, kp)
		case "known_hosts":
			h.KnownHosts = l.localPath(m.Value, kp)
		case "token_file":
			h.TokenFile = l.localPath(m.Value, kp)
		case "agent_bind":
			h.AgentBind, _ = l.str(m.Value, kp)
		case "arch":
			h.Arch, _ = l.str(m.Value, kp)
		case "labels":
			labels = m.Value
			h.Labels = l.labels(m.Value, kp)
		default:
			l.warn(m.Start, kp, "unknown host parameter ignored%s", suggestKey(m.Key, hostKeys))
		}
		typeErr[m.Key] = len(l.errs) > before
	}
	for _, e := range ValidateHost(h) {
		key, label, isLabel := strings.Cut(e.Field, ".")
		if e.Field != "" && typeErr[key] && !isLabel {
			continue // already reported, with what was expected
		}
		jv, kp := v, path
		switch {
		case e.Field == "name" || e.Field == "":
		case isLabel && labels != nil:
			jv, kp = labels, cfgPath(cfgPath(path, "labels"), label)
			for _, m := range labels.Members {
				if m.Key == label {
					jv = m.Value
				}
			}
		case at[e.Field] != nil:
			jv, kp = at[e.Field], cfgPath(path, e.Field)
		}
		l.errorAt(jv, kp, "%s", e.Msg)
	}
	// In file order, as a reader fixes them; the host as a whole last.
	slices.SortStableFunc(l.errs[nerr:], func(a, b error) int {
		ea, eb := a.(*ConfigError), b.(*ConfigError)
		if ha, hb := ea.Path == path, eb.Path == path; ha != hb {
			if ha {
				return 1
			}
			return -1
		}
		return cmp.Or(cmp.Compare(ea.Line, eb.Line), cmp.Compare(ea.Column, eb.Column))
	})
	if h.AgentBind == AgentBindDirect && h.TokenFile == "" {
		h.Unauthenticated = true
		l.warn(v.Start, path, "agent_bind \"direct\" without token_file: only an already running upstream agent (no authentication) can serve this node")
	}
	return h, len(l.errs) == nerr
}

// HostError is one invalid parameter of a host.
type HostError struct {
	// Host is the node name.
	Host string
	// Field is the parameter's config key ("address", "shell_port"),
	// "labels.KEY" for a label, "name" for the node name itself, or empty
	// for the host as a whole.
	Field string
	// Msg says what is wrong and what is expected.
	Msg string
}

func (e *HostError) Error() string {
	switch e.Field {
	case "name":
		return e.Msg
	case "":
		return fmt.Sprintf("node %q: %s", e.Host, e.Msg)
	}
	return fmt.Sprintf("node %q: %s: %s", e.Host, e.Field, e.Msg)
}

// ValidateHost checks what a host's parameters may be, wherever they come
// from: a cluster config (LoadConfig), "vtcluster node add", or a state file
// read back. Local file names must be absolute by now (each source resolves
// them its own way). It returns every problem, nil when there is none.
func ValidateHost(h HostConfig) []*HostError {
	var errs []*HostError
	bad := func(field, format string, args ...any) {
		errs = append(errs, &HostError{Host: h.Name, Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if !nodeNameRE.MatchString(h.Name) || h.Name == "." || h.Name == ".." {
		bad("name", "node name %q must be made of letters, digits, '.', '_' and '-', and not start with '-' (it names a directory on the node, and is passed in command lines)", h.Name)
	}
	if h.Address == "" && h.Hostname == "" {
		bad("", "needs \"address\" or \"hostname\" to reach the node")
	}
	for _, w := range []struct {
		field, val string
		emptyOK    bool
	}{{"address", h.Address, true}, {"hostname", h.Hostname, true}, {"username", h.Username, false}} {
		// These end up in SSH connections and in messages, so blanks,
		// control characters and a leading '-' (an option to any command
		// it might reach) are refused. Upstream treats an empty address
		// as absent.
		switch {
		case w.val == "" && w.emptyOK:
		case w.val == "":
			bad(w.field, "expected a non-empty string")
		case strings.IndexFunc(w.val, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
			bad(w.field, "must not contain blanks or control characters, got %q", w.val)
		case strings.HasPrefix(w.val, "-"):
			bad(w.field, "must not start with '-', got %q", w.val)
		}
	}
	for _, p := range []struct {
		field string
		val   int
	}{{"shell_port", h.ShellPort}, {"proxy_port", h.ProxyPort}} {
		if p.val < 1 || p.val > 65535 {
			bad(p.field, "expected a port number (1-65535), got %d", p.val)
		}
	}
	switch d := h.AgentBaseDir; {
	case !strings.HasPrefix(d, "/") || strings.IndexFunc(d, unicode.IsControl) >= 0:
		bad("agent_base_dir", "expected an absolute directory on the node, got %q", d)
	case slices.Contains(strings.Split(d, "/"), ".."):
		// The agent dir is removed recursively on cleanup; a path that
		// climbs makes its real location hard to see.
		bad("agent_base_dir", "must not contain \"..\", got %q", d)
	case path.Clean(d) == "/":
		bad("agent_base_dir", "must not be the root directory: the agent lives in and is cleaned up from <agent_base_dir>/<name>")
	}
	for _, f := range []struct{ field, val string }{{"key_file", h.KeyFile}, {"known_hosts", h.KnownHosts}, {"token_file", h.TokenFile}} {
		if f.val != "" && (!filepath.IsAbs(f.val) || strings.IndexFunc(f.val, unicode.IsControl) >= 0) {
			bad(f.field, "expected an absolute file name, got %q", f.val)
		}
	}
	if h.AgentBind != AgentBindTunnel && h.AgentBind != AgentBindDirect {
		bad("agent_bind", "expected %q or %q, got %q", AgentBindTunnel, AgentBindDirect, h.AgentBind)
	}
	if h.Arch != "" && !archRE.MatchString(h.Arch) {
		bad("arch", "expected an architecture name like \"x86_64\", got %q", h.Arch)
	}
	reserved := PropertyKeys()
	for _, k := range slices.Sorted(maps.Keys(h.Labels)) {
		switch v := h.Labels[k]; {
		case !labelKeyRE.MatchString(k):
			bad("labels."+k, "label name must be made of letters, digits, '.', '_' and '-'")
		case slices.Contains(reserved, k):
			// A static label under a collected property's name would be
			// ambiguous in selectors; refuse it instead of picking a winner.
			bad("labels."+k, "label %q collides with the node property collected under that name; rename the label", k)
		default:
			switch v.(type) {
			case string, bool, int, int64, float64:
			default:
				bad("labels."+k, "expected a string, number or boolean, got %T", v)
			}
		}
	}
	return errs
}

var hostKeys = []string{
	"address", "hostname", "username", "password", "shell_port", "proxy_port", "shell_prompt",
	"agent_base_dir", "key_file", "known_hosts", "token_file", "agent_bind", "arch", "labels",
}

// suggestKey names the known key a misspelt one was probably meant to be,
// since an ignored "shel_port" silently means port 22.
func suggestKey(key string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if d := editDistance(key, k); d < bestDist {
			best, bestDist = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func (l *configLoader) str(v *py.Node, path string) (string, bool) {
	if v.Kind != py.JSONString {
		l.errorAt(v, path, "expected a string, got %s", cfgDescribe(v))
		return "", false
	}
	return v.Str, true
}

func (l *configLoader) port(v *py.Node, path string) int {
	var digits string
	switch v.Kind {
	case py.JSONString:
		digits = v.Str
	case py.JSONNumber:
		digits = string(v.Num)
	}
	n, err := strconv.ParseUint(digits, 10, 16)
	if err != nil || n == 0 {
		l.errorAt(v, path, "expected a port number (1-65535) as integer or string, got %s", cfgDescribe(v))
		return 0
	}
	return int(n)
}

// localPath resolves a controller-side file name: "~/" is the user's home,
// and relative names are relative to the config file, not to wherever the
// command happens to run.
func (l *configLoader) localPath(v *py.Node, path string) string {
	s, ok := l.str(v, path)
	if !ok {
		return ""
	}
	if s == "" || strings.IndexFunc(s, unicode.IsControl) >= 0 {
		l.errorAt(v, path, "expected a file name, got %s", cfgDescribe(v))
		return ""
	}
	if rest, ok := strings.CutPrefix(s, "~/"); ok {
		home, err := os.UserHomeDir()
		if err != nil {
			l.errorAt(v, path, "cannot expand \"~\": %v", err)
			return ""
		}
		return filepath.Join(home, rest)
	}
	if filepath.IsAbs(s) {
		return filepath.Clean(s)
	}
	return filepath.Join(l.dir, s)
}

func (l *configLoader) labels(v *py.Node, path string) map[string]any {
	if v.Kind != py.JSONObject {
		l.errorAt(v, path, "expected an object of label name to string, number or boolean, got %s", cfgDescribe(v))
		return nil
	}
	out := make(map[string]any, len(v.Members))
	for _, m := range v.Members {
		kp := cfgPath(path, m.Key)
		switch m.Value.Kind {
		case py.JSONString:
			out[m.Key] = m.Value.Str
		case py.JSONBool:
			out[m.Key] = m.Value.Bool
		case py.JSONNumber:
			n, err := py.Number(m.Value.Num.String())
			if err != nil {
				l.errorAt(m.Value, kp, "%v", err)
				continue
			}
			out[m.Key] = n
		default:
			l.errorAt(m.Value, kp, "expected a string, number or boolean, got %s", cfgDescribe(m.Value))
		}
	}
	return out
}

// cfgPath appends key to a dotted path, quoting keys that are not plain
// words so that a node called "n1.example.com" is not read as three keys.
func cfgPath(base, key string) string {
	if !plainKeyRE.MatchString(key) {
		return base + "[" + strconv.Quote(key) + "]"
	}
	if base == "" {
		return key
	}
	return base + "." + key
}

// cfgDescribe renders a value for "got ..." in messages.
func cfgDescribe(v *py.Node) string {
	switch v.Kind {
	case py.JSONObject:
		return "an object"
	case py.JSONArray:
		return "an array"
	case py.JSONString:
		s := v.Str
		if utf8.RuneCountInString(s) > 40 {
			s = string([]rune(s)[:40]) + "..."
		}
		return strconv.Quote(s)
	case py.JSONNumber:
		return string(v.Num)
	case py.JSONBool:
		return strconv.FormatBool(v.Bool)
	default:
		return "null"
	}
}
