package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
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

// reservedLabels are the property names collected from every node through
// its agent. A static label with one of these names would be ambiguous in
// selectors, so the config refuses it instead of picking a winner.
var reservedLabels = []string{
	"hostname", "cpu_vendor_id", "cpu_model_name", "arch", "cpu_count",
	"mem_total", "memory_gb", "kernel", "kvm",
}

var (
	// A node name becomes a directory on the node (<agent_base_dir>/<name>)
	// and a state file key, so it is a strict file-name alphabet.
	nodeNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
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
	// zero when unknown. They are printed only when Path is empty.
	Line, Column int
	// Msg says what is wrong and what was expected.
	Msg string
	// Err is the underlying error, if any (e.g. from reading the file).
	Err error
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Path == "" && e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Column)
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
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

func (l *configLoader) errorAt(v *jvalue, path, format string, args ...any) {
	line, col := 0, 0
	if v != nil {
		line, col = textLineCol(l.data, v.start)
	}
	l.errs = append(l.errs, &ConfigError{File: l.file, Path: path, Line: line, Column: col, Msg: fmt.Sprintf(format, args...)})
}

func (l *configLoader) warn(path, format string, args ...any) {
	l.warns = append(l.warns, (&ConfigError{File: l.file, Path: path, Msg: fmt.Sprintf(format, args...)}).Error())
}

func (l *configLoader) load() *Config {
	root, err := parseJSONTree(l.data)
	if err != nil {
		l.errs = append(l.errs, err.configError(l.file))
		return nil
	}
	for _, d := range root.dups {
		l.errs = append(l.errs, d.configError(l.file))
	}
	cfg := &Config{Pools: json.RawMessage("{}")}
	top := root.value
	if top.kind != jObject {
		l.errorAt(top, "", "expected a JSON object with \"hosts\" and \"pools\", got %s", cfgDescribe(top))
		return cfg
	}
	var hosts *jvalue
	for _, m := range top.members {
		switch m.key {
		case "hosts":
			hosts = m.val
			cfg.Hosts = l.hosts(hosts)
		case "pools":
			if l.pools(m.val) {
				cfg.Pools = json.RawMessage(l.data[m.val.start:m.val.end])
			}
		default:
			l.warn(cfgPath("", m.key), "unknown key ignored (upstream reads only \"hosts\" and \"pools\")")
		}
	}
	if hosts == nil {
		l.warn("", "no \"hosts\": the cluster has no nodes")
	}
	return cfg
}

func (l *configLoader) hosts(v *jvalue) []HostConfig {
	if v.kind != jObject {
		l.errorAt(v, "hosts", "expected an object of node name to host parameters, got %s", cfgDescribe(v))
		return nil
	}
	if len(v.members) == 0 {
		l.warn("hosts", "no hosts: the cluster has no nodes")
	}
	var out []HostConfig
	for _, m := range v.members {
		if h, ok := l.host(m.key, m.val); ok {
			out = append(out, h)
		}
	}
	return out
}

// pools checks the shape upstream's resource manager iterates over: groups
// of named pools, each pool a parameter object. The content of a pool is the
// resource manager's business.
func (l *configLoader) pools(v *jvalue) bool {
	if v.kind != jObject {
		l.errorAt(v, "pools", "expected an object of pool groups, got %s", cfgDescribe(v))
		return false
	}
	ok := true
	for _, g := range v.members {
		gp := cfgPath("pools", g.key)
		if g.val.kind != jObject {
			l.errorAt(g.val, gp, "expected an object of pool name to pool parameters, got %s", cfgDescribe(g.val))
			ok = false
			continue
		}
		for _, p := range g.val.members {
			if p.val.kind != jObject {
				l.errorAt(p.val, cfgPath(gp, p.key), "expected an object of pool parameters, got %s", cfgDescribe(p.val))
				ok = false
			}
		}
	}
	return ok
}

func (l *configLoader) host(name string, v *jvalue) (HostConfig, bool) {
	path := cfgPath("hosts", name)
	nerr := len(l.errs)
	if !nodeNameRE.MatchString(name) || name == "." || name == ".." {
		l.errorAt(v, path, "node name %q must be made of letters, digits, '.', '_' and '-' (it names a directory on the node)", name)
	}
	h := DefaultHostConfig(name)
	if v.kind != jObject {
		l.errorAt(v, path, "expected an object of host parameters, got %s", cfgDescribe(v))
		return h, false
	}
	for _, m := range v.members {
		kp := cfgPath(path, m.key)
		switch m.key {
		case "address":
			h.Address = l.hostWord(m.val, kp, true)
		case "hostname":
			h.Hostname = l.hostWord(m.val, kp, true)
		case "username":
			h.Username = l.hostWord(m.val, kp, false)
		case "password":
			h.Password, _ = l.str(m.val, kp)
		case "shell_port":
			h.ShellPort = l.port(m.val, kp)
		case "proxy_port":
			h.ProxyPort = l.port(m.val, kp)
		case "shell_prompt":
			// Accepted for upstream files; we run commands, not an
			// interactive shell, so there is no prompt to match.
			l.str(m.val, kp)
		case "agent_base_dir":
			h.AgentBaseDir = l.remoteDir(m.val, kp)
		case "key_file":
			h.KeyFile = l.localPath(m.val, kp)
		case "known_hosts":
			h.KnownHosts = l.localPath(m.val, kp)
		case "token_file":
			h.TokenFile = l.localPath(m.val, kp)
		case "agent_bind":
			if s, ok := l.str(m.val, kp); ok {
				if s != AgentBindTunnel && s != AgentBindDirect {
					l.errorAt(m.val, kp, "expected %q or %q, got %s", AgentBindTunnel, AgentBindDirect, cfgDescribe(m.val))
				}
				h.AgentBind = s
			}
		case "arch":
			if s, ok := l.str(m.val, kp); ok {
				if !archRE.MatchString(s) {
					l.errorAt(m.val, kp, "expected an architecture name like \"x86_64\", got %s", cfgDescribe(m.val))
				}
				h.Arch = s
			}
		case "labels":
			h.Labels = l.labels(m.val, kp)
		default:
			l.warn(kp, "unknown host parameter ignored%s", suggestKey(m.key, hostKeys))
		}
	}
	if h.Address == "" && h.Hostname == "" {
		l.errorAt(v, path, "needs \"address\" or \"hostname\" to reach the node")
	}
	if h.AgentBind == AgentBindDirect && h.TokenFile == "" {
		h.Unauthenticated = true
		l.warn(path, "agent_bind \"direct\" without token_file: only an already running upstream agent (no authentication) can serve this node")
	}
	return h, len(l.errs) == nerr
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

func (l *configLoader) str(v *jvalue, path string) (string, bool) {
	if v.kind != jString {
		l.errorAt(v, path, "expected a string, got %s", cfgDescribe(v))
		return "", false
	}
	return v.str, true
}

// hostWord checks a value that names a user or host. These end up in SSH
// connections and in messages, so blanks, control characters and a leading
// '-' (an option to any command it might reach) are refused. Upstream
// treats an empty address as absent, so emptyOK keeps that.
func (l *configLoader) hostWord(v *jvalue, path string, emptyOK bool) string {
	s, ok := l.str(v, path)
	if !ok {
		return ""
	}
	switch {
	case s == "" && emptyOK:
		return ""
	case s == "":
		l.errorAt(v, path, "expected a non-empty string")
	case strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		l.errorAt(v, path, "must not contain blanks or control characters, got %s", cfgDescribe(v))
	case strings.HasPrefix(s, "-"):
		l.errorAt(v, path, "must not start with '-', got %s", cfgDescribe(v))
	}
	return s
}

func (l *configLoader) port(v *jvalue, path string) int {
	var digits string
	switch v.kind {
	case jString:
		digits = v.str
	case jNumber:
		digits = string(v.num)
	}
	n, err := strconv.ParseUint(digits, 10, 16)
	if err != nil || n == 0 {
		l.errorAt(v, path, "expected a port number (1-65535) as integer or string, got %s", cfgDescribe(v))
		return 0
	}
	return int(n)
}

func (l *configLoader) remoteDir(v *jvalue, path string) string {
	s, ok := l.str(v, path)
	if !ok {
		return ""
	}
	if !strings.HasPrefix(s, "/") || strings.IndexFunc(s, unicode.IsControl) >= 0 {
		l.errorAt(v, path, "expected an absolute directory on the node, got %s", cfgDescribe(v))
		return ""
	}
	for _, part := range strings.Split(s, "/") {
		if part == ".." {
			// The agent dir is removed recursively on cleanup; a path
			// that climbs makes its real location hard to see.
			l.errorAt(v, path, "must not contain \"..\", got %s", cfgDescribe(v))
			return ""
		}
	}
	return filepath.Clean(s)
}

// localPath resolves a controller-side file name: "~/" is the user's home,
// and relative names are relative to the config file, not to wherever the
// command happens to run.
func (l *configLoader) localPath(v *jvalue, path string) string {
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

func (l *configLoader) labels(v *jvalue, path string) map[string]any {
	if v.kind != jObject {
		l.errorAt(v, path, "expected an object of label name to string, number or boolean, got %s", cfgDescribe(v))
		return nil
	}
	out := make(map[string]any, len(v.members))
	for _, m := range v.members {
		kp := cfgPath(path, m.key)
		if !labelKeyRE.MatchString(m.key) {
			l.errorAt(m.val, kp, "label name must be made of letters, digits, '.', '_' and '-'")
			continue
		}
		if isReservedLabel(m.key) {
			l.errorAt(m.val, kp, "label %q collides with the node property collected under that name; rename the label", m.key)
			continue
		}
		switch m.val.kind {
		case jString:
			out[m.key] = m.val.str
		case jBool:
			out[m.key] = m.val.b
		case jNumber:
			n, err := jsonNumberValue(m.val.num)
			if err != nil {
				l.errorAt(m.val, kp, "%v", err)
				continue
			}
			out[m.key] = n
		default:
			l.errorAt(m.val, kp, "expected a string, number or boolean, got %s", cfgDescribe(m.val))
		}
	}
	return out
}

func isReservedLabel(k string) bool {
	for _, r := range reservedLabels {
		if k == r {
			return true
		}
	}
	return false
}

// jsonNumberValue turns a JSON number into int when it is written as an
// integer, float64 otherwise, so that labels, and properties read back from
// a state file, have the types the agent's XML-RPC values have.
func jsonNumberValue(num json.Number) (any, error) {
	s := string(num)
	if !strings.ContainsAny(s, ".eE") {
		if i, err := strconv.ParseInt(s, 10, 0); err == nil {
			return int(i), nil
		}
		return nil, fmt.Errorf("integer %s is out of range", s)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return nil, fmt.Errorf("number %s is out of range", s)
	}
	return f, nil
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
func cfgDescribe(v *jvalue) string {
	switch v.kind {
	case jObject:
		return "an object"
	case jArray:
		return "an array"
	case jString:
		s := v.str
		if utf8.RuneCountInString(s) > 40 {
			s = string([]rune(s)[:40]) + "..."
		}
		return strconv.Quote(s)
	case jNumber:
		return string(v.num)
	case jBool:
		return strconv.FormatBool(v.b)
	default:
		return "null"
	}
}

// The config is parsed into a small tree rather than decoded into structs,
// because the checks need what encoding/json hides: every duplicate key
// (Python keeps the last, gjson the first, so a duplicate means two
// different clusters), the order of hosts, the position of each value, and
// the raw text of "pools".

type jkind uint8

const (
	jNull jkind = iota
	jObject
	jArray
	jString
	jNumber
	jBool
)

type jvalue struct {
	kind       jkind
	start, end int // byte offsets of the value's text
	members    []jmember
	elems      []*jvalue
	str        string
	num        json.Number
	b          bool
}

type jmember struct {
	key string
	pos int // byte offset of the key
	val *jvalue
}

type jsonTree struct {
	value *jvalue
	dups  []*jsonSyntaxError
}

// jsonSyntaxError is a problem located by byte offset, turned into a
// ConfigError once the file name is known.
type jsonSyntaxError struct {
	data   []byte
	offset int
	path   string
	msg    string
}

func (e *jsonSyntaxError) configError(file string) *ConfigError {
	line, col := textLineCol(e.data, e.offset)
	return &ConfigError{File: file, Path: e.path, Line: line, Column: col, Msg: e.msg}
}

type jsonParser struct {
	data []byte
	dec  *json.Decoder
	dups []*jsonSyntaxError
}

func parseJSONTree(data []byte) (*jsonTree, *jsonSyntaxError) {
	if len(data) >= 3 && string(data[:3]) == "\xef\xbb\xbf" {
		return nil, &jsonSyntaxError{data: data, msg: "file starts with a UTF-8 byte order mark, which JSON does not allow (Python's json.load refuses it too); save it without BOM"}
	}
	if !utf8.Valid(data) {
		off := 0
		for off < len(data) {
			r, size := utf8.DecodeRune(data[off:])
			if r == utf8.RuneError && size == 1 {
				break
			}
			off += size
		}
		return nil, &jsonSyntaxError{data: data, offset: off, msg: "invalid UTF-8: the file must be UTF-8 text"}
	}
	p := &jsonParser{data: data, dec: json.NewDecoder(bytes.NewReader(data))}
	p.dec.UseNumber()
	v, err := p.value("", 0)
	if err != nil {
		return nil, err
	}
	if tok, err := p.dec.Token(); err != io.EOF {
		if err != nil {
			return nil, p.syntaxError(err)
		}
		_ = tok
		return nil, &jsonSyntaxError{data: data, offset: v.end + cfgSkipSpace(data[v.end:]), msg: "unexpected data after the top-level JSON value"}
	}
	return &jsonTree{value: v, dups: p.dups}, nil
}

// pos is the offset of the next token: the decoder reports the end of the
// previous one, and separators and blanks lie in between.
func (p *jsonParser) pos() int {
	off := int(p.dec.InputOffset())
	for off < len(p.data) && strings.IndexByte(" \t\r\n,:", p.data[off]) >= 0 {
		off++
	}
	return off
}

func (p *jsonParser) value(path string, depth int) (*jvalue, *jsonSyntaxError) {
	if depth > maxConfigDepth {
		return nil, &jsonSyntaxError{data: p.data, offset: p.pos(), msg: fmt.Sprintf("nested deeper than %d levels", maxConfigDepth)}
	}
	v := &jvalue{start: p.pos()}
	tok, err := p.dec.Token()
	if err != nil {
		return nil, p.syntaxError(err)
	}
	switch t := tok.(type) {
	case json.Delim:
		if t == '{' {
			v.kind = jObject
			seen := make(map[string]int)
			for p.dec.More() {
				kpos := p.pos()
				ktok, err := p.dec.Token()
				if err != nil {
					return nil, p.syntaxError(err)
				}
				key, _ := ktok.(string) // the decoder only yields strings as keys
				mp := cfgPath(path, key)
				val, serr := p.value(mp, depth+1)
				if serr != nil {
					return nil, serr
				}
				if first, dup := seen[key]; dup {
					fl, fc := textLineCol(p.data, first)
					p.dups = append(p.dups, &jsonSyntaxError{data: p.data, offset: kpos, path: mp, msg: fmt.Sprintf(
						"duplicate key %q (first at line %d, column %d): Python uses the last one and Go tools the first, so the file is ambiguous; remove one",
						key, fl, fc)})
					continue
				}
				seen[key] = kpos
				v.members = append(v.members, jmember{key: key, pos: kpos, val: val})
			}
		} else {
			v.kind = jArray
			for p.dec.More() {
				elem, serr := p.value(path+"."+strconv.Itoa(len(v.elems)), depth+1)
				if serr != nil {
					return nil, serr
				}
				v.elems = append(v.elems, elem)
			}
		}
		if _, err := p.dec.Token(); err != nil { // the closing delimiter
			return nil, p.syntaxError(err)
		}
	case string:
		v.kind, v.str = jString, t
	case json.Number:
		v.kind, v.num = jNumber, t
	case bool:
		v.kind, v.b = jBool, t
	case nil:
		v.kind = jNull
	}
	v.end = int(p.dec.InputOffset())
	return v, nil
}

func (p *jsonParser) syntaxError(err error) *jsonSyntaxError {
	// json.Decoder's SyntaxError.Offset is relative to its internal buffer,
	// not the input; its InputOffset stops just before the offending token.
	off := int(p.dec.InputOffset())
	off += cfgSkipSpace(p.data[off:])
	var se *json.SyntaxError
	if errors.As(err, &se) {
		rest := string(p.data[off:])
		for _, word := range []string{"NaN", "Infinity", "-Infinity"} {
			if strings.HasPrefix(rest, word) {
				return &jsonSyntaxError{data: p.data, offset: off, msg: word + " is not valid JSON (Python's json.dump writes it unless allow_nan=False); use a number or a string"}
			}
		}
		return &jsonSyntaxError{data: p.data, offset: off, msg: "invalid JSON: " + se.Error()}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		if len(strings.TrimSpace(string(p.data))) == 0 {
			return &jsonSyntaxError{data: p.data, offset: len(p.data), msg: "empty file: expected a JSON object with \"hosts\" and \"pools\""}
		}
		return &jsonSyntaxError{data: p.data, offset: len(p.data), msg: "invalid JSON: unexpected end of file (an unclosed object, array or string?)"}
	}
	return &jsonSyntaxError{data: p.data, offset: off, msg: "invalid JSON: " + err.Error()}
}

func cfgSkipSpace(b []byte) int {
	n := 0
	for n < len(b) && strings.IndexByte(" \t\r\n", b[n]) >= 0 {
		n++
	}
	return n
}

// textLineCol converts a byte offset to a 1-based line and character column.
func textLineCol(data []byte, off int) (line, col int) {
	off = max(0, min(off, len(data)))
	before := data[:off]
	line = 1 + strings.Count(string(before), "\n")
	start := strings.LastIndexByte(string(before), '\n') + 1
	return line, utf8.RuneCount(before[start:]) + 1
}
