// Package sshx is the controller's SSH and SFTP layer: one Client per host,
// dialled with keys or ssh-agent against a known_hosts file (Dial, Config,
// HostKeyError), that runs argv lists as remote commands (Run, Output,
// RemoteExitError), forwards connections and listeners, and moves files
// over SFTP (Upload, CopyTo, CopyFrom, OpenSFTP).
//
// It knows no cluster type: package cluster builds its node connections on
// it, and arch_test.go keeps it a leaf.
package sshx
