// Package lab builds a test lab of real SSH hosts on one Linux machine: each
// host is a network namespace with its own address, hostname and sshd,
// joined to the root namespace by a bridge. Go tests, "make demo" and the
// Python end-to-end tests use it to exercise vtcluster against real sshd.
//
// Hosts share the machine's filesystem, users and process table; only the
// network and the hostname are separate. Building a lab needs root, ip(8)
// (iproute2) and sshd(8) (OpenSSH). All traffic stays between the root
// namespace and the lab's own namespaces: hosts have no default route.
package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/tidwall/gjson"
)

// Spec describes a lab to build.
type Spec struct {
	// Dir receives everything the lab writes: keys, known_hosts, sshd
	// configs, pid files, logs and lab.json. Created with mode 0700 when
	// missing. Required; it must not already hold a lab.
	Dir string
	// Hosts is the number of hosts, 1 to 200.
	Hosts int
	// Prefix names the lab's namespaces and hostnames ("<prefix>-node1"),
	// bridge ("<prefix>br"), veths ("<prefix>v1") and password user
	// ("<prefix>u"): 2 to 8 characters [a-z0-9], starting with a letter.
	// Empty means "vtl" followed by random hex digits.
	Prefix string
	// PasswordUser creates a throwaway local user with a random password
	// that may log in with it (root itself only takes keys). Down removes it.
	PasswordUser bool
	// Subnet, when valid, is where the lab's /24 comes from: a /24 is used
	// as is (refused when another lab or an interface of this machine has
	// it), a wider IPv4 prefix is searched for a free /24. The zero value
	// searches 10.250.0.0/16.
	Subnet netip.Prefix
	// OwnerPID, when non-zero, ties the lab to that process: DownAll reaps
	// the lab once the process is gone. Zero means the lab lives until Down,
	// or until its Dir disappears.
	OwnerPID int
	// SSHD is the sshd binary. Empty means /usr/sbin/sshd.
	SSHD string
	// Logger receives progress at Debug and teardown problems at Warn.
	// Nil discards.
	Logger *slog.Logger
}

// Lab is a running (or partly built) lab. Its exported fields are what
// lab.json holds; another process gets the same value from Load.
type Lab struct {
	Dir    string `json:"dir"`
	Prefix string `json:"prefix"`
	// Subnet is the lab's private /24, e.g. "10.250.3.0/24".
	Subnet string `json:"subnet"`
	// Gateway is the root namespace's address on the lab bridge: the
	// controller's address as the hosts see it.
	Gateway string `json:"gateway"`
	Bridge  string `json:"bridge"`
	Hosts   []Host `json:"hosts"`
	// ClientKey is an unencrypted ed25519 private key authorized for root
	// on every host; ClientPublicKey is its authorized_keys line file.
	ClientKey       string `json:"client_key"`
	ClientPublicKey string `json:"client_public_key"`
	// AuthorizedKeys is the file every sshd reads for every user.
	AuthorizedKeys string `json:"authorized_keys"`
	// KnownHosts lists every host's key under "address" (port 22).
	KnownHosts string `json:"known_hosts"`
	// User is the throwaway password user, when Spec.PasswordUser was set.
	User       *User     `json:"user,omitempty"`
	OwnerPID   int       `json:"owner_pid,omitempty"`
	OwnerStart uint64    `json:"owner_start,omitempty"`
	Created    time.Time `json:"created"`

	logger *slog.Logger
}

// Host is one lab host.
type Host struct {
	// Name is the host's name in cluster configs: "node1", "node2", ...
	Name string `json:"name"`
	// Hostname is what hostname(1) prints on the host: "<prefix>-node1".
	Hostname string `json:"hostname"`
	// Netns is the network namespace, same text as Hostname.
	Netns string `json:"netns"`
	// Veth is the root-namespace end of the host's link to the bridge; the
	// other end is "eth0" inside the namespace.
	Veth    string `json:"veth"`
	Address string `json:"address"`
	Port    int    `json:"port"`
	// SSHDPid is the daemonized sshd's pid, read from PidFile at start.
	SSHDPid       int    `json:"sshd_pid,omitempty"`
	SSHDConfig    string `json:"sshd_config"`
	PidFile       string `json:"pid_file"`
	LogFile       string `json:"log_file"`
	HostKey       string `json:"host_key"`
	HostPublicKey string `json:"host_public_key"`
}

// User is a throwaway local user for password authentication.
type User struct {
	Name string `json:"name"`
	// PasswordFile holds the password (mode 0600), so that lab.json itself
	// carries no secret.
	PasswordFile string `json:"password_file"`
	// Password is filled by Up and Load from PasswordFile.
	Password string `json:"-"`
}

// Addr returns the host's "address:port" for dialing.
func (h Host) Addr() string {
	return net.JoinHostPort(h.Address, strconv.Itoa(h.Port))
}

const (
	stateFile = "lab.json"
	// defaultUpTimeout bounds Up when its context has no deadline: starting
	// a handful of sshds takes well under a second on an idle machine.
	defaultUpTimeout = 60 * time.Second
	// downTimeout bounds each teardown command and each wait for processes.
	downTimeout = 20 * time.Second
)

// Up builds a lab and returns once every sshd accepts TCP connections. On
// any failure it tears down whatever it built and returns the error.
func Up(ctx context.Context, spec Spec) (l *Lab, err error) {
	if spec.Dir == "" {
		return nil, errors.New("lab: spec: Dir is required")
	}
	if spec.Hosts < 1 || spec.Hosts > maxHosts {
		return nil, fmt.Errorf("lab: spec: Hosts is %d, want 1 to %d", spec.Hosts, maxHosts)
	}
	if spec.Prefix != "" {
		if err := validPrefix(spec.Prefix); err != nil {
			return nil, err
		}
	}
	if spec.SSHD == "" {
		spec.SSHD = "/usr/sbin/sshd"
	}
	if spec.Logger == nil {
		spec.Logger = slog.New(slog.DiscardHandler)
	}
	if err := CheckTools(spec.SSHD); err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultUpTimeout)
		defer cancel()
	}
	dir, err := filepath.Abs(spec.Dir)
	if err != nil {
		return nil, fmt.Errorf("lab: dir %q: %w", spec.Dir, err)
	}
	spec.Dir = dir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, stateFile)); err == nil {
		return nil, fmt.Errorf("lab: %s already holds a lab (%s exists); run \"vtcluster lab down --dir %s\" first", dir, stateFile, dir)
	}

	l, err = plan(spec)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			if derr := l.Down(); derr != nil {
				err = errors.Join(err, fmt.Errorf("lab: undo after failed start: %w", derr))
			}
		}
	}()
	start := time.Now()
	if err := l.writeKeys(); err != nil {
		return l, err
	}
	if err := l.buildNetwork(ctx); err != nil {
		return l, err
	}
	if spec.PasswordUser {
		if err := l.addUser(ctx); err != nil {
			return l, err
		}
	}
	if err := l.startSSHDs(ctx, spec.SSHD); err != nil {
		return l, err
	}
	if err := l.save(); err != nil {
		return l, err
	}
	l.logger.Debug("lab up", "dir", l.Dir, "prefix", l.Prefix, "subnet", l.Subnet,
		"hosts", len(l.Hosts), "duration_seconds", time.Since(start).Seconds())
	return l, nil
}

// plan allocates a prefix and subnet under the registry lock, lays out every
// name, address and path, and records the plan in the registry and in
// Dir/lab.json before anything is created, so that Down can undo a
// half-built lab from any process.
func plan(spec Spec) (*Lab, error) {
	var l *Lab
	err := withRegistryLock(func() error {
		labs, err := readRegistry()
		if err != nil {
			return err
		}
		prefix := spec.Prefix
		if prefix == "" {
			for range 20 {
				if p := randomPrefix("vtl"); !prefixInUse(p, labs) {
					prefix = p
					break
				}
			}
			if prefix == "" {
				return errors.New("lab: could not find an unused random prefix")
			}
		} else if prefixInUse(prefix, labs) {
			return fmt.Errorf("lab: prefix %q is in use (registry %s or existing interfaces); pick another or tear that lab down", prefix, registryDir)
		}
		addrs, err := interfaceAddrs()
		if err != nil {
			return err
		}
		base := defaultBase
		if spec.Subnet.IsValid() {
			base = spec.Subnet
		}
		subnet, err := pickSubnet(base, takenSubnets(labs), addrs)
		if err != nil {
			return err
		}
		l, err = layout(spec, prefix, subnet)
		if err != nil {
			return err
		}
		if err := writeStateFile(registryPath(prefix), l); err != nil {
			return err
		}
		return l.save()
	})
	return l, err
}

func prefixInUse(p string, labs []*Lab) bool {
	for _, l := range labs {
		if l.Prefix == p {
			return true
		}
	}
	if _, err := net.InterfaceByName(p + "br"); err == nil {
		return true
	}
	_, err := os.Stat(filepath.Join("/run/netns", p+"-node1"))
	return err == nil
}

// layout fills in every name, address and path of a lab; it creates nothing.
func layout(spec Spec, prefix string, subnet netip.Prefix) (*Lab, error) {
	gw, err := hostAddr(subnet, 1)
	if err != nil {
		return nil, err
	}
	l := &Lab{
		Dir:             spec.Dir,
		Prefix:          prefix,
		Subnet:          subnet.String(),
		Gateway:         gw.String(),
		Bridge:          prefix + "br",
		ClientKey:       filepath.Join(spec.Dir, "id_ed25519"),
		ClientPublicKey: filepath.Join(spec.Dir, "id_ed25519.pub"),
		AuthorizedKeys:  filepath.Join(spec.Dir, "authorized_keys"),
		KnownHosts:      filepath.Join(spec.Dir, "known_hosts"),
		Created:         time.Now().UTC().Truncate(time.Second),
		logger:          spec.Logger,
	}
	if spec.OwnerPID != 0 {
		st, err := procStartTime(spec.OwnerPID)
		if err != nil {
			return nil, fmt.Errorf("lab: owner pid %d: %w", spec.OwnerPID, err)
		}
		l.OwnerPID, l.OwnerStart = spec.OwnerPID, st
	}
	for i := 1; i <= spec.Hosts; i++ {
		a, err := hostAddr(subnet, i+1)
		if err != nil {
			return nil, err
		}
		name := "node" + strconv.Itoa(i)
		hd := filepath.Join(spec.Dir, "hosts", name)
		l.Hosts = append(l.Hosts, Host{
			Name:          name,
			Hostname:      prefix + "-" + name,
			Netns:         prefix + "-" + name,
			Veth:          prefix + "v" + strconv.Itoa(i),
			Address:       a.String(),
			Port:          22,
			SSHDConfig:    filepath.Join(hd, "sshd_config"),
			PidFile:       filepath.Join(hd, "sshd.pid"),
			LogFile:       filepath.Join(hd, "sshd.log"),
			HostKey:       filepath.Join(hd, "ssh_host_ed25519_key"),
			HostPublicKey: filepath.Join(hd, "ssh_host_ed25519_key.pub"),
		})
	}
	if spec.PasswordUser {
		l.User = &User{Name: prefix + "u", PasswordFile: filepath.Join(spec.Dir, "password")}
	}
	return l, nil
}

func (l *Lab) save() error {
	return writeStateFile(filepath.Join(l.Dir, stateFile), l)
}

// Load reads the lab recorded in dir/lab.json.
func Load(dir string) (*Lab, error) {
	l, err := readState(filepath.Join(dir, stateFile))
	if err != nil {
		return nil, err
	}
	if l.User != nil {
		b, err := os.ReadFile(l.User.PasswordFile)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("lab: %w", err)
		}
		l.User.Password = string(b)
	}
	return l, nil
}

func readState(path string) (*Lab, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	if !gjson.ValidBytes(b) {
		return nil, fmt.Errorf("lab: %s: not valid JSON", path)
	}
	for _, key := range []string{"dir", "prefix", "bridge"} {
		if r := gjson.GetBytes(b, key); r.Type != gjson.String || r.Str == "" {
			return nil, fmt.Errorf("lab: %s: key %q: want a non-empty string", path, key)
		}
	}
	if !gjson.GetBytes(b, "hosts").IsArray() {
		return nil, fmt.Errorf("lab: %s: key \"hosts\": want an array", path)
	}
	var l Lab
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("lab: %s: %w", path, err)
	}
	if err := validPrefix(l.Prefix); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	l.logger = slog.New(slog.DiscardHandler)
	return &l, nil
}

// SetLogger sets the logger for later calls (Down, Exec); nil discards.
func (l *Lab) SetLogger(logger *slog.Logger) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	l.logger = logger
}

// Host returns the i-th host (0-based), or an error naming the range.
func (l *Lab) Host(i int) (Host, error) {
	if i < 0 || i >= len(l.Hosts) {
		return Host{}, fmt.Errorf("lab: host index %d outside 0..%d", i, len(l.Hosts)-1)
	}
	return l.Hosts[i], nil
}

// Down tears the lab down: it kills every process in the hosts' namespaces
// (sshd, sessions, agents), deletes the namespaces, veths and bridge,
// removes the password user, then forgets the lab (lab.json and its
// registry entry). Pieces already gone are not errors, so Down may be called
// again, also after a partial failure. The directory itself stays, with logs.
func (l *Lab) Down() error {
	ctx, cancel := context.WithTimeout(context.Background(), downTimeout)
	defer cancel()
	var errs []error
	for _, h := range l.Hosts {
		if netnsExists(h.Netns) {
			if err := killNetnsProcs(ctx, h.Netns); err != nil {
				errs = append(errs, err)
			}
			if err := ipCmd(ctx, "netns", "delete", h.Netns); err != nil && netnsExists(h.Netns) {
				errs = append(errs, err)
			}
		}
		// Deleting the namespace destroys the veth pair with it; this only
		// matters when the namespace was never created.
		if err := deleteLink(ctx, h.Veth); err != nil {
			errs = append(errs, err)
		}
	}
	if err := deleteLink(ctx, l.Bridge); err != nil {
		errs = append(errs, err)
	}
	if l.User != nil {
		if err := deleteUser(ctx, l.User.Name); err != nil {
			errs = append(errs, err)
		}
		if err := removeIfExists(l.User.PasswordFile); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		// Keep lab.json and the registry entry so another Down can retry.
		return errors.Join(errs...)
	}
	if err := removeIfExists(filepath.Join(l.Dir, stateFile)); err != nil {
		errs = append(errs, err)
	}
	if err := removeIfExists(registryPath(l.Prefix)); err != nil {
		errs = append(errs, err)
	}
	l.logger.Debug("lab down", "dir", l.Dir, "prefix", l.Prefix)
	return errors.Join(errs...)
}

// Down tears down the lab recorded in dir. A dir without lab.json holds no
// lab (any more), which is not an error.
func Down(dir string) error {
	l, err := Load(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return l.Down()
}

// DownAll tears down every registered lab whose prefix starts with prefix
// and which is stale: its owner process (Spec.OwnerPID) is gone, or its
// directory no longer holds lab.json. Labs of running processes are left
// alone, so parallel test binaries may call DownAll at any time. It returns
// the prefixes it removed.
func DownAll(prefix string) ([]string, error) {
	var labs []*Lab
	err := withRegistryLock(func() error {
		var err error
		labs, err = readRegistry()
		return err
	})
	if err != nil {
		return nil, err
	}
	var (
		removed []string
		errs    []error
	)
	for _, l := range labs {
		if len(l.Prefix) < len(prefix) || l.Prefix[:len(prefix)] != prefix || !l.stale() {
			continue
		}
		if err := l.Down(); err != nil {
			errs = append(errs, fmt.Errorf("lab %s (dir %s): %w", l.Prefix, l.Dir, err))
			continue
		}
		removed = append(removed, l.Prefix)
	}
	return removed, errors.Join(errs...)
}
