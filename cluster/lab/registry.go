package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vtcluster/vtcluster/internal/atomicfile"
)

// registryDir records every lab on this machine, one JSON file per prefix,
// so that parallel labs pick different subnets and prefixes, and so that
// DownAll finds labs whose creator was killed. It lives on /run (tmpfs) like
// the network namespaces themselves: a reboot clears both together.
// A variable so that unit tests can point it elsewhere.
var registryDir = "/run/vtcluster-lab"

// withRegistryLock runs fn while holding an exclusive flock on the registry,
// which serialises prefix and subnet allocation between processes.
func withRegistryLock(fn func() error) error {
	if err := os.MkdirAll(registryDir, 0o700); err != nil {
		return fmt.Errorf("lab: registry: %w", err)
	}
	lockPath := filepath.Join(registryDir, "lock")
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("lab: registry lock: %w", err)
	}
	defer f.Close()
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("lab: registry lock %s: %w", lockPath, err)
	}
	// Closing the file releases the lock.
	return fn()
}

func registryPath(prefix string) string {
	return filepath.Join(registryDir, prefix+".json")
}

// readRegistry returns every registered lab. A registry file that cannot be
// parsed is an error naming it: its subnet is unknown, so allocating around
// it would be guesswork.
func readRegistry() ([]*Lab, error) {
	ents, err := os.ReadDir(registryDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lab: registry: %w", err)
	}
	var labs []*Lab
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		l, err := readState(filepath.Join(registryDir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("%w (remove the file if no such lab exists)", err)
		}
		labs = append(labs, l)
	}
	return labs, nil
}

func takenSubnets(labs []*Lab) []netip.Prefix {
	var out []netip.Prefix
	for _, l := range labs {
		if p, err := netip.ParsePrefix(l.Subnet); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// procStartTime returns a process's start time in clock ticks since boot
// (field 22 of /proc/PID/stat), which with the pid identifies a process
// even after its pid is reused.
func procStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may contain spaces and parentheses; the
	// fields after it start behind the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("lab: /proc/%d/stat: no ')' in %q", pid, s)
	}
	fields := strings.Fields(s[i+1:])
	// fields[0] is field 3 (state), so field 22 is fields[19].
	if len(fields) < 20 {
		return 0, fmt.Errorf("lab: /proc/%d/stat: %d fields, want at least 22", pid, len(fields)+2)
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// processRunning reports whether pid names a process that has not exited.
// A zombie (exited, not yet reaped by its parent) counts as gone: sshd
// daemons are reaped by whatever init the machine runs, sometimes late.
func processRunning(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	state := s[i+2]
	return state != 'Z' && state != 'X'
}

// ownerAlive reports whether the process that created a lab still runs.
func ownerAlive(pid int, start uint64) bool {
	got, err := procStartTime(pid)
	return err == nil && got == start
}

// stale reports whether a registered lab has outlived whoever wanted it:
// its owner process is gone, or its directory (with lab.json) was removed.
func (l *Lab) stale() bool {
	if l.OwnerPID != 0 && !ownerAlive(l.OwnerPID, l.OwnerStart) {
		return true
	}
	_, err := os.Stat(filepath.Join(l.Dir, stateFile))
	return errors.Is(err, fs.ErrNotExist)
}

// writeStateFile writes a lab's state atomically with mode 0600.
func writeStateFile(path string, l *Lab) error {
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return fmt.Errorf("lab: encode %s: %w", path, err)
	}
	if err := atomicfile.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("lab: write %s: %w", path, err)
	}
	return nil
}

// removeIfExists removes a file and ignores its absence.
func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("lab: %w", err)
	}
	return nil
}
