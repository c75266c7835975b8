package lab

import (
	"encoding/json"
	"path/filepath"
	"strconv"
)

// ClusterConfig returns a cluster JSON file for the lab in avocado-vt's
// format ("hosts" and "pools"), with vtcluster's keys added to each host:
// key_file and known_hosts (key authentication with strict host keys, no
// password) and agent_bind "tunnel" (agents listen on a Unix socket in
// their directory and are reached through SSH). Agents keep their files under
// <Dir>/agents/<host name>; all hosts share this machine's filesystem.
func (l *Lab) ClusterConfig() ([]byte, error) {
	type host struct {
		Address      string `json:"address"`
		Username     string `json:"username"`
		ShellPort    string `json:"shell_port"`
		ProxyPort    string `json:"proxy_port"`
		AgentBaseDir string `json:"agent_base_dir"`
		KeyFile      string `json:"key_file"`
		KnownHosts   string `json:"known_hosts"`
		AgentBind    string `json:"agent_bind"`
	}
	hosts := make(map[string]host, len(l.Hosts))
	for _, h := range l.Hosts {
		hosts[h.Name] = host{
			Address:      h.Address,
			Username:     "root",
			ShellPort:    strconv.Itoa(h.Port),
			ProxyPort:    "9999",
			AgentBaseDir: filepath.Join(l.Dir, "agents"),
			KeyFile:      l.ClientKey,
			KnownHosts:   l.KnownHosts,
			AgentBind:    "tunnel",
		}
	}
	cfg := map[string]any{"hosts": hosts, "pools": map[string]any{}}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
